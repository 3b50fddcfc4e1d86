"""The exporter: every collector of an inventory in one registry, served over HTTP.

:func:`build_registry` is what ``zpctl exporter`` serves and what tests scrape in-process;
:func:`serve` starts client_python's HTTP server (``GET /metrics``) in a thread.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import CollectorRegistry

from zpctl import __version__
from zpctl.errors import EnvironmentProblem, ExitCode, ZpctlError
from zpctl.metrics.base import ExporterCollector, ZpctlCollector
from zpctl.metrics.calls import CallsCollector
from zpctl.metrics.certs import CertificateCollector
from zpctl.metrics.esl_source import esl_switch_source
from zpctl.metrics.health import HealthCollector
from zpctl.metrics.quality import DEFAULT_MAX_CALLS, MediaQualityCollector
from zpctl.metrics.registrations import RegistrationsCollector
from zpctl.metrics.sources import Clients
from zpctl.metrics.switch import SwitchCollector, SwitchStatsSource
from zpctl.model import LoadedInventory
from zpctl.model.schema import Role
from zpctl.render.monitoring import EXPORTER_PORT

log = logging.getLogger("zpctl.metrics")

DEFAULT_LISTEN = f"127.0.0.1:{EXPORTER_PORT}"  # where the rendered prometheus.yml looks


@dataclass(frozen=True)
class ExporterOptions:
    certs: Sequence[Path] = ()
    max_calls: int = DEFAULT_MAX_CALLS
    per_call: bool = True
    switch_source: SwitchStatsSource | None = None


def build_registry(inventory: LoadedInventory, clients: Clients,
                   options: ExporterOptions | None = None) -> CollectorRegistry:
    """A fresh registry with every collector of ``inventory`` (and the exporter's own)."""
    opts = options or ExporterOptions()
    registry = CollectorRegistry()
    collectors: list[ZpctlCollector] = [
        HealthCollector(inventory, clients, registry),
        RegistrationsCollector(inventory, clients, registry),
        CallsCollector(inventory, clients, registry),
        MediaQualityCollector(inventory, clients, registry, max_calls=opts.max_calls,
                              per_call=opts.per_call),
    ]
    has_switches = any(p.role == Role.SWITCH for p in inventory.nodes())
    source = opts.switch_source or (esl_switch_source(inventory) if has_switches else None)
    if source is not None:
        collectors.append(SwitchCollector(inventory, source, registry))
    elif has_switches:
        log.warning("the inventory has switches but no ESL source is wired in "
                    "(zpctl.metrics.esl_source.esl_switch_source): no switch metrics")
    if opts.certs:
        collectors.append(CertificateCollector(opts.certs, registry))
    ExporterCollector(collectors, __version__, inventory.model.platform.name, registry)
    return registry


def scrape(registry: CollectorRegistry) -> str:
    """One scrape, in the Prometheus text format."""
    return generate_latest(registry).decode("utf-8")


def parse_listen(listen: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6]:PORT`` for IPv6) -> (address, port)."""
    addr, sep, port = listen.rpartition(":")
    addr = addr.strip("[]")
    try:
        ipaddress.ip_address(addr)
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 < number < 65536:
        raise ZpctlError(f"--listen must be ADDR:PORT, e.g. {DEFAULT_LISTEN} (got {listen!r})",
                         ExitCode.USAGE)
    return addr, number


def serve(registry: CollectorRegistry, listen: str) -> tuple[str, threading.Thread]:
    """Serve ``registry`` on ``listen`` in a daemon thread; the URL of its /metrics."""
    addr, port = parse_listen(listen)
    try:
        _server, thread = start_http_server(port, addr, registry)
    except OSError as exc:
        why = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
        raise EnvironmentProblem(f"cannot listen on {listen}: {why}") from None
    host = f"[{addr}]" if ":" in addr else addr
    return f"http://{host}:{port}/metrics", thread
