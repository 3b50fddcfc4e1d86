"""The role table (zpctl.model.roles) is the one place a role's processes are described:
render writes them into each node's node.json, and the lab and the deploy take them from
there.  These tests tie every consumer to the table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.deploy.runner import GROUPS, host_vars
from zpctl.lab import Lab
from zpctl.lab.services import HEALTH
from zpctl.model import load_inventory, roles
from zpctl.model.schema import Role
from zpctl.render import _Renderer, render
from zpctl.secrets import Secrets


@pytest.fixture(scope="module")
def us01_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    inv = load_inventory(INVENTORIES / "us01")
    out = tmp_path_factory.mktemp("us01") / "build"
    render(inv, Secrets.load(out.parent / "secrets.yml")).write(out)
    return out, inv


def test_every_role_with_services_has_a_renderer_and_an_ansible_group(tmp_path: Path) -> None:
    inv = load_inventory(INVENTORIES / "lab")
    renderers = _Renderer(inv, Secrets.load(tmp_path / "s.yml"), None).renderers()
    for role, spec in roles.ROLES.items():
        if spec.services:
            assert role in renderers, role
        if spec.services and spec.deployed:
            assert GROUPS[role] == (spec.ansible_group, spec.ansible_roles)
        elif spec.services:  # not deployed yet (the survivability node): in no play
            assert role not in GROUPS, role
        for svc in spec.services:
            assert svc.health in HEALTH, (role, svc.health)


def test_node_json_carries_each_service_resolved_for_the_node(us01_build: tuple) -> None:
    out, inv = us01_build
    for p in inv.nodes():
        doc = json.loads((out / p.name / "node.json").read_text())
        spec = roles.spec(p.role)
        assert [s["name"] for s in doc["services"]] == [s.name for s in spec.services_in(p.dc)]
        for svc, table in zip(doc["services"], spec.services_in(p.dc), strict=True):
            assert svc["binary"] == table.binary
            assert svc["listeners"] == [list(x) for x in table.listeners(p.node)]
            assert svc["health"]["kind"] == table.health
            assert svc["config"].startswith(doc["paths"]["config"] + "/")
            if svc["name"] == "kamailio":
                # the memory sizing is on the command line the hosts run
                assert svc["args"][-6:-2] == ["-m", str(svc["shm_mb"]), "-M", str(svc["pkg_mb"])]
                # and the TLSF allocator for both memories (docs/PERFORMANCE.md)
                assert svc["args"][-2:] == ["-x", "tlsf"]


def test_deploy_passes_node_json_command_lines_to_the_roles(us01_build: tuple,
                                                            tmp_path: Path) -> None:
    out, inv = us01_build
    for role in (Role.PROXY, Role.MEDIA, Role.SWITCH):
        p = next(n for n in inv.nodes() if n.role == role)
        doc = json.loads((out / p.name / "node.json").read_text())
        hv = host_vars(inv, p.name, out, None, tmp_path / "bundles")
        for svc in doc["services"]:
            assert hv[f"{svc['name']}_args"] == svc["args"]


def test_the_lab_runs_what_node_json_says(tmp_path: Path) -> None:
    inv = load_inventory(INVENTORIES / "lab")
    lab = Lab(tmp_path / "lab")
    manifests = lab.manifests(inv)  # no build yet: rendered in memory, nothing written
    assert not (tmp_path / "lab" / "build").exists()
    services = {s.name: s for s in lab.services(inv)}
    ran = 0
    for p in inv.nodes():
        for svc in manifests[p.name]["services"]:
            name = f"{p.name}/{svc['name']}"
            if not roles.spec(p.role).in_lab:
                assert name not in services
                continue
            s = services[name]
            assert s.argv[1:] == svc["args"]
            assert Path(s.argv[0]).name == svc["binary"]
            assert s.listeners == [tuple(x) for x in svc["listeners"]]
            assert s.stop_signal == svc["stop_signal"]
            ran += 1
    # 10 Kamailio nodes, Redis + rtpengine on 4 media nodes, FreeSWITCH on 5 switches
    assert ran == 10 + 2 * 4 + 5


def test_a_build_from_before_node_json_carried_command_lines(us01_build: tuple,
                                                             tmp_path: Path) -> None:
    """Deploy and the lab still work with a kept build whose node.json has no args."""
    out, inv = us01_build
    p = next(n for n in inv.nodes() if n.role == Role.PROXY)
    path = out / p.name / "node.json"
    doc = json.loads(path.read_text())
    want = doc["services"][0]["args"]
    old = {**doc, "services": [{k: v for k, v in s.items() if k in ("name", "config", "shm_mb",
                                                                   "pkg_mb")}
                               for s in doc["services"]]}
    path.write_text(json.dumps(old))
    try:
        assert host_vars(inv, p.name, out, None, tmp_path / "b")["kamailio_args"] == want
    finally:
        path.write_text(json.dumps(doc))


def test_the_lab_rerenders_a_build_from_an_older_zpctl(tmp_path: Path) -> None:
    inv = load_inventory(INVENTORIES / "lab")
    lab = Lab(tmp_path / "lab")
    fresh = lab.manifests(inv)
    lab.dir.mkdir(parents=True)
    lab.state_file.write_text(json.dumps({"inventory": str(inv.root.absolute())}))
    for name, doc in fresh.items():
        (lab.dir / "build" / name).mkdir(parents=True)
        old = {**doc, "services": [{"name": s["name"], "config": s["config"]}
                                   for s in doc["services"]]}
        (lab.dir / "build" / name / "node.json").write_text(json.dumps(old))
    assert lab.manifests(inv) == fresh
    # the nodes, the peers (the answering point among them), the switches' database, the
    # DNS server and the emergency notifier: and `down` can work out its listeners
    assert len(lab.services(inv)) == 23 + 5 + 1 + 1 + 1


def test_status_names_what_the_lab_does_not_run(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    inv = load_inventory(INVENTORIES / "us01")
    p = next(n for n in inv.nodes() if n.role == Role.SWITCH)
    monkeypatch.setitem(roles.ROLES, Role.SWITCH,
                        dataclasses.replace(roles.ROLES[Role.SWITCH], in_lab=False))
    row = Lab(tmp_path / "lab")._node_status(inv, p, {})
    assert row["state"] == "not run by the lab (freeswitch)"
