"""What the Kamailio tiers need for emergency calls (docs/EMERGENCY.md): the numbers each
country dials, the accounts' outside-line prefixes and call limits, each site's location
document for the zone proxies, and the emergency-services routes for the sbcs.
"""

from __future__ import annotations

from typing import Any

from zpctl.model import PlacedNode, catalog, emergency
from zpctl.model.schema import Account, Carrier, Inventory, Trunk
from zpctl.model.survivable import SurvivableSite

# Dispatcher sets of the emergency-services carriers: one per country, from EMERGENCY_SET0
# in sorted country order (set 10 is the platform's carriers, 100000+ the accounts').
EMERGENCY_SET0 = 20
# How long a callback from emergency services bypasses the callee's features (seconds).
CALLBACK_WINDOW_S = 1800


def served(inv: Inventory, p: PlacedNode) -> list[Account]:
    """Accounts with a site in the node's data center or in its pair."""
    dcs = {p.dc.id, p.dc.pair}
    return sorted((a for a in inv.accounts if any(s.datacenter in dcs for s in a.sites)),
                  key=lambda a: a.id)


def number_regex(numbers: tuple[str, ...] | list[str]) -> str:
    return "^(" + "|".join(sorted(set(numbers))) + ")$"


def proxy_ctx(inv: Inventory, p: PlacedNode) -> dict[str, Any]:
    """The zone proxy's emergency context: per country its numbers' regex (every country
    zpctl knows: a region-locked account's phone may reach any region's proxies, and its
    emergency calls are served wherever they arrive), per account this data center serves
    its outside prefix, call limit and main numbers, per site its location document's tail.
    Only the served accounts': adding an account rewrites only the nodes that serve it
    (docs/RENDERING.md); a phone far from home is served with the plain numbers, without
    its site's location."""
    accounts = served(inv, p)
    tests = sorted({n for nums in catalog.EMERGENCY_TEST_NUMBERS.values() for n in nums})
    return {
        "numbers": [(c, number_regex(n)) for c, n in sorted(catalog.EMERGENCY_NUMBERS.items())],
        "tests": number_regex(tests) if tests else "^$",
        "prefixes": [(a.id, a.outside_prefix) for a in accounts if a.outside_prefix],
        "limits": [(a.id, a.limits.concurrent_calls) for a in accounts
                   if a.limits.concurrent_calls is not None],
        "sites": [(emergency.site_key(a, s), kamailio_string(emergency.pidf_tail(s)))
                  for a in accounts for s in sorted(a.sites, key=lambda s: s.id)],
        "mains": sorted({n.number for a in accounts for n in a.numbers if n.kind == "main"}),
        "pidf_head": emergency.PIDF_HEAD,
        "any": lb_regex(inv, p),
        "callback_s": CALLBACK_WINDOW_S,
    }


def kamailio_string(text: str) -> str:
    """``text`` inside a Kamailio string literal: a backslash would start an escape."""
    return text.replace("\\", "\\\\")


def lb_regex(inv: Inventory, p: PlacedNode) -> str:
    """Every emergency number zpctl knows (a phone may reach any data center), and those
    of the accounts the lb's data center serves after their outside prefix: such INVITEs
    are never shed (the zone proxy decides what they are)."""
    dialled: set[str] = {n for nums in catalog.EMERGENCY_NUMBERS.values() for n in nums}
    for a in served(inv, p):
        for s in a.sites:
            dialled.update(emergency.dialled(a, s.country))
    return number_regex(sorted(dialled)) if dialled else ""


def trunk_set(account_set: int, country: str) -> int:
    """The dispatcher set of an account's trunks marked for ``country``'s emergency calls:
    from the account's set and the country code, so that no other account or country
    renumbers it (``US`` of set 123456: 539 123 456; ``ZZ``: 676 million and more, below 2**31)."""
    a, b = (ord(ch) - ord("A") for ch in country.upper())
    return (a * 26 + b + 1) * 1_000_000 + account_set


def sbc_sets(inv: Inventory, p: PlacedNode, account_sets: dict[str, int]
             ) -> tuple[list[tuple[str, int]], list[tuple[int, str, Carrier]],
                        list[tuple[int, str, Trunk]]]:
    """The emergency routes an sbc knows: (key, dispatcher set) pairs, the key a country
    ("US": the platform's emergency carriers) or "<account>::<country>" (the account's
    trunks marked for that country, a set of their own: :func:`trunk_set`); the (set,
    country, carrier) whose addresses make up each emergency-carrier set, and the (set,
    country, trunk) of each account's."""
    routes: list[tuple[str, int]] = []
    members: list[tuple[int, str, Carrier]] = []
    trunks: list[tuple[int, str, Trunk]] = []
    countries = sorted({c for car in inv.carriers for c in car.emergency})
    for i, country in enumerate(countries):
        setid = EMERGENCY_SET0 + i
        routes.append((country, setid))
        members += [(setid, country, car) for car in sorted(inv.carriers, key=lambda c: c.id)
                    if country in car.emergency]
    for a in served(inv, p):
        if a.id not in account_sets:
            continue
        for country in sorted({c for t in a.trunks for c in t.emergency}):
            setid = trunk_set(account_sets[a.id], country)
            routes.append((f"{a.id}::{country}", setid))
            trunks += [(setid, country, t) for t in a.trunks if country in t.emergency]
    return routes, members, trunks


def node_ctx(site: SurvivableSite) -> dict[str, Any]:
    """A survivability node's emergency context: what its users dial (the site country's
    numbers, with or without the account's outside prefix), each user's callback number and
    the site's location document, as the cloud's zone proxies send it."""
    account = site.account
    return {
        "numbers": number_regex(site.emergency) if site.emergency else "^$",
        "prefix": account.outside_prefix or "",
        "callbacks": [(u.extension, number) for u in sorted(account.users,
                                                            key=lambda u: u.extension)
                      if u.site == site.site.id
                      and (number := emergency.callback_number(account, u)) is not None],
        "cid": emergency.LOCATION_CID.format(domain=site.domain),
        "pidf_head": kamailio_string(emergency.PIDF_HEAD),
        "pidf_tail": kamailio_string(emergency.pidf_tail(site.site)),
    }
