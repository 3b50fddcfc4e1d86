"""The inventory: schema, layered loading and cross-checks.

``load_inventory(path)`` is the one entry point: it reads the directory, applies the layers,
validates the schema and runs every cross-check, and raises :class:`InventoryError` carrying
*all* problems (file, line, field, reason) when anything is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from zpctl.errors import ExitCode, InventoryError, Problem, ZpctlError
from zpctl.model import checks
from zpctl.model.loader import Source, read_inventory
from zpctl.model.schema import DataCenter, Inventory, Node, Role

__all__ = ["Inventory", "LoadedInventory", "PlacedNode", "load_inventory"]


@dataclass(frozen=True)
class PlacedNode:
    """A node with where it sits: its data center and, for zone roles, its zone."""

    node: Node
    dc: DataCenter
    zone: str | None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def role(self) -> Role:
        return self.node.role


@dataclass(frozen=True)
class LoadedInventory:
    """A validated inventory and the source it came from."""

    model: Inventory
    source: Source
    located: bool = True  # source.origins holds the file and line of every value
    @property
    def root(self) -> Path:
        return self.source.root

    def nodes(self) -> Iterator[PlacedNode]:
        """Every node, in inventory order: per data center its own nodes, then each zone's."""
        for dc in self.model.datacenters:
            for n in dc.nodes:
                yield PlacedNode(n, dc, None)
            for zname in sorted(dc.zones):
                for n in dc.zones[zname].nodes:
                    yield PlacedNode(n, dc, zname)

    def node(self, name: str) -> PlacedNode:
        for p in self.nodes():
            if p.name == name:
                return p
        raise KeyError(name)

    def within(self, limit: str) -> list[PlacedNode]:
        """The nodes of ``limit`` (a data center, ``DC/ZONE`` or a node name: the ``--limit``
        of the commands that act on part of a platform), in inventory order."""
        out = [p for p in self.nodes()
               if limit in (p.dc.id, p.name) or (p.zone and limit == f"{p.dc.id}/{p.zone}")]
        if not out:
            raise ZpctlError(f"--limit {limit!r}: not a data center, DC/ZONE or node of the "
                             "inventory", ExitCode.USAGE)
        return out

    def zone_node(self, dc: DataCenter, zone: str, role: Role) -> Node | None:
        return next((n for n in dc.zones[zone].nodes if n.role == role), None)

    def dc(self, dc_id: str) -> DataCenter:
        return next(d for d in self.model.datacenters if d.id == dc_id)


def _pydantic_problems(src: Source, exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(err["loc"])
        # Drop pydantic's union/validator tags (e.g. "function-after[...]") from the path.
        loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        written = src.numbers.get(loc)
        if err["type"] == "string_type" and written is not None:
            read = ("a number" if written == str(err["input"])
                    else f"the number {err['input']!r}")
            msg = f'write it in quotes: "{written}" (unquoted, YAML reads {written} as {read})'
        elif err["type"] not in ("missing", "extra_forbidden") and "input" in err \
                and not isinstance(err["input"], dict | list) and repr(err["input"]) not in msg:
            msg = f"{msg} (got {err['input']!r})"
        out.append(src.problem(loc, msg))
    return out


def validate(src: Source) -> Inventory:
    """Validate plain data against the schema and the cross-checks."""
    data: Any = src.data
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(_pydantic_problems(src, exc)) from None
    findings = checks.run_all(inv, src.root)
    if findings:
        raise InventoryError([src.problem(path, reason) for path, reason in findings])
    return inv


def load_inventory(path: str | Path) -> LoadedInventory:
    """Read, layer and validate the inventory at ``path``.

    Fast path first: the files are read without tracking where each value came from.  Only
    when something is wrong are they read again with file and line for every value, so the
    problems can be reported where they were written.
    """
    try:
        src = read_inventory(Path(path), locate=False)
        return LoadedInventory(validate(src), src, located=False)
    except InventoryError:
        pass
    src = read_inventory(Path(path), locate=True)
    return LoadedInventory(validate(src), src)
