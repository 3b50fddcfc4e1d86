"""Health of every node, zone and data center, as the platform itself sees it.

A Kamailio node is up when it answers SIP OPTIONS with 200; a media node when rtpengine
answers the ng ``ping`` with ``pong``.  Each lb's ``dispatcher.list`` says whether it still
sends calls to each zone (its proxy's destination active).  A zone is up when its proxy
answers and no answering lb of its data center has marked it inactive; a data center is up
when one of its lbs answers and at least one of its zones is up.  An lb that does not answer
makes the data center down, not its zones: that is one fault, alerted once.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily

from zpctl.metrics.base import LOCATION, Families, PlatformCollector, where
from zpctl.metrics.sources import fan_out
from zpctl.model import PlacedNode
from zpctl.model.roles import PROBED_ROLES
from zpctl.model.schema import Role


def zone_states(dispatcher_list: Any, zone_uris: dict[str, str]) -> dict[str, bool]:
    """From an lb's ``dispatcher.list`` reply: zone -> destination active (flags ``A...``).

    ``zone_uris`` maps each zone's proxy URI (as the renderer writes it into the lb's
    dispatcher.list) to the zone; destinations that are not zone proxies are ignored.
    """
    out: dict[str, bool] = {}
    records = dispatcher_list.get("RECORDS") if isinstance(dispatcher_list, dict) else None
    for rec in records or []:
        for target in (rec.get("SET") or {}).get("TARGETS") or []:
            dest = target.get("DEST") or {}
            zone = zone_uris.get(str(dest.get("URI", "")))
            if zone is not None:
                out[zone] = str(dest.get("FLAGS", "")).startswith("A")
    return out


class HealthCollector(PlatformCollector):
    """``zpctl_node_up``, ``zpctl_lb_zone_active``, ``zpctl_zone_up``, ``zpctl_datacenter_up``."""

    name = "health"

    def families(self) -> Families:
        return {
            "node": GaugeMetricFamily(
                "zpctl_node_up", "1 if the node answers its probe (Kamailio: SIP OPTIONS 200, "
                "media: rtpengine ng ping), else 0", labels=[*LOCATION, "role"]),
            "lb": GaugeMetricFamily(
                "zpctl_lb_zone_active", "1 if the lb's dispatcher sends calls to the zone "
                "(destination active), else 0", labels=["dc", "zone", "lb"]),
            "zone": GaugeMetricFamily(
                "zpctl_zone_up", "1 if the zone's proxy answers and no lb has taken the zone "
                "out of service, else 0", labels=["dc", "zone"]),
            "dc": GaugeMetricFamily(
                "zpctl_datacenter_up", "1 if an lb of the data center answers and at least one "
                "zone is up, else 0", labels=["dc"]),
        }

    def _probe(self, p: PlacedNode) -> bool:
        if p.role == Role.MEDIA:
            return self.clients.ng(p.node, "ping", {}).get("result") == "pong"
        return self.clients.sip_ping(p.node) == 200

    def fill(self, fams: Families, errors: list[str]) -> None:
        nodes = [p for p in self.inv.nodes() if p.role in PROBED_ROLES]
        lbs = [p for p in nodes if p.role == Role.LB]
        up: dict[str, bool] = {}
        for p, ok, err in fan_out(self._probe, nodes):
            up[p.name] = bool(ok)
            if err is not None:
                errors.append(f"{p.name}: {err}")
            fams["node"].add_metric([*where(p), p.role.value], 1 if ok else 0)
        # What each answering lb says about each zone of its data center.
        marked: dict[tuple[str, str], list[bool]] = {}
        for p, reply, err in fan_out(lambda p: self.clients.rpc(p.node).call("dispatcher.list"),
                                     [p for p in lbs if up.get(p.name)]):
            if err is not None:
                errors.append(f"{p.name}: dispatcher.list: {err}")
                continue
            uris = {}
            for z in sorted(p.dc.zones):
                proxy = self.inv.zone_node(p.dc, z, Role.PROXY)
                if proxy is not None:
                    uris[f"sip:{proxy.address}:{proxy.ports.sip}"] = z
            for z, active in sorted(zone_states(reply, uris).items()):
                fams["lb"].add_metric([p.dc.id, z, p.name], 1 if active else 0)
                marked.setdefault((p.dc.id, z), []).append(active)
        for dc in self.inv.model.datacenters:
            zones_up = 0
            for z in sorted(dc.zones):
                proxy = self.inv.zone_node(dc, z, Role.PROXY)
                ok = proxy is not None and up.get(proxy.name, False) \
                    and all(marked.get((dc.id, z), []))
                zones_up += ok
                fams["zone"].add_metric([dc.id, z], 1 if ok else 0)
            dc_lbs = [p for p in lbs if p.dc.id == dc.id]
            lb_ok = any(up.get(p.name) for p in dc_lbs) if dc_lbs else True
            fams["dc"].add_metric([dc.id], 1 if lb_ok and zones_up > 0 else 0)
