"""The names the platform's DNS zone gives, and who claims each (docs/EDGE.md).

One place for the rule, used by the renderer (zpctl.render.dns) and by the cross-check
that refuses a name two things claim (zpctl.model.checks)."""

from __future__ import annotations

from zpctl.model.schema import DataCenter, Inventory


def ordered(dcs: list[DataCenter]) -> list[DataCenter]:
    """Data centers in the order DNS offers them: priority, then id."""
    return sorted(dcs, key=lambda d: (d.srv_priority, d.id))


def service_names(inv: Inventory) -> dict[str, list[DataCenter]]:
    """Each service name (relative to the zone) -> the data centers its SRV records list,
    in priority order: ``<dc>`` for each primary (it, then its secondary), ``<cluster>``
    (every data center of the cluster), or ``<region>.<cluster>`` for a regional cluster
    (only that region's)."""
    by_id = {d.id: d for d in inv.datacenters}
    out: dict[str, list[DataCenter]] = {}
    for dc in inv.datacenters:
        pair = by_id.get(dc.pair)
        if dc.role == "primary" and pair is not None:
            out[dc.id] = ordered([dc, pair])
    for cluster in inv.clusters:
        members = [d for d in inv.datacenters if d.cluster == cluster.id]
        if not cluster.regional:
            out.setdefault(cluster.id.lower(), ordered(members))
            continue
        for region in sorted({d.region for d in members}):
            out.setdefault(f"{region}.{cluster.id.lower()}",
                           ordered([d for d in members if d.region == region]))
    return {k: v for k, v in out.items() if v}


def relative(inv: Inventory, fqdn: str) -> str | None:
    """``fqdn`` relative to the zone ("@" for the zone itself), or None outside it."""
    zone = inv.dns_zone()
    if zone is None:
        return None
    if fqdn == zone:
        return "@"
    return fqdn[: -len(zone) - 1] if fqdn.endswith("." + zone) else None


def claimed_names(inv: Inventory) -> list[tuple[str, str, tuple[str | int, ...]]]:
    """(name relative to the zone, who claims it, where in the inventory) for every name
    that owns records: data centers' and clusters' service names, edge and server names,
    account domains and carrier hosts under the zone."""
    out: list[tuple[str, str, tuple[str | int, ...]]] = []
    for di, dc in enumerate(inv.datacenters):
        out.append((f"edge.{dc.id}", f"data center {dc.id}'s edge", ("datacenters", di, "id")))
        if dc.role == "primary":
            out.append((dc.id, f"data center {dc.id}", ("datacenters", di, "id")))
    for ci, cluster in enumerate(inv.clusters):
        members = [d for d in inv.datacenters if d.cluster == cluster.id]
        names = ([cluster.id.lower()] if not cluster.regional else
                 [f"{r}.{cluster.id.lower()}" for r in sorted({d.region for d in members})])
        out += [(n, f"cluster {cluster.id}", ("clusters", ci, "id")) for n in names]
    if inv.dns is not None:
        for si, s in enumerate(inv.dns.servers):
            rel = relative(inv, s.name)
            if rel is not None:
                out.append((rel, f"name server {s.name}", ("dns", "servers", si, "name")))
    for ai, acct in enumerate(inv.accounts):
        rel = relative(inv, inv.account_domain(acct))
        if rel is not None:
            out.append((rel, f"account {acct.id}",
                        ("accounts", ai, "domain" if acct.domain else "id")))
    for ci, c in enumerate(inv.carriers):
        rel = relative(inv, c.host) if c.host else None
        if rel is not None:
            out.append((rel, f"carrier {c.id}", ("carriers", ci, "host")))
    return out


def home_service(inv: Inventory, dc_id: str) -> str | None:
    """The service name of a site's data center: its own, or its primary's."""
    dc = next((d for d in inv.datacenters if d.id == dc_id), None)
    if dc is None:
        return None
    return dc.id if dc.role == "primary" else dc.pair
