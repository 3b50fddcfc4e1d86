"""The media benchmark's smoke run (``make bench`` measures capacity; CI proves the tools):
real RTP through a real rtpengine and a real FreeSWITCH, counted packet by packet at the
far end, with :mod:`zpctl.loadtest.rtpload` and :mod:`zpctl.loadtest.relays`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zpctl.loadtest.relays import (
    SwitchCalls,
    delete_rtpengine_sessions,
    rtpengine_sessions,
    start_rtpengine,
    start_switch,
)
from zpctl.loadtest.rtpload import Session, cpu_ticks, direct_sessions, run_media
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("rtpengine", "freeswitch"))),
                                reason="rtpengine or freeswitch missing (make install)")

A, B, BASE = "127.0.78.1", "127.0.78.2", 42000
RTPENGINE, SWITCH, UAS = "127.0.78.10", "127.0.78.11", ("127.0.78.3", 5090)
SECONDS = 3.0


@pytest.fixture
def rtpengine(tmp_path: Path) -> Iterator[int]:
    proc = start_rtpengine(tmp_path / "rtpengine", RTPENGINE, ports=(46000, 46999))
    yield proc.pid
    proc.terminate()
    proc.wait(10)


def test_the_generator_alone_delivers_every_packet_it_counts() -> None:
    res = run_media(direct_sessions(20, A, B, BASE, 2), A, B, BASE, SECONDS)
    # 20 sessions x 2 directions x 50 packets/s, less the first second's (not counted)
    assert res.packets_sent == 20 * 2 * 50 * (SECONDS - 1)
    assert res.packets_received == res.packets_sent
    assert not res.generator_behind


def test_rtpengine_relays_every_stream_both_ways(rtpengine: int) -> None:
    ng = (RTPENGINE, 2223)
    sessions = rtpengine_sessions(ng, 20, A, B, BASE, 2)
    # each session has its own relay ports, none of them the endpoints' own
    assert len({s.a_to for s in sessions} | {s.b_to for s in sessions}) == 40
    assert all(s.a_to[0] == RTPENGINE for s in sessions)
    before = cpu_ticks(rtpengine)
    res = run_media(sessions, A, B, BASE, SECONDS)
    assert res.packets_sent == 20 * 2 * 50 * (SECONDS - 1)
    assert res.loss == 0.0 and res.worst_stream_loss == 0.0
    assert res.jitter_ms_p99 < 10.0
    assert cpu_ticks(rtpengine) > before  # the relay, not a shortcut, carried them
    delete_rtpengine_sessions(ng, 20)


def test_a_stream_nobody_relays_is_counted_lost(rtpengine: int) -> None:
    """The generator's loss count can fail: one session's A side sends to a port nothing
    listens on, and exactly that direction of that session is lost."""
    sessions = rtpengine_sessions((RTPENGINE, 2223), 4, A, B, BASE, 2)
    sessions[1] = Session(a_to=(RTPENGINE, 45999), b_to=sessions[1].b_to)
    res = run_media(sessions, A, B, BASE, SECONDS)
    assert res.worst_stream_loss == 1.0
    assert res.loss == pytest.approx(1 / 8)  # one stream of eight


def test_a_freeswitch_bridge_carries_every_stream_both_ways(tmp_path: Path) -> None:
    proc = start_switch(tmp_path / "switch", SWITCH, sip_port=5082, esl_port=8022)
    calls = SwitchCalls(SWITCH, 8022, UAS, A, B, BASE, 2)
    try:
        sessions = calls.setup(10, per_second=20.0)
        # two legs per call, each with the switch's own RTP port
        assert len({s.a_to for s in sessions} | {s.b_to for s in sessions}) == 20
        assert all(s.a_to[0] == SWITCH for s in sessions)
        res = run_media(sessions, A, B, BASE, SECONDS)
        assert res.packets_sent == 10 * 2 * 50 * (SECONDS - 1)
        # the switch renumbers the RTP header; the payload's tags say what arrived.  It
        # drops packets when it falls behind: rtp-autoflush-during-bridge (sofia's default)
        # discards a bridged leg's backlog to keep latency down, so a busy machine loses a
        # few (2 of 2,000 in one CI run, 11 in another, with the generator late in 23 of
        # 3,000 slots).  Every stream must still flow both ways.
        assert res.loss <= 0.01 and res.worst_stream_loss <= 0.02
        assert res.jitter_ms_p99 < 10.0
    finally:
        calls.close()
        proc.terminate()
        proc.wait(20)
