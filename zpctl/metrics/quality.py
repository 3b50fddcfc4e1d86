"""Call quality from rtpengine: MOS, jitter, packet loss and round-trip time per call.

rtpengine (10.5) computes quality from the RTCP the endpoints send: for every receiver
report it derives jitter (ms, from the report and the codec's clock rate), packet loss (%,
from the report's fraction lost), the round-trip time (µs, both legs, from the matching
sender reports) and, once it knows the round-trip time of both legs, a MOS (x10).  The ng
``query`` of a call reports these per SSRC under ``"average MOS"`` (the mean of the
samples that had a MOS).  A call whose endpoints send no RTCP has no quality data; rtpengine
still relays it and counts it.

Per call the exporter keeps the worst direction: the lowest MOS, the highest jitter, loss
and round-trip time of the call's SSRCs.  Per media node it aggregates over the calls that
have quality data.  Querying every call costs one ng round trip each, so at most
``max_calls`` calls per node are queried per scrape (``zpctl_media_calls_queried`` says how
many were); per-call series (label ``call_id``) can be turned off for busy platforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from zpctl.metrics.base import LOCATION, Families, PlatformCollector, where
from zpctl.metrics.sources import Clients, fan_out
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.schema import Role

DEFAULT_MAX_CALLS = 200


@dataclass(frozen=True)
class CallQuality:
    """The worst direction of one call, in base units."""

    mos: float  # 1.0 .. 5.0
    jitter_seconds: float
    packet_loss_ratio: float  # 0 .. 1
    round_trip_seconds: float


def call_quality(query: Any) -> CallQuality | None:
    """The quality of a call from its ng ``query`` reply; None when no SSRC has a MOS yet."""
    ssrcs = query.get("SSRC") if isinstance(query, dict) else None
    samples = []
    for entry in (ssrcs.values() if isinstance(ssrcs, dict) else []):
        avg = entry.get("average MOS") if isinstance(entry, dict) else None
        if not isinstance(avg, dict) or not avg.get("MOS"):
            continue
        samples.append((int(avg["MOS"]) / 10.0, int(avg.get("jitter", 0)) / 1000.0,
                        int(avg.get("packet loss", 0)) / 100.0,
                        int(avg.get("round-trip time", 0)) / 1_000_000.0))
    if not samples:
        return None
    return CallQuality(min(s[0] for s in samples), max(s[1] for s in samples),
                       max(s[2] for s in samples), max(s[3] for s in samples))


def call_ids(listing: Any) -> list[str]:
    """The call-ids of an ng ``list`` reply."""
    calls = listing.get("calls") if isinstance(listing, dict) else None
    return [str(c) for c in calls] if isinstance(calls, list) else []


@dataclass(frozen=True)
class _NodeReading:
    queried: int
    quality: dict[str, CallQuality]
    errors: list[str]


class MediaQualityCollector(PlatformCollector):
    """Per-call ``zpctl_call_*`` and per-media-node ``zpctl_media_*`` quality gauges."""

    name = "quality"

    def __init__(self, inventory: LoadedInventory, clients: Clients,
                 registry: CollectorRegistry | None = None, *,
                 max_calls: int = DEFAULT_MAX_CALLS, per_call: bool = True) -> None:
        self.max_calls = max_calls
        self.per_call = per_call
        super().__init__(inventory, clients, registry)

    def families(self) -> Families:
        call = [*LOCATION, "call_id"]

        def g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        return {
            "queried": g("zpctl_media_calls_queried", "Calls rtpengine listed and the exporter "
                         "queried for quality in this scrape (at most its max-calls)", LOCATION),
            "scored": g("zpctl_media_calls_scored", "Queried calls that have quality data (RTCP "
                        "seen both ways)", LOCATION),
            "mos_avg": g("zpctl_media_mos_average", "Mean of the calls' MOS (1-5)", LOCATION),
            "mos_min": g("zpctl_media_mos_min", "Lowest MOS of any call (1-5)", LOCATION),
            "jitter_avg": g("zpctl_media_jitter_seconds_average", "Mean of the calls' jitter",
                            LOCATION),
            "jitter_max": g("zpctl_media_jitter_seconds_max", "Highest jitter of any call",
                            LOCATION),
            "loss_avg": g("zpctl_media_packet_loss_ratio_average", "Mean of the calls' packet "
                          "loss (0-1)", LOCATION),
            "loss_max": g("zpctl_media_packet_loss_ratio_max", "Highest packet loss of any call "
                          "(0-1)", LOCATION),
            "call_mos": g("zpctl_call_mos", "MOS of the call's worse direction (1-5)", call),
            "call_jitter": g("zpctl_call_jitter_seconds", "Jitter of the call's worse direction",
                             call),
            "call_loss": g("zpctl_call_packet_loss_ratio", "Packet loss of the call's worse "
                           "direction (0-1)", call),
            "call_rtt": g("zpctl_call_round_trip_seconds", "End-to-end round-trip time of the "
                          "call (both legs)", call),
        }

    def _read(self, p: PlacedNode) -> _NodeReading:
        # ng list returns at most ``limit`` call-ids (rtpengine's own default is 32).
        ids = call_ids(self.clients.ng(p.node, "list", {"limit": self.max_calls}))[:self.max_calls]
        quality: dict[str, CallQuality] = {}
        errors = []
        for cid, q, err in fan_out(lambda c: self.clients.ng(p.node, "query", {"call-id": c}),
                                   ids, workers=8):
            if err is not None:
                errors.append(f"{p.name}: query {cid}: {err}")
                continue
            if isinstance(q, dict) and q.get("result") == "error":
                continue  # the call ended between list and query ("Unknown call-id")
            cq = call_quality(q)
            if cq is not None:
                quality[cid] = cq
        return _NodeReading(len(ids), quality, errors)

    def fill(self, fams: Families, errors: list[str]) -> None:
        media = [p for p in self.inv.nodes() if p.role == Role.MEDIA]
        for p, reading, err in fan_out(self._read, media):
            if err is not None or reading is None:
                errors.append(f"{p.name}: ng list: {err}")
                continue
            errors.extend(reading.errors)
            loc = where(p)
            fams["queried"].add_metric(loc, reading.queried)
            fams["scored"].add_metric(loc, len(reading.quality))
            qs = list(reading.quality.values())
            if qs:
                n = len(qs)
                fams["mos_avg"].add_metric(loc, sum(q.mos for q in qs) / n)
                fams["mos_min"].add_metric(loc, min(q.mos for q in qs))
                fams["jitter_avg"].add_metric(loc, sum(q.jitter_seconds for q in qs) / n)
                fams["jitter_max"].add_metric(loc, max(q.jitter_seconds for q in qs))
                fams["loss_avg"].add_metric(loc, sum(q.packet_loss_ratio for q in qs) / n)
                fams["loss_max"].add_metric(loc, max(q.packet_loss_ratio for q in qs))
            if self.per_call:
                for cid, q in sorted(reading.quality.items()):
                    fams["call_mos"].add_metric([*loc, cid], q.mos)
                    fams["call_jitter"].add_metric([*loc, cid], q.jitter_seconds)
                    fams["call_loss"].add_metric([*loc, cid], q.packet_loss_ratio)
                    fams["call_rtt"].add_metric([*loc, cid], q.round_trip_seconds)
