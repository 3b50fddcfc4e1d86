"""Call queues on the switch tier over ESL: who is opted in, who waits, what was answered.

How it works: a queue lives on its data center's rendezvous switch, the first switch up in
the order every zone proxy uses for dispatcher set 5 (all the data center's switches,
sorted by name): its callers, its agents' ``*75``/``*76`` opt-in and opt-out and its
callbacks all go there, so that switch's mod_callcenter holds the queue's live state.  The
switches are asked in that same order and the first that answers is used.

Reply formats, from FreeSWITCH's mod_callcenter (``callcenter_config``): the ``list``
commands print a ``|``-separated table, a header line then one line per row, and a last
line ``+OK``; ``queue count members <queue>`` prints a number.  ``queue list`` carries each
queue's ``calls_answered`` and ``calls_abandoned`` since the switch started; ``queue list
tiers`` the agents opted in (an opted-out agent has no tier), with the tier's state;
``queue list agents`` the agents with a tier, with their status (Available, On Break,
Logged Out) and state (Waiting, Receiving, In a queue call, ...).
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


def status_commands(ref: QueueRef) -> list[str]:
    return ["api callcenter_config queue list",
            f"api callcenter_config queue count members {ref.name}",
            f"api callcenter_config queue list tiers {ref.name}",
            f"api callcenter_config queue list agents {ref.name}"]


def status_plan(refs: Sequence[QueueRef], targets: Sequence[SwitchTarget]) -> list[Step]:
    """--dry-run: the commands for the first switch (the others only if it does not answer)."""
    if not targets:
        return []
    t = targets[0]
    return [Step(t.name, f"{t.host}:{t.port}", c) for r in refs for c in status_commands(r)]


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


def _agents(ref: QueueRef, tiers: list[dict[str, str]], agents: list[dict[str, str]]
            ) -> list[dict[str, Any]]:
    """Every agent of the inventory's queue: opted in (has a tier) or not, with its state."""
    by_tier = {t.get("agent", ""): t for t in tiers}
    by_agent = {a.get("name", ""): a for a in agents}
    out = []
    for a in ref.queue.agents:
        name = ref.agent_name(a.user)
        tier, agent = by_tier.get(name), by_agent.get(name, {})
        out.append({"agent": a.user, "opted_in": tier is not None,
                    "tier_state": tier.get("state", "") if tier else "",
                    "status": agent.get("status", ""), "state": agent.get("state", ""),
                    "calls_answered": int(agent.get("calls_answered") or 0)})
    return out


async def aqueue_status(refs: Sequence[QueueRef], targets: Sequence[SwitchTarget],
                        password: str, timeout: float = 5.0,
                        progress: Progress | None = None) -> list[QueueState]:
    """The state of ``refs`` (queues of one data center) on the first switch that answers."""

    async def work(conn: EslConnection) -> list[QueueState]:
        out = []
        for ref in refs:
            list_q, count_m, list_t, list_a = (c.removeprefix("api ")
                                               for c in status_commands(ref))
            queues = {r.get("name"): r for r in parse_table(
                await conn.api(list_q, check=False), conn.name, list_q)}
            row = queues.get(ref.name)
            if row is None:
                raise RemoteFailure(f"switch {conn.name} has no queue {ref.name} (is the "
                                    "rendered config deployed?)")
            waiting = parse_count(await conn.api(count_m, check=False), conn.name, count_m)
            tiers = parse_table(await conn.api(list_t, check=False), conn.name, list_t)
            agents = parse_table(await conn.api(list_a, check=False), conn.name, list_a)
            out.append(QueueState(ref.account, ref.queue.id, ref.queue.extension,
                                  row.get("strategy", ""), waiting,
                                  int(row.get("calls_answered") or 0),
                                  int(row.get("calls_abandoned") or 0),
                                  _agents(ref, tiers, agents), conn.name))
        return out

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
