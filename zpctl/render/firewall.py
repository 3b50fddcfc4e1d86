"""Each node's firewall: nftables rules that open only what its role needs, to only the
sources that need it (``<node>/nftables/zpctl.nft``; docs/EDGE.md).

Everything else is dropped.  Public -- open to ``firewall.sip_from`` and
``firewall.rtp_from`` (anywhere unless the inventory narrows them) -- are only:

- SIP (UDP and TCP 5060) and SIP over TLS (5061) at the lbs;
- RTP at the media nodes' public addresses.

The sbcs' public side answers only the carriers' and the trunk addresses of the accounts
its data center serves.  The
management ports (JSON-RPC and metrics, ESL, Redis, rtpengine's ng, SSH) answer the
management networks, and the internal SIP, DMQ, TLS and RTP paths answer the nodes of
the same data center that use them (internal SIP also the management networks: health
checks send OPTIONS there).  Connections a node opens itself come back as
established traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.schema import Node, Role
from zpctl.model.survivable import site_of_node
from zpctl.render.freeswitch import served_accounts

ANY = "0.0.0.0/0"
SSH_PORT = 22


@dataclass(frozen=True)
class Rule:
    what: str  # the comment: which path this opens
    proto: str  # udp | tcp | vrrp
    ports: str  # "5060", "30000-39999"; "" for vrrp
    daddr: tuple[str, ...]  # the node's addresses it applies to
    saddr: tuple[str, ...]  # sources; (ANY,) for anyone

    @property
    def public(self) -> bool:
        return ANY in self.saddr

    def nft(self) -> str:
        src = "" if self.public else f"ip saddr {_set(self.saddr)} "
        dst = f"ip daddr {_set(self.daddr)} "
        match = "ip protocol vrrp" if self.proto == "vrrp" else f"{self.proto} dport {self.ports}"
        return f'{src}{dst}{match} accept comment "{self.what}"'


def _set(items: Iterable[str]) -> str:
    values = sorted(set(items))
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _addrs(nodes: Iterable[Node]) -> tuple[str, ...]:
    return tuple(sorted({n.address for n in nodes}))


def firewall_rules(loaded: LoadedInventory, p: PlacedNode) -> list[Rule]:
    """What ``p``'s firewall lets in, beyond loopback and established traffic."""
    inv = loaded.model
    fw = inv.firewall
    n, ports = p.node, p.node.ports
    mgmt = tuple(inv.platform.management_networks)
    dc_nodes = [q.node for q in loaded.nodes() if q.dc.id == p.dc.id]
    by_role = {r: [q for q in dc_nodes if q.role == r] for r in Role}
    lbs = by_role[Role.LB]
    lb_sources = _addrs(lbs) + ((p.dc.edge.address,) if p.dc.edge else ())
    # SSH on every address of the node (a deploy may reach a host by any of them), from the
    # management networks only: the controller sits there (it already must for JSON-RPC).
    own = tuple(sorted({n.address, n.public, n.mgmt}))
    rules = [Rule("ssh from the management networks", "tcp", str(SSH_PORT), own, mgmt)]
    if p.role in (Role.LB, Role.PROXY, Role.SBC, Role.SURVIVABILITY):
        rules.append(Rule("JSON-RPC and metrics from the management networks", "tcp",
                          str(ports.mgmt_http), (n.mgmt,), mgmt))
    if p.role == Role.LB:
        service = (p.dc.service_address or n.address, n.address)
        # phones, the zone proxies, and the management networks' health checks (OPTIONS)
        sources = tuple(fw.sip_from) + _addrs(by_role[Role.PROXY]) + mgmt
        rules += [Rule("SIP from phones", "udp", str(ports.sip), service, sources),
                  Rule("SIP from phones", "tcp", str(ports.sip), service, sources),
                  Rule("SIP over TLS from phones", "tcp", str(ports.sips), service, sources)]
        peers = [lb for lb in lbs if lb.name != n.name]
        if p.dc.edge is not None and peers:
            rules.append(Rule("VRRP from the other lb of the pair", "vrrp", "", (n.address,),
                              _addrs(peers)))
    elif p.role == Role.PROXY:
        internal = lb_sources + _addrs(by_role[Role.SBC]) + _addrs(by_role[Role.PROXY])
        sister = _addrs(q for q in by_role[Role.PROXY] if q.name != n.name)
        # and the management networks: health checks (deploy, the exporter) send OPTIONS
        internal += mgmt
        rules += [Rule("SIP from the lbs, sbcs, proxies and management", "udp",
                       str(ports.sip), (n.address,), internal),
                  Rule("SIP from the lbs, sbcs, proxies and management", "tcp",
                       str(ports.sip), (n.address,), internal)]
        if sister:
            rules.append(Rule("DMQ from the sister proxy", "udp", str(ports.dmq), (n.address,),
                              sister))
        switches = _addrs(by_role[Role.SWITCH] + by_role[Role.SWITCH_STANDBY])
        if inv.platform.switch_tier and switches:
            rules.append(Rule("SIP over TLS from the switches", "tcp", str(ports.sips),
                              (n.address,), switches))
    elif p.role == Role.SBC:
        # The lbs too: around a dead zone proxy, an lb sends in-dialog requests to the far
        # end itself (route INDLG_ZONE_DEAD), which for a PSTN call is this sbc.
        # And the management networks' health checks (OPTIONS).
        internal = _addrs(by_role[Role.PROXY]) + lb_sources + mgmt
        rules += [Rule("SIP from the zone proxies, lbs and management", "udp", str(ports.sip),
                       (n.address,), internal),
                  Rule("SIP from the zone proxies, lbs and management", "tcp", str(ports.sip),
                       (n.address,), internal)]
        # The platform's carriers, and the trunks of the accounts this data center serves
        # (as the sbc's own peer table: no other account's trunk is trusted here).
        served = served_accounts(inv, p)
        trunks = tuple(sorted({a.address for c in inv.carriers for a in c.addresses}
                              | {a.address for acct in served for t in acct.trunks
                                 for a in t.addresses}))
        tls_peers = tuple(sorted({a.address for acct in served for t in acct.trunks
                                  if t.tls is not None for a in t.addresses}))
        if trunks:
            rules += [Rule("SIP from carriers and trunks", "udp", str(ports.sip),
                           (n.public,), trunks),
                      Rule("SIP from carriers and trunks", "tcp", str(ports.sip),
                           (n.public,), trunks)]
        if tls_peers:
            rules.append(Rule("SIP over mutual TLS from premises SBCs (BYOC-P)", "tcp",
                              str(ports.sips), (n.public,), tls_peers))
    elif p.role == Role.SURVIVABILITY:
        # The site's phones (its LAN), its SBC, and the management networks' health checks;
        # the announcer's media from the phones; its event socket from the management
        # networks (health).  Its SIP port answers only the node itself (loopback).
        site = site_of_node(inv, n.name)
        lan = tuple(site.config.lan) if site else ()
        sbc = (site.config.sbc.address,) if site and site.config.sbc else ()
        sources = lan + sbc + mgmt
        rules += [Rule("SIP from the site's phones and SBC", "udp", str(ports.sip),
                       (n.address,), sources),
                  Rule("SIP from the site's phones and SBC", "tcp", str(ports.sip),
                       (n.address,), sources),
                  Rule("the announcer's RTP from the site's phones", "udp",
                       f"{n.rtp.port_min}-{n.rtp.port_max}", (n.address,), lan + sbc),
                  Rule("the announcer's event socket from the management networks", "tcp",
                       str(ports.esl), (n.mgmt,), mgmt)]
    elif p.role == Role.MEDIA:
        rtp = f"{n.rtp.port_min}-{n.rtp.port_max}"
        kamailio = _addrs(by_role[Role.PROXY] + by_role[Role.SBC])
        rules += [Rule("RTP from phones and carriers", "udp", rtp, (n.public,),
                       tuple(fw.rtp_from)),
                  Rule("RTP from this data center's nodes", "udp", rtp, (n.address,),
                       _addrs(dc_nodes)),
                  Rule("rtpengine control from the proxies and sbcs", "udp",
                       str(ports.rtpengine_ng), (n.mgmt,), mgmt + kamailio),
                  Rule("Redis from the management networks", "tcp", str(ports.redis),
                       (n.mgmt,), mgmt)]
    elif p.role in (Role.SWITCH, Role.SWITCH_STANDBY):
        rtp = f"{n.rtp.port_min}-{n.rtp.port_max}"
        # A standby takes over a dead switch of its zone with that switch's addresses: its
        # rules name theirs too.
        takes = [n] + ([q for q in by_role[Role.SWITCH] if q in (p.dc.zones[p.zone].nodes
                                                                  if p.zone else [])]
                       if p.role == Role.SWITCH_STANDBY else [])
        addresses, mgmts = _addrs(takes), tuple(sorted({q.mgmt for q in takes}))
        rules += [Rule("SIP over TLS from the proxies and lbs", "tcp", str(ports.sips),
                       addresses, _addrs(by_role[Role.PROXY]) + lb_sources),
                  Rule("RTP from the media nodes", "udp", rtp, addresses,
                       _addrs(by_role[Role.MEDIA])),
                  Rule("ESL from the management networks", "tcp", str(ports.esl), mgmts,
                       mgmt)]
    return rules
