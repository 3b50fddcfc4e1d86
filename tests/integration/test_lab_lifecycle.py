"""The lab's nodes start for real, answer SIP OPTIONS and JSON-RPC, and stop cleanly.

Runs on a copy of inventories/lab moved to other loopback addresses (127.0.1x / 127.1.1x),
so it never collides with the session lab other tests use.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.cli.main import main
from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import sip_options
from zpctl.errors import EnvironmentProblem, Unreachable
from zpctl.lab import Lab, port_free
from zpctl.lab.procs import _members
from zpctl.model import load_inventory
from zpctl.model.schema import Role
from zpctl.native import needs_fork_guard
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries()),
                                reason=f"lab binaries missing: {missing_binaries()}")


def _shifted_inventory(dest: Path) -> Path:
    shutil.copytree(INVENTORIES / "lab", dest)
    for f in dest.rglob("*.yml"):
        text = re.sub(r"127\.(0|1)\.([129])\.", lambda m: f"127.{m[1]}.1{m[2]}.", f.read_text())
        text = text.replace("127.0.53.1", "127.0.53.11")  # the lab's DNS server
        f.write_text(text.replace("127.1.0.5", "127.1.10.5"))  # the switches' database
    return dest


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shifted_inventory(tmp_path_factory.mktemp("inv") / "lab")


@pytest.fixture(scope="module")
def lab(shifted: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"))
    try:
        lab.up(shifted)
        yield lab
    finally:
        lab.down()


def _listeners(inventory: Path) -> list[tuple[str, int, str]]:
    inv = load_inventory(inventory)
    out = []
    for p in inv.nodes():
        n = p.node
        if p.role == Role.MEDIA:
            out += [(n.mgmt, n.ports.redis, "tcp"), (n.mgmt, n.ports.rtpengine_ng, "udp")]
        elif p.role == Role.SWITCH:
            out += [(n.address, n.ports.sips, "tcp"), (n.mgmt, n.ports.esl, "tcp")]
        elif p.role == Role.SWITCH_STANDBY:
            continue  # runs nothing until a takeover
        else:
            out += [(n.address, n.ports.sip, "udp"), (n.address, n.ports.sip, "tcp"),
                    (n.mgmt, n.ports.mgmt_http, "tcp")]
    rec = inv.model.switch_recovery
    if rec is not None:  # the switches' database
        out.append((rec.db_host, rec.db_port, "tcp"))
    return out


def test_every_node_is_up(lab: Lab, shifted: Path) -> None:
    rows = lab.status(shifted)
    # 21 platform nodes (2 of them standby switches), the switches' database, the DNS
    # server, 2 carriers, the emergency answering point, a premises SBC, a PBX and the
    # emergency notifier
    assert len(rows) == 29
    assert sorted(r["role"] for r in rows[21:]) == ["carrier", "carrier", "dns", "notifier",
                                                    "pbx", "postgres", "premises", "psap"]
    # A lone lb answers at its own address, the one DNS publishes.
    assert [r["state"] for r in rows if r["role"] == "lb"] == [
        "up (holds 127.0.11.1)", "up (holds 127.0.12.1)"]
    standby = [r for r in rows if r["role"] == "switch-standby"]
    assert [r["state"] for r in standby] == ["standby (idle)"] * 2
    assert [r["node"] for r in rows if not r["state"].startswith("up") and r not in standby] == []
    proxies = [r for r in rows if r["role"] == "proxy"]
    assert all(r["registrations"] == 0 and r["dialogs"] == 0 for r in proxies)
    # The switches (FreeSWITCH, asked over ESL) are idle.
    switches = [r for r in rows if r["role"] == "switch"]
    assert len(switches) == 5
    assert all(r["sessions"] == 0 for r in switches), switches


def test_every_kamailio_node_answers_options_and_rpc(lab: Lab, shifted: Path) -> None:
    inv = load_inventory(shifted)
    checked = 0
    for p in inv.nodes():
        if p.role not in (Role.LB, Role.PROXY, Role.SBC):
            continue
        resp = sip_options(p.node.address, p.node.ports.sip)
        assert resp.status == 200, p.name
        assert resp.header("Server") is None  # server_signature=no: no version disclosed
        rpc = KamailioRpc(f"http://{p.node.mgmt}:{p.node.ports.mgmt_http}/RPC")
        assert rpc.call("core.uptime")["uptime"] >= 0
        checked += 1
    assert checked == 10


def test_every_kamailio_process_runs_with_the_openssl_fork_guard(lab: Lab) -> None:
    """Kamailio before 5.7.5 (Debian 12: 5.6.3) lets its workers share the OpenSSL state of
    its main process: the lab preloads zpctl's guard (zpctl/native) into every Kamailio,
    and each of its processes has it."""
    recs = [r for r in lab.records() if r.name.endswith("/kamailio")]
    assert len(recs) == 10
    if not needs_fork_guard(recs[0].argv[0]):
        pytest.skip("this Kamailio keeps OpenSSL state per worker itself (5.7.5 or later)")
    for rec in recs:
        members = _members({rec.pid}).get(rec.pid, [])
        assert len(members) > 5, rec.name  # the main process and its workers
        for pid, _state in members:
            assert "/ossl_fork_guard-" in Path(f"/proc/{pid}/maps").read_text(), (rec.name, pid)


def test_lb_sees_both_zones_active(lab: Lab, shifted: Path) -> None:
    """Both zones become active-and-probed once the lb's first OPTIONS probes are answered
    (about one ping interval after start: until then a zone reads AX)."""
    inv = load_inventory(shifted)
    lb = next(p for p in inv.nodes() if p.role == Role.LB)
    rpc = KamailioRpc(f"http://{lb.node.mgmt}:{lb.node.ports.mgmt_http}/RPC")

    def flags() -> dict[str, str]:
        targets = rpc.call("dispatcher.list")["RECORDS"][0]["SET"]["TARGETS"]
        return {t["DEST"]["ATTRS"]["DUID"]: t["DEST"]["FLAGS"] for t in targets}

    want = {"zone-a": "AP", "zone-b": "AP"}
    wait_for("both zones AP at the lb", lambda: flags() == want, timeout=10)
    assert flags() == want


def test_metrics_only_for_the_management_network(lab: Lab, shifted: Path) -> None:
    inv = load_inventory(shifted)
    lb = next(p for p in inv.nodes() if p.role == Role.LB)
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    url = f"http://{lb.node.mgmt}:{lb.node.ports.mgmt_http}/metrics"
    with urllib.request.urlopen(url, timeout=3) as resp:
        body = resp.read().decode()
    assert "kamailio_core_rcv_requests" in body
    # From an address outside management_networks (127.0.0.1/32, 127.1.0.0/16): refused.
    with socket.create_connection((lb.node.mgmt, lb.node.ports.mgmt_http), timeout=3,
                                  source_address=("127.0.77.1", 0)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: lb\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 403 Forbidden")


def test_up_is_idempotent(lab: Lab, shifted: Path) -> None:
    before = {r.name: r.pid for r in lab.records()}
    lines: list[str] = []
    lab.up(shifted, progress=lines.append)
    assert {r.name: r.pid for r in lab.records()} == before
    assert all("already running" in line for line in lines)


def test_up_refuses_a_taken_port(tmp_path: Path) -> None:
    inv = _shifted_inventory(tmp_path / "inv")
    text = (inv / "datacenters" / "lab1.yml").read_text().replace("127.0.11.", "127.0.31.")
    (inv / "datacenters" / "lab1.yml").write_text(
        text.replace("127.1.11.", "127.1.31.").replace("127.0.12.", "127.0.32."))
    (inv / "datacenters" / "lab2.yml").write_text(
        (inv / "datacenters" / "lab2.yml").read_text().replace("127.0.12.", "127.0.32.")
        .replace("127.1.12.", "127.1.32."))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.31.1", 5060))
        lab = Lab(tmp_path / "lab")
        with pytest.raises(EnvironmentProblem, match=r"127\.0\.31\.1:5060/udp"):
            lab.up(inv)
        assert lab.records() == []


def test_up_refuses_missing_binaries(tmp_path: Path, shifted: Path) -> None:
    with pytest.raises(EnvironmentProblem, match="is not installed"):
        Lab(tmp_path / "lab", bin_path=str(tmp_path)).up(shifted)


def test_down_leaves_nothing_behind(lab: Lab, shifted: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: stops the module's lab from the CLI and checks, the moment
    it returns, that no process of it runs and no address of it is taken."""
    records = lab.records()
    # 10 Kamailio + 4 rtpengine + 4 Redis + 5 FreeSWITCH + PostgreSQL + NSD + 5 peers +
    # the emergency notifier
    assert len(records) == 31
    capsys.readouterr()
    assert main(["lab", "down", "--lab-dir", str(lab.dir), "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["stopped"]) == sorted(r.name for r in records)
    assert report["ports_free"] >= len(set(_listeners(shifted)))
    left = _members({r.pid for r in records})
    assert [(g, m) for g, ms in left.items() for m in ms if m[1] != "Z"] == []
    assert all(not r.alive() for r in records)
    assert lab.records() == []
    peers = [("127.0.19.1", 5060, "udp"), ("127.0.19.2", 5060, "udp"),
             ("127.0.19.10", 5061, "tcp"), ("127.0.19.11", 5060, "udp"),
             ("127.0.19.21", 5060, "udp"),
             ("127.0.53.11", 53, "udp"), ("127.0.53.11", 53, "tcp")]  # the DNS server
    for addr, port, proto in _listeners(shifted) + peers:
        assert port_free(addr, port, proto), f"{addr}:{port}/{proto} still taken"
    with pytest.raises(Unreachable):
        sip_options("127.0.11.1", 5060, timeout=0.5)
