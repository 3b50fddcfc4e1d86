"""Each demo flow's call records, checked: every call the flow placed has a complete
journey (every hop it crossed left its record, times consistent), read from the lab's
platform database once the records have landed (the proxies insert them asynchronously,
the switches at hangup)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from zpctl.cdr import (
    Call,
    Directory,
    Filters,
    Hop,
    calls,
    check_journey,
    journey,
    recover_journal,
    recover_spool,
    spool_files,
)
from zpctl.db import connect
from zpctl.lab.runner import Lab
from zpctl.model import LoadedInventory
from zpctl.model.schema import Role

SETTLE_S = 5.0  # how long the records of a flow's calls may take to land


@dataclass
class JourneyReport:
    """The journeys of the calls one flow placed, and what is wrong with them."""

    journeys: list[tuple[Call, list[Hop], list[str]]] = field(default_factory=list)
    enabled: bool = True
    require_calls: bool = True  # a flow that placed calls: none recorded is a problem

    @property
    def problems(self) -> list[str]:
        if not self.enabled:
            return []
        if not self.journeys:
            return ["no call record"] if self.require_calls else []
        return [f"journey {c.call_id}: {p}" for c, _h, ps in self.journeys for p in ps]

    @property
    def summary(self) -> str:
        """The first call's hops (without its end points) and how many calls there were."""
        if not self.enabled or not self.journeys:
            return "-"
        _call, hops, _p = self.journeys[-1]  # the oldest: calls are newest first
        path = ">".join(h.role for h in hops[1:] if h.role not in ("phone", "carrier"))
        more = f" (+{len(self.journeys) - 1} calls)" if len(self.journeys) > 1 else ""
        return path + more


def records_enabled(inv: LoadedInventory) -> bool:
    """The lab writes call records when its platform database is PostgreSQL."""
    return inv.model.database.engine == "postgres"


def journeys_since(lab: Lab, inv: LoadedInventory, since: float, until: float,
                   settle_s: float = SETTLE_S, require_calls: bool = True) -> JourneyReport:
    """The journeys of the calls that entered between ``since`` and ``until``, waiting
    (up to ``settle_s``) until they are complete."""
    if not records_enabled(inv):
        return JourneyReport(enabled=False)
    d = Directory(inv)
    deadline = time.monotonic() + settle_s
    while True:
        with connect(lab.db_target(inv)) as db:
            found = calls(db, inv, Filters(since=since, until=until, limit=1000))
            report = JourneyReport([(c, hops, check_journey(hops, d))
                                    for c in found for hops in [journey(db, inv, c.call_id)]],
                                   require_calls=require_calls)
        if ((report.journeys or not require_calls) and not report.problems) \
                or time.monotonic() > deadline:
            return report
        time.sleep(0.3)


def record_sources(lab: Lab, inv: LoadedInventory) -> tuple[list[Path], list[Path]]:
    """Where the lab's records wait when the database missed them: every switch's spool
    folder, every lb's, proxy's and SBC's log (the journal)."""
    nodes = lab.dir / "nodes"
    spools = [nodes / p.name / "state" / "freeswitch" / "cdr-spool" for p in inv.nodes()
              if p.role == Role.SWITCH]
    journals = [nodes / p.name / "log" / "kamailio.log" for p in inv.nodes()
                if p.role in (Role.LB, Role.PROXY, Role.SBC)]
    return spools, journals


def recover_lab(lab: Lab, inv: LoadedInventory) -> dict[str, int]:
    """``zpctl cdr recover`` for the lab: the records loaded, by kind."""
    spools, journals = record_sources(lab, inv)
    loaded = {"spool": 0, "journal": 0}
    with connect(lab.db_target(inv)) as db:
        for folder in spools:
            for f in spool_files(folder):
                loaded["spool"] += recover_spool(db, f).loaded
        for f in journals:
            if f.exists():
                loaded["journal"] += recover_journal(db, f).loaded
    return loaded


def answered_from(lab: Lab, inv: LoadedInventory, since: float, source: str) -> list[Call]:
    """The answered calls a load generator at ``source`` placed since ``since``, as the
    call records have them."""
    with connect(lab.db_target(inv)) as db:
        return [c for c in calls(db, inv, Filters(since=since, limit=1_000_000))
                if c.source == source and c.result == "answered"]
