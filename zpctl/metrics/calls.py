"""Call attempts and failures per proxy, from Kamailio's dialog statistics.

Every call the proxy routes (to a registered user or towards the sbcs) gets a dialog
(``dlg_manage``), so the dialog module's counters count seizures: ``processed_dialogs`` is
incremented when a dialog is created, ``failed_dialogs`` when one ends before it was
answered (a negative final reply, a CANCEL, a timeout).  The answer-seizure ratio over a
window is therefore ``1 - rate(failed) / rate(attempts)``; it is a ratio of two rates, so it
is computed by Prometheus (the recording rule ``zpctl:answer_seizure_ratio:ratio_rate15m``)
rather than by the exporter, which keeps no history.  Requests refused before routing
(authentication, calling plan, unknown number) create no dialog and are not seizures.

Dialogs are not replicated between the proxies (dialog DMQ is off), so summing the proxies
of a data center counts each call once.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from zpctl.metrics.base import LOCATION, Families, PlatformCollector, where
from zpctl.metrics.sources import fan_out
from zpctl.model import PlacedNode
from zpctl.model.schema import Role


def parse_statistics(reply: Any) -> dict[str, int]:
    """``stats.get_statistics`` reply (``["group:name = value", ...]``) -> {"group:name": value}."""
    out: dict[str, int] = {}
    for item in reply if isinstance(reply, list) else []:
        key, sep, value = str(item).partition("=")
        if sep:
            try:
                out[key.strip()] = int(value.strip())
            except ValueError:
                continue
    return out


class CallsCollector(PlatformCollector):
    """``zpctl_call_attempts_total``, ``zpctl_calls_failed_total``, ``zpctl_calls_active``."""

    name = "calls"

    def families(self) -> Families:
        return {
            "attempts": CounterMetricFamily(
                "zpctl_call_attempts_total", "Calls the proxy routed (dialogs created): "
                "seizures", labels=LOCATION),
            "failed": CounterMetricFamily(
                "zpctl_calls_failed_total", "Calls that ended before they were answered "
                "(dialogs failed)", labels=LOCATION),
            "active": GaugeMetricFamily(
                "zpctl_calls_active", "Answered calls in progress on the proxy (active dialogs)",
                labels=LOCATION),
        }

    def _stats(self, p: PlacedNode) -> dict[str, int]:
        return parse_statistics(self.clients.rpc(p.node).call("stats.get_statistics", "dialog:"))

    def fill(self, fams: Families, errors: list[str]) -> None:
        proxies = [p for p in self.inv.nodes() if p.role == Role.PROXY]
        for p, stats, err in fan_out(self._stats, proxies):
            if err is not None or stats is None:
                errors.append(f"{p.name}: stats.get_statistics: {err}")
                continue
            if "dialog:processed_dialogs" not in stats:
                errors.append(f"{p.name}: no dialog statistics (dialog module not loaded?)")
                continue
            loc = where(p)
            fams["attempts"].add_metric(loc, stats["dialog:processed_dialogs"])
            fams["failed"].add_metric(loc, stats.get("dialog:failed_dialogs", 0))
            fams["active"].add_metric(loc, stats.get("dialog:active_dialogs", 0))
