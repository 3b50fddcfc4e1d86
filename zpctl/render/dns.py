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
  resolves the domain of its own SIP URI finds its home and then the secondary; and the
  same SRV records at the account's own names, for phones that ask SRV directly.

The serial is a CRC-32 of the records: the same inventory gives the same file.  Every
server loads the file itself (no zone transfer), so the serial need not grow.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

from zpctl.model.dns_names import home_service, ordered, relative, service_names
from zpctl.model.schema import DataCenter, Inventory

__all__ = ["DNS", "Record", "dns_files", "edge_name", "ordered", "records", "relative",
           "service_names", "zone_text"]

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


def records(inv: Inventory) -> list[Record]:
    """Every record of the zone but SOA, in file order."""
    assert inv.dns is not None
    out: list[Record] = [Record("@", "NS", _fqdn(s.name)) for s in inv.dns.servers]
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
        out += _srv(name, dcs)
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
        # NAPTR to the home's SRV names, and the same SRV records at the account's own
        # names, for phones that ask SRV directly (_sips._tcp.<domain>) and skip NAPTR.
        out += _naptr(rel, home, f"account {acct.id}: its home, {home}")
        out += _srv(rel, [d for d in names[home] if d.service_address is not None and d.lbs])
    return out


def _srv(name: str, dcs: list[DataCenter]) -> list[Record]:
    """The SRV records of ``name`` for each service, the data centers in the given order."""
    out = []
    for _, prefix, port_key in SERVICES:
        for dc in dcs:
            port = getattr(dc.lbs[0].ports, port_key)
            out.append(Record(f"{prefix}.{name}", "SRV",
                              f"{dc.srv_priority} {SRV_WEIGHT} {port} {edge_name(dc)}"))
    return out


def _naptr(name: str, target: str, comment: str) -> list[Record]:
    return [Record(name, "NAPTR", f'{10 * (i + 1)} 10 "S" "{svc}" "" {prefix}.{target}',
                   comment if i == 0 else "")
            for i, (svc, prefix, _) in enumerate(SERVICES)]


def _fqdn(name: str) -> str:
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
    ns = _fqdn(inv.dns.servers[0].name)
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
