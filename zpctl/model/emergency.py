"""Emergency calling, as the inventory describes it: each site's emergency numbers, its
dispatchable location (PIDF-LO, RFC 4119, with RFC 5139 civic address elements), the
callback number a call carries, and the route it leaves by.  Renderers and checks share
these; docs/EMERGENCY.md has the design.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

from zpctl.model import catalog
from zpctl.model.schema import Account, EmergencyAddress, Inventory, Site, User

# The Content-ID of the location body part, as the Geolocation header names it (RFC 6442).
LOCATION_CID = "zp-location@{domain}"
# How the location document starts, up to the entity's value (which the proxy fills in
# with the caller's callback number): the rest comes from pidf_tail().
PIDF_HEAD = ("<?xml version='1.0' encoding='UTF-8'?>"
             "<presence xmlns='urn:ietf:params:xml:ns:pidf'"
             " xmlns:gp='urn:ietf:params:xml:ns:pidf:geopriv10'"
             " xmlns:ca='urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr'"
             " entity='pres:")

# A house number at the start ("55 Almaden Blvd") or at the end ("Keizersgracht 123").
_HNO_FIRST = re.compile(r"^(\d+[A-Za-z]?(?:-\d+[A-Za-z]?)?),?\s+(\S.*)$")
_HNO_LAST = re.compile(r"^(\S.*?),?\s+(\d+[A-Za-z]?(?:-\d+[A-Za-z]?)?)$")


def numbers(country: str) -> tuple[str, ...]:
    """The emergency numbers dialled directly in ``country`` (none if zpctl knows none)."""
    return catalog.EMERGENCY_NUMBERS.get(country, ())


def dialled(account: Account, country: str) -> tuple[str, ...]:
    """What a user of ``account`` at a site in ``country`` may dial for emergency services:
    each number, and each with the account's outside-line prefix."""
    nums = numbers(country)
    prefixed = tuple(account.outside_prefix + n for n in nums) if account.outside_prefix else ()
    return nums + prefixed


def site_key(account: Account, site: Site) -> str:
    """How the proxies name a site (the subscriber row's ``site``)."""
    return f"{account.id}/{site.id}"


def main_number(account: Account, site_id: str) -> str | None:
    """The site's main number, else the account's (one with no site), else None."""
    mains = [n for n in account.numbers if n.kind == "main"]
    own = [n.number for n in mains if n.site == site_id]
    if own:
        return own[0]
    shared = [n.number for n in mains if n.site is None]
    return shared[0] if shared else None


def callback_number(account: Account, user: User) -> str | None:
    """Where emergency services call back: the user's DID, else the site's main number."""
    if user.dids:
        return user.dids[0]
    return main_number(account, user.site)


def civic(addr: EmergencyAddress) -> list[tuple[str, str]]:
    """The RFC 5139 civic address elements of ``addr``, in schema order."""
    road, hno = addr.street.strip(), ""
    if m := _HNO_FIRST.match(road):
        hno, road = m.group(1), m.group(2)
    elif m := _HNO_LAST.match(road):
        road, hno = m.group(1), m.group(2)
    out = [("country", addr.country)]
    if addr.state:
        out.append(("A1", addr.state))
    out += [("A3", addr.city), ("RD", road)]
    if hno:
        out.append(("HNO", hno))
    if addr.postal_code:
        out.append(("PC", addr.postal_code))
    if addr.location:
        out.append(("LOC", addr.location))
    return out


def _attr(text: str) -> str:
    return escape(text, {"'": "&apos;", '"': "&quot;"})


def pidf_tail(site: Site) -> str:
    """The location document after the entity's value: one line, attributes in single
    quotes, so it sits in a Kamailio string as it is."""
    addr = site.emergency_address
    elements = "".join(f"<ca:{k}>{_attr(v)}</ca:{k}>" for k, v in civic(addr))
    return (f"'><tuple id='zp-{_attr(site.id)}'><status><gp:geopriv><gp:location-info>"
            f"<ca:civicAddress xml:lang='{_attr(site.language)}'>{elements}"
            f"</ca:civicAddress></gp:location-info>"
            f"<gp:usage-rules/><gp:method>Manual</gp:method>"
            f"</gp:geopriv></status></tuple></presence>")


def pidf(site: Site, entity: str) -> str:
    """The whole location document for a caller ``entity`` (user@domain)."""
    return PIDF_HEAD + _attr(entity) + pidf_tail(site)


def location(site: Site) -> dict[str, str]:
    """The site's address as the security desk's notice carries it."""
    a = site.emergency_address
    out = {"street": a.street, "city": a.city, "country": a.country}
    for k in ("state", "postal_code", "location"):
        if v := getattr(a, k):
            out[k] = v
    return out


@dataclass(frozen=True)
class Route:
    """Where an account's emergency calls of one country leave the platform."""

    kind: str  # "trunk" (the account's own) or "carrier" (the platform's)
    id: str


def route(inv: Inventory, account: Account, country: str) -> Route | None:
    """The account's trunk marked for ``country``, else the platform's carrier marked for
    it; None when there is neither."""
    for t in account.trunks:
        if country in t.emergency:
            return Route("trunk", t.id)
    for c in sorted(inv.carriers, key=lambda c: c.id):
        if country in c.emergency:
            return Route("carrier", c.id)
    return None
