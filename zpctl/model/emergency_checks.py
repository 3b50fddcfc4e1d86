"""Cross-checks of emergency calling: every site can call emergency services, and the
call says where it comes from and where to call back.

A site's country must be one whose emergency numbers zpctl knows
(``catalog.EMERGENCY_NUMBERS``), with a route for them: a carrier of the platform or a
trunk of the account marked for the country.  Its emergency address must be a dispatchable
location: a street with a house number, and the state and postal code the country's
addresses carry, in the country's own form (``catalog.CIVIC_RULES``).  Every user needs a
callback number, and no extension, device or PBX number may be an emergency number of the
country (nor the account's outside prefix and one): dialled, it would reach emergency
services, never what it names.  A survivability group's extension is checked with the rest
of the group (:mod:`zpctl.model.survivability_checks`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from zpctl.model import catalog, emergency
from zpctl.model.schema import Account, EmergencyAddress, Inventory

Finding = tuple[tuple[str | int, ...], str]
At = tuple[str | int, ...]


def check(inv: Inventory) -> Iterator[Finding]:
    yield from _marked(inv)
    for ai, acct in enumerate(inv.accounts):
        p: At = ("accounts", ai)
        yield from _sites(inv, acct, p)
        yield from _extensions(acct, p)
        yield from _callbacks(acct, p)


def _known() -> str:
    return ", ".join(sorted(catalog.EMERGENCY_NUMBERS))


def _article(country: str) -> str:
    """The article before a country code read out letter by letter: a US, an AU."""
    return "an" if country[:1] in "AEFHILMNORSX" else "a"


def _marked(inv: Inventory) -> Iterator[Finding]:
    """A carrier or trunk marked for a country zpctl has no emergency numbers for would
    never be used: the mark is a mistake."""
    def entries(p: At, countries: list[str], what: str) -> Iterator[Finding]:
        for i, c in enumerate(countries):
            if c not in catalog.EMERGENCY_NUMBERS:
                yield (*p, "emergency", i), (
                    f"{what} is marked for emergency calls of {c}, where zpctl knows no "
                    f"emergency numbers; countries known: {_known()}")
    for ci, carrier in enumerate(inv.carriers):
        yield from entries(("carriers", ci), carrier.emergency, f"carrier {carrier.id}")
    for ai, acct in enumerate(inv.accounts):
        for ti, t in enumerate(acct.trunks):
            yield from entries(("accounts", ai, "trunks", ti), t.emergency, f"trunk {t.id}")


def _sites(inv: Inventory, acct: Account, p: At) -> Iterator[Finding]:
    for si, site in enumerate(acct.sites):
        sp = (*p, "sites", si)
        country = site.country
        if country not in catalog.EMERGENCY_NUMBERS:
            yield (*sp, "country"), (
                f"zpctl knows no emergency numbers in {country}: the site's users could not "
                f"call emergency services; sites may be in {_known()}")
            continue
        if emergency.route(inv, acct, country) is None:
            mark = f"emergency: [{country}]"
            how = (f"mark a carrier for them (carriers[].{mark})" if acct.offering == "native"
                   else f"mark one of the account's trunks (trunks[].{mark}) or a carrier "
                        f"(carriers[].{mark})")
            yield (*sp, "country"), f"no route for emergency calls from {country}: {how}"
        if site.emergency_address.country == country:  # else checks.py reports the mismatch
            yield from _address((*sp, "emergency_address"), site.emergency_address)


def _address(p: At, addr: EmergencyAddress) -> Iterator[Finding]:
    """The address is complete, in its country's form: what a dispatcher sends help to."""
    cc = addr.country
    rule = catalog.CIVIC_RULES.get(cc)
    if rule is None:
        return
    if not any(ch.isdigit() for ch in addr.street):
        yield (*p, "street"), (
            f"street {addr.street!r} has no house number: a dispatchable location needs one, "
            "written as locally (e.g. 55 Almaden Blvd, Keizersgracht 123)")
    state = (addr.state or "").strip()
    if rule.state and not state:
        yield (*p, "state"), (f"state is required in {cc}: the {rule.state_kind} "
                              f"({rule.state_hint})")
    elif rule.states and state and state not in rule.states:
        yield (*p, "state"), (f"state {addr.state!r} is not {_article(cc)} {cc} "
                              f"{rule.state_kind} ({rule.state_hint})")
    if rule.postal is None:
        return
    postal = addr.postal_code
    if postal is None or not postal.strip():
        yield (*p, "postal_code"), (f"postal_code is required in {cc}: the {rule.postal_kind} "
                                    f"({rule.postal_hint})")
    elif not re.fullmatch(rule.postal, postal):
        yield (*p, "postal_code"), (f"postal code {postal!r} is not {_article(cc)} {cc} "
                                    f"{rule.postal_kind} ({rule.postal_hint})")


def _extensions(acct: Account, p: At) -> Iterator[Finding]:
    """No extension, device or PBX number is what a user of the site dials for emergency
    services (with or without the outside prefix)."""
    countries = {s.id: s.country for s in acct.sites}
    everywhere = sorted(set(countries.values()))

    def clash(path: At, what: str, value: str, site: str | None,
              owner: str) -> Iterator[Finding]:
        where = [countries[site]] if site in countries else everywhere
        for country in where:
            for n in emergency.numbers(country):
                if value == n:
                    yield path, (f"{what} {value} is an emergency number in {country}: "
                                 f"calls to it go to emergency services, never to {owner}")
                    return
                if acct.outside_prefix and value == acct.outside_prefix + n:
                    yield path, (f"{what} {value} is the outside prefix "
                                 f"({acct.outside_prefix}) and the emergency number {n} of "
                                 f"{country}: calls to it go to emergency services, never "
                                 f"to {owner}")
                    return

    for ui, u in enumerate(acct.users):
        up = (*p, "users", ui)
        yield from clash((*up, "extension"), "extension", u.extension, u.site, "the user")
        for di, dev in enumerate(u.devices):
            yield from clash((*up, "devices", di, "id"), "device id", dev.id, u.site,
                             "the device")
    pbx = acct.pbx
    pp = (*p, "pbx")
    objects: list[tuple[str, int, str, str, str | None]] = []
    objects += [("auto_receptionists", i, r.id, r.extension, r.site)
                for i, r in enumerate(pbx.auto_receptionists)]
    objects += [("queues", i, q.id, q.extension, q.site) for i, q in enumerate(pbx.queues)]
    objects += [("park_lots", i, lot.id, lot.extension, None)
                for i, lot in enumerate(pbx.park_lots)]
    objects += [("conferences", i, c.id, c.extension, None)
                for i, c in enumerate(pbx.conferences)]
    objects += [("shared_lines", i, s.id, s.extension, None)
                for i, s in enumerate(pbx.shared_lines)]
    objects += [("paging_groups", i, g.id, g.extension, None)
                for i, g in enumerate(pbx.paging_groups)]
    for kind, i, oid, ext, site in objects:
        yield from clash((*pp, kind, i, "extension"), "extension", ext, site, f"{kind}[{oid}]")
    for i, lot in enumerate(pbx.park_lots):
        for slot in lot.slot_numbers():
            found = list(clash((*pp, "park_lots", i, "first_slot"), "park slot", slot, None,
                               f"park lot {lot.id}"))
            yield from found
            if found:
                break


def _callbacks(acct: Account, p: At) -> Iterator[Finding]:
    """An emergency call carries a number to call back: the user's DID, else the site's
    main number."""
    sites = {s.id for s in acct.sites}
    for ui, u in enumerate(acct.users):
        if u.site in sites and emergency.callback_number(acct, u) is None:
            yield (*p, "users", ui), (
                f"user {u.extension} has no callback number for emergency calls: give the "
                "user a DID or the site a main number (numbers[].kind main)")
