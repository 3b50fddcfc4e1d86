"""Value types shared by the inventory schema and the PBX model: strict models, and strings
checked on the way in (addresses, E.164 numbers, time zones, hours, SRTP suites, prompt
languages, features, identifiers)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import zoneinfo
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from zpctl.model import catalog


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None
    if address.version == 6:
        # Kamailio needs an IPv6 listen address in brackets, FreeSWITCH and rtpengine their
        # own forms, and nothing here is tested on IPv6 yet: refused, not rendered wrong.
        raise ValueError(f"IPv6 addresses are not supported yet: {value!r}; use IPv4")
    return str(address)


def _network(value: str) -> str:
    try:
        net = ipaddress.ip_network(value)
    except ValueError as exc:
        raise ValueError(f"not a network (address/prefix, host bits zero): {exc}") from None
    if net.version == 6:
        raise ValueError(f"IPv6 networks are not supported yet: {value!r}; use IPv4")
    return str(net)


# platform.management_networks when the inventory names none: the lab's loopback.
DEFAULT_MANAGEMENT_NETWORK = "127.0.0.0/8"


# A host name or SIP domain (RFC 1123 labels, lower case): it lands in Kamailio's and
# FreeSWITCH's configs, the TLS certificates and the phones' URIs.
_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")


def _hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME.fullmatch(value):
        hint = "; lower case only" if _HOSTNAME.fullmatch(value.lower()) else ""
        raise ValueError(f"not a host name or SIP domain (letters, digits and hyphens in "
                         f"dot-separated labels){hint}: {value!r}")
    return value


def _date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD, a day the month has): {value!r}") from None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError(f"not a date in the form YYYY-MM-DD: {value!r}")
    return value


def _currency(value: str) -> str:
    if value not in catalog.CURRENCIES:
        raise ValueError(f"not an ISO 4217 currency code: {value!r} (e.g. USD, EUR, INR)")
    return value


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _e164(value: str) -> str:
    if not _E164.fullmatch(value):
        raise ValueError(f"not an E.164 number (+ and 7 to 15 digits): {value!r}")
    return value


def _tz(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone: {value!r}") from None
    return value


def _hours(value: str) -> str:
    m = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])", value)
    if not m or (m.group(3), m.group(4)) <= (m.group(1), m.group(2)):
        raise ValueError(f"hours must be HH:MM-HH:MM with the end after the start: {value!r}")
    return value


def _suite(value: str) -> str:
    if value not in catalog.SRTP_SUITES:
        raise ValueError(
            f"unknown SRTP suite {value!r}; use a canonical name such as "
            f"{catalog.SRTP_AES256} or {catalog.SRTP_AES128}"
        )
    return value


def canonical_language(value: str) -> str | None:
    """The catalog's code for ``value`` (BCP 47: the language, and the region only where
    the prompts differ by region: ``de``, ``fr-FR``), or None.  Other spellings of one
    language map to it: any case, ``_`` for ``-`` (``en_us`` is ``en-US``), a region
    where the prompts have none (``de-DE`` is ``de``)."""
    parts = re.split(r"[-_]", value.strip())
    if not parts[0] or len(parts) > 2:
        return None
    tag = parts[0].lower() + (f"-{parts[1].upper()}" if len(parts) == 2 else "")
    if tag in catalog.LANGUAGES:
        return tag
    if parts[0].lower() in catalog.LANGUAGES:
        return parts[0].lower()
    return None


def _language(value: str) -> str:
    if value in catalog.LANGUAGES:
        return value
    canon = canonical_language(value)
    if canon is not None:
        return canon  # the same language, written another way
    primary = re.split(r"[-_]", value.strip())[0].lower()
    regional = [c for c in catalog.LANGUAGES if c.split("-")[0] == primary]
    if regional:
        raise ValueError(f"prompt language {value!r}: the prompts differ by region; "
                         f"use {' or '.join(regional)}")
    raise ValueError(f"unknown prompt language {value!r}; one of {', '.join(catalog.LANGUAGES)} "
                     "(BCP 47 tags)")


def _feature(value: str) -> str:
    if value not in catalog.FEATURES:
        raise ValueError(f"unknown feature {value!r}; known: {', '.join(catalog.FEATURES)}")
    return value


def _editor(description: str, **schema: Any) -> Any:
    """What the editors' JSON Schema says of a value (``zpctl inventory schema``): its
    description and the enum or pattern the validator above checks.  Schema only: the
    validator's message stays the one users see."""
    return Field(description=description, json_schema_extra=dict(schema))


_IPV4 = r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"

IP = Annotated[str, AfterValidator(_ip), _editor("An IPv4 address.", pattern=_IPV4)]
E164 = Annotated[str, AfterValidator(_e164),
                 _editor("An E.164 number, in quotes: + and 7 to 15 digits.",
                         pattern=r"^\+[1-9][0-9]{6,14}$")]
TimeZone = Annotated[str, AfterValidator(_tz), _editor("An IANA time zone, e.g. Europe/Berlin.")]
Hours = Annotated[str, AfterValidator(_hours),
                  _editor("Opening hours HH:MM-HH:MM, the end after the start.",
                          pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$")]
Suite = Annotated[str, AfterValidator(_suite),
                  _editor("An SRTP crypto suite.", enum=list(catalog.SRTP_SUITES))]
Language = Annotated[str, AfterValidator(_language),
                     _editor("A prompt language (BCP 47 as the catalog spells it).",
                             enum=list(catalog.LANGUAGES))]
Feature = Annotated[str, AfterValidator(_feature),
                    _editor("A user feature.", enum=list(catalog.FEATURES))]
Port = Annotated[int, Field(ge=1, le=65535)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")]
Ext = Annotated[str, Field(pattern=r"^[0-9]{2,8}$")]
Date = Annotated[str, AfterValidator(_date),
                 _editor("A date, YYYY-MM-DD, in quotes.", pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
Hostname = Annotated[str, AfterValidator(_hostname),
                     _editor("A host name or SIP domain (RFC 1123 labels, lower case).",
                             pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")]
Network = Annotated[str, AfterValidator(_network),
                    _editor("An IPv4 network, address/prefix.",
                            pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$")]
Currency = Annotated[str, AfterValidator(_currency),
                     _editor("An ISO 4217 currency code.", enum=sorted(catalog.CURRENCIES))]
