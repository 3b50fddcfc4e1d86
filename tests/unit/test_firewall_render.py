"""Each node's firewall, rendered from the inventory: what is public, what answers only
the nodes that use it (docs/EDGE.md).  Loaded into network namespaces and scanned in
tests/integration/test_edge.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.model import LoadedInventory, load_inventory
from zpctl.render.firewall import ANY, Rule, firewall_rules

EDGE_MINI = Path(__file__).parents[1] / "integration" / "fixtures" / "edge-mini"


@pytest.fixture(scope="module")
def lab() -> LoadedInventory:
    return load_inventory(INVENTORIES / "lab")


def _rules(inv: LoadedInventory, node: str) -> dict[tuple[str, str, str], Rule]:
    return {(r.proto, r.ports, ",".join(r.daddr)): r
            for r in firewall_rules(inv, inv.node(node))}


def test_only_the_lbs_sip_and_the_media_rtp_are_public(lab: LoadedInventory) -> None:
    public = {(p.name, r.proto, r.ports) for p in lab.nodes()
              for r in firewall_rules(lab, p) if r.public}
    lbs = {(lb, proto, port) for lb in ("lab1-lb", "lab2-lb")
           for proto, port in (("udp", "5060"), ("tcp", "5060"), ("tcp", "5061"))}
    media = {(p.name, "udp", f"{p.node.rtp.port_min}-{p.node.rtp.port_max}")
             for p in lab.nodes() if p.role.value == "media"}
    assert public == lbs | media


def test_management_ports_answer_only_the_management_networks(lab: LoadedInventory) -> None:
    mgmt = tuple(lab.model.platform.management_networks)
    for p in lab.nodes():
        for r in firewall_rules(lab, p):
            if r.ports in ("22", "8080", "8021", "6379"):
                assert r.saddr == mgmt, (p.name, r)
                if r.ports == "22":  # on any of the node's addresses: deploy may use any
                    own = {p.node.address, p.node.public, p.node.mgmt}
                    assert r.daddr == tuple(sorted(own)), (p.name, r)
                elif p.role.value != "switch-standby":  # which also takes others' (below)
                    assert r.daddr == (p.node.mgmt,), (p.name, r)


def test_internal_paths_answer_only_the_nodes_that_use_them(lab: LoadedInventory) -> None:
    proxy = _rules(lab, "lab1-a-proxy")
    sip = proxy[("udp", "5060", "127.0.1.11")]
    # the lb, the sbcs and both proxies of lab1, and the management networks' health
    # checks; nothing of lab2, nothing public
    assert sip.saddr == ("127.0.1.1", "127.0.1.13", "127.0.1.23", "127.0.1.11", "127.0.1.21",
                         "127.0.0.1/32", "127.1.0.0/16")
    assert proxy[("udp", "5090", "127.0.1.11")].saddr == ("127.0.1.21",)  # DMQ: the sister
    assert proxy[("tcp", "5061", "127.0.1.11")].saddr == (
        "127.0.1.14", "127.0.1.15", "127.0.1.16", "127.0.1.24", "127.0.1.26")  # the switches
    sbc = _rules(lab, "lab1-a-sbc")
    carriers = sbc[("udp", "5060", "127.0.1.113")].saddr
    assert "127.0.9.1" in carriers and ANY not in carriers
    # mutual TLS only from the BYOC-P premises SBCs
    tls = sbc[("tcp", "5061", "127.0.1.113")].saddr
    assert set(tls) < set(carriers)
    switch = _rules(lab, "lab1-a-switch1")
    assert switch[("tcp", "5061", "127.0.1.14")].saddr == (
        "127.0.1.11", "127.0.1.21", "127.0.1.1")


def test_an_lb_pair_takes_sip_on_the_shared_address_and_vrrp_from_its_peer() -> None:
    inv = load_inventory(EDGE_MINI)
    lb1 = _rules(inv, "em1-lb1")
    assert lb1[("udp", "5060", "10.199.5.100,10.199.5.1")].public
    assert lb1[("vrrp", "", "10.199.5.1")].saddr == ("10.199.5.2",)
    assert "ip protocol vrrp" in lb1[("vrrp", "", "10.199.5.1")].nft()
    # the zone proxies accept what the pair sends from the shared address
    proxy = _rules(inv, "em1-a-proxy")
    assert "10.199.5.100" in proxy[("udp", "5060", "10.199.5.11")].saddr


def test_a_standby_switch_lets_in_what_the_switches_it_may_replace_need(
        lab: LoadedInventory) -> None:
    rules = _rules(lab, "lab1-a-standby")
    tls = next(r for r in rules.values() if r.ports == "5061")
    assert tls.daddr == ("127.0.1.14", "127.0.1.15", "127.0.1.16")  # zone a's switches too
    esl = next(r for r in rules.values() if r.ports == "8021")
    assert esl.daddr == ("127.1.1.14", "127.1.1.15", "127.1.1.16")


def test_health_checks_reach_every_kamailio_node_from_the_management_networks(
        lab: LoadedInventory) -> None:
    mgmt = set(lab.model.platform.management_networks)
    for name in ("lab1-lb", "lab1-a-proxy", "lab1-a-sbc"):
        node = lab.node(name).node
        sip = [r for r in firewall_rules(lab, lab.node(name))
               if r.ports == "5060" and r.proto == "udp" and node.address in r.daddr]
        assert sip and (mgmt <= set(sip[0].saddr) or sip[0].public), name
