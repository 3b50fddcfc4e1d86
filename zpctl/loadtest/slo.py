"""Service-level objectives for load tests: ``"success>=99.9,setup_p99_ms<=100"``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zpctl.errors import ExitCode, ZpctlError

METRICS = {
    "success": "percentage of attempted calls that succeeded (0-100)",
    "failed": "calls that failed (count)",
    "setup_p50_ms": "median call-setup time (ms)",
    "setup_p95_ms": "95th percentile call-setup time (ms)",
    "setup_p99_ms": "99th percentile call-setup time (ms)",
    "setup_max_ms": "slowest call setup (ms)",
    "rate": "achieved rate (calls or registrations per second)",
    "retransmissions": "SIP retransmissions SIPp had to send (count)",
}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}
_TERM = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|==|>|<)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")


@dataclass(frozen=True)
class Objective:
    metric: str
    op: str
    value: float

    def check(self, results: dict[str, Any]) -> tuple[bool, float | None]:
        actual = results.get(self.metric)
        if actual is None:
            return False, None
        return _OPS[self.op](float(actual), self.value), float(actual)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_slo(text: str) -> list[Objective]:
    """Parse a comma-separated list of ``metric OP number``; usage error on anything else."""
    out = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        m = _TERM.match(term)
        if not m:
            raise ZpctlError(f"--slo: cannot read {term!r}; write e.g. success>=99.9", ExitCode.USAGE)
        if m.group(1) not in METRICS:
            raise ZpctlError(f"--slo: unknown metric {m.group(1)!r}; known: {', '.join(METRICS)}",
                             ExitCode.USAGE)
        out.append(Objective(m.group(1), m.group(2), float(m.group(3))))
    return out


def evaluate(objectives: list[Objective], results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each objective with its actual value and whether it held."""
    report = []
    for obj in objectives:
        ok, actual = obj.check(results)
        report.append({"objective": str(obj), "actual": actual, "met": ok})
    return report
