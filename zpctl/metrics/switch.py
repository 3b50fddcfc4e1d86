"""FreeSWITCH switches: sessions, calls, pause state, SIP profiles and call queues, per
switch.

The collector does not speak ESL.  It asks a :class:`SwitchStatsSource` — any callable
``source(placed_node) -> SwitchStats`` — for each switch of the inventory, and exports what
it returns.  The live source is :func:`zpctl.metrics.esl_source.esl_switch_source` (ESL
events); tests also use recorded data.

Two pure helpers do the FreeSWITCH-specific reading, so an ESL source stays a thin loop:

* :func:`stats_from_heartbeat` turns a ``HEARTBEAT`` event (fired every 20 s by the core:
  ``Session-Count``, ``Session-Since-Startup``, ``Session-Per-Sec-Last`` — the measured
  rate; ``Session-Per-Sec`` is the *configured limit* — ``Max-Sessions``, ``Idle-CPU`` in
  percent, ``Uptime-msec``) into :class:`SwitchStats`;
* :class:`ChannelTally` follows channel events (``CHANNEL_CREATE`` and
  ``CHANNEL_HANGUP_COMPLETE``/``CHANNEL_DESTROY``) and counts calls: one call is one
  *inbound* channel (the leg the proxy sent to the switch), so a bridged call counts once.

The pause state is not in HEARTBEAT: the source reports it (``fsctl pause inbound`` is
issued by zpctl itself, and ``status`` says "not ready" while sessions are refused).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from zpctl.metrics.base import LOCATION, Families, ZpctlCollector, where
from zpctl.metrics.sources import fan_out
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.schema import Role


@dataclass(frozen=True)
class QueueStats:
    """One call queue (mod_callcenter) on one switch."""

    account: str
    queue: str
    waiting: int  # callers waiting for an agent now
    longest_wait_seconds: float  # how long the longest-waiting caller has waited
    answered_total: int  # calls an agent answered (counter)
    abandoned_total: int  # callers who hung up before an agent answered (counter)
    agents: Mapping[str, int] = field(default_factory=dict)  # status -> agents, e.g. available


@dataclass(frozen=True)
class ProfileStats:
    """One SIP (sofia) profile of a switch, from ``sofia status``."""

    profile: str
    running: bool  # listed as RUNNING (a profile that failed to start is not listed)
    calls: int = 0  # its calls in use


@dataclass(frozen=True)
class SwitchStats:
    """What a switch reports, in base units; None where the source does not know."""

    sessions: int  # channels now (HEARTBEAT Session-Count)
    sessions_total: int  # channels since start (Session-Since-Startup), a counter
    sessions_per_second: float | None = None  # measured (Session-Per-Sec-Last)
    sessions_per_second_limit: int | None = None  # configured (Session-Per-Sec)
    sessions_limit: int | None = None  # Max-Sessions
    idle_cpu_ratio: float | None = None  # Idle-CPU / 100
    uptime_seconds: float | None = None  # Uptime-msec / 1000
    calls: int | None = None  # inbound channels now (ChannelTally)
    calls_total: int | None = None  # inbound channels since the tally started, a counter
    paused: bool = False  # refusing new inbound sessions (fsctl pause)
    paused_since: float | None = None  # Unix time the pause began, when known
    queues: tuple[QueueStats, ...] = ()
    profiles: tuple[ProfileStats, ...] = ()


class SwitchStatsSource(Protocol):
    """Reads one switch; raises (e.g. :class:`zpctl.errors.Unreachable`) when it cannot."""

    def __call__(self, node: PlacedNode) -> SwitchStats: ...


class EventHeaders(Protocol):
    """An ESL event or any mapping: a header value by name (None when absent)."""

    def get(self, name: str, /) -> str | None: ...


def _int(event: EventHeaders, name: str) -> int | None:
    value = event.get(name)
    if value is None or value == "":
        return None
    return int(float(value))


def stats_from_heartbeat(event: EventHeaders, *, tally: ChannelTally | None = None,
                         paused: bool = False, paused_since: float | None = None,
                         queues: tuple[QueueStats, ...] = ()) -> SwitchStats:
    """:class:`SwitchStats` from a HEARTBEAT event (plus the calls, pause and queues the
    source tracks itself); ValueError when the event is not a usable HEARTBEAT."""
    if (event.get("Event-Name") or "").upper() != "HEARTBEAT":
        raise ValueError(f"not a HEARTBEAT event: {event.get('Event-Name')!r}")
    sessions = _int(event, "Session-Count")
    total = _int(event, "Session-Since-Startup")
    if sessions is None or total is None:
        raise ValueError("HEARTBEAT without Session-Count or Session-Since-Startup")
    idle = event.get("Idle-CPU")
    uptime = _int(event, "Uptime-msec")
    rate = _int(event, "Session-Per-Sec-Last")
    return SwitchStats(
        sessions=sessions, sessions_total=total,
        sessions_per_second=float(rate) if rate is not None else None,
        sessions_per_second_limit=_int(event, "Session-Per-Sec"),
        sessions_limit=_int(event, "Max-Sessions"),
        idle_cpu_ratio=float(idle) / 100.0 if idle not in (None, "") else None,
        uptime_seconds=uptime / 1000.0 if uptime is not None else None,
        calls=tally.calls if tally is not None else None,
        calls_total=tally.calls_total if tally is not None else None,
        paused=paused, paused_since=paused_since, queues=queues)


class ChannelTally:
    """Counts calls from channel events: feed every event, read ``calls``/``calls_total``.

    Only inbound channels count.  A channel is live from CHANNEL_CREATE until
    CHANNEL_HANGUP_COMPLETE or CHANNEL_DESTROY, whichever comes first.  After an ESL
    reconnect call :meth:`reset` (events were missed); ``calls_total`` then restarts at 0,
    which Prometheus treats as a counter reset.
    """

    def __init__(self) -> None:
        self._live: set[str] = set()
        self.calls_total = 0

    @property
    def calls(self) -> int:
        return len(self._live)

    def feed(self, event: EventHeaders) -> None:
        name = (event.get("Event-Name") or "").upper()
        uuid = event.get("Unique-ID")
        if not uuid:
            return
        if name == "CHANNEL_CREATE":
            if (event.get("Call-Direction") or "").lower() == "inbound" \
                    and uuid not in self._live:
                self._live.add(uuid)
                self.calls_total += 1
        elif name in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
            self._live.discard(uuid)

    def reset(self) -> None:
        self._live.clear()
        self.calls_total = 0


class SwitchCollector(ZpctlCollector):
    """``zpctl_switch_*`` per switch and ``zpctl_queue_*`` per queue, from a source."""

    name = "switch"

    def __init__(self, inventory: LoadedInventory, source: SwitchStatsSource,
                 registry: CollectorRegistry | None = None) -> None:
        self.inv = inventory
        self.source = source
        super().__init__(registry)

    def families(self) -> Families:
        q = [*LOCATION, "account", "queue"]

        def g(name: str, doc: str, labels: list[str] = LOCATION) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        def c(name: str, doc: str, labels: list[str] = LOCATION) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=labels)

        return {
            "up": g("zpctl_switch_up", "1 if the switch's stats could be read (ESL), else 0"),
            "sessions": g("zpctl_switch_sessions", "Channels on the switch now"),
            "sessions_total": c("zpctl_switch_sessions_total", "Channels since the switch "
                                "started"),
            "sps": g("zpctl_switch_sessions_per_second", "Sessions per second, as last measured "
                     "by the switch"),
            "sps_limit": g("zpctl_switch_sessions_per_second_limit", "Configured sessions per "
                           "second limit"),
            "limit": g("zpctl_switch_sessions_limit", "Configured maximum sessions"),
            "idle": g("zpctl_switch_idle_cpu_ratio", "Idle CPU of the switch host (0-1)"),
            "uptime": g("zpctl_switch_uptime_seconds", "Time since the switch started"),
            "calls": g("zpctl_switch_calls", "Calls on the switch now (inbound channels)"),
            "calls_total": c("zpctl_switch_calls_total", "Calls the switch received (inbound "
                             "channels)"),
            "paused": g("zpctl_switch_paused", "1 if the switch refuses new inbound calls "
                        "(paused), else 0"),
            "paused_since": g("zpctl_switch_paused_since_timestamp_seconds", "When the current "
                              "pause began (Unix time)"),
            "profile_up": g("zpctl_switch_sip_profile_up", "1 if the SIP profile runs "
                            "(sofia status), else 0", [*LOCATION, "profile"]),
            "profile_calls": g("zpctl_switch_sip_profile_calls", "Calls in use on the SIP "
                               "profile (sofia status)", [*LOCATION, "profile"]),
            "q_waiting": g("zpctl_queue_calls_waiting", "Callers waiting in the queue", q),
            "q_wait": g("zpctl_queue_longest_wait_seconds", "Wait of the longest-waiting caller",
                        q),
            "q_agents": g("zpctl_queue_agents", "Agents of the queue by status", [*q, "status"]),
            "q_answered": c("zpctl_queue_calls_answered_total", "Queue calls an agent answered",
                            q),
            "q_abandoned": c("zpctl_queue_calls_abandoned_total", "Queue callers who hung up "
                             "before an agent answered", q),
        }

    def fill(self, fams: Families, errors: list[str]) -> None:
        switches = [p for p in self.inv.nodes() if p.role == Role.SWITCH]
        read: Callable[[PlacedNode], SwitchStats] = self.source
        for p, st, err in fan_out(read, switches):
            loc = where(p)
            fams["up"].add_metric(loc, 0 if st is None else 1)
            if st is None:
                errors.append(f"{p.name}: {err}")
                continue
            fams["sessions"].add_metric(loc, st.sessions)
            fams["sessions_total"].add_metric(loc, st.sessions_total)
            for key, value in (("sps", st.sessions_per_second),
                               ("sps_limit", st.sessions_per_second_limit),
                               ("limit", st.sessions_limit), ("idle", st.idle_cpu_ratio),
                               ("uptime", st.uptime_seconds), ("calls", st.calls),
                               ("calls_total", st.calls_total),
                               ("paused_since", st.paused_since if st.paused else None)):
                if value is not None:
                    fams[key].add_metric(loc, value)
            fams["paused"].add_metric(loc, 1 if st.paused else 0)
            for ps in sorted(st.profiles, key=lambda x: x.profile):
                fams["profile_up"].add_metric([*loc, ps.profile], 1 if ps.running else 0)
                if ps.running:
                    fams["profile_calls"].add_metric([*loc, ps.profile], ps.calls)
            for qs in sorted(st.queues, key=lambda q: (q.account, q.queue)):
                ql = [*loc, qs.account, qs.queue]
                fams["q_waiting"].add_metric(ql, qs.waiting)
                fams["q_wait"].add_metric(ql, qs.longest_wait_seconds)
                fams["q_answered"].add_metric(ql, qs.answered_total)
                fams["q_abandoned"].add_metric(ql, qs.abandoned_total)
                for status, n in sorted(qs.agents.items()):
                    fams["q_agents"].add_metric([*ql, status], n)
