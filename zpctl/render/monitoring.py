"""The monitoring files rendered with every inventory, under ``_monitoring/`` in the build.

::

    _monitoring/prometheus/prometheus.yml          every Kamailio and media node, the exporter
    _monitoring/prometheus/rules/zpctl.rules.yml   recording rules and alerts
    _monitoring/grafana/dashboards/*.json          overview, call quality, queue wallboard

One platform-wide set, in its own top-level folder rather than in a node's tree: the
shipped inventories have no ``monitor`` nodes, and one Prometheus (or an HA pair, each with
its own exporter beside it) watches every data center.  A deploy copies the folder to the
monitoring host.  Alert thresholds are zpctl's defaults below (documented in
docs/MONITORING.md).  Pure and deterministic like the rest of the build: Grafana JSON is
parsed after rendering, panels and query refIds are numbered in order, and the document is
written back as canonical JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zpctl.errors import RenderError
from zpctl.model import LoadedInventory
from zpctl.model.roles import KAMAILIO_ROLES
from zpctl.model.schema import Role
from zpctl.render.build import Build

MONITORING = "_monitoring"
EXPORTER_PORT = 9799
KAMAILIO_SCRAPED = tuple(sorted(KAMAILIO_ROLES))  # every Kamailio node is scraped
DASHBOARDS = ("overview", "call-quality", "queue-wallboard")

Template = Callable[..., str]  # (template name, **context) -> text, e.g. _Renderer.tpl


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds and durations (Prometheus duration strings)."""

    zone_down_for: str = "1m"
    registrations_drop: float = 0.2  # a drop of more than 20 % ...
    registrations_window: str = "10m"  # ... compared with this long ago ...
    registrations_min: int = 20  # ... when there were at least this many
    registrations_for: str = "2m"
    asr_min: float = 0.5
    asr_min_rate: float = 0.05  # calls/s over 15 min (45 calls), below which ASR is noise
    asr_for: str = "10m"
    mos_min: float = 3.5
    mos_for: str = "2m"
    cert_days: int = 14
    cert_for: str = "10m"
    switch_paused_for: str = "15m"
    switch_down_for: str = "1m"
    switch_sessions_ratio: float = 0.9  # of max-sessions ...
    switch_sessions_for: str = "5m"  # ... for this long
    target_down_for: str = "2m"
    collector_for: str = "5m"


@dataclass(frozen=True)
class MonitoringOptions:
    exporter: str = f"127.0.0.1:{EXPORTER_PORT}"  # the exporter runs beside Prometheus
    scrape_interval: str = "15s"
    scrape_timeout: str = "10s"
    evaluation_interval: str = "15s"
    thresholds: Thresholds = field(default_factory=Thresholds)


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def scrape_targets(loaded: LoadedInventory) -> dict[str, list[dict[str, str]]]:
    """The native /metrics endpoints of the inventory: job -> targets with their labels."""
    out: dict[str, list[dict[str, str]]] = {"kamailio": [], "rtpengine": []}
    for p in loaded.nodes():
        if p.role in KAMAILIO_SCRAPED:
            job = "kamailio"
        elif p.role == Role.MEDIA:
            job = "rtpengine"  # listen-http on the management address (rtpengine.conf)
        else:
            continue
        out[job].append({"target": _target(p.node.mgmt, p.node.ports.mgmt_http), "node": p.name,
                         "role": p.role.value, "dc": p.dc.id, "zone": p.zone or ""})
    return out


def _dashboard(text: str, name: str) -> str:
    try:
        doc: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise RenderError(f"dashboard {name}: rendered JSON is invalid: {exc}") from None
    for i, panel in enumerate(doc.get("panels", []), start=1):
        panel["id"] = i
        for j, target in enumerate(panel.get("targets", [])):
            target["refId"] = chr(ord("A") + j)
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def monitoring_files(loaded: LoadedInventory, tpl: Template,
                     options: MonitoringOptions | None = None) -> dict[str, str]:
    """Every monitoring file of ``loaded``: path under the build -> text."""
    opts = options or MonitoringOptions()
    inv = loaded.model
    t = opts.thresholds
    ctx: dict[str, Any] = {
        "platform": inv.platform.name,
        "mgmt_networks": ", ".join(inv.platform.management_networks),
        "exporter": opts.exporter,
        "scrape_interval": opts.scrape_interval,
        "scrape_timeout": opts.scrape_timeout,
        "evaluation_interval": opts.evaluation_interval,
        "windows": ["5m", "15m"],
        "t": t,
        "mos_min": t.mos_min,
        "asr_min": t.asr_min,
        "datacenters": inv.datacenters,
        **scrape_targets(loaded),
    }
    prom = f"{MONITORING}/prometheus"
    files = {
        f"{prom}/prometheus.yml": tpl("prometheus/prometheus.yml.j2", **ctx),
        f"{prom}/rules/zpctl.rules.yml": tpl("prometheus/zpctl.rules.yml.j2", **ctx),
    }
    for name in DASHBOARDS:
        files[f"{MONITORING}/grafana/dashboards/zpctl-{name}.json"] = _dashboard(
            tpl(f"grafana/{name}.json.j2", **ctx), name)
    return files


def add_monitoring(build: Build, loaded: LoadedInventory, tpl: Template,
                   options: MonitoringOptions | None = None) -> None:
    """Add the monitoring files of ``loaded`` to ``build`` (called by the renderer)."""
    for path, text in sorted(monitoring_files(loaded, tpl, options).items()):
        build.add(path, text)
