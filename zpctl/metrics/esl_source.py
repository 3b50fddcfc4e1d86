"""The live switch source for the exporter: ESL events from every switch of an inventory.

A background thread runs an asyncio loop holding one reconnecting ESL connection per switch
(:func:`zpctl.freeswitch.control.inventory_pool`), subscribed to HEARTBEAT (every 20 s from
the core) and the channel events :class:`ChannelTally` counts.  A scrape calls the source
for each switch; it answers from the last HEARTBEAT, or raises when that is missing or
older than two intervals (the switch, or our connection to it, is gone).

Call queues, the inbound pause and the SIP profiles are not in any event a scrape could wait
for: every ``queue_poll_s`` seconds the same loop reads each switch's mod_callcenter with
the reader ``zpctl queues status`` uses (:func:`zpctl.freeswitch.queues.read_snapshot`:
answered and abandoned since the switch started, callers and since when, agents), ``fsctl
pause_check inbound`` (the pause began at the first poll that saw it) and ``sofia status``
(each profile the switch's config defines, running or not, with its calls), and keeps the
answers for the next scrapes.  A queue's calls run on its data center's rendezvous switch;
the others report it idle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zpctl.clients.esl import EslConnection
from zpctl.errors import Unreachable, ZpctlError
from zpctl.freeswitch.control import esl_password, inventory_pool, parse_sofia_status
from zpctl.freeswitch.queues import CallcenterQueue, read_snapshot
from zpctl.metrics.switch import (
    ChannelTally,
    ProfileStats,
    QueueStats,
    SwitchStats,
    SwitchStatsSource,
    stats_from_heartbeat,
)
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.pbx import parse_callcenter_name
from zpctl.protocols import esl
from zpctl.render.freeswitch import PROFILE

EVENTS = ("HEARTBEAT", "CHANNEL_CREATE", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY")


@dataclass
class _SwitchState:
    heartbeat: esl.Event | None = None
    at: float = 0.0
    tally: ChannelTally = field(default_factory=ChannelTally)
    queues: tuple[QueueStats, ...] = ()
    paused_since: float | None = None  # None: not paused (at the last poll)
    profiles: tuple[ProfileStats, ...] = ()


def profile_stats(text: str, expected: tuple[str, ...] = (PROFILE,)) -> tuple[ProfileStats, ...]:
    """The switch's profiles from a ``sofia status`` reply: each ``expected`` one (the
    rendered config's), running or not (one that failed to start is not listed), and any
    other that runs."""
    running = {p.name: p for p in parse_sofia_status(text) if p.state == "RUNNING"}
    names = sorted(set(expected) | set(running))
    return tuple(ProfileStats(n, n in running, running[n].calls if n in running else 0)
                 for n in names)


def queue_stats(q: CallcenterQueue, accounts: dict[str, str], now: float) -> QueueStats:
    """The metrics of one queue of a mod_callcenter snapshot; ``accounts`` maps an account's
    SIP domain (the part of a queue's name after ``@``) to its id."""
    qid, domain = parse_callcenter_name(q.name)
    joined = [now if m.joined_epoch is None else m.joined_epoch for m in q.waiting]
    by_status: dict[str, int] = {}
    for a in q.agents:
        status = a.status.lower().replace(" ", "_") or "unknown"
        by_status[status] = by_status.get(status, 0) + 1
    return QueueStats(accounts.get(domain, "_unknown"), qid, len(joined),
                      round(max((now - j for j in joined), default=0.0), 1),
                      q.answered, q.abandoned, by_status)


async def read_queues(conn: EslConnection, accounts: dict[str, str],
                      now: float | None = None) -> tuple[QueueStats, ...]:
    """Every queue mod_callcenter holds on the switch behind ``conn``
    (:func:`zpctl.freeswitch.queues.read_snapshot`), as metrics (:func:`queue_stats`)."""
    now = time.time() if now is None else now
    snap = await read_snapshot(conn)
    return tuple(queue_stats(q, accounts, now) for q in snap.queues)


class EslSwitchSource:
    """``source(node) -> SwitchStats`` fed by ESL events (see the module docstring)."""

    def __init__(self, inventory: LoadedInventory, password: str, *,
                 esl_override: str | None = None, stale_s: float = 45.0,
                 timeout: float = 5.0, queue_poll_s: float = 10.0) -> None:
        self.inv = inventory
        self.password = password
        self.esl_override = esl_override
        self.stale_s = stale_s
        self.timeout = timeout
        self.queue_poll_s = queue_poll_s
        self._accounts = {inventory.model.account_domain(a): a.id
                          for a in inventory.model.accounts}
        self._lock = threading.Lock()
        self._state: dict[str, _SwitchState] = {}
        self._errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zpctl-esl-source", daemon=True)

    def start(self) -> EslSwitchSource:
        self._thread.start()
        self._ready.wait(self.timeout + 1)
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        pool = inventory_pool(self.inv, self.password, esl_override=self.esl_override,
                              timeout=self.timeout, reconnect=True)
        try:
            await pool.connect()
            with self._lock:
                self._errors = {n: e.message for n, e in pool.errors.items()}
            for name, conn in pool.connections.items():
                self._state.setdefault(name, _SwitchState())
                conn.on_event(self._feeder(name))
                await conn.subscribe(EVENTS)
            self._ready.set()
            polled = 0.0
            while not self._stop.is_set():
                if time.monotonic() - polled >= self.queue_poll_s:
                    polled = time.monotonic()
                    await self._poll(pool.connections)
                await asyncio.sleep(0.2)
        finally:
            self._ready.set()
            await pool.close()

    async def _poll(self, connections: dict[str, EslConnection]) -> None:
        for name, conn in connections.items():
            try:
                paused = (await conn.api("fsctl pause_check inbound", check=False)).strip()
                profiles = profile_stats(await conn.api("sofia status", check=False))
            except ZpctlError:
                continue  # down: its last answers stand (and the HEARTBEAT goes stale)
            with self._lock:
                st = self._state.setdefault(name, _SwitchState())
                if paused == "true":
                    st.paused_since = st.paused_since or time.time()
                elif paused == "false":
                    st.paused_since = None
                st.profiles = profiles
            try:
                queues = await read_queues(conn, self._accounts)
            except ZpctlError:
                continue  # without mod_callcenter: its last answer stands
            with self._lock:
                self._state.setdefault(name, _SwitchState()).queues = queues

    def _feeder(self, name: str) -> Callable[[esl.Event], None]:
        def feed(event: esl.Event) -> None:
            self._feed(name, event)
        return feed

    def _feed(self, name: str, event: esl.Event) -> None:
        with self._lock:
            st = self._state.setdefault(name, _SwitchState())
            if event.name == "HEARTBEAT":
                st.heartbeat, st.at = event, time.monotonic()
            else:
                st.tally.feed(event)

    def __call__(self, node: PlacedNode) -> SwitchStats:
        with self._lock:
            if node.name in self._errors:
                raise Unreachable(f"switch {node.name}: {self._errors[node.name]}")
            st = self._state.get(node.name)
            if st is None or st.heartbeat is None:
                raise Unreachable(f"switch {node.name}: no HEARTBEAT received yet")
            if time.monotonic() - st.at > self.stale_s:
                raise Unreachable(f"switch {node.name}: last HEARTBEAT "
                                  f"{time.monotonic() - st.at:.0f} s ago")
            return dataclasses.replace(stats_from_heartbeat(st.heartbeat, tally=st.tally),
                                       queues=st.queues, paused=st.paused_since is not None,
                                       paused_since=st.paused_since, profiles=st.profiles)


def esl_switch_source(inventory: LoadedInventory) -> SwitchStatsSource | None:
    """The live switch source of ``inventory``: ESL events from each of its switches
    (:class:`EslSwitchSource`), with the ESL password from the platform's secrets; None when
    the password cannot be had."""
    try:
        password = esl_password(inventory)
    except ZpctlError:
        return None
    return EslSwitchSource(inventory, password).start()
