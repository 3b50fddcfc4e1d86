"""zpctl loadtest against the running lab: the CI smoke load test with its SLO gate, and
the clear failures (SLO breach, unreachable target, missing SIPp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zpctl.cli.main import main
from zpctl.lab import Lab
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_smoke_load_20_seconds_meets_slo(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """The CI gate: 20 s of authenticated extension calls with RTP through the lab."""
    rc, out, err = _run(capsys, "-o", "json", "loadtest", "ext-call",
                        "--lab-dir", str(zpctl_lab.dir), "--rate", "10", "--duration", "20",
                        "--hold", "1000", "--slo", "success>=99.9,setup_p99_ms<=300",
                        "--json-out", str(tmp_path / "result.json"))
    result = json.loads(out)
    assert rc == 0, (result.get("slo"), err[-2000:])
    assert result["attempted"] == 200
    assert result["succeeded"] == 200
    assert result["failed_by_code"] == {}
    assert 8 <= result["rate"] <= 12
    assert result["setup_p99_ms"] is not None
    assert result["setup_p50_ms"] <= result["setup_p99_ms"]
    assert result["sipp_command"].split()[0].endswith("sipp")
    assert json.loads((tmp_path / "result.json").read_text())["attempted"] == 200
    assert "calls" in err  # the live progress line


def test_register_load(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "-o", "json", "loadtest", "register", "--lab-dir",
                      str(zpctl_lab.dir), "--rate", "100", "--calls", "300",
                      "--slo", "success>=99.9")
    result = json.loads(out)
    assert rc == 0
    assert result["succeeded"] == 300


def test_slo_breach_exits_8(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "loadtest", "register", "--lab-dir", str(zpctl_lab.dir),
                      "--rate", "20", "--calls", "10", "--slo", "setup_p99_ms<0")
    assert rc == 8
    assert "SLO breached: setup_p99_ms<0" in err


def test_unreachable_target_exits_7(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "loadtest", "register", "--target", "127.0.44.44:5060",
                      "--inventory", "inventories/lab", "--calls", "1")
    assert rc == 7
    assert "does not answer" in err


def test_missing_sipp_exits_9(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    rc, _, err = _run(capsys, "loadtest", "register", "--lab-dir", str(zpctl_lab.dir),
                      "--calls", "1")
    assert rc == 9
    assert "sipp is not installed" in err


def test_bad_slo_and_no_lab_are_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "loadtest", "register", "--slo", "nonsense")
    assert rc == 2
    assert "--slo" in err
    rc, _, err = _run(capsys, "loadtest", "register", "--lab-dir", str(tmp_path / "none"))
    assert rc == 7
    assert "no lab" in err
