"""How much load a target can take, and how long a run may last.

A load test is aimed at a platform the inventory sized: every node carries ``capacity.cps``
(calls per second it is built for; it also sizes Kamailio's shared memory).  The ceiling of
a run is the weakest hop on its path: the node it is sent to (an lb, or a zone's sbc for
inbound DID calls), then the data center's zone proxies, which share the load (the lb splits
it over both zones), then for PSTN calls the zones' sbcs.  A target the inventory does not
describe gets :data:`DEFAULT_CEILING_CPS`, the capacity a node has when the inventory says
nothing.  Register load is held to each node's ``capacity.registrations`` instead (a
registration costs a node far less than a call: two short transactions, no dialog, no
media; by default :data:`REGISTERS_PER_CALL` times cps).  Going beyond is possible, but only
on purpose (``--force``); the lb then sheds what it does not admit (503).

Whatever the rate, a run ends on time: SIPp is told to stop starting calls once the planned
duration (and :data:`STOP_SLACK_S`) has passed, and is killed if calls still hang
:func:`grace_s` later.
"""

from __future__ import annotations

from dataclasses import dataclass

from zpctl.model import LoadedInventory
from zpctl.model.schema import REGISTERS_PER_CALL, DataCenter, Node, Role

#: Ceiling for a target without an inventory describing it: the schema's default
#: ``capacity.cps`` of a node (zpctl/model/schema.py).
DEFAULT_CEILING_CPS = 200
#: Seconds SIPp may lag behind its schedule before it is told to start no more calls.
STOP_SLACK_S = 2.0
#: Seconds calls in progress get to finish after that, on top of the hold time.
GRACE_S = 10.0


@dataclass(frozen=True)
class Ceiling:
    """The highest rate a target is sized for, and which hop sets it."""

    cps: int
    why: str


def _hop(nodes: list[Node], what: str, registrations: bool) -> Ceiling | None:
    if not nodes:
        return None
    total = sum(n.capacity.rps if registrations else n.capacity.cps for n in nodes)
    names = "+".join(n.name for n in nodes)
    field = "capacity.registrations" if registrations else "capacity.cps"
    return Ceiling(total, f"{what} {names} ({field} {total})")


def _zone_nodes(dc: DataCenter, role: Role) -> list[Node]:
    return [n for z in sorted(dc.zones) for n in dc.zones[z].nodes if n.role == role]


def ceiling(inv: LoadedInventory | None, scenario: str, target: str) -> Ceiling:
    """The rate ``target`` (HOST:PORT) can take for ``scenario``, from the inventory."""
    host = target.rpartition(":")[0] or target
    registrations = scenario in ("register", "storm")
    if inv is not None:
        for p in inv.nodes():
            n = p.node
            if host not in (n.address, n.public) or p.role not in (Role.LB, Role.SBC):
                continue
            hops = [_hop([n], p.role.value, registrations),
                    _hop(_zone_nodes(p.dc, Role.PROXY), "zone proxies", registrations)]
            if scenario == "pstn":
                hops.append(_hop(_zone_nodes(p.dc, Role.SBC), "zone sbcs", registrations))
            return min((h for h in hops if h is not None), key=lambda h: h.cps)
    factor = REGISTERS_PER_CALL if registrations else 1
    times = f" x {factor} for registrations" if factor != 1 else ""
    return Ceiling(DEFAULT_CEILING_CPS * factor, "a target the inventory does not describe "
                   f"(default ceiling {DEFAULT_CEILING_CPS}/s{times})")


def grace_s(hold_ms: int) -> float:
    """Seconds calls in progress get to end once no new call starts: hold + GRACE_S."""
    return hold_ms / 1000.0 + GRACE_S


__all__ = ["DEFAULT_CEILING_CPS", "GRACE_S", "REGISTERS_PER_CALL", "STOP_SLACK_S", "Ceiling",
           "ceiling", "grace_s"]
