"""The edge: an lb pair sharing one service address by VRRP, and the DNS that publishes it.

Data center em1 of tests/integration/fixtures/edge-mini runs in three network namespaces on
a bridge of the test's own: one per lb (Kamailio and keepalived), one for the rest of the
data center (proxies, media, sbcs, and NSD serving the rendered zone).  SIPp runs on the
bridge, in the root namespace, as the phones: registrations and calls go to the service
address that DNS publishes, and the lb that holds it is killed under that load.  Skips
(with the reason) when not root or without ``ip netns``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.resolver
import pytest

from tests.conftest import INVENTORIES
from tests.integration.netns import (
    Namespaces,
    bridge_health,
    kill_namespace,
    namespace_pids,
    wait_until,
    why_not,
)
from zpctl import sipp
from zpctl.accounts import sip_users
from zpctl.cli.main import main
from zpctl.clients.probes import sip_options
from zpctl.control import Control, address_holder
from zpctl.errors import Unreachable
from zpctl.lab import Lab
from zpctl.lab.procs import ProcRecord, launch
from zpctl.loadtest import results
from zpctl.model import LoadedInventory, PlacedNode, load_inventory
from zpctl.render import render
from zpctl.render.verify import check_firewall_build
from zpctl.secrets import Secrets

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "fixtures" / "edge-mini"
CONTROLLER = ["10.199.5.250", "10.199.5.251", "10.199.5.252"]
SCANNER = "10.199.5.150"  # on the bridge too, outside the management networks
CARRIER, SILENT_CARRIER = "10.199.5.240", "10.199.5.241"  # the carrier's SRV targets
SERVICE = "10.199.5.100"
NS_OF = {"em1-lb1": "zpe-lb1", "em1-lb2": "zpe-lb2"}  # everything else of em1: zpe-core
CORE = "zpe-core"

_reason = why_not()
if _reason is not None:
    print(f"\nSKIP test_edge: {_reason}")
    pytest.skip(_reason, allow_module_level=True)
_missing = [b for b in ("keepalived", "nsd", "nft", "nmap") if shutil.which(b) is None]
if _missing:
    pytest.fail(f"{', '.join(_missing)} not installed: run `make install`")


@dataclass
class Edge:
    tmp: Path
    inv: LoadedInventory
    lab: Lab
    nets: Namespaces
    procs: dict[str, ProcRecord]
    dead: tuple[str, ...] = ()

    def power_off(self, ns: str) -> None:
        """An lb host dies: every process of its namespace (SIGKILL), then its link."""
        kill_namespace(ns)
        self.nets.run(ns, "ip", "link", "set", "eth0", "down")
        self.dead += (ns,)

    def holder_ns(self) -> str | None:
        """The live namespace whose eth0 has the service address."""
        for ns in ("zpe-lb1", "zpe-lb2"):
            shown = self.nets.run(ns, "ip", "-4", "addr", "show", "eth0").stdout
            if ns not in self.dead and f" {SERVICE}/" in shown:
                return ns
        return None


def _firewalls(nets: Namespaces, build: Path, nodes: list[PlacedNode]) -> None:
    """Each node's rendered firewall, loaded in its namespace.  The nodes that share the
    core namespace get one table with all their rules: each rule names its node's
    addresses (ip daddr), so together they act as each node's own."""
    core: list[str] = []
    for p in nodes:
        text = (build / p.name / "nftables" / "zpctl.nft").read_text()
        if p.name in NS_OF:
            r = nets.run(NS_OF[p.name], "nft", "-f", str(build / p.name / "nftables" / "zpctl.nft"))
            assert r.returncode == 0, r.stderr
        else:
            core += [ln for ln in text.splitlines() if ln.strip().startswith("ip ")]
    # NSD stands in for the platform's authoritative servers, which are not nodes: their
    # hosts' firewalls are not zpctl's.
    dns_server = "10.199.5.53"
    core += [f'ip daddr {dns_server} {proto} dport 53 accept comment "DNS"'
             for proto in ("udp", "tcp")]
    # The first core node's file with its rule lines replaced by every core node's.
    first = next(p for p in nodes if p.name not in NS_OF)
    lines = (build / first.name / "nftables" / "zpctl.nft").read_text().splitlines()
    at = [i for i, ln in enumerate(lines) if ln.strip().startswith("ip ")]
    merged = build.parent / "core.nft"
    merged.write_text("\n".join(lines[:at[0]] + core + lines[at[-1] + 1:]) + "\n")
    r = nets.run(CORE, "nft", "-f", str(merged))
    assert r.returncode == 0, r.stderr + merged.read_text()


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    tmp = Path(tempfile.mkdtemp(prefix="zpctl-edge-test-"))
    shutil.copytree(FIXTURE, tmp / "inv")
    inv = load_inventory(tmp / "inv")
    em1 = [p for p in inv.nodes() if p.dc.id == "em1"]
    core = sorted({a for p in em1 if p.name not in NS_OF
                   for a in (p.node.address, p.node.public, p.node.mgmt)})
    assert inv.model.dns is not None
    core += [s.address for s in inv.model.dns.servers]
    hosts = {CORE: core}
    for p in em1:
        if p.name in NS_OF:
            hosts[NS_OF[p.name]] = [p.node.address, p.node.mgmt]
    nets = Namespaces("zpe-br0", [*CONTROLLER, SCANNER, CARRIER, SILENT_CARRIER])
    procs: dict[str, ProcRecord] = {}
    try:
        # The core's processes (the sbcs) resolve through the lab's NSD.
        nets.up(hosts, resolvers={CORE: inv.model.dns.servers[0].address})
        lab = Lab(tmp / "lab")
        lab.prepare(inv)
        names = {p.name for p in em1}
        for s in lab.services(inv):
            if s.home not in names and not s.home.startswith("_dns"):
                continue
            ns = NS_OF.get(s.home, CORE)
            argv = s.argv + (["-A", "WARMUP_S=0"] if s.name.endswith("proxy/kamailio") else [])
            procs[s.name] = launch(s.name, nets.exec_argv(ns, argv), lab.console_log(s), s.cwd,
                                   env=lab.launch_env(s))
            wait_until(bridge_health(s), 30, s.name)
        _firewalls(nets, tmp / "lab" / "build", em1)
        e = Edge(tmp, inv, lab, nets, procs)
        def answered() -> None:
            if address_holder(inv.dc("em1"), 0.5) is None:
                raise Unreachable("no lb answers at the service address")
        wait_until(answered, 20, "the service address")
        yield e
    finally:
        nets.down()
        if os.environ.get("ZPCTL_KEEP_EDGE_TEST") is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"edge test files kept in {tmp}")


def test_dns_publishes_the_service_address_primary_first(edge: Edge) -> None:
    """A real resolver (dnspython, RFC 3263 order) against NSD serving the rendered zone:
    the account's domain -> NAPTR (TLS first) -> SRV em1 then em2 -> em1's shared address."""
    server = edge.inv.model.dns.servers[0].address  # type: ignore[union-attr]
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [server]
    naptr = sorted(res.resolve("miniload.edge.zpctl.test", "NAPTR"),
                   key=lambda r: (r.order, r.preference))
    assert [r.service.decode() for r in naptr] == ["SIPS+D2T", "SIP+D2T", "SIP+D2U"]
    udp = next(r for r in naptr if r.service == b"SIP+D2U").replacement.to_text()
    assert udp == "_sip._udp.em1.edge.zpctl.test."
    srv = sorted(res.resolve(udp, "SRV"), key=lambda r: r.priority)
    assert [(r.priority, r.port, r.target.to_text()) for r in srv] == [
        (10, 5060, "edge.em1.edge.zpctl.test."), (20, 5060, "edge.em2.edge.zpctl.test.")]
    assert [a.address for a in res.resolve(srv[0].target, "A")] == [SERVICE]
    tls = sorted(res.resolve("_sips._tcp.us01.edge.zpctl.test", "SRV"), key=lambda r: r.priority)
    assert [r.port for r in tls] == [5061, 5061]
    # An authoritative answer with the rendered TTL.
    reply = dns.query.udp(dns.message.make_query("edge.em1.edge.zpctl.test", "A"), server, 2)
    assert reply.flags & dns.flags.AA
    assert reply.answer[0].ttl == edge.inv.model.dns.ttl  # type: ignore[union-attr]


def test_zpctl_dns_resolve_follows_the_records_as_a_phone(
        edge: Edge, capsys: pytest.CaptureFixture[str]) -> None:
    server = edge.inv.model.dns.servers[0].address  # type: ignore[union-attr]
    capsys.readouterr()
    assert main(["-o", "json", "dns", "resolve", "miniload.edge.zpctl.test",
                 "--server", server, "--transport", "tls"]) == 0
    route = json.loads(capsys.readouterr().out)
    assert [(t["priority"], t["host"], t["address"], t["port"]) for t in route] == [
        (10, "edge.em1.edge.zpctl.test.", SERVICE, 5061),
        (20, "edge.em2.edge.zpctl.test.", "10.199.6.1", 5061)]
    # A name the zone does not have: a clear error, exit 7.
    assert main(["dns", "resolve", "nobody.edge.zpctl.test", "--server", server]) == 7
    assert "nobody.edge.zpctl.test" in capsys.readouterr().err


def test_status_names_the_lb_that_holds_the_address(edge: Edge) -> None:
    holder_ns = edge.holder_ns()
    assert holder_ns is not None
    holder = next(lb for lb, ns in NS_OF.items() if ns == holder_ns)
    st = Control(edge.inv).dc_status("em1")
    assert st["service_address"] == SERVICE
    assert st["address_held_by"] == holder
    assert st["lbs"] == {"em1-lb1": "up", "em1-lb2": "up"}


def test_a_port_scan_from_outside_finds_only_sip_at_the_edge(edge: Edge) -> None:
    """nmap, from an address outside the management networks: every TCP port of the
    edge (the lbs' own and management addresses and the service address), and ports 1-1024
    plus every port a node uses on every other address of em1.  Only
    the lbs' SIP and SIP over TLS ports answer.  The management ports answer the
    management networks (the status test above used JSON-RPC), and the zone proxies' SIP
    answers the lbs, not the outside."""
    em1 = [p for p in edge.inv.nodes() if p.dc.id == "em1"]
    edge_addrs = sorted({a for p in em1 if p.name in NS_OF for a in (p.node.address, p.node.mgmt)}
                        | {SERVICE})
    others = sorted({a for p in em1 if p.name not in NS_OF
                     for a in (p.node.address, p.node.public, p.node.mgmt)})
    ports = sorted({port for p in em1 for port in p.node.ports.model_dump().values()} | {22})
    t0 = time.monotonic()
    out = _nmap(["-p-", *edge_addrs]) + _nmap(
        ["-p", ",".join(["1-1024", *map(str, ports)]), *others])
    open_ports = set()
    for report in out:
        open_ports |= {(host.find("address").get("addr"), int(port.get("portid")))  # type: ignore[union-attr,arg-type]
                       for host in report.findall("host") for port in host.iter("port")
                       if port.find("state").get("state") == "open"}  # type: ignore[union-attr]
    assert sum(len(r.findall("host")) for r in out) == len(edge_addrs) + len(others)
    print(f"nmap: {len(edge_addrs)} edge addresses x 65,535 TCP ports, {len(others)} others: "
          f"{time.monotonic() - t0:.0f} s")
    lbs = [SERVICE, "10.199.5.1", "10.199.5.2"]
    assert open_ports == {(a, port) for a in lbs for port in (5060, 5061)}, out
    # UDP: SIP answers at the service address, not at a zone proxy.
    assert sip_options(SERVICE, 5060, 1.0, source=SCANNER).status == 200
    with pytest.raises(Unreachable):
        sip_options("10.199.5.11", 5060, 1.0, source=SCANNER)
    # From the management networks, the proxy answers its management port.
    assert Control(edge.inv).zone_status("em1/a")["proxy_state"] == "up"


def test_the_sbc_reaches_a_carrier_by_srv_and_fails_over(edge: Edge) -> None:
    """The carrier is named by its domain.  The sbc asks DNS (NSD, through its host's
    resolver) for the SRV records, sends the call to the first target, which never
    answers, and when its transaction times out, to the second, which answers: Kamailio's
    own DNS failover."""
    users = [u for u in sip_users(edge.inv, edge.lab.secrets()) if u.account == "miniload"]
    work = edge.tmp / "carrier"
    work.mkdir()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((SILENT_CARRIER, 5060))
    silent.settimeout(0.2)
    uas = sipp.start("uas", None, workdir=work, name="carrier", local_ip=CARRIER,
                     local_port=5060, calls=None, media_port=26000, rtp_echo=True)
    try:
        time.sleep(0.3)
        csv = sipp.users_csv(work / "caller.csv",
                             [(users[5].username, users[5].domain, users[5].password)])
        call = sipp.run("call", f"{SERVICE}:5060", workdir=work, name="caller",
                        local_ip=CONTROLLER[2], local_port=5400, users=csv,
                        service="+15557770001", calls=1, media_port=27000, hold_ms=1000,
                        wait_s=60)
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(silent.recv(65535).decode(errors="replace"))
    finally:
        uas.stop()
        silent.close()
    assert call.returncode == 0, call.output
    # The first SRV target got the INVITE (and its retransmissions), never answered.
    assert any(m.startswith("INVITE sip:+15557770001@carrier.edge.zpctl.test") for m in got), got
    # The second answered: the call was set up there, and hung up there.
    assert len(uas.received("INVITE sip:+15557770001@carrier.edge.zpctl.test")) == 1
    assert len(uas.received("BYE ")) == 1


def _nmap(args: list[str]) -> list[ElementTree.Element]:
    """A TCP SYN scan from the scanner's address; nmap's XML report."""
    out = subprocess.run(
        ["nmap", "-sS", "-Pn", "-n", "--min-rate", "20000", "--max-retries", "1",
         "-e", "zpe-br0", "-S", SCANNER, "-oX", "-", *args],
        capture_output=True, text=True, timeout=600, check=True).stdout
    return [ElementTree.fromstring(out)]


def _call_ids(messages: list[str]) -> set[str]:
    return {m[1] for m in (re.search(r"^Call-ID:\s*(\S+)", msg, re.M | re.I)
                           for msg in messages) if m}


def _count_registered(inv: LoadedInventory) -> int:
    return int(Control(inv).zone_status("em1/a")["registrations"])


def test_killing_the_active_lb_under_load_moves_the_address(edge: Edge) -> None:
    """Registrations and calls run to the service address; the lb that holds it dies
    (every process of its namespace, SIGKILL, and its link goes down).  The other lb takes
    the address within 3 s, no registration is lost, at least 99 % of the calls succeed,
    and the calls that were up when it died end with a BYE that the surviving lb routes."""
    inv = edge.inv
    users = [u for u in sip_users(inv, edge.lab.secrets()) if u.account == "miniload"]
    callee, phones = users[0], users[1:]
    work = edge.tmp / "load"
    work.mkdir()
    target = f"{SERVICE}:5060"
    csv = sipp.users_csv(work / "callee.csv", [(callee.username, callee.domain, callee.password)])
    reg = sipp.run("register", target, workdir=work, name="callee-register",
                   local_ip=CONTROLLER[1], local_port=5060, users=csv,
                   keys={"expires": "3600"}, wait_s=15)
    assert reg.returncode == 0, reg.output
    uas = sipp.start("uas", None, workdir=work, name="callee", local_ip=CONTROLLER[1],
                     local_port=5060, calls=None, media_port=25000, rtp_echo=True)
    phones_csv = sipp.users_csv(work / "phones.csv",
                                [(u.username, u.domain, u.password) for u in phones])
    rate, seconds = 10.0, 24.0
    regs = sipp.start_argv(sipp.command(
        "register", target, workdir=work, name="registrations", local_ip=CONTROLLER[0],
        local_port=5070, users=phones_csv, keys={"expires": "120"},
        calls=int(rate * seconds), rate=rate, trace=False,
        extra=["-trace_err", "-error_file", str(work / "registrations.errors.log")]),
        work, "registrations")
    calls = sipp.start_argv(sipp.command(
        "call", target, workdir=work, name="calls", local_ip=CONTROLLER[2], local_port=5300,
        users=phones_csv, service=callee.username, calls=int(rate * seconds), rate=rate,
        media_port=24000, hold_ms=3000, trace=False, timeout_s=seconds + 60,
        extra=["-trace_err", "-error_file", str(work / "calls.errors.log")]), work, "calls")
    try:
        time.sleep(8)
        holder_ns = edge.holder_ns()
        assert holder_ns is not None
        other_ns = next(ns for ns in NS_OF.values() if ns != holder_ns)
        other = next(lb for lb, ns in NS_OF.items() if ns == other_ns)
        up_before = int(results.last_row(calls.stats).get("CurrentCall", 0) or 0)
        t0 = time.monotonic()
        edge.power_off(holder_ns)
        moved = None
        while time.monotonic() - t0 < 10:
            if edge.holder_ns() == other_ns:
                moved = time.monotonic() - t0
                break
            time.sleep(0.02)
        answered = None
        while time.monotonic() - t0 < 15:
            if address_holder(inv.dc("em1"), 0.3) == other:
                answered = time.monotonic() - t0
                break
        assert not namespace_pids(holder_ns)
        assert regs.wait(seconds + 60) is not None
        calls.wait(seconds + 90)
    finally:
        regs.stop()
        calls.stop()
        uas.stop()
    print(f"lb failover: address on {other} after {moved} s, answering SIP after "
          f"{answered} s; {up_before} calls up when the holder died")
    assert moved is not None and moved <= 3.0, moved
    assert answered is not None
    reg_stats = results.last_row(regs.stats)
    call_stats = results.last_row(calls.stats)
    print(f"registrations: {reg_stats.get('SuccessfulCall(C)')} ok, "
          f"{reg_stats.get('FailedCall(C)')} failed; calls: "
          f"{call_stats.get('SuccessfulCall(C)')}/{call_stats.get('TotalCallCreated')} ok")
    assert int(reg_stats["FailedCall(C)"]) == 0
    assert int(reg_stats["SuccessfulCall(C)"]) == int(rate * seconds)
    created = int(call_stats["TotalCallCreated"])
    assert created == int(rate * seconds)
    assert int(call_stats["SuccessfulCall(C)"]) / created >= 0.99
    assert up_before > 0  # calls were up when the holder died: their BYEs went via the other
    # Every call that reached the callee was hung up there (the BYEs of the calls up at the
    # kill went through the surviving lb), but for a call that was lost.  A lost call is not
    # always one SIPp counts as failed: when the dying lb had answered the INVITE with 100
    # Trying, SIPp stops retransmitting and waits for an answer that never comes (the lb
    # pair shares no transaction state, docs/EDGE.md).
    lost = created - int(call_stats["SuccessfulCall(C)"])
    invited, hung_up = _call_ids(uas.received("INVITE ")), _call_ids(uas.received("BYE "))
    assert len(invited) >= created - lost
    assert len(invited - hung_up) <= lost, invited - hung_up
    # Every phone and the callee are registered at the zones (DMQ-replicated: one count).
    assert _count_registered(inv) == len(phones) + 1
    assert Control(inv).dc_status("em1")["address_held_by"] == other


def test_every_shipped_node_firewall_passes_nft_check(tmp_path: Path) -> None:
    """The rendered firewalls of the largest shipped inventory, checked by nft against
    this kernel (nft -c: parsed and checked, nothing applied)."""
    inv = load_inventory(INVENTORIES / "us01")
    render(inv, Secrets.load(tmp_path / "s.yml")).write(tmp_path / "build")
    assert len(list((tmp_path / "build").glob("*/nftables/zpctl.nft"))) == len(list(inv.nodes()))
    assert check_firewall_build(tmp_path / "build") == []
