"""Click parameter types shared by every command: numbers checked at the edge.

Every numeric option names its valid range, so a bad value is a usage error (exit 2) that
says what would have been accepted, and never reaches library code (a negative socket
timeout, a negative line count, a rate of nan).  click.FloatRange alone lets ``nan`` through
(every comparison with nan is false) and ``inf`` whenever there is no upper bound:
:class:`FiniteFloat` refuses both.
"""

from __future__ import annotations

import math
from typing import Any

import click

from zpctl.errors import ZpctlError
from zpctl.freeswitch import parse_overrides


class FiniteFloat(click.FloatRange):
    """A finite float inside a range (``nan`` and ``inf`` refused)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = float(click.FLOAT.convert(value, param, ctx))
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; valid: {self._describe_range()}.",
                      param, ctx)
        return super().convert(number, param, ctx)


def seconds(maximum: float = 3600.0, zero: bool = False) -> FiniteFloat:
    """A duration in seconds: above 0 (or from 0 with ``zero``) up to ``maximum``."""
    return FiniteFloat(0.0, maximum, min_open=not zero)


def count(minimum: int = 1, maximum: int = 1_000_000) -> click.IntRange:
    """A whole number of things (lines, calls, days ...) between the two bounds."""
    return click.IntRange(minimum, maximum)


#: Seconds to wait for one answer (JSON-RPC, ESL, SIP, a health check): (0, 1 h].
TIMEOUT = seconds(3600.0)
#: Seconds to wait for something that takes long (calls to end, a rollout): (0, 1 day].
DEADLINE = seconds(86400.0)
#: Certificate validity in days: 1 day to 100 years.
DAYS = count(1, 36500)
#: A TCP/UDP port.
PORT = click.IntRange(1, 65535)


def host_ports(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Callback: ``HOST:PORT`` or ``NAME=HOST:PORT,...``, every port in 1-65535 (the same
    parser the ESL override uses, zpctl.freeswitch.parse_overrides)."""
    if value:
        try:
            parse_overrides(value, source=param.name or "address")
        except ZpctlError as exc:
            raise click.BadParameter(exc.message) from None
    return value


__all__ = ["DAYS", "DEADLINE", "PORT", "TIMEOUT", "FiniteFloat", "count", "host_ports", "seconds"]
