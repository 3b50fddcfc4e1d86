"""Reading what SIPp wrote: statistics CSV, response-time samples and error log."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any


def last_row(stats_csv: Path) -> dict[str, str]:
    """The last (cumulative) row of SIPp's -trace_stat file."""
    if not stats_csv.exists():
        return {}
    with open(stats_csv, encoding="utf-8", errors="replace") as fh:
        rows = [r for r in csv.reader(fh, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _elapsed(raw: str) -> float | None:
    """SIPp's HH:MM:SS (or HH:MM:SS:usec) as seconds."""
    parts = raw.split(":")
    if len(parts) not in (3, 4):
        return None
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        return None
    return nums[0] * 3600 + nums[1] * 60 + nums[2] + (nums[3] / 1e6 if len(nums) == 4 else 0)


def creation_seconds(stats_csv: Path) -> float | None:
    """How long SIPp took to start every call: the elapsed time of the first statistics row
    whose TotalCallCreated reached its final value (the achieved rate's denominator)."""
    if not stats_csv.exists():
        return None
    with open(stats_csv, encoding="utf-8", errors="replace") as fh:
        rows = [r for r in csv.reader(fh, delimiter=";") if r]
    if len(rows) < 2:
        return None
    head = rows[0]
    try:
        created, elapsed = head.index("TotalCallCreated"), head.index("ElapsedTime(C)")
    except ValueError:
        return None
    final = rows[-1][created]
    for row in rows[1:]:
        if len(row) > max(created, elapsed) and row[created] == final:
            return _elapsed(row[elapsed])
    return None


def rtt_rows(workdir: Path) -> list[tuple[float, float]]:
    """(when, ms) of every call-setup time in SIPp's -trace_rtt files (rtd 1) in ``workdir``;
    ``when`` is milliseconds since SIPp started."""
    out: list[tuple[float, float]] = []
    for path in sorted(workdir.glob("*_rtt.csv")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for row in csv.reader(fh, delimiter=";"):
                if len(row) >= 3 and row[2].strip() == "1":
                    try:
                        out.append((float(row[0]), float(row[1])))
                    except ValueError:
                        continue
    return out


def rtt_samples(workdir: Path) -> list[float]:
    """Every call-setup time (ms) from SIPp's -trace_rtt files in ``workdir``."""
    return [ms for _, ms in rtt_rows(workdir)]


def achieved_rate(rows: list[tuple[float, float]]) -> float | None:
    """Calls set up per second between the first and the last setup measured."""
    if len(rows) < 2:
        return None
    times = sorted(t for t, _ in rows)
    span = (times[-1] - times[0]) / 1000.0
    return (len(times) - 1) / span if span > 0 else None


def percentile(samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile, or None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


_CODE = re.compile(r"received 'SIP/2\.0 ([1-6][0-9][0-9]) ")
_TIMEOUT = re.compile(r"Aborting call on UDP retransmission timeout|Call-Id .* timed out|"
                      r"timeout", re.I)


def failures_by_code(errors_log: Path) -> dict[str, int]:
    """Failed calls by the SIP code that failed them (or 'timeout'), from SIPp's error file."""
    counts: Counter[str] = Counter()
    if not errors_log.exists():
        return {}
    for line in errors_log.read_text(errors="replace").split("\n"):
        if "Aborting call" not in line:
            continue
        m = _CODE.search(line)
        if m:
            counts[m.group(1)] += 1
        elif _TIMEOUT.search(line):
            counts["timeout"] += 1
        else:
            counts["other"] += 1
    return dict(sorted(counts.items()))


def summarize(stats: dict[str, str], samples: list[float], failures: dict[str, int],
              duration_s: float) -> dict[str, Any]:
    def num(key: str) -> int:
        try:
            return int(float(stats.get(key, "0") or 0))
        except ValueError:
            return 0

    attempted = num("TotalCallCreated")
    succeeded = num("SuccessfulCall(C)")
    failed = num("FailedCall(C)")
    return {
        "attempted": attempted,
        "succeeded": succeeded,
        "failed": failed,
        "failed_by_code": failures,
        "success": round(100.0 * succeeded / attempted, 3) if attempted else 0.0,
        "rate": round(attempted / duration_s, 2) if duration_s > 0 else 0.0,
        "setup_p50_ms": percentile(samples, 50),
        "setup_p95_ms": percentile(samples, 95),
        "setup_p99_ms": percentile(samples, 99),
        "setup_max_ms": max(samples) if samples else None,
        "setup_samples": len(samples),
        "retransmissions": num("Retransmissions(C)"),
        "duration_s": round(duration_s, 2),
    }
