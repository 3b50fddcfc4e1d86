"""The monitoring files shipped with every inventory: targets, rules, dashboards, and that
every metric they query exists (exported by zpctl, recorded rule, or served natively by
Kamailio / rtpengine as recorded in fixtures/metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import INVENTORIES, REPO, shipped_inventories
from zpctl.metrics.calls import CallsCollector
from zpctl.metrics.certs import CertificateCollector
from zpctl.metrics.health import HealthCollector
from zpctl.metrics.quality import MediaQualityCollector
from zpctl.metrics.registrations import RegistrationsCollector
from zpctl.metrics.sources import Clients
from zpctl.metrics.switch import SwitchCollector, SwitchStats
from zpctl.model import load_inventory
from zpctl.render import render, render_monitoring
from zpctl.render.monitoring import DASHBOARDS, MONITORING, MonitoringOptions, _target
from zpctl.secrets import Secrets

FIX = Path(__file__).parent / "fixtures" / "metrics"
PROM = f"{MONITORING}/prometheus/prometheus.yml"
RULES = f"{MONITORING}/prometheus/rules/zpctl.rules.yml"
ALERTS = {"ZpctlZoneDown", "ZpctlDatacenterDown", "ZpctlRegistrationsDroppingFast",
          "ZpctlAnswerSeizureRatioLow", "ZpctlCallQualityLow", "ZpctlCertificateExpiringSoon",
          "ZpctlSwitchPausedTooLong", "ZpctlSwitchDown", "ZpctlSwitchAtSessionLimit",
          "ZpctlExporterDown", "ZpctlMetricsTargetDown",
          "ZpctlCollectorFailing"}


def _secrets(tmp_path: Path) -> Secrets:
    return Secrets(tmp_path / "s.yml", {"topoh_mask_key": "k" * 32, "db_password": "pw",
                                        "auth_nonce_secret": "n" * 32})


def exported_names() -> set[str]:
    """Every metric name the exporter's collectors declare (describe: no I/O)."""
    inv = load_inventory(INVENTORIES / "lab")

    def never(*_: object) -> Any:
        raise AssertionError("describe must not reach a node")

    clients = Clients(never, never, never)
    collectors = [HealthCollector(inv, clients), RegistrationsCollector(inv, clients),
                  CallsCollector(inv, clients), MediaQualityCollector(inv, clients),
                  SwitchCollector(inv, lambda p: SwitchStats(0, 0)), CertificateCollector([])]
    names = {"zpctl_exporter_build_info", "zpctl_collector_success",
             "zpctl_collector_duration_seconds"}
    for c in collectors:
        for fam in c.describe():
            names.add(fam.name + ("_total" if fam.type == "counter" else ""))
    return names


def native_names() -> set[str]:
    names = {"up"}
    for f in ("rtpengine-metrics.txt", "kamailio-proxy-metrics.txt"):
        for line in (FIX / f).read_text().splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.parametrize("inventory", shipped_inventories(), ids=lambda p: p.name)
def test_every_inventory_ships_monitoring(inventory: Path, tmp_path: Path) -> None:
    inv = load_inventory(inventory)
    build = render(inv, _secrets(tmp_path))
    monitoring = sorted(p for p in build.files if p.startswith(MONITORING + "/"))
    assert monitoring == sorted([PROM, RULES] + [
        f"{MONITORING}/grafana/dashboards/zpctl-{d}.json" for d in DASHBOARDS])
    assert all(build.files[p].mode == 0o644 for p in monitoring)
    prom = yaml.safe_load(build.files[PROM].data)
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert prom["rule_files"] == ["rules/zpctl.rules.yml"]
    assert jobs["zpctl-exporter"]["static_configs"] == [{"targets": ["127.0.0.1:9799"]}]
    got = {(t["targets"][0], t["labels"]["node"]) for job in ("kamailio", "rtpengine")
           for t in jobs[job]["static_configs"]}
    want = {(f"{p.node.mgmt}:{p.node.ports.mgmt_http}", p.name) for p in inv.nodes()
            if p.role.value in ("lb", "proxy", "sbc", "media")}
    assert got == want
    for job in ("kamailio", "rtpengine"):
        for t in jobs[job]["static_configs"]:
            p = inv.node(t["labels"]["node"])
            assert t["labels"]["dc"] == p.dc.id
            assert t["labels"].get("zone") == p.zone
            assert t["labels"]["role"] == p.role.value
            assert (job == "rtpengine") == (p.role.value == "media")


def test_rtpengine_metrics_listener_is_rendered_on_the_management_address(tmp_path: Path) -> None:
    inv = load_inventory(INVENTORIES / "lab")
    build = render(inv, _secrets(tmp_path))
    for p in inv.nodes():
        if p.role.value == "media":
            conf = build.files[f"{p.name}/rtpengine/rtpengine.conf"].data.decode()
            assert f"listen-http = {p.node.mgmt}:{p.node.ports.mgmt_http}\n" in conf


def _rules() -> dict[str, Any]:
    files = render_monitoring(load_inventory(INVENTORIES / "lab"))
    doc: dict[str, Any] = yaml.safe_load(files[RULES])
    return doc


def test_alert_rules_are_complete_and_documented() -> None:
    rules = [r for g in _rules()["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert set(alerts) == ALERTS
    doc = (REPO / "docs" / "MONITORING.md").read_text()
    for name, r in alerts.items():
        assert r["labels"]["severity"] in ("critical", "warning"), name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name
        assert re.fullmatch(r"[0-9]+[smh]", r["for"]), name
        assert f"`{name}`" in doc, f"{name} is not documented in docs/MONITORING.md"


def test_mos_and_certificate_thresholds() -> None:
    alerts = {r["alert"]: r for g in _rules()["groups"] for r in g["rules"] if "alert" in r}
    assert alerts["ZpctlCallQualityLow"]["expr"] == "zpctl_media_mos_average < 3.5"
    assert "< 14 * 86400" in alerts["ZpctlCertificateExpiringSoon"]["expr"]


def _queried_names(text: str) -> set[str]:
    """Metric names in PromQL expressions (identifiers followed by { [ or an operator)."""
    keywords = {"sum", "by", "rate", "increase", "max", "min", "avg", "count", "and", "or",
                "offset", "clamp_min", "time", "vector", "sort", "bottomk", "topk", "without",
                "on", "ignoring", "humanizePercentage", "humanizeTimestamp", "printf"}
    text = re.sub(r'"[^"]*"', '""', text)  # label values are not metric names
    names = set(re.findall(r"\b([a-z_][a-z0-9_:]*)\b", text))
    return {n for n in names if (n.startswith(("zpctl", "rtpengine_", "kamailio_")) or n == "up")
            and n not in keywords}


def test_every_queried_metric_exists() -> None:
    files = render_monitoring(load_inventory(INVENTORIES / "lab"))
    rules = yaml.safe_load(files[RULES])
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for d in DASHBOARDS:
        dash = json.loads(files[f"{MONITORING}/grafana/dashboards/zpctl-{d}.json"])
        exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    known = exported_names() | recorded | native_names()
    unknown = {n for e in exprs for n in _queried_names(e)} - known
    assert unknown == set()


@pytest.mark.parametrize("inventory", shipped_inventories(), ids=lambda p: p.name)
def test_dashboards_are_valid_grafana_json(inventory: Path) -> None:
    inv = load_inventory(inventory)
    files = render_monitoring(inv)
    uids = set()
    for d in DASHBOARDS:
        dash = json.loads(files[f"{MONITORING}/grafana/dashboards/zpctl-{d}.json"])
        assert len(dash["uid"]) <= 40
        uids.add(dash["uid"])
        assert dash["templating"]["list"][0]["type"] == "datasource"
        ids = [p["id"] for p in dash["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for p in dash["panels"]:
            assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs))
            for t in p.get("targets", []):
                assert t["datasource"]["uid"] == "${datasource}"
        assert "managed by zpctl" in dash["description"]
    assert len(uids) == len(DASHBOARDS)
    overview = json.loads(files[f"{MONITORING}/grafana/dashboards/zpctl-overview.json"])
    rows = [p["title"] for p in overview["panels"] if p["type"] == "row"]
    assert [r.split()[2] for r in rows[:-1]] == [dc.id for dc in inv.model.datacenters]
    zone_stats = [p for p in overview["panels"] if p["title"].startswith("zone ")]
    assert len(zone_stats) == sum(len(dc.zones) for dc in inv.model.datacenters)


def test_options_reach_prometheus_yml() -> None:
    files = render_monitoring(load_inventory(INVENTORIES / "lab"),
                              MonitoringOptions(exporter="127.0.0.1:12345", scrape_interval="1s",
                                                scrape_timeout="900ms", evaluation_interval="1s"))
    prom = yaml.safe_load(files[PROM])
    assert prom["global"]["scrape_interval"] == "1s"
    assert prom["global"]["scrape_timeout"] == "900ms"
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["zpctl-exporter"]["static_configs"][0]["targets"] == ["127.0.0.1:12345"]


def test_ipv6_targets_are_bracketed() -> None:
    assert _target("fd00::1", 8080) == "[fd00::1]:8080"
    assert _target("127.1.1.1", 8080) == "127.1.1.1:8080"


def test_render_is_deterministic() -> None:
    inv = load_inventory(INVENTORIES / "lab")
    assert render_monitoring(inv) == render_monitoring(load_inventory(INVENTORIES / "lab"))
