"""Layered node settings: platform defaults < data center < zone < node.

The lab is copied and given a value for `capacity.cps` at each level (platform 200 as
shipped, lab1 300, lab1 zone a 400, lab1-a-proxy 500) plus a few partial overrides; every
node must then carry the value of the nearest level that sets it, and keep inheriting the
keys that level does not set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zpctl.model import LoadedInventory, validate
from zpctl.model.loader import read_inventory


def _edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} not found once in {file}"
    file.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> LoadedInventory:
    root = tmp_path_factory.mktemp("layering") / "inv"
    shutil.copytree(Path(__file__).parent / "fixtures" / "lab", root)
    lab1 = root / "datacenters" / "lab1.yml"
    _edit(lab1, "pair: lab2\n",
          "pair: lab2\ndefaults:\n  capacity: {cps: 300}\n  kamailio: {children: 3}\n")
    _edit(lab1, "  a:\n    nodes:\n", "  a:\n    defaults:\n      capacity: {cps: 400}\n    nodes:\n")
    _edit(lab1, "{name: lab1-a-proxy, role: proxy,",
          "{name: lab1-a-proxy, role: proxy, capacity: {cps: 500}, kamailio: {log_level: 2},")
    _edit(lab1, "{name: lab1-a-media, role: media,",
          "{name: lab1-a-media, role: media, rtp: {port_max: 40500},")
    # read with locations (load_inventory's fast path keeps none for a valid inventory)
    src = read_inventory(root, locate=True)
    return LoadedInventory(validate(src), src)


@pytest.mark.parametrize(("node", "cps", "level"), [
    ("lab1-a-proxy", 500, "the node itself"),
    ("lab1-a-media", 400, "zone lab1/a defaults"),
    ("lab1-b-proxy", 300, "data center lab1 defaults (zone b sets no cps)"),
    ("lab1-lb", 300, "data center lab1 defaults (a data-center-level node has no zone)"),
    ("lab2-a-proxy", 200, "platform defaults (lab2 sets nothing)"),
    ("lab2-lb", 200, "platform defaults"),
])
def test_nearest_level_wins(layered: LoadedInventory, node: str, cps: int, level: str) -> None:
    assert layered.node(node).node.capacity.cps == cps, level


def test_a_node_inherits_what_it_does_not_set(layered: LoadedInventory) -> None:
    proxy = layered.node("lab1-a-proxy").node
    # kamailio: the node sets log_level only; children comes from lab1, the rest from platform.
    assert proxy.kamailio.log_level == 2
    assert proxy.kamailio.children == 3
    assert (proxy.kamailio.tcp_children, proxy.kamailio.pkg_mb) == (2, 8)
    # rtp: nothing below the platform sets it.
    assert (proxy.rtp.port_min, proxy.rtp.port_max) == (40000, 40999)
    # ports: no layer sets them; the schema's defaults apply.
    assert (proxy.ports.sip, proxy.ports.sips) == (5060, 5061)


def test_partial_mappings_merge_key_by_key(layered: LoadedInventory) -> None:
    media = layered.node("lab1-a-media").node
    assert (media.rtp.port_min, media.rtp.port_max) == (40000, 40500)  # platform min, node max
    b_media = layered.node("lab1-b-media").node
    assert (b_media.rtp.port_min, b_media.rtp.port_max) == (41000, 41999)  # zone b over platform


def test_platform_defaults_beat_schema_defaults(layered: LoadedInventory) -> None:
    lb = layered.node("lab2-lb").node
    assert lb.kamailio.pkg_mb == 8  # schema default 16
    assert lb.kamailio.children == 2  # schema default 4


def test_inherited_values_remember_where_they_were_set(layered: LoadedInventory) -> None:
    src = layered.source
    media = ("datacenters", 0, "zones", "a", "nodes", 1)

    def where(*path: str | int) -> tuple[str, str]:
        o = src.origin(path)
        return Path(o.file).name, o.local

    assert where(*media, "rtp", "port_min") == ("platform.yml", "defaults.rtp.port_min")
    assert where(*media, "rtp", "port_max") == ("lab1.yml", "zones.a.nodes[1].rtp.port_max")
    assert where(*media, "capacity", "cps") == ("lab1.yml", "zones.a.defaults.capacity.cps")
    lb1 = ("datacenters", 0, "nodes", 0)
    assert where(*lb1, "kamailio", "children") == ("lab1.yml", "defaults.kamailio.children")
    assert where(*lb1, "kamailio", "pkg_mb") == ("platform.yml", "defaults.kamailio.pkg_mb")
