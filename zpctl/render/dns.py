"""The platform's DNS zone, rendered under ``_dns/`` in the build (inventory ``dns:``).

::

    _dns/<zone>.zone          the zone: SOA, NS, and the records below (RFC 1035 master file)
    _dns/<server>/nsd.conf    one NSD config per authoritative server (dns.servers)

How phones and carriers find the platform (RFC 3263): a service name has three NAPTR
records (TLS first, then TCP, then UDP), each pointing at an SRV name, whose records list
data centers by priority (lower first), each at ``edge.<dc>``, the A record of its
service address (the lb pair's shared address, or the one lb's own).

* ``<dc>.<zone>``, for each primary data center: the data center, then its secondary.
* ``<cluster>.<zone>`` (lower case): every data center of the cluster, primaries first.
  A regional cluster has no cluster-wide name, which would lead across its region's
  border: ``<region>.<cluster>.<zone>`` lists only that region's data centers.
* A carrier whose ``host`` is under the zone (the lab's): SRV records for its addresses in
  the order the inventory lists them.  A real carrier publishes its own.
* Each account domain under the zone: NAPTR records leading to its home data center's
  SRV names (the data center of its first site, or that one's primary), so a phone that
  resolves the domain of its own SIP URI finds its home and then the secondary.

The serial is a CRC-32 of the records: the same inventory gives the same file.  Every
server loads the file itself (no zone transfer), so the serial need not grow.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

from zpctl.model.schema import DataCenter, Inventory

DNS = "_dns"
SRV_WEIGHT = 10
# RFC 3263 services, best first: (NAPTR service, SRV prefix, port key of the lb's ports).
SERVICES = (("SIPS+D2T", "_sips._tcp", "sips"), ("SIP+D2T", "_sip._tcp", "sip"),
            ("SIP+D2U", "_sip._udp", "sip"))

Template = Callable[..., str]


@dataclass(frozen=True)
class Record:
    name: str  # relative to the zone ("@": the zone itself)
    type: str
    data: str
    comment: str = ""

    def line(self) -> str:
        return f"{self.name:<28} IN {self.type:<5} {self.data}"


def edge_name(dc: DataCenter) -> str:
    return f"edge.{dc.id}"


def ordered(dcs: list[DataCenter]) -> list[DataCenter]:
    """Data centers in the order DNS offers them: priority, then id."""
    return sorted(dcs, key=lambda d: (d.srv_priority, d.id))


def service_names(inv: Inventory) -> dict[str, list[DataCenter]]:
    """Each service name (relative to the zone) -> the data centers its SRV records list,
    in priority order."""
    by_id = {d.id: d for d in inv.datacenters}
    out: dict[str, list[DataCenter]] = {}
    for dc in inv.datacenters:
        pair = by_id.get(dc.pair)
        if dc.role == "primary" and pair is not None:
            out[dc.id] = ordered([dc, pair])
    for cluster in inv.clusters:
        members = [d for d in inv.datacenters if d.cluster == cluster.id]
        if not cluster.regional:
            out[cluster.id.lower()] = ordered(members)
            continue
        for region in sorted({d.region for d in members}):
            out[f"{region}.{cluster.id.lower()}"] = ordered(
                [d for d in members if d.region == region])
    return {k: v for k, v in out.items() if v}


def home_service(inv: Inventory, dc_id: str) -> str | None:
    """The service name of a site's data center: its own, or its primary's."""
    by_id = {d.id: d for d in inv.datacenters}
    dc = by_id.get(dc_id)
    if dc is None:
        return None
    return dc.id if dc.role == "primary" else dc.pair


def relative(inv: Inventory, fqdn: str) -> str | None:
    """``fqdn`` relative to the zone, or None when it is outside it."""
    zone = inv.dns_zone()
    if zone is None:
        return None
    if fqdn == zone:
        return "@"
    return fqdn[: -len(zone) - 1] if fqdn.endswith("." + zone) else None


def records(inv: Inventory) -> list[Record]:
    """Every record of the zone but SOA, in file order."""
    assert inv.dns is not None
    out: list[Record] = [Record("@", "NS", f"{_fqdn(inv, s.name)}") for s in inv.dns.servers]
    for s in inv.dns.servers:
        rel = relative(inv, s.name)
        if rel is not None:
            out.append(Record(rel, "A", s.address))
    for dc in sorted(inv.datacenters, key=lambda d: d.id):
        if dc.service_address is not None:
            out.append(Record(edge_name(dc), "A", dc.service_address,
                              f"data center {dc.id} ({dc.role}, {dc.city}): its service address"))
    names = service_names(inv)
    for name in sorted(names):
        dcs = [d for d in names[name] if d.service_address is not None and d.lbs]
        out += _naptr(name, name, f"{name}: " + ", then ".join(d.id for d in dcs))
        for _, prefix, port_key in SERVICES:
            for dc in dcs:
                port = getattr(dc.lbs[0].ports, port_key)
                out.append(Record(f"{prefix}.{name}", "SRV",
                                  f"{dc.srv_priority} {SRV_WEIGHT} {port} {edge_name(dc)}"))
    for c in sorted(inv.carriers, key=lambda c: c.id):
        rel = relative(inv, c.host) if c.host else None
        if rel is None or rel == "@":
            continue
        for i, a in enumerate(c.addresses):
            prefix = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}[a.transport]
            out.append(Record(f"t{i + 1}.{rel}", "A", a.address,
                              f"carrier {c.id}, in the order it lists its addresses" if i == 0
                              else ""))
            out.append(Record(f"{prefix}.{rel}", "SRV",
                              f"{10 * (i + 1)} {SRV_WEIGHT} {a.port} t{i + 1}.{rel}"))
    for acct in sorted(inv.accounts, key=lambda a: a.id):
        rel = relative(inv, inv.account_domain(acct))
        home = home_service(inv, acct.sites[0].datacenter)
        if rel is None or rel == "@" or home is None or home not in names:
            continue
        out += _naptr(rel, home, f"account {acct.id}: its home, {home}")
    return out


def _naptr(name: str, target: str, comment: str) -> list[Record]:
    return [Record(name, "NAPTR", f'{10 * (i + 1)} 10 "S" "{svc}" "" {prefix}.{target}',
                   comment if i == 0 else "")
            for i, (svc, prefix, _) in enumerate(SERVICES)]


def _fqdn(inv: Inventory, name: str) -> str:
    return name if name.endswith(".") else name + "."


def zone_text(inv: Inventory, banner: str) -> str:
    """The zone file."""
    assert inv.dns is not None
    zone = inv.dns_zone()
    body = []
    for r in records(inv):
        if r.comment:
            body.append(f"; {r.comment}")
        body.append(r.line())
    text = "\n".join(body) + "\n"
    serial = zlib.crc32(text.encode()) or 1
    ns = _fqdn(inv, inv.dns.servers[0].name)
    ttl = inv.dns.ttl
    head = (f"; {banner}\n$ORIGIN {zone}.\n$TTL {ttl}\n"
            f"@ IN SOA {ns} hostmaster.{zone}. {serial} 3600 600 604800 {ttl}\n")
    return head + text


def dns_files(inv: Inventory, tpl: Template, paths: Callable[[str], tuple[str, str]]
              ) -> dict[str, str]:
    """``_dns/`` files: the zone and each server's NSD config.  ``paths(server)`` gives a
    server's (config folder, state folder)."""
    if inv.dns is None:
        return {}
    zone = inv.dns_zone()
    files = {f"{DNS}/{zone}.zone": zone_text(inv, "managed by zpctl — do not edit")}
    for s in inv.dns.servers:
        config, state = paths(s.name)
        files[f"{DNS}/{s.name}/nsd.conf"] = tpl(
            "dns/nsd.conf.j2", server=s, zone=zone, zonefile=f"{config}/{zone}.zone",
            state=state)
    return files
