"""Value types shared by the inventory schema and the PBX model: strict models, and strings
checked on the way in (addresses, E.164 numbers, time zones, hours, SRTP suites, prompt
languages, features, identifiers)."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from zpctl.model import catalog


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


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


def _language(value: str) -> str:
    if value not in catalog.LANGUAGES:
        raise ValueError(f"unknown prompt language {value!r}; one of {', '.join(catalog.LANGUAGES)}")
    return value


def _feature(value: str) -> str:
    if value not in catalog.FEATURES:
        raise ValueError(f"unknown feature {value!r}; known: {', '.join(catalog.FEATURES)}")
    return value


IP = Annotated[str, AfterValidator(_ip)]
E164 = Annotated[str, AfterValidator(_e164)]
TimeZone = Annotated[str, AfterValidator(_tz)]
Hours = Annotated[str, AfterValidator(_hours)]
Suite = Annotated[str, AfterValidator(_suite)]
Language = Annotated[str, AfterValidator(_language)]
Feature = Annotated[str, AfterValidator(_feature)]
Port = Annotated[int, Field(ge=1, le=65535)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")]
Ext = Annotated[str, Field(pattern=r"^[0-9]{2,8}$")]
Date = Annotated[str, Field(pattern=r"^[0-9]{4}-[01][0-9]-[0-3][0-9]$")]
