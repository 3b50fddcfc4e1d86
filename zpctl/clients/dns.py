"""DNS as a phone sees it (RFC 3263): where requests for a SIP domain go, in the order a
phone tries them.  Used by `zpctl dns resolve`, the lab's DNS-driven phones and the tests
(docs/EDGE.md)."""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.resolver

from zpctl.errors import Unreachable

# RFC 3263 NAPTR services by transport.
NAPTR_SERVICES = {"tls": "SIPS+D2T", "tcp": "SIP+D2T", "udp": "SIP+D2U"}


@dataclass(frozen=True)
class SipTarget:
    """One place a phone may send to, from the records that led there."""

    naptr: str  # the NAPTR service followed (SIP+D2U, ...)
    srv: str  # the SRV name
    priority: int
    weight: int
    port: int
    host: str  # the SRV target
    address: str  # one of its A records


def sip_route(domain: str, server: str, transport: str = "udp", port: int = 53,
              timeout: float = 2.0) -> list[SipTarget]:
    """Where a phone that follows RFC 3263 sends its requests for ``domain``, in the order
    it tries them: the NAPTR record of ``transport`` -> its SRV records by priority (the
    higher weight first within one) -> each target's A records.  Asked of ``server`` (an
    authoritative server, as the lab's phones do).  Raises :class:`Unreachable` when the
    chain is broken."""
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [server]
    res.port = port
    res.lifetime = timeout
    try:
        naptr = [r for r in res.resolve(domain, "NAPTR")
                 if r.service.decode().upper() == NAPTR_SERVICES[transport]]
        if not naptr:
            raise Unreachable(f"{domain}: no NAPTR record for SIP over {transport}")
        srv_name = min(naptr, key=lambda r: (r.order, r.preference)).replacement
        out = []
        for srv in sorted(res.resolve(srv_name, "SRV"), key=lambda r: (r.priority, -r.weight)):
            out += [SipTarget(NAPTR_SERVICES[transport], srv_name.to_text(), int(srv.priority),
                              int(srv.weight), int(srv.port), srv.target.to_text(), a.address)
                    for a in res.resolve(srv.target, "A")]
        return out
    except dns.exception.DNSException as exc:
        raise Unreachable(f"{domain}: {exc}") from None


def sip_targets(domain: str, server: str, transport: str = "udp", port: int = 53,
                timeout: float = 2.0) -> list[tuple[str, int]]:
    """(address, port) of each :func:`sip_route` target, in order."""
    return [(t.address, t.port) for t in sip_route(domain, server, transport, port, timeout)]
