"""Graceful overload: past what an lb admits, it answers 503 with Retry-After before making a
transaction, and what it admits still meets the SLO (issue 19, item 5).

The lab's lb admits its inventory capacity (200 calls/s, 1,000 registrations/s); these
tests lower the admission at run time (`zpctl dc admission`) so that twice the admitted
rate stays within what SIPp and the lab can offer on two shared cores, then put it back.
Before admission control the lab's lb, offered 1,000 REGISTER/s, ran out of shared memory
and answered 500 ("No error (2/SL)") to about one request in eight.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from zpctl.cli.main import main
from zpctl.lab import Lab
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

RETRY_AFTER = re.compile(r"SIP/2.0 503 Overloaded\r?\n(?:[^\r\n]+\r?\n)*?Retry-After: (\d+)")


def _zpctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _admission(capsys: pytest.CaptureFixture[str], lab: Lab, *args: str) -> list[dict]:  # type: ignore[type-arg]
    rc, out, err = _zpctl(capsys, "-o", "json", "dc", "admission", "lab1", "--lab-dir",
                          str(lab.dir), *args)
    assert rc == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def admission(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str]) -> Iterator[dict]:  # type: ignore[type-arg]
    before = _admission(capsys, zpctl_lab)[0]
    try:
        yield before
    finally:
        _admission(capsys, zpctl_lab, "--cps", str(before["inventory_cps"]),
                   "--registrations", str(before["inventory_registrations"]))


def _load(capsys: pytest.CaptureFixture[str], lab: Lab, tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    rc, out, err = _zpctl(capsys, "-o", "json", "loadtest", *args, "--lab-dir", str(lab.dir),
                          )
    assert rc == 0, err[-2000:]
    return json.loads(out)  # type: ignore[no-any-return]


def _retry_afters(result: dict) -> list[int]:  # type: ignore[type-arg]
    errors = Path(result["workdir"]) / "load.errors.log"
    return [int(v) for v in RETRY_AFTER.findall(errors.read_text(errors="replace"))]


def test_registrations_past_admission_are_shed_and_the_admitted_meet_the_slo(
        zpctl_lab: Lab, admission: dict, capsys: pytest.CaptureFixture[str],  # type: ignore[type-arg]
        tmp_path: Path) -> None:
    assert admission["registrations"] == admission["inventory_registrations"] == 1000
    shed_before = admission["shed_rate"]
    rows = _admission(capsys, zpctl_lab, "--registrations", "200")
    assert rows[0]["registrations"] == 200
    r = _load(capsys, zpctl_lab, tmp_path, "register", "--rate", "400", "--duration", "4")
    with capsys.disabled():
        print(f"\nregister 400/s against 200/s admitted: {r['attempted']} attempted, "
              f"{r['succeeded']} admitted and registered, shed {r['failed_by_code']}, "
              f"admitted p99 {r['setup_p99_ms']} ms, rate {r['rate']}/s")
    assert set(r["failed_by_code"]) == {"503"}, r["failed_by_code"]  # shed, never a 500
    shed = r["failed_by_code"]["503"]
    assert 0.25 * r["attempted"] <= shed <= 0.75 * r["attempted"]
    # What was admitted met the SLO: every admitted registration answered, quickly.
    assert r["succeeded"] + shed == r["attempted"]
    assert r["setup_p99_ms"] <= 100
    assert r["rate"] <= 200 * 1.4
    waits = _retry_afters(r)
    assert len(waits) == shed
    assert min(waits) >= 1 and max(waits) <= 5 and len(set(waits)) > 1
    after = _admission(capsys, zpctl_lab)[0]
    assert after["shed_rate"] - shed_before == shed
    assert after["shed_memory"] == 0


def test_calls_past_admission_are_shed_and_the_admitted_meet_the_slo(
        zpctl_lab: Lab, admission: dict, capsys: pytest.CaptureFixture[str],  # type: ignore[type-arg]
        tmp_path: Path) -> None:
    _admission(capsys, zpctl_lab, "--cps", "8")
    r = _load(capsys, zpctl_lab, tmp_path, "ext-call", "--rate", "16", "--duration", "5",
              "--hold", "500")
    with capsys.disabled():
        print(f"\ncalls 16/s against 8/s admitted: {r['attempted']} attempted, "
              f"{r['succeeded']} answered, shed {r['failed_by_code']}, "
              f"admitted p99 {r['setup_p99_ms']} ms")
    assert set(r["failed_by_code"]) == {"503"}, r["failed_by_code"]
    shed = r["failed_by_code"]["503"]
    assert 0.2 * r["attempted"] <= shed <= 0.75 * r["attempted"]
    assert r["succeeded"] + shed == r["attempted"]
    assert r["setup_p99_ms"] <= 300
    assert len(_retry_afters(r)) == shed
