"""zpctl dns: the platform's DNS records, and what a phone finds by them."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict
from pathlib import Path

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.output import emit
from zpctl.cli.types import seconds
from zpctl.errors import ExitCode, ZpctlError
from zpctl.model import load_inventory

INVENTORY_ARG = click.argument("inventory", type=click.Path(path_type=Path), metavar="INVENTORY")


@click.group("dns")
def dns_group() -> None:
    """The platform's DNS zone (inventory `dns:`), and what phones find by it.

    \b
    zpctl dns records inventories/lab                  # every record zpctl renders
    zpctl dns records inventories/lab --name lab1      # one name's records
    zpctl dns resolve acme.lab.zpctl.test --server 127.0.53.1
                                                       # NAPTR -> SRV -> A, as a phone
    Design and tests: docs/EDGE.md.
    """


@dns_group.command("records")
@INVENTORY_ARG
@click.option("--name", help="Only the records of this name (relative to the zone), and "
                             "those under it (_sip._udp.NAME, ...).")
@pass_ctx
def records_cmd(ctx: Context, inventory: Path, name: str | None) -> None:
    """The records of the zone INVENTORY's `dns:` describes (`_dns/<zone>.zone` in a
    build, SOA left out): name (relative to the zone), type, data."""
    from zpctl.render.dns import records  # noqa: PLC0415 - render's imports for this command only

    inv = load_inventory(inventory)
    if inv.model.dns is None:
        raise ZpctlError(f"{inventory}: the inventory has no dns: section (docs/EDGE.md)",
                         ExitCode.USAGE)
    rows = [{"name": r.name, "type": r.type, "data": r.data} for r in records(inv.model)
            if name is None or r.name == name or r.name.endswith(f".{name}")]
    if name is not None and not rows:
        raise ZpctlError(f"no record named {name} in zone {inv.model.dns_zone()}",
                         ExitCode.USAGE)
    emit(ctx.output, {"zone": inv.model.dns_zone(), "ttl": inv.model.dns.ttl, "records": rows},
         rows=rows, columns=["name", "type", "data"])


@dns_group.command("resolve")
@click.argument("domain")
@click.option("--server", required=True, metavar="ADDRESS",
              help="The DNS server to ask (the zone's authoritative server).")
@click.option("--transport", type=click.Choice(["udp", "tcp", "tls"]), default="udp",
              show_default=True, help="The NAPTR service to follow.")
@click.option("--port", type=click.IntRange(1, 65535), default=53, show_default=True,
              help="The server's port.")
@click.option("--timeout", type=seconds(60.0), default=2.0, show_default=True,
              metavar="SECONDS", help="How long to wait for the whole lookup.")
@pass_ctx
def resolve_cmd(ctx: Context, domain: str, server: str, transport: str, port: int,
                timeout: float) -> None:
    """Where a phone that follows RFC 3263 sends requests for DOMAIN, in the order it tries
    them: the NAPTR record of the transport, its SRV records by priority, their addresses.
    Exit 7 when the chain is broken or the server does not answer."""
    from zpctl.clients.dns import sip_route  # noqa: PLC0415 - dnspython for this command only

    try:
        ipaddress.ip_address(server)
    except ValueError:
        raise ZpctlError(f"--server {server!r} is not an IP address", ExitCode.USAGE) from None
    route = [asdict(t) for t in sip_route(domain, server, transport, port, timeout)]
    emit(ctx.output, route, rows=route,
         columns=["priority", "weight", "host", "address", "port", "srv"])
