"""The FreeSWITCH switch tier: which switches an inventory has and where their ESL listens.

``zone_switches`` lists a zone's switch nodes (for the proxy's dispatcher sets);
``esl_targets`` turns a selection of switches into ESL addresses; live control (status,
pause, resume, calls) is in :mod:`zpctl.freeswitch.control`.  Rendering belongs to the render
layer: :mod:`zpctl.render.freeswitch`, and the XML validator
:mod:`zpctl.render.freeswitch_validate`.  The scripted ESL peer the unit tests use is not
part of the package: ``tests/esl_peer.py``.
"""

from __future__ import annotations

import os

from zpctl.clients.esl import SwitchTarget
from zpctl.errors import ExitCode, ZpctlError
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.schema import Role

# For tests and labs: send ESL to this address instead of the inventory's.  Either one
# "host:port" for every switch, or "name=host:port,name2=host:port" per switch.
ESL_OVERRIDE_ENV = "ZPCTL_ESL_OVERRIDE"


def switches(loaded: LoadedInventory) -> list[PlacedNode]:
    """Every switch node, in inventory order."""
    return [p for p in loaded.nodes() if p.role == Role.SWITCH]


def zone_switches(loaded: LoadedInventory, dc: str, zone: str) -> list[PlacedNode]:
    """The switch nodes of zone ``zone`` of data center ``dc`` (empty without a switch tier)."""
    return [p for p in switches(loaded) if p.dc.id == dc and p.zone == zone]


def select_switches(loaded: LoadedInventory, zone: str | None = None,
                    switch: str | None = None) -> list[PlacedNode]:
    """Switches by ``zone`` ("dc/zone" or "dc") and/or name; an error if none match."""
    found = switches(loaded)
    if not found:
        raise ZpctlError(f"inventory {loaded.model.platform.name} has no switch nodes "
                         "(platform.switch_tier is off or no zone lists a switch)", ExitCode.USAGE)
    if zone:
        dc_id, _, zname = zone.partition("/")
        found = [p for p in found if p.dc.id == dc_id and (not zname or p.zone == zname)]
        if not found:
            raise ZpctlError(f"no switch in zone {zone!r}; zones are DC/ZONE, e.g. "
                             f"{switches(loaded)[0].dc.id}/{switches(loaded)[0].zone}",
                             ExitCode.USAGE)
    if switch:
        names = [p.name for p in found]
        found = [p for p in found if p.name == switch]
        if not found:
            raise ZpctlError(f"no switch named {switch!r}" + (f" in zone {zone}" if zone else "")
                             + f"; known: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}",
                             ExitCode.USAGE)
    return found


def parse_overrides(value: str, source: str = ESL_OVERRIDE_ENV
                    ) -> tuple[tuple[str, int] | None, dict[str, tuple[str, int]]]:
    """``HOST:PORT`` for every switch, or ``NAME=HOST:PORT,...`` per switch; exit 2 naming
    ``source`` (the option or variable it came from) when an item is not that, or its port
    is outside 1-65535."""
    def addr(text: str) -> tuple[str, int]:
        host, _, port = text.strip().rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ZpctlError(f"{source}: {text.strip()!r} is not HOST:PORT with a port in "
                             "1-65535", ExitCode.USAGE)
        return host.strip("[]"), int(port)

    if "=" not in value:
        return addr(value), {}
    per: dict[str, tuple[str, int]] = {}
    for item in value.split(","):
        name, _, where = item.partition("=")
        per[name.strip()] = addr(where)
    return None, per


def esl_targets(placed: list[PlacedNode], override: str | None = None) -> list[SwitchTarget]:
    """ESL addresses of ``placed``: the management address and ESL port of each, unless
    ``override`` (or $ZPCTL_ESL_OVERRIDE) redirects them (tests, labs)."""
    override = override if override is not None else os.environ.get(ESL_OVERRIDE_ENV, "")
    every, per = parse_overrides(override) if override else (None, {})
    out = []
    for p in placed:
        host, port = per.get(p.name) or every or (p.node.mgmt, p.node.ports.esl)
        out.append(SwitchTarget(p.name, host, port, p.dc.id, p.zone or ""))
    return out
