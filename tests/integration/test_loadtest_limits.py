"""A load test ends on time whatever it was asked: real SIPp runs through the lab.

`zpctl loadtest` runs in its own process group here, so a run that would not end is killed
(with its SIPp) when the test gives up on it, instead of flooding the lab for hours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zpctl.lab import Lab
from zpctl.loadtest.limits import GRACE_S, STOP_SLACK_S
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

ZPCTL = str(Path(sys.executable).with_name("zpctl"))
STARTUP_S = 5.0  # preflight, the callee's registration, reading the results


def _zpctl(*args: str, give_up_s: float) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen([ZPCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=give_up_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"zpctl {' '.join(args)} still running after {give_up_s:g} s:\n{err[-1500:]}")
    return proc.returncode, out, err, time.monotonic() - t0


def test_duration_ends_the_run_whatever_calls_says(zpctl_lab: Lab) -> None:
    """--calls 100000 at 20/s would take 83 minutes: --duration 3 ends it after 3 s."""
    bound = 3 + STOP_SLACK_S + 0.5 + GRACE_S + STARTUP_S
    rc, out, err, took = _zpctl("-o", "json", "loadtest", "ext-call", "--lab-dir",
                                str(zpctl_lab.dir), "--rate", "20", "--duration", "3",
                                "--calls", "100000", "--hold", "500", give_up_s=bound + 30)
    assert rc == 0, err[-2000:]
    result = json.loads(out)
    print(f"ext-call 20/s, 3 s, --calls 100000: {took:.1f} s, {result['attempted']} attempted, "
          f"{result['succeeded']} succeeded")
    assert took <= bound, err[-2000:]
    assert result["attempted"] == result["succeeded"] == 60


def test_sipp_behind_schedule_is_stopped_at_the_duration(zpctl_lab: Lab) -> None:
    """At most 5 calls at once, each held 1 s: SIPp cannot keep 20/s and would need 12 s
    for its 60 calls; it starts none after 3 s (+ slack) and its calls end well."""
    bound = 3 + STOP_SLACK_S + 1 + GRACE_S + STARTUP_S
    rc, out, err, took = _zpctl("-o", "json", "loadtest", "ext-call", "--lab-dir",
                                str(zpctl_lab.dir), "--rate", "20", "--duration", "3",
                                "--concurrency", "5", "--hold", "1000", give_up_s=bound + 30)
    assert rc == 0, err[-2000:]
    result = json.loads(out)
    print(f"ext-call 20/s, 3 s, -l 5, hold 1 s: {took:.1f} s, {result['attempted']} attempted, "
          f"{result['succeeded']} succeeded")
    assert took <= bound, err[-2000:]
    assert "starting no new call" in err
    assert 10 <= result["attempted"] < 60
    assert result["succeeded"] == result["attempted"]  # calls in progress ended well


def test_a_forced_high_rate_still_ends_on_time(zpctl_lab: Lab) -> None:
    args = ("-o", "json", "loadtest", "register", "--lab-dir", str(zpctl_lab.dir),
            "--rate", "3000", "--duration", "2")
    rc, _, err, _ = _zpctl(*args, give_up_s=30)
    assert rc == 2
    assert "above what 127.0.1.1:5060 can take: 1000/s" in err
    bound = 2 + STOP_SLACK_S + 1 + GRACE_S + STARTUP_S
    rc, out, err, took = _zpctl(*args, "--force", give_up_s=bound + 30)
    assert rc == 0, err[-2000:]
    assert took <= bound, err[-2000:]
    result = json.loads(out)
    print(f"register 3000/s --force, 2 s: {took:.1f} s, {result['attempted']} attempted, "
          f"{result['succeeded']} succeeded")
    assert 0 < result["attempted"] <= 3000 * (2 + STOP_SLACK_S)
