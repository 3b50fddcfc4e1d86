"""`zpctl calls ...` and `zpctl switch ...` (and the exporter's ESL source) against a live
call through the lab (phone -> lb -> proxy -> real FreeSWITCH), each proven by what the
phones got: a BYE, the tone of a new party, hold music, the tones in a recorded file.

Every command runs through the CLI (``main([...])``, ``-o json``) with the lab's inventory
and secrets, as an SRE would run it; the phones are :mod:`zpctl.lab.sipua` clients.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.freeswitch_binary import require_freeswitch
from zpctl.cli.main import main
from zpctl.freeswitch.provision import MUSIC_HZ
from zpctl.lab import Lab
from zpctl.lab.audio import read_wav, tone_seconds
from zpctl.lab.features import CALLER_HZ, FeatureLab, _talks, wait_until
from zpctl.lab.sipua import Dialog, Ua
from zpctl.metrics.esl_source import EslSwitchSource
from zpctl.secrets import ESL_PASSWORD_KEY
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server"))),
                                reason="lab binaries missing (make install)")

INV = str(Path(__file__).resolve().parents[2] / "inventories" / "lab")
CALLEE_HZ = 900.0


@pytest.fixture
def fl(zpctl_lab: Lab) -> FeatureLab:
    require_freeswitch()
    return FeatureLab(zpctl_lab)


class Cli:
    """``zpctl -o json <group> <command> INV ... --secrets <lab's>``: (exit code, JSON)."""

    def __init__(self, fl: FeatureLab, capsys: pytest.CaptureFixture[str]) -> None:
        self.secrets = str(Path(fl.lab.dir) / "secrets.yml")
        self.capsys = capsys

    def __call__(self, group: str, command: str, *args: str) -> tuple[int, Any, str]:
        self.capsys.readouterr()
        rc = main(["-o", "json", group, command, INV, *args, "--secrets", self.secrets])
        out, err = self.capsys.readouterr()
        return rc, json.loads(out) if out.strip() else None, err


@pytest.fixture
def zp(fl: FeatureLab, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(fl, capsys)


@contextmanager
def a_call(fl: FeatureLab, caller: str = "1001", callee: str = "1002"
           ) -> Iterator[tuple[Ua, Ua, Dialog]]:
    """A call from ``caller`` to ``callee`` with RTP both ways; hung up afterwards."""
    with fl.phone(f"{callee}@acme") as b, fl.phone(f"{caller}@acme") as a:
        call = a.dial(callee)
        assert call.established and call.media is not None and b.answered, call.call
        try:
            yield a, b, call
        finally:
            call.bye()


def legs(zp: Cli, caller: str, callee: str) -> dict[str, str]:
    """`calls ls`: the row of the call ``caller`` -> ``callee`` (its inbound leg), once the
    switch shows it bridged (its core database is written a moment after the answer)."""
    mine: list[dict[str, str]] = []

    def bridged() -> bool:
        nonlocal mine
        rc, rows, err = zp("calls", "ls")
        assert rc == 0, err
        mine = [r for r in rows if r.get("cid_num") == caller and r.get("dest") == callee
                and r.get("direction") == "inbound"]
        return len(mine) == 1 and bool(mine[0].get("b_uuid"))

    assert wait_until(bridged, 5, step=0.3), mine
    return dict(mine[0])


def test_ls_show_and_kill_a_live_call(fl: FeatureLab, zp: Cli) -> None:
    with a_call(fl) as (_a, b, call):
        row = legs(zp, "1001", "1002")
        assert row["switch"].startswith("lab1-") and row["b_uuid"] and row["callstate"] == "ACTIVE"
        rc, doc, err = zp("calls", "show", row["uuid"])
        assert rc == 0, err
        assert (doc["switch"], doc["other_leg"]) == (row["switch"], row["b_uuid"])
        # the callee's leg is hung up: both phones get a BYE
        rc, doc, err = zp("calls", "kill", row["b_uuid"])
        assert rc == 0 and doc["reply"].startswith("+OK"), (doc, err)
        assert wait_until(lambda: call.ended_by_far_end, 5), "the caller got no BYE"
        b_call = b.received_invites[-1].get("Call-ID")
        assert wait_until(lambda: b_call in b.ended_calls, 5), "the callee got no BYE"
        # gone: an unknown channel is a clear error (exit 6: every switch answered).  The
        # switch forgets the channel a moment after both BYEs have left (its hangup runs
        # on in the session's thread): on a loaded machine, `show` may still find it.
        last: list[object] = []

        def gone() -> bool:
            last[:] = zp("calls", "show", row["uuid"])
            return last[0] == 6

        assert wait_until(gone, 5, step=0.3), last
        assert f"no channel {row['uuid']}" in str(last[2])


def test_hold_plays_music_to_the_other_party_and_unhold_ends_it(fl: FeatureLab, zp: Cli) -> None:
    with a_call(fl) as (_a, b, call):
        assert call.media is not None
        row = legs(zp, "1001", "1002")
        heard_by_b = b.answered[-1]
        rc, doc, err = zp("calls", "hold", row["uuid"])
        assert rc == 0 and doc["command"] == f"api uuid_hold {row['uuid']}", (doc, err)
        mark = heard_by_b.mark()
        assert wait_until(lambda: heard_by_b.tone_heard(MUSIC_HZ, mark) >= 1.0, 6), \
            "the callee heard no hold music"
        rc, doc, err = zp("calls", "unhold", row["uuid"])
        assert rc == 0 and doc["command"] == f"api uuid_hold off {row['uuid']}", (doc, err)
        # the music stops (the re-INVITE that takes the phone off hold has been answered)
        assert wait_until(lambda: heard_by_b.tone_heard(MUSIC_HZ, heard_by_b.mark() - 4000)
                          < 0.1, 5), "the hold music did not stop"
        mark = heard_by_b.mark()
        assert _talks(call.media, heard_by_b, CALLER_HZ) >= 1.0, "the callee no longer hears the caller"
        assert heard_by_b.tone_heard(MUSIC_HZ, mark) < 0.3, "hold music after unhold"


def test_record_start_stop_holds_both_parties(fl: FeatureLab, zp: Cli) -> None:
    with a_call(fl) as (_a, b, call):
        assert call.media is not None
        row = legs(zp, "1001", "1002")
        path = Path(fl.lab.dir) / "shared" / f"adhoc-{row['uuid']}.wav"
        rc, doc, err = zp("calls", "record", row["uuid"], "start", str(path))
        assert rc == 0 and doc["reply"].startswith("+OK"), (doc, err)
        _talks(call.media, b.answered[-1], CALLER_HZ)
        _talks(b.answered[-1], call.media, CALLEE_HZ)
        time.sleep(0.5)  # the tail of the tone reaches the file
        rc, doc, err = zp("calls", "record", row["uuid"], "stop", str(path))
        assert rc == 0, err
        assert wait_until(path.exists, 5), f"no file {path}"
        samples = read_wav(path)
        assert tone_seconds(samples, CALLER_HZ) >= 1.0
        assert tone_seconds(samples, CALLEE_HZ) >= 1.0


def test_transfer_sends_the_caller_to_another_user(fl: FeatureLab, zp: Cli) -> None:
    with fl.phone("1004@acme") as dave, a_call(fl) as (_a, b, call):
        assert call.media is not None
        row = legs(zp, "1001", "1002")
        rc, doc, err = zp("calls", "transfer", row["uuid"], "1004", "--context", "acct-acme")
        assert rc == 0 and doc["reply"].startswith("+OK"), (doc, err)
        assert wait_until(lambda: bool(dave.answered), 10), "1004 was not rung"
        assert _talks(call.media, dave.answered[-1], CALLER_HZ) >= 1.0
        b_call = b.received_invites[-1].get("Call-ID")
        assert wait_until(lambda: b_call in b.ended_calls, 5), "1002's leg was not ended"


def test_park_leaves_the_bridge_and_kill_ends_the_parked_call(fl: FeatureLab, zp: Cli) -> None:
    with a_call(fl) as (_a, b, call):
        assert call.media is not None
        row = legs(zp, "1001", "1002")
        rc, doc, err = zp("calls", "park", row["uuid"])
        assert rc == 0 and doc["reply"].startswith("+OK"), (doc, err)
        time.sleep(0.5)
        assert _talks(call.media, b.answered[-1], CALLER_HZ, timeout=3.0) < 0.3, \
            "the callee still hears the parked caller"
        rc, doc, err = zp("calls", "show", row["uuid"])
        assert rc == 0 and doc["callstate"] != "HANGUP", doc
        rc, doc, err = zp("calls", "kill", row["uuid"])
        assert rc == 0, err
        assert wait_until(lambda: call.ended_by_far_end, 5), "the parked caller got no BYE"


def test_originate_rings_the_user_then_connects_the_destination(fl: FeatureLab, zp: Cli) -> None:
    with fl.phone("1002@acme") as bob, fl.phone("1001@acme") as alice:
        alice.answer_calls()
        rc, _doc, err = zp("calls", "originate", "1002", "--from", "1001@acme", "--ring", "10")
        assert rc == 0, err
        assert wait_until(lambda: bool(alice.answered), 10), "1001 was not rung first"
        assert wait_until(lambda: bool(bob.answered), 10), "1002 was not rung after 1001 answered"
        assert _talks(alice.answered[-1], bob.answered[-1], CALLER_HZ) >= 1.0
        assert _talks(bob.answered[-1], alice.answered[-1], CALLEE_HZ) >= 1.0
        alice.hang_up_answered()


def test_switch_status_pause_and_resume(fl: FeatureLab, zp: Cli) -> None:
    rc, rows, err = zp("switch", "status")
    assert rc == 0, err
    names = sorted(r["switch"] for r in rows)
    assert names == sorted(p.name for p in fl.inv.nodes() if p.role.value == "switch")
    assert all(r["state"] == "ok" and r["paused_inbound"] is False and
               isinstance(r["sessions"], int) for r in rows), rows
    victim = "lab1-a-switch1"
    # a drain's dry run: the exact requests (read from the proxies' dispatcher lists), and
    # nothing changed
    rc, plan, err = zp("switch", "drain", victim, "--dry-run")
    assert rc == 0, err
    commands = [c["command"] for c in plan["commands"]]
    assert sum(c.startswith("jsonrpc dispatcher.set_state d ") for c in commands) == 4, commands
    assert "api fsctl pause inbound" in commands
    rc, rows, err = zp("switch", "status", "--switch", victim)
    assert rc == 0 and rows[0]["paused_inbound"] is False
    rc, _, err = zp("switch", "pause", "--switch", victim)
    assert rc == 0, err
    try:
        rc, rows, err = zp("switch", "status", "--switch", victim)
        assert rc == 0 and (rows[0]["state"], rows[0]["paused_inbound"]) == ("paused", True), rows
        # new calls go elsewhere: three calls from the zone, none on the paused switch
        for _ in range(3):
            with a_call(fl):
                assert legs(zp, "1001", "1002")["switch"] != victim
    finally:
        rc, _, err = zp("switch", "resume", "--switch", victim)
        assert rc == 0, err
    rc, rows, err = zp("switch", "status", "--switch", victim)
    assert rc == 0 and (rows[0]["state"], rows[0]["paused_inbound"]) == ("ok", False), rows


def test_a_wrong_esl_password_is_a_clear_error(fl: FeatureLab, zp: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "secrets.yml"
    text = Path(zp.secrets).read_text()
    bad.write_text("\n".join("esl_password: not-the-password" if line.startswith("esl_password")
                             else line for line in text.splitlines()) + "\n")
    bad.chmod(0o600)
    zp.secrets = str(bad)
    rc, _, err = zp("calls", "ls")
    assert rc == 6 and "Traceback" not in err, err
    assert "password" in err.lower() or "auth" in err.lower(), err


def test_watch_streams_a_calls_events_and_reconnects_after_a_restart(
        fl: FeatureLab, zp: Cli, tmp_path: Path) -> None:
    """`calls watch -o json` on the lab's switches: a call's CREATE, ANSWER, BRIDGE and
    HANGUP_COMPLETE arrive as JSON lines; a switch killed and started again is reconnected
    to (said on stderr), and its events flow again."""
    victim = "lab1-b-switch1"
    out_path, err_path = tmp_path / "watch.out", tmp_path / "watch.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "zpctl"), "-o", "json", "calls", "watch", INV, "--zone",
             "lab1", "--duration", "60", "--secrets", zp.secrets], stdout=out, stderr=err)
    try:
        assert wait_until(lambda: err_path.read_text().count(": watching") == 3, 15), \
            err_path.read_text()
        with a_call(fl):
            row = legs(zp, "1001", "1002")
        ended = wait_until(lambda: any(
            json.loads(line).get("uuid") == row["uuid"] and
            json.loads(line)["event"] == "CHANNEL_HANGUP_COMPLETE"
            for line in out_path.read_text().splitlines()), 10)
        events = [json.loads(line) for line in out_path.read_text().splitlines()]
        mine = [e["event"] for e in events if e["uuid"] == row["uuid"]]
        assert ended and mine[0] == "CHANNEL_CREATE", mine
        assert {"CHANNEL_ANSWER", "CHANNEL_BRIDGE"} <= set(mine), mine
        first = next(e for e in events if e["uuid"] == row["uuid"])
        assert (first["switch"], first["cid_num"], first["dest"]) == (row["switch"], "1001", "1002")
        # a switch restarts: the watch says it lost it and reconnects
        fl.lab.kill(f"{victim}/freeswitch")
        assert wait_until(lambda: f"{victim}: lost" in err_path.read_text(), 10), \
            err_path.read_text()
        fl.lab.start(f"{victim}/freeswitch")
        assert wait_until(lambda: f"{victim}: reconnected" in err_path.read_text(), 30), \
            err_path.read_text()
        # a call that can only land on it (the other switches take no new calls)
        others = [p.name for p in fl.inv.nodes()
                  if p.role.value == "switch" and p.dc.id == "lab1" and p.name != victim]
        for name in others:
            fl.switch_api("fsctl pause inbound", switch=name)
        with a_call(fl):
            assert legs(zp, "1001", "1002")["switch"] == victim
        assert wait_until(lambda: any(json.loads(line)["switch"] == victim
                                      for line in out_path.read_text().splitlines()), 10)
    finally:
        fl.switch_api("fsctl resume inbound", check=False)
        proc.terminate()
        proc.wait(10)


def test_exporter_reads_pause_and_sip_profiles_from_the_switches(fl: FeatureLab, zp: Cli) -> None:
    """The exporter's ESL source against the lab's switches: the SIP profile running, with
    its calls; a pause seen within a poll, and its end."""
    victim = fl.inv.node("lab1-a-switch2")
    source = EslSwitchSource(fl.inv, fl.secrets.get(ESL_PASSWORD_KEY), queue_poll_s=1.0).start()
    try:
        def stats() -> Any:
            try:
                return source(victim)
            except Exception:
                return None

        assert wait_until(lambda: stats() is not None and bool(stats().profiles), 30)
        (profile,) = stats().profiles
        assert (profile.profile, profile.running) == ("zpctl", True)
        assert stats().paused is False
        fl.switch_api("fsctl pause inbound", switch=victim.name)
        try:
            assert wait_until(lambda: stats().paused, 5)
            assert stats().paused_since is not None
        finally:
            fl.switch_api("fsctl resume inbound", switch=victim.name)
        assert wait_until(lambda: not stats().paused, 5)
    finally:
        source.close()
