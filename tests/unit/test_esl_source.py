"""The exporter's live switch source: fed a real switch's recorded events through the
scripted ESL peer, and its queue metrics from a mod_callcenter snapshot."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from tests.esl_peer import EslPeer, recorded_events
from zpctl.clients.esl import EslConnection
from zpctl.errors import Unreachable
from zpctl.freeswitch.queues import Agent, CallcenterQueue, Member
from zpctl.metrics.esl_source import EslSwitchSource, queue_stats, read_queues
from zpctl.metrics.switch import QueueStats
from zpctl.model import load_inventory

SWITCH_MINI = Path(__file__).parent / "fixtures" / "switch-mini"


class _Running:
    """An EslPeer served from its own event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sw = EslPeer("pw", hostname="sw1")
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.sw.start(), self.loop).result(5)

    def call(self, fn: object, *args: object, **kw: str) -> None:
        self.loop.call_soon_threadsafe(lambda: fn(*args, **kw))  # type: ignore[operator]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sw.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def fake() -> Iterator[_Running]:
    r = _Running()
    yield r
    r.stop()


def _wait(pred: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_heartbeat_and_channels_become_switch_stats(fake: _Running) -> None:
    """One real call's events (a switch in the lab said them: an inbound leg, its
    outbound leg, the hang-up) and the real HEARTBEAT after it."""
    events = recorded_events()
    creates = [e for e in events if e.name == "CHANNEL_CREATE"]
    inbound = next(e for e in creates if e.get("Call-Direction") == "inbound")
    heartbeat = next(e for e in events if e.name == "HEARTBEAT")
    inv = load_inventory(SWITCH_MINI)
    switches = [p for p in inv.nodes() if p.role.value == "switch"]
    target = switches[0]
    # Every switch of the fixture points at the one peer.
    src = EslSwitchSource(inv, "pw", esl_override=f"{fake.sw.host}:{fake.sw.port}").start()
    try:
        with pytest.raises(Unreachable, match="no HEARTBEAT"):
            src(target)
        for ev in creates:
            fake.call(fake.sw.replay, ev)
        fake.call(fake.sw.replay, heartbeat)
        _wait(lambda: _ok(src, target))
        stats = src(target)
        assert stats.calls == 1  # the inbound leg only
        assert stats.calls_total == 1
        assert stats.sessions_limit == int(heartbeat.get("Max-Sessions") or 0) == 2000
        assert stats.idle_cpu_ratio == pytest.approx(float(heartbeat.get("Idle-CPU") or 0) / 100)
        hangup = next(e for e in events if e.name == "CHANNEL_HANGUP_COMPLETE"
                      and e.unique_id == inbound.unique_id)
        fake.call(fake.sw.replay, hangup)
        _wait(lambda: src(target).calls == 0)
        assert src(target).calls_total == 1
    finally:
        src.close()


def _ok(src: EslSwitchSource, node: object) -> bool:
    try:
        src(node)  # type: ignore[arg-type]
    except Unreachable:
        return False
    return True


def test_unreachable_switch_is_reported() -> None:
    inv = load_inventory(SWITCH_MINI)
    target = next(p for p in inv.nodes() if p.role.value == "switch")
    src = EslSwitchSource(inv, "pw", esl_override="127.0.0.1:9", timeout=1.0).start()
    try:
        with pytest.raises(Unreachable):
            src(target)
    finally:
        src.close()


NOW = 1700000100.0
ACCOUNTS = {"acme.lab.zpctl.test": "acme"}


def test_queue_stats_counts_callers_waiting_or_trying_and_agents_by_status() -> None:
    q = CallcenterQueue(
        "support@acme.lab.zpctl.test", "ring-all", answered=7, abandoned=2, member_count=4,
        members=(Member("Waiting", NOW - 30), Member("Trying", NOW - 95),
                 Member("Answered", NOW - 500), Member("Waiting", None)),
        agents=(Agent("1002@acme.lab.zpctl.test", "Available", "Waiting", 3),
                Agent("1004@acme.lab.zpctl.test", "On Break", "Idle", 0),
                Agent("1005@acme.lab.zpctl.test", "Available", "Receiving", 1),
                Agent("1006@acme.lab.zpctl.test", "", "Idle", 0)))
    assert queue_stats(q, ACCOUNTS, NOW) == QueueStats(
        "acme", "support", waiting=3, longest_wait_seconds=95.0, answered_total=7,
        abandoned_total=2, agents={"available": 2, "on_break": 1, "unknown": 1})
    other = CallcenterQueue("sales@beta.example", "top-down", 0, 0, 0)
    assert queue_stats(other, ACCOUNTS, NOW) == QueueStats(
        "_unknown", "sales", 0, 0.0, 0, 0, {})


class _Conn:
    name = "sw1"

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies

    async def api(self, command: str, *, check: bool = True) -> str:
        return self.replies[command]


def test_read_queues_maps_the_shared_snapshot() -> None:
    q = "support@acme.lab.zpctl.test"
    conn = _Conn({
        "callcenter_config queue list": f"name|strategy|calls_answered|calls_abandoned\n"
                                        f"{q}|ring-all|5|1\n+OK\n",
        f"callcenter_config queue count members {q}": "1\n",
        f"callcenter_config queue list members {q}": f"queue|joined_epoch|state\n"
                                                     f"{q}|{NOW - 12:.0f}|Waiting\n+OK\n",
        f"callcenter_config queue list tiers {q}": "queue|agent|state\n+OK\n",
        f"callcenter_config queue list agents {q}": "name|status|state\n+OK\n"})
    stats = asyncio.run(read_queues(cast(EslConnection, conn), ACCOUNTS, NOW))
    assert stats == (QueueStats("acme", "support", 1, 12.0, 5, 1, {}),)
