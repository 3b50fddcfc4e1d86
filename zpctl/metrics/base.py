"""The collector base class: fresh metric families per scrape, errors recorded, never raised.

A subclass declares its families in :meth:`ZpctlCollector.families` (called for ``describe``
and again, empty, at the start of every scrape) and fills them in :meth:`fill`, appending a
line to ``errors`` for each source that did not answer.  A scrape therefore always returns
every family the collector declares (possibly without samples) instead of failing as a
whole; :class:`ExporterCollector` publishes each collector's last success and duration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from zpctl.metrics.sources import Clients
from zpctl.model import LoadedInventory, PlacedNode

log = logging.getLogger("zpctl.metrics")

Families = dict[str, GaugeMetricFamily | CounterMetricFamily]


def where(p: PlacedNode) -> list[str]:
    """The location labels of a node, in LOCATION order: dc, zone ("" for DC-level), node."""
    return [p.dc.id, p.zone or "", p.name]


LOCATION = ["dc", "zone", "node"]


class ZpctlCollector:
    """Base of every zpctl collector; registers itself with ``registry`` when given one."""

    name: ClassVar[str] = "base"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.last_success = True
        self.last_duration = 0.0
        self.last_errors: list[str] = []
        if registry is not None:
            registry.register(self)

    def families(self) -> Families:
        """New, empty metric families, by name (the names this collector exports)."""
        raise NotImplementedError

    def fill(self, fams: Families, errors: list[str]) -> None:
        """Read the sources and add samples to ``fams``; note failures in ``errors``."""
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return list(self.families().values())

    def collect(self) -> Iterator[Metric]:
        t0 = time.monotonic()
        fams = self.families()
        errors: list[str] = []
        try:
            self.fill(fams, errors)
        except Exception as exc:  # a bug in one collector must not break the whole scrape
            log.exception("collector %s failed", self.name)
            errors.append(f"{type(exc).__name__}: {exc}")
        if errors and (self.last_success or errors != self.last_errors):
            log.warning("collector %s: %s", self.name, "; ".join(errors[:5]))
        self.last_success = not errors
        self.last_errors = errors
        self.last_duration = time.monotonic() - t0
        yield from fams.values()


class PlatformCollector(ZpctlCollector):
    """A collector that reads the nodes of ``inventory`` through ``clients`` (``self.inv``,
    ``self.clients``); subclasses that take more set it before calling this constructor."""

    def __init__(self, inventory: LoadedInventory, clients: Clients,
                 registry: CollectorRegistry | None = None) -> None:
        self.inv = inventory
        self.clients = clients
        super().__init__(registry)


class ExporterCollector(ZpctlCollector):
    """The exporter's own state: build info, and each collector's last success and duration.

    Register it *after* the collectors it reports on: a registry collects in registration
    order, so by then they have run in this scrape.
    """

    name = "exporter"

    def __init__(self, collectors: Sequence[ZpctlCollector], version: str, platform: str,
                 registry: CollectorRegistry | None = None) -> None:
        self.collectors = list(collectors)
        self.version = version
        self.platform = platform
        super().__init__(registry)

    def families(self) -> Families:
        return {
            "info": GaugeMetricFamily("zpctl_exporter_build_info",
                                      "Always 1: the zpctl version and platform of this exporter",
                                      labels=["version", "platform"]),
            "success": GaugeMetricFamily("zpctl_collector_success",
                                         "1 if every source of the collector answered in its last "
                                         "run, else 0", labels=["collector"]),
            "duration": GaugeMetricFamily("zpctl_collector_duration_seconds",
                                          "How long the collector's last run took",
                                          labels=["collector"]),
        }

    def fill(self, fams: Families, errors: list[str]) -> None:
        fams["info"].add_metric([self.version, self.platform], 1)
        for c in self.collectors:
            fams["success"].add_metric([c.name], 1 if c.last_success else 0)
            fams["duration"].add_metric([c.name], c.last_duration)
