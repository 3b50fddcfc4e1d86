"""Read an inventory directory into plain data, remembering where every value came from.

How it works: each YAML file is *composed* (not constructed) so that every scalar, list and
mapping node still carries its line number.  We convert nodes to plain Python values
ourselves and record, for every path into the final document, the file and line it came
from.  Layering (platform defaults < data center < zone < node) is a deep merge done here,
before validation, with origins kept per value: an error in an inherited port points at the
file that set it.

Layout of an inventory directory::

    platform.yml            platform, security, codecs, carriers, defaults
    datacenters/*.yml       one data center per file, with its two zones and their nodes
    accounts/*.yml          one customer account per file

Duplicate keys in a mapping are errors (YAML silently keeps the last one).
"""

from __future__ import annotations

import copy
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from zpctl.errors import EnvironmentProblem, InventoryError, Problem

Path_ = tuple[str | int, ...]

# libyaml's parser when PyYAML has it (about 10x faster on large inventories); the
# constructor only turns scalar nodes into values, so one instance serves every file.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_STR = "tag:yaml.org,2002:str"

# Settings that can be layered: platform `defaults` < data center `defaults` < zone
# `defaults` < the node itself.
LAYERED_KEYS = ("ports", "rtp", "kamailio", "capacity")


class Origin(NamedTuple):
    """Where a value was written (a NamedTuple: half a million of them for a big platform)."""

    file: str
    line: int | None
    local_path: Path_  # the field path inside that file, e.g. ("zones", "a", "nodes", 1)

    @property
    def local(self) -> str:
        """The field path as users read it: ``zones.a.nodes[1].address``."""
        return _fmt_path("", self.local_path)


@dataclass
class Source:
    """Plain data for the whole inventory plus the origin of each value."""

    root: Path
    data: dict[str, Any]
    origins: dict[Path_, Origin] = field(default_factory=dict)
    numbers: dict[Path_, str] = field(default_factory=dict)  # unquoted YAML numbers' text

    def origin(self, path: Path_) -> Origin:
        """The origin of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.origins:
                return self.origins[p]
            p = p[:-1]
        return self.origins.get((), Origin(str(self.root), None, ()))

    def problem(self, path: Path_, reason: str) -> Problem:
        """A problem located at ``path``: file and line from its origin, field as in the file."""
        o = self.origin(path)
        # The field the user sees: the part of `path` below the file's own root.
        exact = self.origins.get(tuple(path))
        local = exact.local if exact else _join_local(o.local, path, self)
        return Problem(o.file, o.line, local, reason)


def _join_local(anchor_local: str, path: Path_, src: Source) -> str:
    """Local field path for a value with no origin of its own (e.g. a missing key)."""
    # Find the deepest ancestor with an origin and append the rest of the path.
    p = tuple(path)
    rest: list[str | int] = []
    while p and p not in src.origins:
        rest.insert(0, p[-1])
        p = p[:-1]
    base = src.origins[p].local if p in src.origins else anchor_local
    return _fmt_path(base, rest)


def _fmt_path(base: str, parts: Iterable[str | int]) -> str:
    out = base
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


class _FastLoader(_LOADER):  # type: ignore[valid-type,misc]
    """libyaml's parser with a quicker implicit-tag resolver: a plain scalar that cannot be a
    number, boolean or null (most of them: names, domains, ids) is a string at once, without
    running YAML 1.1's regular expressions."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if not implicit[0] or (value and value[0] not in _MAYBE_TYPED):
                return _STR  # quoted, or plain that cannot be typed
        elif kind is yaml.MappingNode:
            return _MAP
        elif kind is yaml.SequenceNode:
            return _SEQ
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]

    # No path resolvers are registered: skip the bookkeeping for each node.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


_MAYBE_TYPED = frozenset("0123456789-+.~nNtTfFyYoO<=")
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Reader:
    def __init__(self, root: Path, locate: bool = True) -> None:
        self.root = root
        self.locate = locate  # keep the file and line of every value
        self.problems: list[Problem] = []
        self.unreadable: list[str] = []  # files the OS would not give us (exit 9, not 3)
        self.origins: dict[Path_, Origin] = {}
        # The text of each unquoted scalar YAML read as a number (0103, +4930123, 29): a
        # field that wants a string says "quote it" and shows what was written.
        self.numbers: dict[Path_, str] = {}

    @staticmethod
    def rel(file: Path) -> str:
        """A file's name as the user wrote the inventory path (relative stays relative)."""
        return str(file)

    def read(self, file: Path, mount: Path_) -> Any:
        """Parse one file and mount its document at ``mount`` in the combined data."""
        name = self.rel(file)
        try:
            # A FIFO or device would block or never end: read regular files only.
            if not stat.S_ISREG(file.stat().st_mode):
                kind = "a folder" if file.is_dir() else "not a regular file"
                self.unreadable.append(f"{name}: cannot read: {kind}")
                return None
            raw = file.read_bytes()
        except OSError as exc:
            self.unreadable.append(f"{name}: cannot read: {exc.strerror or exc}")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems.append(Problem(name, None, "", f"not UTF-8 text (byte {exc.start})"))
            return None
        if not self.locate:
            try:
                composed = yaml.compose(text, Loader=_FastLoader)
                data = None if composed is None else _plain(composed, name)
            except yaml.YAMLError as exc:
                self.problems.append(Problem(name, None, "", f"malformed YAML: {exc}"))
                return None
            if data is None:
                self.problems.append(Problem(name, None, "", "file is empty"))
            return data
        try:
            try:
                node = yaml.compose(text, Loader=_LOADER)
            except yaml.YAMLError:
                # Parse again with the pure-Python parser: its messages and marks are the
                # precise ones users see (errors are rare, so the cost does not matter).
                node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            what = getattr(exc, "problem", None) or str(exc)
            # An unclosed bracket or quote is noticed lines later: say where it was opened.
            context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
            if context and cmark is not None and (mark is None or cmark.line != mark.line):
                what = f"{what} ({context} started on line {cmark.line + 1})"
            self.problems.append(Problem(name, line, "", f"malformed YAML: {what}"))
            return None
        if node is None:
            self.problems.append(Problem(name, None, "", "file is empty"))
            return None
        return self._convert(node, name, mount, ())

    def _convert(self, node: yaml.Node, name: str, mount: Path_, local: Path_) -> Any:
        self.origins[mount + local] = Origin(name, node.start_mark.line + 1, local)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        Problem(name, key_node.start_mark.line + 1, _fmt_path("", local),
                                "YAML merge keys (<<) are not supported; use defaults")
                    )
                    continue
                key = self._scalar(key_node)
                if not isinstance(key, str | int) or isinstance(key, bool):
                    self.problems.append(
                        Problem(name, key_node.start_mark.line + 1, _fmt_path("", local),
                                f"mapping key must be a string, got {key!r}")
                    )
                    continue
                key = str(key)
                if key in out:
                    self.problems.append(
                        Problem(name, key_node.start_mark.line + 1, _fmt_path("", (*local, key)),
                                "duplicate key")
                    )
                    continue
                out[key] = self._convert(value_node, name, mount, (*local, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [
                self._convert(item, name, mount, (*local, i)) for i, item in enumerate(node.value)
            ]
        value = self._scalar(node)
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and not getattr(node, "style", None):
            self.numbers[mount + local] = node.value
        return value

    @staticmethod
    def _scalar(node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return None
        if node.tag == _STR:
            return node.value
        # The constructor for the resolved tag, called directly: construct_object would
        # memoise every node for the life of the process.
        ctor = _CONSTRUCTOR.yaml_constructors.get(node.tag)
        return ctor(_CONSTRUCTOR, node) if ctor is not None else node.value


def _yaml_files(folder: Path) -> list[Path]:
    """Every ``*.yml``/``*.yaml`` entry, readable or not: a folder, FIFO or broken link named
    like one is reported, not silently skipped (but not a hidden one such as Emacs's
    ``.#dc.yml`` lock link)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml")
                  and (p.is_file() or not p.name.startswith(".")))


def _plain(node: yaml.Node, name: str) -> Any:
    """A composed node as plain values (the fast path: no origins, no memo)."""
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = _scalar_value(k)
            if k.tag == _MERGE or key in out or not isinstance(key, str | int) \
                    or isinstance(key, bool):
                raise yaml.YAMLError("duplicate, merge or non-string key")
            out[str(key)] = _plain(v, name)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v, name) for v in node.value]
    return _scalar_value(node)


def _scalar_value(node: yaml.Node) -> Any:
    if node.tag == _STR:
        return node.value
    ctor = _CONSTRUCTOR.yaml_constructors.get(node.tag)
    return ctor(_CONSTRUCTOR, node) if ctor is not None else node.value


def read_inventory(root: Path, locate: bool = True) -> Source:
    """Read ``root`` (an inventory directory) into a :class:`Source`, or raise InventoryError.

    With ``locate`` every value keeps its file and line (for error messages); without, the
    files are read about three times faster and the origins are empty — the fast path for an
    inventory that turns out valid (see ``load_inventory``).
    """
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        raise InventoryError([Problem(str(root), None, "",
                                      "does not exist (so not an inventory directory)")])
    if not root.is_dir():
        raise InventoryError([Problem(str(root), None, "", "not an inventory directory (an "
                                      "inventory is a folder holding platform.yml)")])
    reader = _Reader(root, locate)
    data: dict[str, Any] = {}
    platform_file = next((root / n for n in ("platform.yml", "platform.yaml")
                          if (root / n).exists() or (root / n).is_symlink()), None)
    if platform_file is None:
        raise InventoryError([Problem(str(root), None, "", "no platform.yml in inventory")])
    doc = reader.read(platform_file, ())
    if doc is not None and not isinstance(doc, dict):
        reader.problems.append(Problem(reader.rel(platform_file), 1, "", "must be a mapping"))
    elif doc is not None:
        for k in ("datacenters", "accounts"):
            if k in doc:
                reader.problems.append(Problem(
                    reader.rel(platform_file),
                    reader.origins[(k,)].line if (k,) in reader.origins else None, k,
                    f"{k} live in {k}/*.yml, not in platform.yml"))
                doc.pop(k)
        data.update(doc)
    for kind in ("datacenters", "accounts"):
        items: list[Any] = []
        for f in _yaml_files(root / kind):
            item = reader.read(f, (kind, len(items)))
            if item is None:
                continue
            if not isinstance(item, dict):
                reader.problems.append(Problem(reader.rel(f), 1, "", "must be a mapping"))
                continue
            items.append(item)
        data[kind] = items
        reader.origins.setdefault((kind,), Origin(str(root / kind), None, ()))
    if reader.unreadable:
        raise EnvironmentProblem("cannot read the inventory:\n  " + "\n  ".join(reader.unreadable))
    if reader.problems:
        raise InventoryError(reader.problems)
    src = Source(root=root, data=data, origins=reader.origins, numbers=reader.numbers)
    _apply_layers(src)
    return src


def _deep_merge(base: Any, over: Any, base_path: Path_, over_path: Path_, src: Source,
                out_path: Path_) -> Any:
    """Merge ``over`` onto ``base``; record the origin of each merged value at ``out_path``."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged: dict[str, Any] = {}
        for k in sorted(set(base) | set(over)):
            if k in over and k in base:
                merged[k] = _deep_merge(base[k], over[k], (*base_path, k), (*over_path, k), src,
                                        (*out_path, k))
            elif k in over:
                merged[k] = _copy_with_origins(over[k], (*over_path, k), (*out_path, k), src)
            else:
                merged[k] = _copy_with_origins(base[k], (*base_path, k), (*out_path, k), src)
        if over_path in src.origins:
            src.origins[out_path] = src.origins[over_path]
        return merged
    return _copy_with_origins(over, over_path, out_path, src)


def _copy_with_origins(value: Any, from_path: Path_, to_path: Path_, src: Source) -> Any:
    if from_path != to_path:
        for p, o in list(src.origins.items()):
            if p[: len(from_path)] == from_path:
                src.origins[to_path + p[len(from_path):]] = o
    return copy.deepcopy(value)


def _apply_layers(src: Source) -> None:
    """Fill each node's layered settings: platform < data center < zone < node.

    Works on the origins of `defaults` and `datacenters` only (a few thousand entries even for
    a large platform), not on those of the accounts (millions for 50,000 users): copying
    origins scans the table it is given.
    """
    rest = {p: o for p, o in src.origins.items() if p[:1] not in (("defaults",), ("datacenters",))}
    scoped = Source(src.root, src.data, {p: o for p, o in src.origins.items() if p not in rest})
    _apply_layers_scoped(scoped)
    src.origins = {**rest, **scoped.origins}


def _apply_layers_scoped(src: Source) -> None:
    platform_defaults = src.data.get("defaults")
    if not isinstance(platform_defaults, dict):
        platform_defaults = {}
    for di, dc in enumerate(src.data.get("datacenters", [])):
        dc_defaults: dict[str, Any] = dc["defaults"] if isinstance(dc.get("defaults"), dict) else {}
        layers_dc: list[tuple[dict[str, Any], Path_]] = [
            (platform_defaults, ("defaults",)), (dc_defaults, ("datacenters", di, "defaults"))]
        _layer_nodes(src, dc.get("nodes"), ("datacenters", di, "nodes"), layers_dc)
        zones = dc.get("zones")
        if not isinstance(zones, dict):
            continue
        for zname, zone in zones.items():
            if not isinstance(zone, dict):
                continue
            z_defaults: dict[str, Any] = (zone["defaults"] if isinstance(zone.get("defaults"), dict)
                                          else {})
            layers = [*layers_dc, (z_defaults, ("datacenters", di, "zones", zname, "defaults"))]
            _layer_nodes(src, zone.get("nodes"), ("datacenters", di, "zones", zname, "nodes"), layers)


def _layer_nodes(src: Source, nodes: Any, nodes_path: Path_,
                 layers: list[tuple[dict[str, Any], Path_]]) -> None:
    if not isinstance(nodes, list):
        return
    for ni, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        npath = (*nodes_path, ni)
        for key in LAYERED_KEYS:
            # Park the node's own origins under a scratch path: the merge below writes the
            # inherited origins at the node's path first, then the node's own on top.
            own = (*npath, key)
            scratch: Path_ = ("__own__", *own)
            for p in [p for p in src.origins if p[: len(own)] == own]:
                src.origins[scratch + p[len(own):]] = src.origins.pop(p)
            value: Any = None
            for layer, lpath in [*layers, (node, ("__own__", *npath))]:
                if key not in layer:
                    continue
                vpath = (*lpath, key)
                if value is None:
                    value = _copy_with_origins(layer[key], vpath, own, src)
                else:
                    value = _deep_merge(value, layer[key], own, vpath, src, own)
            if value is not None:
                node[key] = value
        for p in [p for p in src.origins if p[:1] == ("__own__",)]:
            del src.origins[p]
