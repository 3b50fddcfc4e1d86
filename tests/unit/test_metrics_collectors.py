"""The exporter's collectors on recorded replies (tests/unit/fixtures/metrics, see its README):
a fresh registry per test, values read back with get_sample_value."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import INVENTORIES
from zpctl.errors import Unreachable
from zpctl.metrics.base import ExporterCollector
from zpctl.metrics.calls import CallsCollector, parse_statistics
from zpctl.metrics.certs import CertificateCollector
from zpctl.metrics.exporter import ExporterOptions, build_registry, parse_listen, scrape
from zpctl.metrics.health import HealthCollector, zone_states
from zpctl.metrics.quality import MediaQualityCollector, call_quality
from zpctl.metrics.registrations import RegistrationsCollector, contacts
from zpctl.metrics.sources import Clients, Rpc, fan_out
from zpctl.model import LoadedInventory, load_inventory
from zpctl.model.schema import Node

FIX = Path(__file__).parent / "fixtures" / "metrics"


def rec(name: str) -> Any:
    return json.loads((FIX / name).read_text())


@pytest.fixture(scope="module")
def lab() -> LoadedInventory:
    return load_inventory(INVENTORIES / "lab")


@dataclass
class Recorded:
    """The lab's nodes answering with recorded replies; nodes in ``down`` do not answer."""

    rpc_replies: dict[tuple[str, str], Any] = field(default_factory=dict)  # (node, method)
    ng_replies: dict[tuple[str, str], Any] = field(default_factory=dict)  # (node, cmd[:call-id])
    sip_status: dict[str, int] = field(default_factory=dict)  # default 200
    down: set[str] = field(default_factory=set)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def _node(self, node: Node) -> str:
        if node.name in self.down:
            raise Unreachable(f"{node.name} does not answer")
        return node.name

    def rpc(self, node: Node) -> Rpc:
        outer = self

        class _Rpc:
            def call(self, method: str, *params: Any) -> Any:
                name = outer._node(node)
                outer.asked.append((name, method))
                try:
                    return outer.rpc_replies[(name, method)]
                except KeyError:
                    raise Unreachable(f"no recording of {method} on {name}") from None

        return _Rpc()

    def ng(self, node: Node, command: str, params: dict[str, object]) -> dict[str, object]:
        name = self._node(node)
        key = f"{command}:{params['call-id']}" if "call-id" in params else command
        self.asked.append((name, key))
        if (name, key) in self.ng_replies:
            reply: dict[str, object] = self.ng_replies[(name, key)]
            return reply
        if command == "query":
            return rec("ng-query-unknown.json")  # type: ignore[no-any-return]
        if command == "list":
            return {"calls": [], "result": "ok"}
        if command == "ping":
            return rec("ng-ping.json")  # type: ignore[no-any-return]
        raise Unreachable(f"no recording of ng {key} on {name}")

    def sip_ping(self, node: Node) -> int:
        return self.sip_status.get(self._node(node), 200)

    def clients(self) -> Clients:
        return Clients(self.rpc, self.ng, self.sip_ping)


def platform(dispatcher: str = "dispatcher.list-lab1-lb.json", stats: str = "after") -> Recorded:
    """lab1 as recorded during calls, lab2 idle."""
    r = Recorded()
    for z in "ab":
        r.rpc_replies[(f"lab1-{z}-proxy", "ul.dump")] = rec(f"ul.dump-lab1-{z}-proxy.json")
        r.rpc_replies[(f"lab1-{z}-proxy", "stats.get_statistics")] = rec(
            f"stats-dialog-{stats}-lab1-{z}-proxy.json")
        r.rpc_replies[(f"lab2-{z}-proxy", "ul.dump")] = rec("ul.dump-lab2-a-proxy-empty.json")
        r.rpc_replies[(f"lab2-{z}-proxy", "stats.get_statistics")] = rec(
            "stats-dialog-lab2-a-proxy-idle.json")
    r.rpc_replies[("lab1-lb", "dispatcher.list")] = rec(dispatcher)
    r.rpc_replies[("lab2-lb", "dispatcher.list")] = rec("dispatcher.list-lab2-lb.json")
    for z in "ab":
        r.ng_replies[(f"lab1-{z}-media", "list")] = rec(f"ng-list-lab1-{z}-media.json")
    for name, node in (("ng-query-lab1-a-media-rtcp.json", "lab1-a-media"),
                       ("ng-query-lab1-b-media-sipp.json", "lab1-b-media")):
        doc = rec(name)
        r.ng_replies[(node, f"query:{doc['call-id']}")] = doc["reply"]
    return r


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


# --- health ---------------------------------------------------------------------------------

def test_every_node_zone_and_dc_up(lab: LoadedInventory) -> None:
    reg = CollectorRegistry()
    c = HealthCollector(lab, platform().clients(), reg)
    assert sample(reg, "zpctl_node_up", dc="lab1", zone="a", node="lab1-a-proxy", role="proxy") == 1
    assert sample(reg, "zpctl_node_up", dc="lab1", zone="", node="lab1-lb", role="lb") == 1
    assert sample(reg, "zpctl_node_up", dc="lab2", zone="b", node="lab2-b-media", role="media") == 1
    for dc in ("lab1", "lab2"):
        for z in "ab":
            assert sample(reg, "zpctl_zone_up", dc=dc, zone=z) == 1
            assert sample(reg, "zpctl_lb_zone_active", dc=dc, zone=z, lb=f"{dc}-lb") == 1
        assert sample(reg, "zpctl_datacenter_up", dc=dc) == 1
    assert c.last_success


def test_zone_taken_out_by_the_lb_is_down(lab: LoadedInventory) -> None:
    reg = CollectorRegistry()
    HealthCollector(lab, platform("dispatcher.list-lab1-lb-zone-b-inactive.json").clients(), reg)
    assert sample(reg, "zpctl_lb_zone_active", dc="lab1", zone="b", lb="lab1-lb") == 0
    assert sample(reg, "zpctl_zone_up", dc="lab1", zone="b") == 0
    assert sample(reg, "zpctl_zone_up", dc="lab1", zone="a") == 1
    assert sample(reg, "zpctl_datacenter_up", dc="lab1") == 1


def test_dead_proxy_takes_its_zone_down_not_the_dc(lab: LoadedInventory) -> None:
    r = platform()
    r.sip_status["lab1-a-proxy"] = 503
    reg = CollectorRegistry()
    HealthCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_node_up", dc="lab1", zone="a", node="lab1-a-proxy", role="proxy") == 0
    assert sample(reg, "zpctl_zone_up", dc="lab1", zone="a") == 0
    assert sample(reg, "zpctl_datacenter_up", dc="lab1") == 1


def test_dead_lb_takes_the_dc_down_but_not_its_zones(lab: LoadedInventory) -> None:
    r = platform()
    r.down.add("lab2-lb")
    reg = CollectorRegistry()
    c = HealthCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_node_up", dc="lab2", zone="", node="lab2-lb", role="lb") == 0
    assert sample(reg, "zpctl_datacenter_up", dc="lab2") == 0
    assert sample(reg, "zpctl_zone_up", dc="lab2", zone="a") == 1
    assert sample(reg, "zpctl_lb_zone_active", dc="lab2", zone="a", lb="lab2-lb") is None
    assert not c.last_success
    assert any("lab2-lb" in e for e in c.last_errors)
    assert ("lab2-lb", "dispatcher.list") not in r.asked  # a dead lb is not asked again


def test_both_proxies_down_takes_the_dc_down(lab: LoadedInventory) -> None:
    r = platform()
    r.down |= {"lab1-a-proxy", "lab1-b-proxy"}
    reg = CollectorRegistry()
    HealthCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_datacenter_up", dc="lab1") == 0


def test_dead_media_node_is_down(lab: LoadedInventory) -> None:
    r = platform()
    r.down.add("lab1-b-media")
    reg = CollectorRegistry()
    HealthCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_node_up", dc="lab1", zone="b", node="lab1-b-media", role="media") == 0
    assert sample(reg, "zpctl_zone_up", dc="lab1", zone="b") == 1  # proxies fall back to zone a's


def test_zone_states_ignores_destinations_that_are_not_zone_proxies() -> None:
    reply = rec("dispatcher.list-lab1-lb.json")
    assert zone_states(reply, {"sip:127.0.1.11:5060": "a"}) == {"a": True}
    assert zone_states({}, {"sip:127.0.1.11:5060": "a"}) == {}
    assert zone_states(None, {}) == {}


# --- registrations --------------------------------------------------------------------------

def test_registrations_per_account_counted_once_across_both_proxies(lab: LoadedInventory) -> None:
    reg = CollectorRegistry()
    RegistrationsCollector(lab, platform().clients(), reg)
    # 1001 (two contacts), 1002, 1003 for acme; 2001 globex; 3001 initech — each proxy has all.
    assert sample(reg, "zpctl_registrations", dc="lab1", account="acme") == 4
    assert sample(reg, "zpctl_registered_users", dc="lab1", account="acme") == 3
    assert sample(reg, "zpctl_registrations", dc="lab1", account="globex") == 1
    assert sample(reg, "zpctl_registrations", dc="lab1", account="initech") == 1
    assert sample(reg, "zpctl_registrations", dc="lab2", account="acme") == 0
    assert sample(reg, "zpctl_registrations", dc="lab1", account="_unknown") is None


def test_registrations_survive_one_proxy_down(lab: LoadedInventory) -> None:
    r = platform()
    r.down.add("lab1-b-proxy")
    reg = CollectorRegistry()
    c = RegistrationsCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_registrations", dc="lab1", account="acme") == 4
    assert not c.last_success


def test_no_registration_samples_when_no_proxy_answers(lab: LoadedInventory) -> None:
    r = platform()
    r.down |= {"lab2-a-proxy", "lab2-b-proxy"}
    reg = CollectorRegistry()
    RegistrationsCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_registrations", dc="lab2", account="acme") is None
    assert sample(reg, "zpctl_registrations", dc="lab1", account="acme") == 4


def test_contacts_skip_expired_and_deleted_and_foreign_domains(lab: LoadedInventory) -> None:
    dump = rec("ul.dump-lab1-a-proxy.json")
    aors = dump["Domains"][0]["Domain"]["AoRs"]
    # Edited copy of the recording: Kamailio reports a contact past its lifetime but not yet
    # purged as "expired", and one being removed as "deleted".
    by_aor = {a["Info"]["AoR"]: a["Info"] for a in aors}
    by_aor["1001@acme.lab.zpctl.test"]["Contacts"][0]["Contact"]["Expires"] = "expired"
    by_aor["1002@acme.lab.zpctl.test"]["Contacts"][0]["Contact"]["Expires"] = "deleted"
    by_aor["2001@globex.lab.zpctl.test"]["Contacts"][0]["Contact"]["Expires"] = "permanent"
    by_aor["3001@initech.lab.zpctl.test"]["AoR"] = "3001@elsewhere.example"
    pairs = sorted(contacts(dump))
    assert [a for a, _ in pairs] == ["1001@acme.lab.zpctl.test", "1003@acme.lab.zpctl.test",
                                     "2001@globex.lab.zpctl.test", "3001@elsewhere.example"]
    r = Recorded(rpc_replies={("lab1-a-proxy", "ul.dump"): dump}, down={"lab1-b-proxy"})
    reg = CollectorRegistry()
    RegistrationsCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_registrations", dc="lab1", account="acme") == 2
    assert sample(reg, "zpctl_registrations", dc="lab1", account="_unknown") == 1
    assert sample(reg, "zpctl_registrations", dc="lab1", account="initech") == 0
    assert list(contacts({"Domains": [{"Domain": {"Domain": "other", "AoRs": aors}}]})) == []


# --- calls ----------------------------------------------------------------------------------

def test_call_counters_from_dialog_statistics(lab: LoadedInventory) -> None:
    reg = CollectorRegistry()
    CallsCollector(lab, platform().clients(), reg)
    loc = {"dc": "lab1", "zone": "b", "node": "lab1-b-proxy"}
    assert sample(reg, "zpctl_call_attempts_total", **loc) == 3
    assert sample(reg, "zpctl_calls_failed_total", **loc) == 2
    assert sample(reg, "zpctl_calls_active", **loc) == 0
    assert sample(reg, "zpctl_call_attempts_total", dc="lab1", zone="a", node="lab1-a-proxy") == 2
    assert sample(reg, "zpctl_call_attempts_total", dc="lab2", zone="a", node="lab2-a-proxy") == 0


def test_call_counters_rise_between_recordings(lab: LoadedInventory) -> None:
    """Between the two recordings (see the fixtures' README) three calls were routed and one
    of them was never answered."""
    totals = {}
    for when in ("before", "after"):
        reg = CollectorRegistry()
        CallsCollector(lab, platform(stats=when).clients(), reg)
        totals[when] = tuple(
            sum(sample(reg, name, dc="lab1", zone=z, node=f"lab1-{z}-proxy") or 0 for z in "ab")
            for name in ("zpctl_call_attempts_total", "zpctl_calls_failed_total"))
    assert totals["after"][0] - totals["before"][0] == 3
    assert totals["after"][1] - totals["before"][1] == 1


def test_parse_statistics() -> None:
    assert parse_statistics(["dialog:a = 3", "dialog:b=4", "junk", "x = y"]) == \
        {"dialog:a": 3, "dialog:b": 4}
    assert parse_statistics(None) == {}


def test_proxy_without_dialog_module_is_an_error_not_a_zero(lab: LoadedInventory) -> None:
    r = platform()
    r.rpc_replies[("lab2-b-proxy", "stats.get_statistics")] = []
    reg = CollectorRegistry()
    c = CallsCollector(lab, r.clients(), reg)
    assert sample(reg, "zpctl_call_attempts_total", dc="lab2", zone="b", node="lab2-b-proxy") is None
    assert not c.last_success


# --- quality --------------------------------------------------------------------------------

def test_call_quality_from_rtcp_call() -> None:
    q = call_quality(rec("ng-query-lab1-a-media-rtcp.json")["reply"])
    assert q is not None
    assert q.mos == pytest.approx(4.0)
    assert q.jitter_seconds == pytest.approx(0.050)
    assert q.packet_loss_ratio == pytest.approx(0.04)
    assert 0 < q.round_trip_seconds < 0.01  # loopback: µs


def test_call_without_rtcp_has_no_quality() -> None:
    assert call_quality(rec("ng-query-lab1-b-media-sipp.json")["reply"]) is None
    assert call_quality(rec("ng-query-unknown.json")) is None


def test_quality_per_call_and_per_node(lab: LoadedInventory) -> None:
    reg = CollectorRegistry()
    c = MediaQualityCollector(lab, platform().clients(), reg)
    cid = rec("ng-query-lab1-a-media-rtcp.json")["call-id"]
    a = {"dc": "lab1", "zone": "a", "node": "lab1-a-media"}
    b = {"dc": "lab1", "zone": "b", "node": "lab1-b-media"}
    assert sample(reg, "zpctl_call_mos", **a, call_id=cid) == pytest.approx(4.0)
    assert sample(reg, "zpctl_call_jitter_seconds", **a, call_id=cid) == pytest.approx(0.05)
    assert sample(reg, "zpctl_call_packet_loss_ratio", **a, call_id=cid) == pytest.approx(0.04)
    assert sample(reg, "zpctl_media_calls_queried", **a) == 1
    assert sample(reg, "zpctl_media_calls_scored", **a) == 1
    assert sample(reg, "zpctl_media_mos_average", **a) == pytest.approx(4.0)
    # zone b relays the SIPp call: counted, no RTCP, no MOS series at all
    assert sample(reg, "zpctl_media_calls_queried", **b) == 1
    assert sample(reg, "zpctl_media_calls_scored", **b) == 0
    assert sample(reg, "zpctl_media_mos_average", **b) is None
    assert c.last_success


def test_quality_aggregates_over_calls(lab: LoadedInventory) -> None:
    r = platform()
    good, bad = rec("ng-query-lab1-a-media-rtcp.json"), rec("ng-query-lab1-a-media-rtcp-impaired.json")
    r.ng_replies[("lab1-a-media", "list")] = {"calls": [good["call-id"], "bad-call"], "result": "ok"}
    r.ng_replies[("lab1-a-media", "query:bad-call")] = bad["reply"]
    reg = CollectorRegistry()
    MediaQualityCollector(lab, r.clients(), reg)
    a = {"dc": "lab1", "zone": "a", "node": "lab1-a-media"}
    assert sample(reg, "zpctl_media_mos_min", **a) == pytest.approx(1.4)
    assert sample(reg, "zpctl_media_mos_average", **a) == pytest.approx((4.0 + 1.4) / 2)
    assert sample(reg, "zpctl_media_jitter_seconds_max", **a) == pytest.approx(0.150)
    assert sample(reg, "zpctl_media_packet_loss_ratio_max", **a) == pytest.approx(0.19)
    assert sample(reg, "zpctl_call_mos", **a, call_id="bad-call") == pytest.approx(1.4)


def test_quality_query_budget_and_per_call_switch(lab: LoadedInventory) -> None:
    r = platform()
    r.ng_replies[("lab1-a-media", "list")] = {"calls": [f"c{i}" for i in range(10)],
                                              "result": "ok"}
    reg = CollectorRegistry()
    MediaQualityCollector(lab, r.clients(), reg, max_calls=3, per_call=False)
    a = {"dc": "lab1", "zone": "a", "node": "lab1-a-media"}
    assert sample(reg, "zpctl_media_calls_queried", **a) == 3
    assert len([k for n, k in r.asked if n == "lab1-a-media" and k.startswith("query:")]) == 3
    assert ("lab1-a-media", "list") in r.asked
    good = rec("ng-query-lab1-a-media-rtcp.json")
    r2 = platform()
    reg2 = CollectorRegistry()
    MediaQualityCollector(lab, r2.clients(), reg2, per_call=False)
    assert sample(reg2, "zpctl_call_mos", **a, call_id=good["call-id"]) is None
    assert sample(reg2, "zpctl_media_mos_average", **a) == pytest.approx(4.0)


def test_call_that_ended_between_list_and_query_is_not_an_error(lab: LoadedInventory) -> None:
    r = platform()
    r.ng_replies[("lab1-a-media", "list")] = {"calls": ["gone"], "result": "ok"}
    reg = CollectorRegistry()
    c = MediaQualityCollector(lab, r.clients(), reg)
    assert c.last_success
    assert sample(reg, "zpctl_media_calls_scored", dc="lab1", zone="a", node="lab1-a-media") == 0


# --- certificates ---------------------------------------------------------------------------

def test_certificate_expiry_from_files_and_bundles(tmp_path: Path) -> None:
    from zpctl import pki  # noqa: PLC0415

    ca_crt, _ = pki.make_ca(tmp_path / "pki", days=10)
    node_crt, node_key = pki.issue(tmp_path / "pki", tmp_path / "pki", "n1", "n1.example", ["127.0.0.5"])
    (tmp_path / "pki" / "bundle.pem").write_bytes(ca_crt.read_bytes() + node_crt.read_bytes())
    (tmp_path / "pki" / "junk.pem").write_text("not a certificate")
    reg = CollectorRegistry()
    c = CertificateCollector([tmp_path / "pki"], reg)
    from cryptography import x509  # noqa: PLC0415

    ca = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    node = x509.load_pem_x509_certificate(node_crt.read_bytes())
    exp = ca.not_valid_after_utc.timestamp()
    serial = f"{ca.serial_number:x}"
    for f in (ca_crt, tmp_path / "pki" / "bundle.pem"):
        assert sample(reg, "zpctl_certificate_expiry_timestamp_seconds", file=str(f),
                      subject="zpctl lab CA", serial=serial) == exp
    assert sample(reg, "zpctl_certificate_expiry_timestamp_seconds",
                  file=str(tmp_path / "pki" / "bundle.pem"), subject="n1.example",
                  serial=f"{node.serial_number:x}") == node.not_valid_after_utc.timestamp()
    assert not c.last_success  # junk.pem
    assert any("junk.pem" in e for e in c.last_errors)
    text = scrape(reg)
    assert str(node_key) not in text and ".key" not in text


# --- the exporter ---------------------------------------------------------------------------

def test_registry_of_the_lab_serves_every_family(lab: LoadedInventory) -> None:
    reg = build_registry(lab, platform().clients(), ExporterOptions())
    text = scrape(reg)
    for name in ("zpctl_node_up", "zpctl_zone_up", "zpctl_datacenter_up", "zpctl_registrations",
                 "zpctl_call_attempts_total", "zpctl_media_mos_average", "zpctl_collector_success",
                 "zpctl_exporter_build_info"):
        assert f"# TYPE {name} " in text, name
    # No ESL source is wired: the lab's switches are there, and reported as not read.
    assert reg.get_sample_value("zpctl_switch_up", {"dc": "lab1", "node": "lab1-a-switch1",
                                                    "zone": "a"}) == 0
    assert reg.get_sample_value("zpctl_collector_success", {"collector": "health"}) == 1
    assert reg.get_sample_value("zpctl_exporter_build_info",
                                {"platform": "lab", "version": "0.1.0"}) == 1


def test_exporter_reports_failing_collector(lab: LoadedInventory) -> None:
    r = platform()
    r.down.add("lab2-a-proxy")
    reg = CollectorRegistry()
    calls = CallsCollector(lab, r.clients(), reg)
    ExporterCollector([calls], "x", "lab", reg)
    assert reg.get_sample_value("zpctl_collector_success", {"collector": "calls"}) == 0
    duration = reg.get_sample_value("zpctl_collector_duration_seconds", {"collector": "calls"})
    assert duration is not None and duration >= 0


def test_a_bug_in_a_collector_does_not_break_the_scrape(lab: LoadedInventory) -> None:
    class Broken(CallsCollector):
        def fill(self, fams: Any, errors: list[str]) -> None:
            raise ZeroDivisionError("bug")

    reg = CollectorRegistry()
    c = Broken(lab, platform().clients(), reg)
    HealthCollector(lab, platform().clients(), reg)
    text = scrape(reg)  # the scrape itself succeeds: the family declared, empty; others served
    assert "# TYPE zpctl_call_attempts_total counter" in text
    assert sample(reg, "zpctl_zone_up", dc="lab1", zone="a") == 1
    assert c.last_errors == ["ZeroDivisionError: bug"]
    assert sample(reg, "zpctl_call_attempts_total", dc="lab1", zone="a", node="lab1-a-proxy") is None
    assert not c.last_success


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:9799", ("127.0.0.1", 9799)), ("[::1]:80", ("::1", 80))])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9799", "localhost:9799", "127.0.0.1:0", "127.0.0.1:x"])
def test_parse_listen_refuses(listen: str) -> None:
    from zpctl.errors import ZpctlError  # noqa: PLC0415

    with pytest.raises(ZpctlError, match="ADDR:PORT"):
        parse_listen(listen)


def test_fan_out_keeps_order_and_reports_errors() -> None:
    def f(x: int) -> int:
        if x == 3:
            raise Unreachable("three is down")
        return x * 2

    out = fan_out(f, range(6))
    assert [(i, r) for i, r, _ in out] == [(0, 0), (1, 2), (2, 4), (3, None), (4, 8), (5, 10)]
    assert out[3][2] == "Unreachable: three is down"
    assert fan_out(f, []) == []
