"""Load-test plumbing without SIPp: SLO expressions and reading SIPp's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from zpctl.errors import ExitCode, ZpctlError
from zpctl.loadtest import results
from zpctl.loadtest.slo import evaluate, parse_slo
from zpctl.loadtest.steady import failed_kinds

FIX = Path(__file__).parent / "fixtures" / "sipp"


def test_parse_and_evaluate_slo() -> None:
    objs = parse_slo("success>=99.9, setup_p99_ms<=100,retransmissions==0")
    assert [str(o) for o in objs] == ["success>=99.9", "setup_p99_ms<=100", "retransmissions==0"]
    report = evaluate(objs, {"success": 100.0, "setup_p99_ms": 150, "retransmissions": 0})
    assert [r["met"] for r in report] == [True, False, True]
    assert report[1]["actual"] == 150.0
    # A metric without a value (no samples) is not met.
    assert evaluate(parse_slo("setup_p99_ms<=100"), {"setup_p99_ms": None})[0]["met"] is False
    assert parse_slo("") == []


@pytest.mark.parametrize("bad", ["success", "success=>99", "succ>=1", "success>=abc", ">=5"])
def test_bad_slo_is_a_usage_error(bad: str) -> None:
    with pytest.raises(ZpctlError) as exc:
        parse_slo(bad)
    assert exc.value.exit_code == ExitCode.USAGE


def test_percentiles() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert results.percentile(samples, 50) == 50
    assert results.percentile(samples, 99) == 99
    assert results.percentile(samples, 100) == 100
    assert results.percentile([7.0], 99) == 7.0
    assert results.percentile([], 99) is None


def test_recorded_run_summary(tmp_path: Path) -> None:
    stats = results.last_row(FIX / "ext-call.stats.csv")
    (tmp_path / "call_1_rtt.csv").write_text((FIX / "call_1_rtt.csv").read_text())
    rows = results.rtt_rows(tmp_path)
    assert len(rows) == int(stats["SuccessfulCall(C)"])
    summary = results.summarize(stats, [ms for _, ms in rows], {}, 5.0)
    assert summary["attempted"] == 250
    assert summary["succeeded"] == 250
    assert summary["success"] == 100.0
    assert summary["setup_p50_ms"] is not None
    assert summary["setup_p50_ms"] <= summary["setup_p99_ms"] <= summary["setup_max_ms"]
    rate = results.achieved_rate(rows)
    assert rate is not None
    assert 45 <= rate <= 55  # the recorded run offered 50 calls/s
    assert results.creation_seconds(FIX / "ext-call.stats.csv") is not None


def test_failures_by_code() -> None:
    counts = results.failures_by_code(FIX / "failed.errors.log")
    assert counts == {"500": 1, "503": 2, "timeout": 1}
    assert results.failures_by_code(FIX / "missing.log") == {}


def test_failed_kinds_names_sipp_reasons_that_occurred() -> None:
    """A failure without a SIP code in the error log (a BYE never answered, a 200 that never
    came) is still named, from SIPp's own cumulative counters."""
    row = results.last_row(FIX / "ext-call.stats.csv")
    assert failed_kinds(row) == {}  # the recorded run failed nothing
    row = {**row, "FailedCall(C)": "3", "FailedMaxUDPRetrans(C)": "2",
           "FailedTimeoutOnRecv(C)": "1", "FailedTimeoutOnRecv(P)": "1"}
    assert failed_kinds(row) == {"MaxUDPRetrans": 2, "TimeoutOnRecv": 1}
