"""The edge, rendered: the DNS zone (NAPTR -> SRV -> A, primary first, regions kept apart)
and an lb pair's Kamailio and keepalived configs (docs/EDGE.md).  Served and failed over
for real in tests/integration/test_edge.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.model import load_inventory
from zpctl.render import render
from zpctl.render.dns import records, service_names, zone_text
from zpctl.secrets import Secrets

EDGE_MINI = Path(__file__).parents[1] / "integration" / "fixtures" / "edge-mini"


def _srv(inv_dir: Path, name: str) -> list[tuple[int, int, str]]:
    out = []
    for r in records(load_inventory(inv_dir).model):
        if r.type == "SRV" and r.name == name:
            prio, _weight, port, target = r.data.split()
            out.append((int(prio), int(port), target))
    return out


def test_a_data_center_name_lists_itself_then_its_secondary() -> None:
    assert _srv(INVENTORIES / "lab", "_sips._tcp.lab1") == [
        (10, 5061, "edge.lab1"), (20, 5061, "edge.lab2")]
    assert _srv(INVENTORIES / "lab", "_sip._udp.us01") == [
        (10, 5060, "edge.lab1"), (20, 5060, "edge.lab2")]
    zone = {(r.name, r.type): r.data for r in records(load_inventory(INVENTORIES / "lab").model)}
    assert zone[("edge.lab1", "A")] == "127.0.1.1"  # a lone lb: its own address


def test_naptr_prefers_tls_and_leads_an_account_to_its_home() -> None:
    inv = load_inventory(INVENTORIES / "lab").model
    naptr = [r.data for r in records(inv) if r.type == "NAPTR" and r.name == "acme"]
    assert naptr == ['10 10 "S" "SIPS+D2T" "" _sips._tcp.lab1',
                     '20 10 "S" "SIP+D2T" "" _sip._tcp.lab1',
                     '30 10 "S" "SIP+D2U" "" _sip._udp.lab1']


def test_a_regional_cluster_has_no_name_that_crosses_its_region() -> None:
    inv = load_inventory(INVENTORIES / "regional").model
    names = service_names(inv)
    assert "au01" not in names and "eu01" not in names
    assert [d.id for d in names["eu.eu01"]] == ["eu01-frankfurt", "eu01-amsterdam"]
    for dcs in names.values():
        assert len({(d.cluster, d.region) for d in dcs}) == 1


def test_the_zone_file_is_deterministic_and_its_serial_follows_its_content() -> None:
    inv = load_inventory(INVENTORIES / "lab").model
    a, b = zone_text(inv, "x"), zone_text(inv, "x")
    assert a == b
    serial = re.search(r"SOA \S+ \S+ (\d+) ", a)
    assert serial is not None and int(serial[1]) > 0
    other = load_inventory(INVENTORIES / "us01").model
    assert re.search(r"SOA \S+ \S+ (\d+) ", zone_text(other, "x"))[1] != serial[1]  # type: ignore[index]


def test_an_lb_pair_shares_the_service_address(tmp_path: Path) -> None:
    inv = load_inventory(EDGE_MINI)
    build = render(inv, Secrets.load(tmp_path / "s.yml")).files
    text = {k: v.data.decode() for k, v in build.items()}
    for lb, own, prio, peer in (("em1-lb1", "10.199.5.1", 150, "10.199.5.2"),
                                ("em1-lb2", "10.199.5.2", 100, "10.199.5.1")):
        cfg = text[f"{lb}/kamailio/kamailio.cfg"]
        listens = re.findall(r"^listen=(\S+)", cfg, re.M)
        # the shared address first (everything leaves from it), then the lb's own
        assert listens[:4] == ["udp:10.199.5.100:5060", "tcp:10.199.5.100:5060",
                               "tls:10.199.5.100:5061", f"udp:{own}:5060"]
        assert "ip_free_bind=1" in cfg
        assert "force_send_socket(udp:10.199.5.100:5060);" in cfg
        # keepalives to the zone proxies from the lb's own address
        assert f"socket=udp:{own}:5060" in text[f"{lb}/kamailio/dispatcher.list"]
        vrrp = text[f"{lb}/keepalived/keepalived.conf"]
        assert f"priority {prio}\n" in vrrp
        assert f"unicast_src_ip {own}\n" in vrrp
        assert re.search(rf"unicast_peer {{\s+{peer}\s+}}", vrrp)
        assert "10.199.5.100/24 dev eth0" in vrrp
        assert "nopreempt" in vrrp and "advert_int 0.5" in vrrp
        assert build[f"{lb}/keepalived/kamailio-answers"].mode == 0o755
    # The zone proxies take X-ZP-Source from requests the pair sends from the shared address.
    proxy = text["em1-a-proxy/kamailio/kamailio.cfg"]
    assert re.search(r'#!define LB_NETS ".*10\.199\.5\.100/32', proxy)
    # A lone lb (em2) keeps its own address and no VRRP.
    assert "em2-lb/keepalived/keepalived.conf" not in build
    assert "ip_free_bind" not in text["em2-lb/kamailio/kamailio.cfg"]


def test_a_carrier_named_by_its_domain_is_reached_by_srv(tmp_path: Path) -> None:
    inv = load_inventory(EDGE_MINI)
    build = render(inv, Secrets.load(tmp_path / "s.yml")).files
    text = {k: v.data.decode() for k, v in build.items()}
    # one destination, not resolved at load (flag 16): SRV at each send, then failover
    assert "10 sip:carrier.edge.zpctl.test;transport=udp 16 0 duid=carrier-mini-carrier" \
        in text["em1-a-sbc/kamailio/dispatcher.list"]
    sbc = text["em1-a-sbc/kamailio/kamailio.cfg"]
    assert "use_dns_cache=on" in sbc and "use_dns_failover=on" in sbc
    # the lab's carrier, named by address, keeps the DNS cache off
    lab = render(load_inventory(INVENTORIES / "lab"), Secrets.load(tmp_path / "l.yml")).files
    assert "use_dns_cache=no" in lab["lab1-a-sbc/kamailio/kamailio.cfg"].data.decode()
    # the zone stands in for the carrier's own records: its addresses, in order
    assert _srv(EDGE_MINI, "_sip._udp.carrier") == [(10, 5060, "t1.carrier"),
                                                   (20, 5060, "t2.carrier")]


def test_an_account_name_answers_srv_queries_too() -> None:
    """Phones that skip NAPTR ask _sips._tcp.<their domain>: the home's records."""
    assert _srv(INVENTORIES / "lab", "_sips._tcp.acme") == _srv(INVENTORIES / "lab",
                                                               "_sips._tcp.lab1")


def test_the_lab_refuses_an_lb_pair(tmp_path: Path) -> None:
    with pytest.raises(ZpctlError, match="lb pair") as err:
        Lab(tmp_path / "lab").check_loopback(load_inventory(EDGE_MINI))
    assert err.value.exit_code == ExitCode.USAGE
