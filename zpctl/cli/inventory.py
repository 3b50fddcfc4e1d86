"""zpctl inventory: validate, show and export the schema of an inventory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.output import emit
from zpctl.errors import EnvironmentProblem, InventoryError
from zpctl.model import LoadedInventory, load_inventory
from zpctl.model.schema import FILE_KINDS, file_schema

INVENTORY_ARG = click.argument("inventory", type=click.Path(path_type=Path), metavar="INVENTORY")


def summary(inv: LoadedInventory) -> dict[str, Any]:
    m = inv.model
    nodes = list(inv.nodes())
    return {
        "inventory": str(inv.root),
        "platform": m.platform.name,
        "clusters": [c.id for c in m.clusters],
        "datacenters": len(m.datacenters),
        "zones": sum(len(dc.zones) for dc in m.datacenters),
        "nodes": len(nodes),
        "roles": {r: sum(1 for n in nodes if n.role.value == r)
                  for r in sorted({n.role.value for n in nodes})},
        "accounts": len(m.accounts),
        "users": sum(len(a.users) for a in m.accounts),
        "offerings": {o: sum(1 for a in m.accounts if a.offering == o)
                      for o in ("native", "byoc-c", "byoc-p")},
    }


@click.group()
def inventory() -> None:
    """Validate and inspect inventories (the one description of a platform).

    \b
    An inventory is a directory:
      platform.yml          platform, clusters, security, codecs, carriers, defaults
      datacenters/*.yml     one data center per file: its lb, its two zones and their nodes
      accounts/*.yml        one customer account per file: sites, users, numbers, trunks
    Settings layer as defaults (platform.yml) < data center < zone < node.
    """


@inventory.command("validate")
@INVENTORY_ARG
@pass_ctx
def validate_cmd(ctx: Context, inventory: Path) -> None:
    """Check INVENTORY against the schema and every cross-check.

    Reports all problems at once as FILE:LINE: FIELD: REASON and exits 3 when there is any.
    With -o json the problems are printed on stdout as well.
    """
    try:
        inv = load_inventory(inventory)
    except InventoryError as exc:
        if ctx.output in ("json", "yaml"):
            emit(ctx.output, {"valid": False, "problems": [p.as_dict() for p in exc.problems]})
        raise
    data = {"valid": True, **summary(inv)}
    emit(ctx.output, data, text=(
        f"{inventory}: valid — {data['datacenters']} data centers, {data['zones']} zones, "
        f"{data['nodes']} nodes, {data['accounts']} accounts, {data['users']} users"))


@inventory.command("show")
@INVENTORY_ARG
@click.option("--section", type=click.Choice(["nodes", "datacenters", "accounts", "all"]),
              default="nodes", show_default=True, help="What to show.")
@pass_ctx
def show_cmd(ctx: Context, inventory: Path, section: str) -> None:
    """Show INVENTORY after layering: nodes (default), data centers, accounts or all of it."""
    inv = load_inventory(inventory)
    if section == "all":
        emit("yaml" if ctx.output == "table" else ctx.output,
             inv.model.model_dump(mode="json", exclude_none=True))
        return
    if section == "nodes":
        rows = [{"node": p.name, "role": p.role.value, "dc": p.dc.id, "zone": p.zone or "-",
                 "address": p.node.address, "public": p.node.public, "mgmt": p.node.mgmt,
                 "sip": p.node.ports.sip, "cps": p.node.capacity.cps} for p in inv.nodes()]
        emit(ctx.output, rows, rows=rows,
             columns=["node", "role", "dc", "zone", "address", "public", "mgmt", "sip", "cps"])
    elif section == "datacenters":
        rows = [{"id": dc.id, "city": dc.city, "country": dc.country, "region": dc.region,
                 "cluster": dc.cluster, "role": dc.role, "pair": dc.pair,
                 "zones": ",".join(sorted(dc.zones))} for dc in inv.model.datacenters]
        emit(ctx.output, rows, rows=rows, columns=list(rows[0]) if rows else ["id"])
    else:
        rows = [{"id": a.id, "name": a.name, "cluster": a.cluster, "offering": a.offering,
                 "region_lock": a.region_lock or "-", "domain": inv.model.account_domain(a),
                 "sites": len(a.sites), "users": len(a.users), "numbers": len(a.numbers)}
                for a in inv.model.accounts]
        emit(ctx.output, rows, rows=rows, columns=list(rows[0]) if rows else ["id"])


@inventory.command("schema")
@click.argument("kind", type=click.Choice(["combined", *FILE_KINDS]), default="combined")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write platform.schema.json, datacenter.schema.json and "
                   "account.schema.json here instead of printing one.")
def schema_cmd(kind: str, out_dir: Path | None) -> None:
    """Print the JSON Schema of one kind of inventory file, for editors
    (yaml-language-server and friends): `platform` (platform.yml), `datacenter` (one
    datacenters/*.yml), `account` (one accounts/*.yml), or `combined` (the whole
    inventory as one document).

    The schemas carry the enums and patterns zpctl checks (prompt languages, features,
    currencies, addresses, dates); what relates values to each other is checked by
    `zpctl inventory validate` only.  Wire one into an editor with a first line such as
    `# yaml-language-server: $schema=../../schemas/datacenter.schema.json`
    (docs/INVENTORY.md, "Editors").
    """
    if out_dir is None:
        click.echo(json.dumps(file_schema(kind), indent=2, sort_keys=True))
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for k in FILE_KINDS:
            (out_dir / f"{k}.schema.json").write_text(
                json.dumps(file_schema(k), indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise EnvironmentProblem(f"{out_dir}: cannot write the schemas: {exc.strerror}") from None
    click.echo(f"wrote {', '.join(f'{k}.schema.json' for k in FILE_KINDS)} to {out_dir}",
               err=True)
