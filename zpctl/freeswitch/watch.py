"""``zpctl calls watch``: call events from every selected switch, live, over ESL.

How it works: one task per switch holds an inbound ESL connection subscribed to the
channel events (:data:`WATCH_EVENTS`) and turns each into a :class:`CallEvent`; a
:class:`CallBoard` folds the events into the channels in progress, for the live table.
When a connection is lost (the switch restarted, the network dropped) the task says so
and connects again after a growing delay (:class:`~zpctl.clients.esl.Backoff`: 0.2 s
doubling to 15 s, reset once connected); a switch that refuses the ESL password or its
ACL is not retried (that will not fix itself) and is reported.  Nothing here prints: the
caller gets events and status lines through callbacks.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from zpctl.clients.esl import Backoff, EslConnection, SwitchTarget, listen
from zpctl.protocols import esl

WATCH_EVENTS = ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_ANSWER", "CHANNEL_BRIDGE",
                "CHANNEL_UNBRIDGE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_HANGUP_COMPLETE")
EVENT_COLUMNS = ["time", "switch", "event", "uuid", "direction", "cid_num", "dest",
                 "callstate", "other_leg", "cause"]
BOARD_COLUMNS = ["switch", "uuid", "direction", "cid_num", "dest", "callstate", "since",
                 "other_leg"]


@dataclass(frozen=True)
class CallEvent:
    """One channel event of one switch, the fields an operator reads."""

    time: str  # ISO 8601, UTC, from the event's own timestamp
    switch: str
    event: str
    uuid: str
    direction: str = ""
    cid_num: str = ""
    dest: str = ""
    callstate: str = ""
    other_leg: str = ""
    cause: str = ""

    def as_dict(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in EVENT_COLUMNS}

    @classmethod
    def of(cls, switch: str, ev: esl.Event) -> CallEvent:
        micros = ev.get("Event-Date-Timestamp") or ""
        when = (datetime.datetime.fromtimestamp(int(micros) / 1e6, datetime.UTC)
                if micros.isdigit() else datetime.datetime.now(datetime.UTC))
        return cls(
            time=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            switch=switch, event=ev.name, uuid=ev.unique_id or "",
            direction=ev.get("Call-Direction") or "",
            cid_num=ev.get("Caller-Caller-ID-Number") or "",
            dest=ev.get("Caller-Destination-Number") or "",
            callstate=ev.get("Channel-Call-State") or "",
            other_leg=ev.get("Other-Leg-Unique-ID") or ev.get("Bridge-B-Unique-ID") or "",
            cause=ev.get("Hangup-Cause") or "")


@dataclass
class CallBoard:
    """The channels in progress, as the events of every switch left them."""

    channels: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def apply(self, e: CallEvent) -> None:
        key = (e.switch, e.uuid)
        if e.event == "CHANNEL_HANGUP_COMPLETE":
            self.channels.pop(key, None)
            return
        row = self.channels.setdefault(key, {"switch": e.switch, "uuid": e.uuid, "since": e.time})
        for col in ("direction", "cid_num", "dest", "callstate", "other_leg"):
            value = getattr(e, col)
            if value:
                row[col] = value
        if e.event == "CHANNEL_UNBRIDGE":
            row["other_leg"] = ""

    def forget(self, switch: str) -> None:
        """A switch's connection was lost: what it had is no longer known."""
        for key in [k for k in self.channels if k[0] == switch]:
            del self.channels[key]

    def rows(self) -> list[dict[str, str]]:
        return [self.channels[k] for k in sorted(self.channels,
                                                 key=lambda k: (k[0], self.channels[k]["since"]))]


@dataclass
class WatchStats:
    events: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


async def watch(targets: Sequence[SwitchTarget], password: str, *,
                on_event: Callable[[CallEvent], None], say: Callable[[str], None],
                on_lost: Callable[[str], None] = lambda name: None,
                duration: float | None = None, timeout: float = 5.0,
                backoff: Backoff | None = None) -> WatchStats:
    """Watch ``targets`` until ``duration`` seconds have passed (None: until cancelled), or
    until every switch refused us.  ``say`` gets one line per connection change."""
    stats = WatchStats()
    tasks = [asyncio.create_task(_one(t, password, timeout, backoff or Backoff(), on_event, say, on_lost,
                                      stats)) for t in targets]
    try:
        await asyncio.wait(tasks, timeout=duration)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats


async def _one(t: SwitchTarget, password: str, timeout: float, backoff: Backoff,
               on_event: Callable[[CallEvent], None], say: Callable[[str], None],
               on_lost: Callable[[str], None], stats: WatchStats) -> None:
    def heard(ev: esl.Event) -> None:
        if ev.name in WATCH_EVENTS:
            stats.events += 1
            on_event(CallEvent.of(t.name, ev))

    async def subscribe(conn: EslConnection) -> None:
        await conn.subscribe(WATCH_EVENTS)

    await listen(t, password, timeout=timeout, backoff=backoff, subscribe=subscribe,
                 on_event=heard, say=say, refused=stats.refused, reconnects=stats.reconnects,
                 on_lost=on_lost)
