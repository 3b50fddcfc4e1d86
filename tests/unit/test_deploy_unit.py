"""zpctl.deploy without hosts: the plan, the deploy.yml host mapping, deterministic bundles,
the play and its roles (ansible-lint)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.deploy import DeployHosts, plan
from zpctl.deploy.runner import PLAYBOOK, ROLES_DIR, host_vars, write_bundle
from zpctl.errors import ExitCode, ZpctlError
from zpctl.model import load_inventory
from zpctl.render import render
from zpctl.secrets import Secrets

MINI = Path(__file__).parents[1] / "integration" / "fixtures" / "deploy-mini"


def test_plan_orders_dc_hosts_then_zones() -> None:
    inv = load_inventory(MINI)
    steps = plan(inv, "dm1")
    assert [s.scope for s in steps] == ["dm1", "dm1/a", "dm1/b"]
    assert steps[0].nodes == ["dm1-lb"]
    assert steps[1].nodes == ["dm1-a-proxy", "dm1-a-media", "dm1-a-sbc"]
    assert [s.scope for s in plan(inv, "dm1/b")] == ["dm1/b"]
    one = plan(inv, "dm1-a-media")
    assert [(s.scope, s.nodes) for s in one] == [("dm1/a", ["dm1-a-media"])]
    assert len(plan(inv)) == 6


def test_plan_rejects_unknown_limit() -> None:
    with pytest.raises(ZpctlError) as exc:
        plan(load_inventory(MINI), "nowhere")
    assert exc.value.exit_code == ExitCode.USAGE


def test_hosts_default_to_mgmt_address_and_read_deploy_yml(tmp_path: Path) -> None:
    inv_dir = tmp_path / "inv"
    shutil.copytree(MINI, inv_dir)
    inv = load_inventory(inv_dir)
    assert DeployHosts.load(inv).specs["dm1-lb"].host == "10.199.1.201"
    (inv_dir / "deploy.yml").write_text(
        "defaults: {user: ops, port: 2222}\nhosts:\n  dm1-lb: {host: lb.example.test}\n"
        "vars: {kamailio_install_packages: false}\n")
    hosts = DeployHosts.load(load_inventory(inv_dir))
    lb = hosts.specs["dm1-lb"].ansible_vars()
    assert (lb["ansible_host"], lb["ansible_user"], lb["ansible_port"]) == ("lb.example.test", "ops", 2222)
    assert hosts.specs["dm1-a-proxy"].host == "10.199.1.211"
    assert hosts.role_vars == {"kamailio_install_packages": False}
    (inv_dir / "deploy.yml").write_text("hosts:\n  not-a-node: {host: x}\n")
    with pytest.raises(ZpctlError, match="not-a-node"):
        DeployHosts.load(load_inventory(inv_dir))


def test_bundle_is_byte_identical_and_keeps_modes(tmp_path: Path) -> None:
    src = tmp_path / "node"
    (src / "kamailio").mkdir(parents=True)
    (src / "kamailio" / "kamailio.cfg").write_text("cfg\n")
    (src / "kamailio" / "secrets.cfg").write_text("secret\n")
    (src / "kamailio" / "secrets.cfg").chmod(0o600)
    (src / "node.json").write_text("{}\n")
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    write_bundle(src, ["kamailio", "node.json"], a)
    (src / "kamailio" / "kamailio.cfg").touch()  # a new mtime must not change the bytes
    write_bundle(src, ["kamailio", "node.json"], b)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    import tarfile  # noqa: PLC0415

    with tarfile.open(a) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert modes["kamailio/secrets.cfg"] == 0o600
    assert modes["kamailio/kamailio.cfg"] == 0o644


def test_every_ansible_role_passes_ansible_lint() -> None:
    """The roles, the ones no test host runs included (systemd units, freeswitch,
    prometheus, the exporter): ansible-lint's production profile."""
    lint = Path(sys.executable).parent / "ansible-lint"
    out = subprocess.run([str(lint), "--offline", "--nocolor", str(ROLES_DIR)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_every_host_gets_its_firewall_last(tmp_path: Path) -> None:
    """The play's last role is the firewall, for every host; each node's bundle holds its
    rendered rules, and an lb without a pair gets no keepalived files."""
    assert PLAYBOOK[0]["roles"][-1] == {"role": "nftables"}
    inv = load_inventory(INVENTORIES / "lab")
    build = tmp_path / "build"
    render(inv, Secrets.load(tmp_path / "s.yml")).write(build)
    hv = host_vars(inv, "lab1-lb", build, None, tmp_path / "bundles")
    with tarfile.open(hv["nftables_bundle"]) as tar:
        assert tar.getnames() == ["nftables", "nftables/zpctl.nft"]
    with tarfile.open(hv["keepalived_bundle"]) as tar:
        assert tar.getnames() == []
    assert "keepalived_args" not in hv  # the role does nothing on a lone lb
