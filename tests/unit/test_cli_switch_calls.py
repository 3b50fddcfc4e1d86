"""`zpctl switch` and `zpctl calls`: what they send, and what they make of a real switch's
answers.

The switch is a scripted ESL peer (tests/esl_peer.py) on 127.0.0.1 in a background thread,
answering with what FreeSWITCH 1.11 said in the lab (tests/unit/fixtures/esl, recorded by
tests/esl_capture.py): a switch carrying one call, 1001 calling 1002, two channels.  The
CLI is pointed at it with ZPCTL_ESL_OVERRIDE (the documented test/lab override) and reads
the ESL password from a secrets file, as in production; every switch of the small switch
inventory maps to the one peer, so commands select one with --switch.  What each command
does to a call (the BYE, the hold music, the new party's audio) is proven against the
lab's real switches: tests/integration/test_call_control.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.esl_peer import ThreadedEslPeer, recorded
from zpctl.cli.main import main
from zpctl.errors import ExitCode
from zpctl.freeswitch import control
from zpctl.model import load_inventory

MINI = Path(__file__).resolve().parent / "fixtures" / "switch-mini"
PW = "esl-secret-42"
ONE = ["--switch", "lab1-a-switch1"]
# The recorded call's legs: 1001's inbound leg, and the outbound leg to 1002.
A = "eb519dfc-d197-4a1f-9357-235fa21c27d3"
B = "6e59c6d2-691e-40e5-8918-57326de3afb5"
OK = "+OK\n"  # the reply of a call-control api that worked (the real one: test_call_control)


class Switch:
    """One switch's answers, in a real switch's words: carrying the recorded call (``busy``)
    or idle, inbound paused or not.  ``callee`` renumbers the call's 1002 (same rows)."""

    def __init__(self, callee: str = "1002") -> None:
        self.busy = True
        self.paused = False
        self.callee = callee
        self.status_polls = 0
        self.idle_after: int | None = None  # `status` polls after which the call has ended

    def _call(self, name: str) -> str:
        text = recorded(name)
        return text.replace('"1002"', f'"{self.callee}"') if self.busy else \
            recorded("show-calls-idle")

    def status(self, _args: str) -> str:
        self.status_polls += 1
        if self.idle_after is not None and self.status_polls > self.idle_after:
            self.busy = False
        return recorded("status-call" if self.busy else "status-idle")

    def fsctl(self, args: str) -> str:
        if args == "pause inbound":
            self.paused = True
            return recorded("pause")
        if args == "resume inbound":
            self.paused = False
            return recorded("resume")
        if args == "pause_check inbound":
            return recorded("pause-check-true" if self.paused else "pause-check-false")
        return f"-ERR fsctl {args} not scripted\n"

    def show(self, args: str) -> str:
        return {"channels as json": lambda: self._call("show-channels-call"),
                "calls as json": lambda: self._call("show-calls-call")}.get(
            args, lambda: f"-ERR show {args} not scripted\n")()

    def on_call(self, args: str) -> str:
        """uuid_kill, uuid_hold, ...: the recorded words for a uuid that is not up."""
        return OK if self.busy and {A, B} & set(args.split()) else recorded("uuid-kill-unknown")

    def originate(self, args: str) -> str:
        if args.startswith("error/") or "error/" in args:
            return "-ERR USER_BUSY\n"
        m = re.search(r"origination_uuid=([0-9a-f-]+)", args)
        return f"+OK {m[1] if m else 'no-uuid'}\n"

    def answers(self) -> dict[str, Any]:
        return {"status": self.status, "fsctl": self.fsctl, "show": self.show,
                "originate": self.originate,
                **dict.fromkeys(("uuid_kill", "uuid_hold", "uuid_park", "uuid_transfer",
                                 "uuid_record", "uuid_bridge"), self.on_call)}


@pytest.fixture
def script() -> Switch:
    return Switch()


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: Switch) -> Iterator[ThreadedEslPeer]:
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(f"esl_password: {PW}\n")
    secrets.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("ZPCTL_SECRETS", str(secrets))
    monkeypatch.delenv("ZPCTL_SECRET_ESL_PASSWORD", raising=False)
    with ThreadedEslPeer(PW, hostname="lab1-a-switch1", answers=script.answers()) as t:
        monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", t.address)
        yield t


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = out
    return code, data, err


def api_sent(t: ThreadedEslPeer) -> list[str]:
    return [c for c in t.commands if c.startswith(("api ", "bgapi "))]


def test_status_reads_a_real_switchs_status(fs: ThreadedEslPeer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, _ = run(capsys, "-o", "json", "switch", "status", str(MINI), *ONE)
    assert code == 0
    assert rows == [{"switch": "lab1-a-switch1", "dc": "lab1", "zone": "a",
                     "address": fs.address, "state": "ok", "sessions": 2,
                     "detail": recorded("status-call").splitlines()[0],
                     "sessions_since_startup": 2, "paused_inbound": False}]
    assert fs.commands[:2] == ["auth ***", "event plain BACKGROUND_JOB"]
    assert api_sent(fs) == ["api status", "api fsctl pause_check inbound"]


def test_pause_and_resume(fs: ThreadedEslPeer, script: Switch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = run(capsys, "-o", "json", "switch", "pause", str(MINI), *ONE)
    assert code == 0
    assert rows[0]["state"] == "paused"
    assert api_sent(fs)[-1] == "api fsctl pause inbound"
    assert "inbound paused" in err
    code, rows, _ = run(capsys, "-o", "json", "switch", "status", str(MINI), *ONE)
    assert (rows[0]["state"], rows[0]["paused_inbound"]) == ("paused", True)
    code, rows, _ = run(capsys, "-o", "json", "switch", "resume", str(MINI), *ONE)
    assert (code, rows[0]["state"]) == (0, "resumed")
    assert api_sent(fs)[-1] == "api fsctl resume inbound"
    assert not script.paused


def test_pause_wait_drains_until_zero_sessions(fs: ThreadedEslPeer, script: Switch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    script.idle_after = 3  # the call ends after three polls
    code, rows, err = run(capsys, "-o", "json", "switch", "pause", str(MINI), *ONE, "--wait",
                          "--poll", "0.05", "--deadline", "10")
    assert code == 0, err
    assert (rows[0]["state"], rows[0]["sessions"]) == ("drained", 0)
    assert "waiting for sessions to end (lab1-a-switch1: 2)" in err
    assert "every switch is at 0 sessions" in err
    assert script.paused  # a drained switch stays paused
    assert "api fsctl resume inbound" not in fs.commands


def test_drain_deadline_is_exit_7_and_names_the_channels(
        fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "switch", "pause", str(MINI), *ONE, "--wait", "--poll", "0.1",
                       "--deadline", "0.3")
    assert code == ExitCode.UNREACHABLE == 7
    assert "drain deadline of 0.3s passed with 2 session(s) left" in err
    # The error names what is still up, so the operator can end it.
    assert f"still up: {A} (1001 -> 1002" in err and B in err


def test_dry_run_prints_exact_commands_and_connects_to_nothing(
        fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "switch", "pause", str(MINI), "--zone", "lab2", "--dry-run")
    assert code == 0
    assert out.splitlines() == [f"lab2-a-switch1 ({fs.address}): api fsctl pause inbound",
                                f"lab2-b-switch1 ({fs.address}): api fsctl pause inbound"]
    code, out, _ = run(capsys, "calls", "kill", str(MINI), "abc-123", *ONE, "--dry-run")
    assert out.strip() == f"lab1-a-switch1 ({fs.address}): api uuid_kill abc-123 NORMAL_CLEARING"
    code, doc, _ = run(capsys, "-o", "json", "calls", "transfer", str(MINI), "abc-123", "8000",
                       "--leg", "b", "--context", "acct-acme", *ONE, "--dry-run")
    assert doc["commands"][0]["command"] == "api uuid_transfer abc-123 -bleg 8000 XML acct-acme"
    assert fs.commands == []


def test_unreachable_and_wrong_password(fs: ThreadedEslPeer, tmp_path: Path,
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


def test_missing_password_is_an_environment_error(fs: ThreadedEslPeer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yml"
    empty.write_text("{}\n")
    empty.chmod(0o600)
    code, _, err = run(capsys, "switch", "status", str(MINI), *ONE, "--secrets", str(empty))
    assert code == ExitCode.ENVIRONMENT
    assert "no esl_password" in err


def test_calls_ls_and_show_read_a_real_switchs_rows(fs: ThreadedEslPeer,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, _ = run(capsys, "-o", "json", "calls", "ls", str(MINI), *ONE)
    assert code == 0
    assert [(r["uuid"], r["b_uuid"], r["cid_num"], r["dest"]) for r in rows] == \
        [(A, B, "1001", "1002")]
    code, doc, _ = run(capsys, "-o", "json", "calls", "show", str(MINI), B)
    assert (doc["uuid"], doc["other_leg"], doc["dest"]) == (B, A, "1002")
    code, _, err = run(capsys, "calls", "show", str(MINI), "nope-0", *ONE)
    assert code == 6
    assert "no channel nope-0" in err


def test_call_control_sends_the_exact_commands(fs: ThreadedEslPeer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "calls", "hold", str(MINI), A, *ONE)[0] == 0
    assert run(capsys, "calls", "hold", str(MINI), A, "--off", *ONE)[0] == 0
    assert run(capsys, "calls", "record", str(MINI), A, "start", "/tmp/r1.wav", *ONE)[0] == 0
    assert run(capsys, "calls", "record", str(MINI), A, "stop", "/tmp/r1.wav", *ONE)[0] == 0
    code, doc, _ = run(capsys, "-o", "json", "calls", "park", str(MINI), B)  # finds the switch
    assert (code, doc["reply"]) == (0, "+OK")
    code, _, _ = run(capsys, "calls", "transfer", str(MINI), A, "8000", "--context", "acct-acme",
                     *ONE)
    assert code == 0
    assert run(capsys, "calls", "kill", str(MINI), A, "--cause", "MANAGER_REQUEST", *ONE)[0] == 0
    control_cmds = [c for c in api_sent(fs) if c.startswith("api uuid_")]
    assert control_cmds == [f"api uuid_hold {A}", f"api uuid_hold off {A}",
                            f"api uuid_record {A} start /tmp/r1.wav",
                            f"api uuid_record {A} stop /tmp/r1.wav", f"api uuid_park {B}",
                            f"api uuid_transfer {A} 8000 XML acct-acme",
                            f"api uuid_kill {A} MANAGER_REQUEST"]


def test_a_uuid_that_is_not_up_is_exit_6_in_the_switchs_words(
        fs: ThreadedEslPeer, script: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    script.busy = False
    code, _, err = run(capsys, "calls", "kill", str(MINI), A, *ONE)
    assert code == 6
    assert "No such channel" in err


def test_monitor_whisper_by_a_permitted_supervisor(fs: ThreadedEslPeer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, err = run(capsys, "-o", "json", "calls", "monitor", str(MINI), A, "--mode",
                         "whisper", "--supervisor", "1004@acme")
    assert code == 0, err
    assert doc["monitored_user"] == "1002"
    assert doc["user_leg"] == B  # the callee's own leg, whichever uuid was given
    (cmd,) = [c for c in api_sent(fs) if c.startswith("bgapi originate")]
    assert f"origination_uuid={doc['supervisor_uuid']}," in cmd
    assert ",eavesdrop_whisper_bleg=true}" in cmd and "whisper_aleg" not in cmd
    assert cmd.endswith(f"}}user/1004@acme.lab.zpctl.test &eavesdrop({B})")


def test_monitor_takeover_bridges_the_partner_to_the_supervisor(
        fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, err = run(capsys, "-o", "json", "calls", "monitor", str(MINI), B, "--mode",
                         "takeover", "--supervisor", "1004@acme")
    assert code == 0, err
    spy = doc["supervisor_uuid"]
    assert [c.split(" ")[1] for c in doc["commands"]] == ["originate", "uuid_bridge", "uuid_kill"]
    assert api_sent(fs)[-2:] == [f"api uuid_bridge {A} {spy}", f"api uuid_kill {B} NORMAL_CLEARING"]


def test_takeover_of_a_leg_the_switch_already_ended_succeeds(
        fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    """uuid_bridge moves the partner; FreeSWITCH may hang up the orphaned user leg itself
    before zpctl's uuid_kill, which then gets '-ERR No such channel!': the goal, reached."""
    assert fs.peer is not None
    fs.answers["uuid_kill"] = recorded("uuid-kill-unknown")
    code, doc, err = run(capsys, "-o", "json", "calls", "takeover", str(MINI), B,
                         "--supervisor", "1004@acme")
    assert code == 0, err
    assert doc["mode"] == "takeover"
    assert doc["outputs"][-1] == recorded("uuid-kill-unknown").strip()


@pytest.mark.parametrize(("supervisor", "callee", "why"), [
    ("1002@acme", "1002", "does not allow call monitoring"),
    ("1004@acme", "1003", "1004 may not monitor 1003"),
    ("1004@nope", "1002", "EXT@ACCOUNT"),
])
def test_monitor_refused(fs: ThreadedEslPeer, script: Switch,
                         capsys: pytest.CaptureFixture[str],
                         supervisor: str, callee: str, why: str) -> None:
    script.callee = callee
    code, _, err = run(capsys, "calls", "monitor", str(MINI), B, "--mode", "listen",
                       "--supervisor", supervisor)
    assert code == 2
    assert why in err
    assert not [c for c in api_sent(fs) if "originate" in c]  # nobody was called


def test_monitor_dry_run(fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "calls", "monitor", str(MINI), "abc-1", "--mode", "barge",
                       "--supervisor", "1004@acme", "--dry-run")
    assert code == 0
    assert "bgapi originate {origination_uuid=" in out
    assert ",eavesdrop_enable_dtmf=true,eavesdrop_whisper_bleg=true,eavesdrop_whisper_aleg=true}" \
           "user/1004@acme.lab.zpctl.test &eavesdrop(abc-1)" in out
    assert fs.commands == []


def test_originate(fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, err = run(capsys, "-o", "json", "calls", "originate", str(MINI), "8000",
                         "--from", "1001@acme", *ONE)
    assert code == 0, err
    uuid = doc["reply"].split()[1]
    assert doc["command"].endswith("user/1001@acme.lab.zpctl.test 8000 XML acct-acme")
    assert f"origination_uuid={uuid}," in doc["command"]
    code, _, err = run(capsys, "calls", "originate", str(MINI), "8000", "--endpoint",
                       "error/USER_BUSY", *ONE)
    assert code == 6
    assert "USER_BUSY" in err


def test_zone_drain_library_api(fs: ThreadedEslPeer, script: Switch) -> None:
    """pause_switches / resume_switches: what zone drain calls."""
    loaded = load_inventory(MINI)
    script.idle_after = 2
    lines: list[str] = []
    results = control.pause_switches(loaded, zone="lab1/a", wait=True, poll_s=0.05,
                                     deadline_s=5, progress=lines.append)
    assert [(r.switch, r.state, r.sessions) for r in results] == [("lab1-a-switch1", "drained", 0)]
    assert any("0 sessions" in ln for ln in lines)
    assert script.paused
    control.raise_for_errors(results)
    results = control.resume_switches(loaded, zone="lab1/a")
    assert [r.state for r in results] == ["resumed"]
    assert not script.paused


def test_no_switch_tier_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    lab = Path(__file__).resolve().parent / "fixtures" / "lab"
    code, _, err = run(capsys, "switch", "status", str(lab))
    assert code == 2
    assert "has no switch nodes" in err


def test_inventory_pool_over_every_switch(fs: ThreadedEslPeer) -> None:
    loaded = load_inventory(MINI)

    async def body() -> None:
        async with control.inventory_pool(loaded, PW) as pool:
            out = await pool.api_each("show calls as json")
        assert sorted(out) == ["lab1-a-switch1", "lab1-b-switch1", "lab2-a-switch1",
                               "lab2-b-switch1"]
        assert set(out.values()) == {recorded("show-calls-call")}

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
