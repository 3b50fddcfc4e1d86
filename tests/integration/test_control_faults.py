"""Live commands against the lab with a node frozen (SIGSTOP) or dead (SIGKILL): the
healthy nodes' data, the failing node named, exit 7 - and status stays fast.

Every fault is undone in a ``finally`` (SIGCONT, or the node started again): other tests
share the session lab.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zpctl.cli.main import main
from zpctl.control import Control
from zpctl.errors import ExitCode
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server"))),
                                reason="lab binaries missing (make install)")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object, str, float]:
    t0 = time.monotonic()
    rc = main(["-o", "json", *args])
    took = time.monotonic() - t0
    out, err = capsys.readouterr()
    return rc, json.loads(out) if out.strip() else None, err, took


def _all_up(lab: Lab) -> bool:
    return all(r["state"].startswith(("up", "not run", "standby")) for r in lab.status())


@pytest.fixture
def frozen_proxy(zpctl_lab: Lab) -> Iterator[str]:
    zpctl_lab.kill("lab1-a-proxy", signal.SIGSTOP)
    try:
        yield "lab1-a-proxy"
    finally:
        zpctl_lab.kill("lab1-a-proxy", signal.SIGCONT)
        wait_for("every lab node up again", lambda: _all_up(zpctl_lab), timeout=20)


def test_status_with_a_frozen_proxy_says_not_answering_fast_and_exits_7(
        zpctl_lab: Lab, frozen_proxy: str, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--lab-dir", str(zpctl_lab.dir)]
    rc, rows, err, took = run(capsys, "lab", "status", *where)
    assert rc == ExitCode.UNREACHABLE, err
    assert isinstance(rows, list)
    state = {r["node"]: r["state"] for r in rows}
    assert state[frozen_proxy].startswith("not answering"), state[frozen_proxy]
    assert state["lab1-b-proxy"] == "up"
    assert f"{frozen_proxy} not answering" in err
    assert took < 3.5, f"lab status took {took:.1f} s"

    rc, rows, err, took = run(capsys, "node", "status", *where)
    assert rc == ExitCode.UNREACHABLE, err
    assert isinstance(rows, list)
    state = {r["node"]: r["state"] for r in rows}
    assert state[frozen_proxy].startswith("not answering"), state[frozen_proxy]
    assert state["lab1-b-proxy"] == "up"
    assert took < 3.5, f"node status took {took:.1f} s"


def test_registrations_and_dialogs_with_a_frozen_proxy_show_the_others(
        zpctl_lab: Lab, frozen_proxy: str, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--lab-dir", str(zpctl_lab.dir), "--timeout", "1"]
    for what in ("registrations", "dialogs"):
        rc, rows, err, _ = run(capsys, what, "ls", *where)
        assert rc == ExitCode.UNREACHABLE, err
        assert isinstance(rows, list)
        dead = [r for r in rows if r.get("error")]
        assert [(r["proxy"], r["zone"]) for r in dead] == [(frozen_proxy, "lab1/a")], rows
        assert dead[0]["error"].startswith("not answering")
        assert f"{frozen_proxy} (lab1/a): not answering" in err
        assert "1 node(s) failed: lab1-a-proxy" in err
        assert "using inventory" in err
    rc, rows, err, _ = run(capsys, "registrations", "show", "nobody@acme.lab.zpctl.test", *where)
    assert rc == ExitCode.UNREACHABLE, err
    assert isinstance(rows, list)
    assert {r["zone"] for r in rows} == {"lab1/a", "lab1/b", "lab2/a", "lab2/b"}


def test_status_with_a_dead_lb_exits_7_and_says_down(
        zpctl_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--lab-dir", str(zpctl_lab.dir)]
    zpctl_lab.kill("lab2-lb")
    try:
        rc, rows, err, _ = run(capsys, "lab", "status", *where)
        assert rc == ExitCode.UNREACHABLE, err
        assert isinstance(rows, list)
        assert {r["node"]: r["state"] for r in rows}["lab2-lb"] == "down"
        assert "lab2-lb down" in err
        rc, rows, err, _ = run(capsys, "node", "status", *where)
        assert rc == ExitCode.UNREACHABLE, err
        assert isinstance(rows, list)
        assert {r["node"]: r["state"] for r in rows}["lab2-lb"].startswith("down (")
    finally:
        zpctl_lab.start("lab2-lb")
    rc, _, err, _ = run(capsys, "lab", "status", *where)
    assert rc == 0, err


def test_zone_status_table_is_readable_text(zpctl_lab: Lab,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["zone", "status", "lab1/a", "--lab-dir", str(zpctl_lab.dir)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "lab1-lb=active" in out
    assert "{" not in out and "'" not in out
    rc, st, _, _ = run(capsys, "zone", "status", "lab1/a", "--lab-dir", str(zpctl_lab.dir))
    assert isinstance(st, dict)
    assert st["lb_state"] == {"lab1-lb": "active"}


def test_sister_replicates_again_seconds_after_a_stalled_proxy_returns(
        zpctl_lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A proxy that stops answering (frozen here; a crash or a partition alike) is marked
    ``pending`` by its sister, which then replicates no registration to it.  DMQ's own ping
    comes every 60 s; the proxies' 2 s heartbeat makes the sister see it back within
    seconds, and a registration taken by the sister reaches it."""
    where = ["--lab-dir", str(zpctl_lab.dir)]
    control = Control(zpctl_lab.inventory(), secrets_file=zpctl_lab.dir / "secrets.yml")
    zpctl_lab.kill("lab1-a-proxy", signal.SIGSTOP)
    try:
        wait_for("lab1-b-proxy to mark lab1-a-proxy pending",
                 lambda: control.replication("lab1/a") == "pending", timeout=10)
    finally:
        zpctl_lab.kill("lab1-a-proxy", signal.SIGCONT)
    back = time.monotonic()
    wait_for("lab1-b-proxy to replicate to lab1-a-proxy again",
             lambda: control.replication("lab1/a") == "active", timeout=5)
    took = time.monotonic() - back
    rc, st, err, _ = run(capsys, "zone", "status", "lab1/a", *where)
    assert rc == 0, err
    assert isinstance(st, dict)
    assert st["replication"] == "active"
    # A registration only the sister takes (zone a drained) reaches lab1-a-proxy over DMQ.
    rc, _, err, _ = run(capsys, "zone", "drain", "lab1/a", "--no-wait", *where)
    assert rc == 0, err
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path)
    try:
        phones.answer("1002@acme")   # waits until every zone proxy holds the contact
    finally:
        phones.stop_all()
        rc, restored, err, _ = run(capsys, "zone", "restore", "lab1/a", *where)
    assert rc == 0, err
    assert isinstance(restored, dict)
    assert restored["replication"] == "active"
    assert took < 4.0, f"replication resumed {took:.1f} s after the proxy came back"
