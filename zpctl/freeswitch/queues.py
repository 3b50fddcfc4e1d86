"""Call queues on the switch tier over ESL: who is opted in, who waits, what was answered.

How it works: a queue lives on its data center's rendezvous switch, the first switch up in
the order every zone proxy uses for dispatcher set 5 (all the data center's switches,
sorted by name): its callers, its agents' ``*75``/``*76`` opt-in and opt-out and its
callbacks all go there, so that switch's mod_callcenter holds the queue's live state.  The
switches are asked in that same order and the first that answers is used.

One reader, :func:`read_snapshot`, asks a switch's mod_callcenter for its queues (``queue
list``) and, for each (or each asked for), the commands of :func:`queue_commands`; it
returns a typed :class:`CallcenterSnapshot`.  ``zpctl queues status`` maps the snapshot to
the inventory's queues and agents; the exporter's ESL source
(:mod:`zpctl.metrics.esl_source`) maps it to its queue metrics.

Reply formats, from FreeSWITCH's mod_callcenter (``callcenter_config``): the ``list``
commands print a ``|``-separated table, a header line then one line per row, and a last
line ``+OK``; ``queue count members <queue>`` prints a number (upstream's SQL counts every
member of the queue, whatever its state).  ``queue list`` carries each queue's
``calls_answered`` and ``calls_abandoned`` since the switch started; ``queue list
members`` each caller's state (Waiting, Trying, Answered, Abandoned) and
``joined_epoch``; ``queue list tiers`` the agents opted in (an opted-out agent has no
tier), with the tier's state; ``queue list agents`` the agents with a tier, with their
status (Available, On Break, Logged Out) and state (Waiting, Receiving, In a queue call,
...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.clients.esl import EslConnection, SwitchTarget
from zpctl.errors import ExitCode, RemoteFailure, ZpctlError
from zpctl.freeswitch import switches
from zpctl.freeswitch.control import Step, esl_password, placed_targets
from zpctl.freeswitch.voicemail import Progress, find_account, first_answer, short_list
from zpctl.model import LoadedInventory
from zpctl.model.pbx import Queue, callcenter_name
from zpctl.model.schema import Account


@dataclass(frozen=True)
class QueueRef:
    """One queue of one account, resolved from the inventory."""

    account: str
    queue: Queue
    domain: str
    dc: str

    @property
    def name(self) -> str:
        """mod_callcenter's name of the queue."""
        return callcenter_name(self.queue.id, self.domain)

    def agent_name(self, user: str) -> str:
        """mod_callcenter's name of the queue's agent ``user`` (an extension)."""
        return callcenter_name(user, self.domain)


@dataclass
class QueueState:
    account: str
    queue: str
    extension: str
    strategy: str
    waiting: int
    answered: int
    abandoned: int
    agents: list[dict[str, Any]] = field(default_factory=list)
    switch: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "queue": self.queue, "extension": self.extension,
                "strategy": self.strategy, "waiting": self.waiting, "answered": self.answered,
                "abandoned": self.abandoned, "agents": self.agents, "switch": self.switch}


def resolve_queues(loaded: LoadedInventory, account: str, queue: str | None = None
                   ) -> list[QueueRef]:
    """The queues of ``account`` (or its queue ``queue``); exit 2 naming the known ones."""
    acct = find_account(loaded, account)
    known = [q.id for q in acct.pbx.queues]
    if queue is not None and queue not in known:
        raise ZpctlError(f"no queue {queue!r} in account {acct.id}; known: "
                         f"{short_list(known) or 'none'}", ExitCode.USAGE)
    if not known:
        raise ZpctlError(f"account {acct.id} has no queues (pbx.queues)", ExitCode.USAGE)
    return [_ref(loaded, acct, q) for q in acct.pbx.queues if queue in (None, q.id)]


def _ref(loaded: LoadedInventory, acct: Account, q: Queue) -> QueueRef:
    site = next(s for s in acct.sites if s.id == q.site)
    return QueueRef(acct.id, q, loaded.model.account_domain(acct), site.datacenter)


def rendezvous_targets(loaded: LoadedInventory, dc: str, esl_override: str | None = None,
                       switch: str | None = None, *, guard: bool = False
                       ) -> list[SwitchTarget]:
    """The switches of ``dc`` in the proxies' rendezvous order (by name); only ``switch``
    when given (it must be one of them)."""
    placed = sorted((p for p in switches(loaded) if p.dc.id == dc), key=lambda p: p.name)
    if not placed:
        raise ZpctlError(f"data center {dc} has no switch: its queues cannot run",
                         ExitCode.USAGE)
    if switch is not None:
        names = [p.name for p in placed]
        placed = [p for p in placed if p.name == switch]
        if not placed:
            raise ZpctlError(f"{switch} is not a switch of data center {dc}, where the queue "
                             f"runs; its switches: {short_list(names)}", ExitCode.USAGE)
    return placed_targets(loaded, placed, esl_override, guard=guard)


QUEUE_LIST = "callcenter_config queue list"


def queue_commands(name: str) -> list[str]:
    """The api commands (after ``queue list``) that read the queue ``name``, in order."""
    return [f"callcenter_config queue count members {name}",
            f"callcenter_config queue list members {name}",
            f"callcenter_config queue list tiers {name}",
            f"callcenter_config queue list agents {name}"]


def snapshot_commands(names: Sequence[str]) -> list[str]:
    """The api commands :func:`read_snapshot` sends for the queues ``names``."""
    return [QUEUE_LIST, *(c for n in names for c in queue_commands(n))]


def status_plan(refs: Sequence[QueueRef], targets: Sequence[SwitchTarget]) -> list[Step]:
    """--dry-run: the commands for the first switch (the others only if it does not answer)."""
    if not targets:
        return []
    t = targets[0]
    return [Step(t.name, f"{t.host}:{t.port}", f"api {c}")
            for c in snapshot_commands([r.name for r in refs])]


def parse_table(text: str, switch: str = "", command: str = "") -> list[dict[str, str]]:
    """Rows of a ``callcenter_config ... list`` reply (header line, rows, ``+OK``)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines or lines[-1].strip() != "+OK":
        raise RemoteFailure(f"switch {switch}: {command}: {text.strip() or '(empty)'}"
                            + (" (is mod_callcenter loaded?)" if "not found" in text else ""))
    if len(lines) == 1:
        return []
    header = lines[0].split("|")
    rows = []
    for ln in lines[1:-1]:
        cells = ln.split("|")
        extra = len(cells) - len(header)
        if extra > 0 and "contact" in header:
            # an agent's contact is a dial string: legs tried in turn are joined by '|'
            i = header.index("contact")
            cells[i:i + extra + 1] = ["|".join(cells[i:i + extra + 1])]
        rows.append(dict(zip(header, cells, strict=False)))
    return rows


def parse_count(text: str, switch: str = "", command: str = "") -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise RemoteFailure(f"switch {switch}: {command}: {text.strip() or '(empty)'}") from None


@dataclass(frozen=True)
class Member:
    """A caller in a queue (``queue list members``)."""

    state: str  # Waiting, Trying (an agent rings), Answered, Abandoned
    joined_epoch: float | None  # None when the switch printed none


@dataclass(frozen=True)
class Tier:
    """An agent opted in to a queue (``queue list tiers``); an opted-out agent has none."""

    agent: str
    state: str  # Ready, Offering, Active Inbound, No Answer, Standby


@dataclass(frozen=True)
class Agent:
    """An agent with a tier in a queue (``queue list agents``)."""

    name: str
    status: str  # Available, On Break, Logged Out, ...
    state: str  # Waiting, Receiving, In a queue call, Idle, ...
    calls_answered: int


@dataclass(frozen=True)
class CallcenterQueue:
    """One queue as one switch's mod_callcenter holds it, at one moment."""

    name: str  # <queue id>@<account domain>
    strategy: str
    answered: int  # since the switch started
    abandoned: int  # since the switch started
    member_count: int  # what ``queue count members`` prints
    members: tuple[Member, ...] = ()
    tiers: tuple[Tier, ...] = ()
    agents: tuple[Agent, ...] = ()

    @property
    def waiting(self) -> tuple[Member, ...]:
        """The callers still waiting for an agent (Waiting, or Trying: an agent rings);
        ``member_count`` counts answered and abandoned callers too."""
        return tuple(m for m in self.members if m.state in ("Waiting", "Trying"))


@dataclass(frozen=True)
class CallcenterSnapshot:
    """The queues one switch's mod_callcenter holds (or those asked for)."""

    switch: str
    queues: tuple[CallcenterQueue, ...] = ()

    def get(self, name: str) -> CallcenterQueue | None:
        return next((q for q in self.queues if q.name == name), None)


def _number(value: str | None, switch: str, command: str, what: str) -> float | None:
    """A numeric cell; None when empty."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise RemoteFailure(f"switch {switch}: {command}: {what} is not a number: "
                            f"{value!r}") from None


def _int(value: str | None, switch: str, command: str, what: str) -> int:
    """A counter cell; 0 when empty."""
    try:
        return int(value or 0)
    except ValueError:
        raise RemoteFailure(f"switch {switch}: {command}: {what} is not a number: "
                            f"{value!r}") from None


def parse_queue(row: dict[str, str], replies: Sequence[str], switch: str = ""
                ) -> CallcenterQueue:
    """One queue from its ``queue list`` row and the replies to :func:`queue_commands`."""
    name = row.get("name", "")
    count_c, members_c, tiers_c, agents_c = queue_commands(name)
    count, members, tiers, agents = replies
    return CallcenterQueue(
        name, row.get("strategy", ""),
        _int(row.get("calls_answered"), switch, QUEUE_LIST, "calls_answered"),
        _int(row.get("calls_abandoned"), switch, QUEUE_LIST, "calls_abandoned"),
        parse_count(count, switch, count_c),
        tuple(Member(m.get("state", ""),
                     _number(m.get("joined_epoch"), switch, members_c, "joined_epoch"))
              for m in parse_table(members, switch, members_c)),
        tuple(Tier(t.get("agent", ""), t.get("state", ""))
              for t in parse_table(tiers, switch, tiers_c)),
        tuple(Agent(a.get("name", ""), a.get("status", ""), a.get("state", ""),
                    _int(a.get("calls_answered"), switch, agents_c, "calls_answered"))
              for a in parse_table(agents, switch, agents_c)))


async def read_snapshot(conn: EslConnection, names: Sequence[str] | None = None
                        ) -> CallcenterSnapshot:
    """The queues mod_callcenter holds on the switch behind ``conn`` (only ``names``, in
    that order, when given; a name the switch does not hold is left out)."""
    rows = {r.get("name", ""): r for r in parse_table(
        await conn.api(QUEUE_LIST, check=False), conn.name, QUEUE_LIST)}
    out = []
    for name in rows if names is None else [n for n in names if n in rows]:
        replies = [await conn.api(c, check=False) for c in queue_commands(name)]
        out.append(parse_queue(rows[name], replies, conn.name))
    return CallcenterSnapshot(conn.name, tuple(out))


def _agents(ref: QueueRef, q: CallcenterQueue) -> list[dict[str, Any]]:
    """Every agent of the inventory's queue: opted in (has a tier) or not, with its state."""
    by_tier = {t.agent: t for t in q.tiers}
    by_agent = {a.name: a for a in q.agents}
    out = []
    for a in ref.queue.agents:
        name = ref.agent_name(a.user)
        tier, agent = by_tier.get(name), by_agent.get(name)
        out.append({"agent": a.user, "opted_in": tier is not None,
                    "tier_state": tier.state if tier else "",
                    "status": agent.status if agent else "",
                    "state": agent.state if agent else "",
                    "calls_answered": agent.calls_answered if agent else 0})
    return out


def queue_states(refs: Sequence[QueueRef], snap: CallcenterSnapshot) -> list[QueueState]:
    """The inventory's queues ``refs`` as ``snap`` shows them; each must be in it."""
    out = []
    for ref in refs:
        q = snap.get(ref.name)
        if q is None:
            raise RemoteFailure(f"switch {snap.switch} has no queue {ref.name} (is the "
                                "rendered config deployed?)")
        out.append(QueueState(ref.account, ref.queue.id, ref.queue.extension, q.strategy,
                              len(q.waiting), q.answered, q.abandoned, _agents(ref, q),
                              snap.switch))
    return out


async def aqueue_status(refs: Sequence[QueueRef], targets: Sequence[SwitchTarget],
                        password: str, timeout: float = 5.0,
                        progress: Progress | None = None) -> list[QueueState]:
    """The state of ``refs`` (queues of one data center) on the first switch that answers."""

    async def work(conn: EslConnection) -> list[QueueState]:
        return queue_states(refs, await read_snapshot(conn, [r.name for r in refs]))

    _, states = await first_answer(targets, password, timeout, work, progress)
    return states


def queue_status(loaded: LoadedInventory, account: str, queue: str | None = None, *,
                 esl_override: str | None = None, switch: str | None = None,
                 secrets_file: Path | None = None,
                 timeout: float = 5.0, progress: Progress | None = None) -> list[QueueState]:
    """Every queue of ``account`` (or ``queue``), data center by data center."""
    refs = resolve_queues(loaded, account, queue)
    password = esl_password(loaded, secrets_file)
    out: list[QueueState] = []
    for dc in sorted({r.dc for r in refs}):
        targets = rendezvous_targets(loaded, dc, esl_override, switch, guard=True)
        out += asyncio.run(aqueue_status([r for r in refs if r.dc == dc], targets, password,
                                         timeout, progress))
    return out
