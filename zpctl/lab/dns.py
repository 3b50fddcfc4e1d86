"""The lab's authoritative DNS: NSD serving the rendered zone (``_dns/``) on each address
the inventory's ``dns.servers`` names (loopback in the lab), so that phones, resolvers and
Kamailio find the platform by NAPTR and SRV as they would in production (docs/EDGE.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from zpctl.errors import Unreachable
from zpctl.lab.services import Service, which
from zpctl.model import LoadedInventory
from zpctl.render.dns import DNS

KIND = "nsd"


def dns_services(inv: LoadedInventory, lab_dir: Path, bin_path: str | None = None
                 ) -> list[Service]:
    """One NSD per name server of the inventory (none without ``dns:``)."""
    model = inv.model
    if model.dns is None:
        return []
    zone = model.dns_zone()
    assert zone is not None
    binary = which("nsd", bin_path)
    out = []
    for s in model.dns.servers:
        conf = lab_dir / "build" / DNS / s.name / "nsd.conf"
        state = lab_dir / "nodes" / DNS / s.name  # made by Lab.prepare
        out.append(Service(f"{DNS}/{s.name}", KIND, f"{DNS}/{s.name}",
                           [binary, "-d", "-c", str(conf)],
                           [(s.address, 53, "udp"), (s.address, 53, "tcp")],
                           soa_health(s.address, zone), cwd=state))
    return out


def soa_health(address: str, zone: str, port: int = 53) -> Callable[[], None]:
    """Up once the server answers the zone's SOA with authority."""
    def check() -> None:
        try:
            reply = dns.query.udp(dns.message.make_query(zone, dns.rdatatype.SOA), address,
                                  timeout=0.5, port=port)
        except (OSError, dns.exception.DNSException) as exc:
            raise Unreachable(f"DNS {address}: {exc}") from None
        if not reply.answer or not reply.flags & dns.flags.AA:
            raise Unreachable(f"DNS {address} does not answer for {zone} with authority")
    return check
