"""The SRE's report, case by case: load-test rates bounded by the inventory's capacity,
durations that must mean something, and the bad values of `zone drain` and `lab logs`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.cli.main import main
from zpctl.lab import Lab
from zpctl.loadtest.limits import DEFAULT_CEILING_CPS, REGISTERS_PER_CALL, ceiling
from zpctl.model import load_inventory

LAB = str(INVENTORIES / "lab")
LB = "127.0.1.1:5060"  # the lab inventory's first lb


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _dry(*extra: str, target: str = LB, inventory: str | None = LAB) -> list[str]:
    inv = ["--inventory", inventory] if inventory else []
    return ["-o", "json", "loadtest", "ext-call", "--target", target, *inv, "--dry-run", *extra]


@pytest.fixture(autouse=True)
def _no_real_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZPCTL_LAB_DIR", str(tmp_path / "no-lab"))


def test_a_rate_beyond_the_inventory_capacity_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, *_dry("--rate", "5000", "--duration", "1"))
    assert rc == 2
    assert "above what 127.0.1.1:5060 can take: 200/s" in err
    assert "lab1-lb" in err
    assert "--force" in err
    rc, out, _ = _run(capsys, *_dry("--rate", "200", "--duration", "1"))
    assert rc == 0
    assert json.loads(out)["calls"] == 200


def test_force_sends_beyond_capacity(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, *_dry("--rate", "5000", "--duration", "1", "--force"))
    assert rc == 0
    plan = json.loads(out)
    assert plan["rate"] == 5000
    # Whatever the rate, the run has a bounded end: 1 s + 2 s slack + hold 1 s + 10 s grace.
    assert plan["ends_within_s"] == 14.0


def test_absurd_rates_are_refused_even_with_force(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, *_dry("--rate", "1e9", "--duration", "1", "--force"))
    assert rc == 2
    assert "0<x<=100000" in err


def test_the_ceiling_follows_the_inventory(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    platform = inv / "platform.yml"
    text = platform.read_text()
    assert "    cps: 200" in text
    platform.write_text(text.replace("    cps: 200", "    cps: 40"))
    got = ceiling(load_inventory(inv), "ext-call", LB)
    assert got.cps == 40  # the lb: 40; the two zone proxies share 80
    rc, _, err = _run(capsys, *_dry("--rate", "41", inventory=str(inv)))
    assert rc == 2
    assert "40/s" in err
    rc, _, _ = _run(capsys, *_dry("--rate", "40", inventory=str(inv)))
    assert rc == 0


def test_pstn_did_and_register_paths(capsys: pytest.CaptureFixture[str]) -> None:
    inv = load_inventory(LAB)
    assert ceiling(inv, "pstn", LB).cps == 200
    # A registration costs a node much less than a call.
    assert ceiling(inv, "register", LB).cps == 200 * REGISTERS_PER_CALL
    assert ceiling(None, "register", LB).cps == DEFAULT_CEILING_CPS * REGISTERS_PER_CALL
    rc, _, err = _run(capsys, "loadtest", "register", "--target", LB, "--inventory", LAB,
                      "--dry-run", "--rate", "1001")
    assert rc == 2
    assert "1000/s" in err
    assert "capacity.registrations 1000" in err
    sbc = next(p.node for p in inv.nodes() if p.role.value == "sbc")
    assert ceiling(inv, "did", f"{sbc.public}:5060").why.startswith("sbc ")


def test_a_target_without_inventory_gets_the_documented_ceiling(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users.csv"
    users.write_text("SEQUENTIAL\n1001;example.test;pw;\n1002;example.test;pw;\n")
    args = ["-o", "json", "loadtest", "pstn", "--target", "192.0.2.10",
            "--users", str(users), "--dry-run"]
    rc, _, err = _run(capsys, *args, "--rate", str(DEFAULT_CEILING_CPS + 1))
    assert rc == 2
    assert f"{DEFAULT_CEILING_CPS}/s" in err
    assert "does not describe" in err
    rc, out, _ = _run(capsys, *args, "--rate", str(DEFAULT_CEILING_CPS))
    assert rc == 0
    assert json.loads(out)["target"] == "192.0.2.10:5060"


@pytest.mark.parametrize("args", [
    ["--duration", "0"], ["--duration", "-1"], ["--duration", "nan"], ["--duration", "inf"],
    ["--rate", "0"], ["--rate", "-1"], ["--rate", "nan"], ["--rate", "inf"],
    ["--calls", "0"], ["--calls", "-1"], ["--calls", "nan"], ["--calls", "inf"],
    ["--concurrency", "0"], ["--concurrency", "-1"], ["--concurrency", "nan"],
    ["--concurrency", "inf"],
    ["--rate", "0.05", "--duration", "5"],  # less than one call
])
def test_meaningless_numbers_are_usage_errors(args: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, *_dry(*args))
    assert rc == 2, err
    assert out == ""
    assert "range" in err or "valid:" in err or "starts no call" in err


@pytest.mark.parametrize("timeout", ["-5", "0", "nan"])
def test_zone_drain_timeout_is_checked_at_the_edge(
        timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: -5 "internal error ValueError: Timeout value out of range", 0 "[Errno 115]"."""
    rc, _, err = _run(capsys, "zone", "drain", "lab1/a", "--inventory", LAB,
                      "--timeout", timeout)
    assert rc == 2
    assert "0.0<x<=3600.0" in err


def _big_lab(tmp_path: Path, lines: int) -> Lab:
    log = tmp_path / "lab" / "nodes" / "lab1-lb" / "log" / "kamailio.log"
    log.parent.mkdir(parents=True)
    with open(log, "w") as fh:
        fh.writelines(f"line {i} {'x' * (i % 97)}\n" for i in range(lines))
    (tmp_path / "lab" / "nodes" / "lab1-a-proxy" / "log").mkdir(parents=True)
    (tmp_path / "lab" / "nodes" / "lab1-a-proxy" / "log" / "kamailio.log").write_text("a\nb")
    return Lab(tmp_path / "lab")


def test_lab_logs_lines_and_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = _big_lab(tmp_path, 200_000)
    rc, out, err = _run(capsys, "lab", "logs", "lab1-lb", "-n", "-3", "--lab-dir", str(lab.dir))
    assert rc == 2  # was: the whole log
    assert out == ""
    assert "1<=x<=100000" in err
    rc, _, err = _run(capsys, "lab", "logs", "nosuchnode", "--lab-dir", str(lab.dir))
    assert rc == 2  # was: 1, the internal-error code
    assert "known: lab1-a-proxy, lab1-lb" in err
    rc, _, err = _run(capsys, "lab", "logs", "--lab-dir", str(tmp_path / "none"))
    assert rc == 7
    assert "no lab in" in err


@pytest.mark.parametrize("n", [1, 3, 1000, 5000])
def test_lab_logs_tail_is_exact(tmp_path: Path, n: int) -> None:
    lab = _big_lab(tmp_path, 200_000)
    body = lab.logs("lab1-lb", n).split("<==\n", 1)[1]
    assert body.splitlines() == [f"line {i} {'x' * (i % 97)}" for i in range(200_000 - n,
                                                                              200_000)]
    # A file shorter than asked, without a final newline.
    assert lab.logs("lab1-a-proxy", 10).endswith("<==\na\nb")
