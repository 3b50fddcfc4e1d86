"""`zpctl switch` and `zpctl calls` against the in-process ESL simulator.

The simulator listens on 127.0.0.1 (ephemeral port) in a background thread; the CLI is
pointed at it with ZPCTL_ESL_OVERRIDE (the documented test/lab override) and reads the ESL
password from a secrets file, as it would in production.  Every switch of the small switch
inventory maps to the one simulator, so commands select one switch with --switch.
"""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakeswitch import FakeSwitch, ThreadedFakeSwitch
from zpctl.cli.main import main
from zpctl.errors import ExitCode
from zpctl.freeswitch import control
from zpctl.model import load_inventory

MINI = Path(__file__).resolve().parent / "fixtures" / "switch-mini"
PW = "esl-secret-42"
ONE = ["--switch", "lab1-a-switch1"]


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedFakeSwitch]:
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(f"esl_password: {PW}\n")
    secrets.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("ZPCTL_SECRETS", str(secrets))
    monkeypatch.delenv("ZPCTL_SECRET_ESL_PASSWORD", raising=False)
    with ThreadedFakeSwitch(PW, hostname="lab1-a-switch1") as t:
        monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", t.address)
        yield t


def sw(t: ThreadedFakeSwitch) -> FakeSwitch:
    assert t.switch is not None
    return t.switch


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = out
    return code, data, err


def call(t: ThreadedFakeSwitch, caller: str = "+15557654321", user: str = "1001") -> tuple[str, str]:
    a, b = t.call(sw(t).inbound_call, caller, user, bridge_to=user)  # type: ignore[misc]
    return a, b


def test_status_shows_sessions_and_pause_state(fs: ThreadedFakeSwitch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    call(fs)
    code, rows, _ = run(capsys, "-o", "json", "switch", "status", str(MINI), *ONE)
    assert code == 0
    assert rows == [{"switch": "lab1-a-switch1", "dc": "lab1", "zone": "a",
                     "address": fs.address, "state": "ok", "sessions": 2,
                     "detail": rows[0]["detail"], "sessions_since_startup": 2,
                     "paused_inbound": False}]
    assert sw(fs).commands[:3] == ["auth ***", "event plain BACKGROUND_JOB", "api status"]


def test_pause_and_resume(fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = run(capsys, "-o", "json", "switch", "pause", str(MINI), *ONE)
    assert code == 0
    assert rows[0]["state"] == "paused"
    assert sw(fs).paused_inbound
    assert "api fsctl pause inbound" in sw(fs).commands
    assert "inbound paused" in err
    code, rows, _ = run(capsys, "-o", "json", "switch", "status", str(MINI), *ONE)
    assert (rows[0]["state"], rows[0]["paused_inbound"]) == ("paused", True)
    code, rows, _ = run(capsys, "-o", "json", "switch", "resume", str(MINI), *ONE)
    assert (code, rows[0]["state"]) == (0, "resumed")
    assert not sw(fs).paused_inbound


def test_pause_wait_drains_until_zero_sessions(fs: ThreadedFakeSwitch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    a1, _ = call(fs)
    a2, _ = call(fs, "+15550000002", "1002")
    fs.later(0.3, sw(fs).hangup, a1)
    fs.later(0.7, sw(fs).hangup, a2)
    code, rows, err = run(capsys, "-o", "json", "switch", "pause", str(MINI), *ONE, "--wait",
                          "--poll", "0.1", "--deadline", "10")
    assert code == 0, err
    assert (rows[0]["state"], rows[0]["sessions"]) == ("drained", 0)
    assert "waiting for sessions to end (lab1-a-switch1: 4)" in err
    assert "every switch is at 0 sessions" in err
    assert sw(fs).paused_inbound  # a drained switch stays paused


def test_drain_deadline_is_exit_7(fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = call(fs)
    code, _, err = run(capsys, "switch", "pause", str(MINI), *ONE, "--wait", "--poll", "0.1",
                       "--deadline", "0.3")
    assert code == ExitCode.UNREACHABLE == 7
    assert "drain deadline of 0.3s passed with 2 session(s) left" in err
    # The error names what is still up, so the operator can end it.
    assert f"still up: {a} (+15557654321 -> " in err and b in err


def test_dry_run_prints_exact_commands_and_connects_to_nothing(
        fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "switch", "pause", str(MINI), "--zone", "lab2", "--dry-run")
    assert code == 0
    assert out.splitlines() == [f"lab2-a-switch1 ({fs.address}): api fsctl pause inbound",
                                f"lab2-b-switch1 ({fs.address}): api fsctl pause inbound"]
    code, out, _ = run(capsys, "calls", "kill", str(MINI), "abc-123", *ONE, "--dry-run")
    assert out.strip() == f"lab1-a-switch1 ({fs.address}): api uuid_kill abc-123 NORMAL_CLEARING"
    code, doc, _ = run(capsys, "-o", "json", "calls", "transfer", str(MINI), "abc-123", "8000",
                       "--leg", "b", "--context", "acct-acme", *ONE, "--dry-run")
    assert doc["commands"][0]["command"] == "api uuid_transfer abc-123 -bleg 8000 XML acct-acme"
    assert sw(fs).commands == []


def test_unreachable_and_wrong_password(fs: ThreadedFakeSwitch, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, _, err = run(capsys, "switch", "status", str(MINI), *ONE, "--esl-address",
                       f"127.0.0.1:{closed}", "--timeout", "1")
    assert code == 7
    assert "cannot connect to ESL" in err
    monkeypatch.setenv("ZPCTL_SECRET_ESL_PASSWORD", "wrong")
    code, _, err = run(capsys, "switch", "status", str(MINI), *ONE)
    assert code == 6
    assert "ESL password refused" in err


def test_missing_password_is_an_environment_error(fs: ThreadedFakeSwitch, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yml"
    empty.write_text("{}\n")
    empty.chmod(0o600)
    code, _, err = run(capsys, "switch", "status", str(MINI), *ONE, "--secrets", str(empty))
    assert code == ExitCode.ENVIRONMENT
    assert "no esl_password" in err


def test_calls_ls_and_show(fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = call(fs)
    code, rows, _ = run(capsys, "-o", "json", "calls", "ls", str(MINI), *ONE)
    assert code == 0
    assert [(r["uuid"], r["b_uuid"], r["dest"]) for r in rows] == [(a, b, "1001")]
    code, doc, _ = run(capsys, "-o", "json", "calls", "show", str(MINI), b)
    assert (doc["uuid"], doc["other_leg"], doc["dest"]) == (b, a, "1001")
    code, _, err = run(capsys, "calls", "show", str(MINI), "nope-0", *ONE)
    assert code == 6
    assert "no channel nope-0" in err


def test_kill_transfer_hold_park_record_have_effects(fs: ThreadedFakeSwitch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    a, b = call(fs)
    assert run(capsys, "calls", "hold", str(MINI), a, *ONE)[0] == 0
    assert sw(fs).channels[a].held
    assert run(capsys, "calls", "hold", str(MINI), a, "--off", *ONE)[0] == 0
    assert not sw(fs).channels[a].held
    assert run(capsys, "calls", "record", str(MINI), a, "start", "/tmp/r1.wav", *ONE)[0] == 0
    assert sw(fs).channels[a].recordings == ["/tmp/r1.wav"]
    assert run(capsys, "calls", "record", str(MINI), a, "stop", "/tmp/r1.wav", *ONE)[0] == 0
    assert sw(fs).channels[a].recordings == []
    code, doc, _ = run(capsys, "-o", "json", "calls", "park", str(MINI), b)  # finds the switch
    assert (code, doc["reply"]) == (0, "+OK")
    assert sw(fs).channels[b].parked
    assert sw(fs).channels[b].other is None
    code, _, _ = run(capsys, "calls", "transfer", str(MINI), a, "8000", "--context", "acct-acme",
                     *ONE)
    assert code == 0
    assert (sw(fs).channels[a].dest, sw(fs).channels[a].context) == ("8000", "acct-acme")
    assert run(capsys, "calls", "kill", str(MINI), a, "--cause", "MANAGER_REQUEST", *ONE)[0] == 0
    assert a not in sw(fs).channels
    code, _, err = run(capsys, "calls", "kill", str(MINI), a, *ONE)
    assert code == 6
    assert "No such channel" in err


def test_monitor_whisper_by_a_permitted_supervisor(fs: ThreadedFakeSwitch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, b = call(fs, user="1001")
    code, doc, err = run(capsys, "-o", "json", "calls", "monitor", str(MINI), b, "--mode",
                         "whisper", "--supervisor", "1004@acme")
    assert code == 0, err
    spy = sw(fs).channels[doc["supervisor_uuid"]]
    assert spy.eavesdrop_target == b
    assert spy.variables["eavesdrop_whisper_bleg"] == "true"
    assert "eavesdrop_whisper_aleg" not in spy.variables
    assert spy.name == "user/1004@acme.lab.zpctl.test"
    assert doc["monitored_user"] == "1001"


def test_monitor_takeover_bridges_the_partner_to_the_supervisor(
        fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = call(fs, user="1002")  # 1002 is an agent of queue sales, covered by the grant
    code, doc, err = run(capsys, "-o", "json", "calls", "monitor", str(MINI), b, "--mode",
                         "takeover", "--supervisor", "1004@acme")
    assert code == 0, err
    spy = doc["supervisor_uuid"]
    assert b not in sw(fs).channels  # the monitored user is dropped
    assert sw(fs).channels[a].other == spy  # the caller now talks to the supervisor
    assert [c.split(" ")[1] for c in doc["commands"]] == ["originate", "uuid_bridge", "uuid_kill"]


def test_calls_takeover_is_monitor_takeover(fs: ThreadedFakeSwitch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    a, b = call(fs, user="1002")
    code, doc, err = run(capsys, "-o", "json", "calls", "takeover", str(MINI), b,
                         "--supervisor", "1004@acme")
    assert code == 0, err
    assert doc["mode"] == "takeover"
    assert sw(fs).channels[a].other == doc["supervisor_uuid"]


@pytest.mark.parametrize(("supervisor", "user", "why"), [
    ("1002@acme", "1001", "does not allow call monitoring"),
    ("1004@acme", "1003", "1004 may not monitor 1003"),
    ("1004@nope", "1001", "EXT@ACCOUNT"),
])
def test_monitor_refused(fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str],
                         supervisor: str, user: str, why: str) -> None:
    _, b = call(fs, user=user)
    code, _, err = run(capsys, "calls", "monitor", str(MINI), b, "--mode", "listen",
                       "--supervisor", supervisor)
    assert code == 2
    assert why in err
    assert len(sw(fs).channels) == 2  # nobody was originated


def test_monitor_dry_run(fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "calls", "monitor", str(MINI), "abc-1", "--mode", "barge",
                       "--supervisor", "1004@acme", "--dry-run")
    assert code == 0
    assert "bgapi originate {origination_uuid=" in out
    assert ",eavesdrop_enable_dtmf=true,eavesdrop_whisper_bleg=true,eavesdrop_whisper_aleg=true}" \
           "user/1004@acme.lab.zpctl.test &eavesdrop(abc-1)" in out
    assert sw(fs).commands == []


def test_originate(fs: ThreadedFakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, err = run(capsys, "-o", "json", "calls", "originate", str(MINI), "8000",
                         "--from", "1001@acme", *ONE)
    assert code == 0, err
    uuid = doc["reply"].split()[1]
    ch = sw(fs).channels[uuid]
    assert (ch.name, ch.dest, ch.context) == ("user/1001@acme.lab.zpctl.test", "8000", "acct-acme")
    assert doc["command"].endswith("user/1001@acme.lab.zpctl.test 8000 XML acct-acme")
    code, _, err = run(capsys, "calls", "originate", str(MINI), "8000", "--endpoint",
                       "error/USER_BUSY", *ONE)
    assert code == 6
    assert "USER_BUSY" in err


def test_zone_drain_library_api(fs: ThreadedFakeSwitch) -> None:
    """pause_switches / resume_switches: what zone drain calls."""
    loaded = load_inventory(MINI)
    a, _ = call(fs)
    fs.later(0.2, sw(fs).hangup, a)
    lines: list[str] = []
    results = control.pause_switches(loaded, zone="lab1/a", wait=True, poll_s=0.05,
                                     deadline_s=5, progress=lines.append)
    assert [(r.switch, r.state, r.sessions) for r in results] == [("lab1-a-switch1", "drained", 0)]
    assert any("0 sessions" in ln for ln in lines)
    assert sw(fs).paused_inbound
    control.raise_for_errors(results)
    results = control.resume_switches(loaded, zone="lab1/a")
    assert [r.state for r in results] == ["resumed"]
    assert not sw(fs).paused_inbound


def test_no_switch_tier_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    lab = Path(__file__).resolve().parent / "fixtures" / "lab"
    code, _, err = run(capsys, "switch", "status", str(lab))
    assert code == 2
    assert "has no switch nodes" in err


def test_inventory_pool_over_every_switch(fs: ThreadedFakeSwitch) -> None:
    import asyncio  # noqa: PLC0415

    loaded = load_inventory(MINI)

    async def body() -> None:
        async with control.inventory_pool(loaded, PW) as pool:
            out = await pool.api_each("show calls count as json")
        assert sorted(out) == ["lab1-a-switch1", "lab1-b-switch1", "lab2-a-switch1",
                               "lab2-b-switch1"]
        assert set(out.values()) == {'{"row_count": 1}\n'}

    call(fs)
    asyncio.run(body())


# `show calls as json` / `show channels as json` rows as the lab's FreeSWITCH 1.11 gives
# them for 1001 calling 1002 (only the fields user_leg reads).
A_LEG = {"uuid": "a-1", "direction": "inbound", "cid_num": "1001", "dest": "1002"}
B_LEG = {"uuid": "b-1", "direction": "outbound", "cid_num": "1001", "dest": "1002"}
CALLS = [{"uuid": "a-1", "b_uuid": "b-1"}]


@pytest.mark.parametrize(("row", "user", "leg"), [
    (A_LEG, "1002", "b-1"),   # the callee's own leg is the outbound one, from either uuid
    (B_LEG, "1002", "b-1"),
    (A_LEG, "1001", "a-1"),   # the caller's is the inbound one
    (B_LEG, "1001", "a-1"),
])
def test_user_leg_is_the_monitored_users_own(row: dict[str, str], user: str, leg: str) -> None:
    assert control.user_leg(row, user, CALLS) == leg
