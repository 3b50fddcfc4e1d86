"""zpctl's ESL parsing on what a real FreeSWITCH (1.11.2-dev, the lab's) said: the event
stream of one call (create, answer, bridge, hold, unhold, hang-up, a HEARTBEAT) and the api
replies `status`, `show calls|channels as json`, `fsctl pause_check`, `sofia status`,
`uuid_hold`, and an unknown uuid's `uuid_kill`.  The files are recorded by ``tests/esl_capture.py``
(tests/unit/fixtures/esl/); nothing in them was written by hand.
"""

from __future__ import annotations

import pytest

from tests.esl_peer import recorded, recorded_events
from zpctl.freeswitch import control as fsc
from zpctl.freeswitch.watch import CallBoard, CallEvent
from zpctl.metrics.esl_source import profile_stats
from zpctl.metrics.switch import ChannelTally, ProfileStats, stats_from_heartbeat
from zpctl.protocols import esl

api = recorded  # a real switch's reply to `api <name>`, as recorded


@pytest.fixture(scope="module")
def events() -> list[esl.Event]:
    return recorded_events()


def test_the_stream_parses_whole_into_the_events_of_one_call(events: list[esl.Event]) -> None:
    names = [e.name for e in events]
    for want in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_HOLD",
                 "CHANNEL_UNHOLD", "CHANNEL_HANGUP_COMPLETE", "HEARTBEAT"):
        assert want in names, names
    legs = {e.unique_id for e in events if e.name == "CHANNEL_CREATE"}
    assert len(legs) == 2
    assert legs == {e.unique_id for e in events if e.name == "CHANNEL_HANGUP_COMPLETE"}


def test_watch_folds_the_events_into_the_calls_in_progress(events: list[esl.Event]) -> None:
    board, most = CallBoard(), 0
    rows = [CallEvent.of("lab1-a-switch1", e) for e in events if e.name != "HEARTBEAT"]
    for row in rows:
        board.apply(row)
        most = max(most, len(board.rows()))
    assert most == 2 and board.rows() == []
    inbound = next(r for r in rows if r.event == "CHANNEL_CREATE" and r.direction == "inbound")
    assert (inbound.cid_num, inbound.dest) == ("1001", "1002")
    assert inbound.time.endswith("Z") and inbound.time[:2] == "20"
    bridge = next(r for r in rows if r.event == "CHANNEL_BRIDGE")
    assert bridge.other_leg and bridge.other_leg != bridge.uuid
    hangups = [r for r in rows if r.event == "CHANNEL_HANGUP_COMPLETE"]
    assert all(r.cause for r in hangups)


def test_heartbeat_gives_the_exporter_its_figures(events: list[esl.Event]) -> None:
    beat = next(e for e in events if e.name == "HEARTBEAT")
    tally = ChannelTally()
    for e in events:
        tally.feed(e.headers)
    stats = stats_from_heartbeat(beat.headers, tally=tally)
    assert stats.sessions == 0 and stats.sessions_total >= 2
    assert stats.sessions_limit and stats.sessions_per_second_limit
    assert stats.idle_cpu_ratio is not None and 0.0 <= stats.idle_cpu_ratio <= 1.0
    assert stats.uptime_seconds and stats.uptime_seconds > 0
    assert (tally.calls, tally.calls_total) == (0, 1)  # one inbound leg, ended


def test_status_and_pause_check_replies() -> None:
    assert fsc.parse_status_sessions(api("status-idle")) == 0
    assert fsc.parse_status_sessions(api("status-call")) == 2
    total = fsc.parse_status_total(api("status-call"))
    assert total is not None and total >= 2
    assert api("pause-check-false").strip() == "false"
    assert api("pause-check-true").strip() == "true"
    assert api("pause").startswith("+OK") and api("resume").startswith("+OK")


def test_show_calls_and_channels_as_json() -> None:
    assert fsc.parse_rows(api("show-calls-idle")) == []
    (call,) = fsc.parse_rows(api("show-calls-call"))
    assert (call["direction"], call["cid_num"], call["dest"], call["callstate"]) == \
        ("inbound", "1001", "1002", "ACTIVE")
    assert call["b_uuid"] and call["b_uuid"] != call["uuid"]
    channels = fsc.parse_rows(api("show-channels-call"))
    assert {c["uuid"] for c in channels} == {call["uuid"], call["b_uuid"]}
    assert fsc.partner_of(call["uuid"], [call]) == call["b_uuid"]
    assert "2 total." in api("show-channels-count")


def test_call_control_replies() -> None:
    assert api("uuid-hold").startswith("+OK")
    assert api("uuid-hold-off").startswith("+OK")
    assert api("uuid-kill-unknown").startswith("-ERR")


def test_sofia_status_gives_the_profiles() -> None:
    idle = fsc.parse_sofia_status(api("sofia-status"))
    assert [(p.name, p.state, p.calls, p.tls) for p in idle] == [("zpctl", "RUNNING", 0, True)]
    assert idle[0].url == "sip:mod_sofia@127.0.1.14:5061"  # the TLS port
    (busy,) = fsc.parse_sofia_status(api("sofia-status-call"))
    assert busy.calls == 2
    # the exporter: the rendered profile, running or not
    assert profile_stats(api("sofia-status-call")) == (ProfileStats("zpctl", True, 2),)
    assert profile_stats("-ERR sofia not loaded\n") == (ProfileStats("zpctl", False, 0),)
