"""The live-control commands against the running lab: every command, both transports,
dry runs that print the exact requests and change nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from zpctl.cli.main import main
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object]:
    rc = main(["-o", "json", *args])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else None


@pytest.mark.parametrize("transport", [[], ["--local"]], ids=["http", "datagram-socket"])
def test_node_status_over_both_transports(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str],
                                          transport: list[str]) -> None:
    rc, rows = _json(capsys, "node", "status", "--lab-dir", str(zpctl_lab.dir), *transport)
    assert rc == 0
    assert isinstance(rows, list)
    assert {r["node"] for r in rows} >= {"lab1-lb", "lab1-a-proxy", "lab1-b-sbc"}
    assert all(r["state"] == "up" for r in rows), rows
    assert all(r["uptime_s"] >= 0 for r in rows)
    if transport:
        assert all(r["endpoint"].endswith("kamailio_rpc.sock") for r in rows)


def test_zone_drain_dry_run_prints_requests_and_changes_nothing(
        zpctl_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _json(capsys, "zone", "drain", "lab1/b", "--dry-run", "--lab-dir",
                    str(zpctl_lab.dir))
    assert rc == 0
    assert isinstance(out, dict)
    reqs = out["requests"]
    assert [(r["node"], r["request"]["method"], r["request"]["params"]) for r in reqs] == [
        ("lab1-lb", "dispatcher.set_state", ["d", 1, "sip:127.0.1.21:5060"]),
        ("lab1-a-sbc", "dispatcher.set_state", ["d", 1, "sip:127.0.1.21:5060"]),
        ("lab1-b-sbc", "dispatcher.set_state", ["d", 1, "sip:127.0.1.21:5060"]),
    ]
    rc, st = _json(capsys, "zone", "status", "lab1/b", "--lab-dir", str(zpctl_lab.dir))
    assert isinstance(st, dict)
    assert st["lb_state"] == {"lab1-lb": "active"}


def test_dc_failover_dry_run_and_refusals(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    rc, out = _json(capsys, "dc", "failover", "--from", "lab1", "--to", "lab2", "--dry-run",
                    "--lab-dir", str(zpctl_lab.dir))
    assert rc == 0
    assert isinstance(out, dict)
    assert len(out["requests"]) == 6  # both zones on the lb and on both sbcs
    rc = main(["dc", "failover", "--from", "lab1", "--to", "lab1", "--lab-dir",
               str(zpctl_lab.dir)])
    assert rc == 2
    assert "not the pair" in capsys.readouterr().err
    rc, st = _json(capsys, "dc", "status", "lab2", "--lab-dir", str(zpctl_lab.dir))
    assert isinstance(st, dict)
    assert st["serving"] is True


def test_registrations_and_dialogs(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path)
    try:
        phones.answer("1002@acme", "127.0.8.230")
        # Both zones of the data center it registered with (the other zone's copy comes
        # over DMQ, a moment later); none in the other data center.
        want = {"lab1/a": True, "lab1/b": True, "lab2/a": False, "lab2/b": False}

        def by_zone() -> dict[str, bool]:
            _, rows = _json(capsys, "registrations", "show", "1002@acme.lab.zpctl.test",
                            "--lab-dir", str(zpctl_lab.dir))
            assert isinstance(rows, list)
            return {r["zone"]: any("127.0.8.230" in c for c in r["contacts"]) for r in rows}

        wait_for("1002's contact on both lab1 proxies", lambda: by_zone() == want, timeout=10)
        _, rows = _json(capsys, "registrations", "ls", "--scope", "lab1/a", "--lab-dir",
                         str(zpctl_lab.dir))
        assert isinstance(rows, list)
        assert any(r["aor"] == "1002@acme.lab.zpctl.test" for r in rows)
        call = phones.call_in_background("1001@acme", "1002", hold_ms=20000, ip="127.0.8.231")
        deadline = time.monotonic() + 10
        mine: list[dict[str, object]] = []
        while time.monotonic() < deadline and not mine:
            _, rows = _json(capsys, "dialogs", "ls", "--lab-dir", str(zpctl_lab.dir))
            assert isinstance(rows, list)
            mine = [r for r in rows if str(r["call_id"]).endswith("@127.0.8.231")
                    and r["state"] == 4]
            time.sleep(0.3)
        assert mine, "the call never showed as confirmed"
        cid = str(mine[0]["call_id"])
        _rc, dry = _json(capsys, "dialogs", "end", cid, "--dry-run", "--lab-dir",
                        str(zpctl_lab.dir))
        assert isinstance(dry, dict)
        assert dry["requests"][0]["request"]["method"] == "dlg.end_dlg"
        assert main(["dialogs", "end", cid, "--lab-dir", str(zpctl_lab.dir)]) == 0
        # The proxy sent BYE to both ends: SIPp's call ends long before its 20 s.
        call.wait(8)
        assert call.returncode is not None
    finally:
        phones.stop_all()


def test_unknown_zone_and_missing_lab_are_clear(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    assert main(["zone", "status", "lab1/c", "--lab-dir", str(zpctl_lab.dir)]) == 2
    assert "lab1 has zones a, b" in capsys.readouterr().err
    assert main(["node", "status", "--lab-dir", str(tmp_path / "none")]) == 2
    assert "no --inventory and no lab" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/usr/bin/kamcli").exists(), reason="kamcli is not installed")
def test_rendered_kamcli_config_works_beside_zpctl(zpctl_lab: Lab) -> None:
    import subprocess  # noqa: PLC0415

    ini = zpctl_lab.dir / "build" / "lab1-lb" / "kamcli" / "kamcli.ini"
    out = subprocess.run(["kamcli", "-c", str(ini), "rpc", "dispatcher.list"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr[-500:]
    assert "sip:127.0.1.11:5060" in out.stdout
    assert "sip:127.0.1.21:5060" in out.stdout


# Every command that needs a running lab and prints data: the output options after the
# command mean what they mean before it (the offline commands: tests/unit).
LAB_COMMANDS = [
    ["lab", "status"],
    ["node", "status"],
    ["registrations", "ls"],
    ["dialogs", "ls"],
    ["zone", "status", "lab1/a"],
    ["dc", "status", "lab1"],
    ["pki", "status"],
    ["zone", "drain", "lab1/b", "--dry-run"],
    ["dc", "failover", "--from", "lab1", "--to", "lab2", "--dry-run"],
    ["accounts", "sync", "--dry-run"],
    ["loadtest", "register", "--dry-run"],
    ["pki", "rotate", "lab1-lb", "--dry-run"],
]


@pytest.mark.parametrize("args", LAB_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_output_option_before_or_after_a_lab_command(
        zpctl_lab: Lab, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    where = ["--lab-dir", str(zpctl_lab.dir)]
    if args[0] == "accounts":
        args = [*args, str(zpctl_lab.state()["inventory"])]  # type: ignore[index]
    results = []
    for argv in (["-o", "json", *args, *where], [*args, *where, "-o", "json"],
                 [*args, "--output", "yaml", *where]):
        rc = main(argv)
        out = capsys.readouterr().out
        assert rc == 0, argv
        results.append(yaml.safe_load(out))  # JSON is YAML: one parser for both
    assert results[0] is not None  # a list may be empty (no dialogs): still JSON/YAML data
    # Live counters (uptime, ...) may move between runs: compare the shape, not the values.
    assert [_shape(r) for r in results] == [_shape(results[0])] * 3


def _shape(data: object) -> object:
    if isinstance(data, dict):
        return {k: _shape(v) for k, v in data.items()} if len(data) < 50 else sorted(data)
    if isinstance(data, list):
        return [_shape(data[0])] if data else []
    return type(data).__name__
