"""zpctl survivability: a site's local survivability node, its users and its phones."""

from __future__ import annotations

from pathlib import Path

import click

from zpctl.cli.accounts import db_options, db_target
from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.control import control_options, make_control
from zpctl.cli.output import emit, info
from zpctl.cli.types import TIMEOUT
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.model import LoadedInventory, load_inventory
from zpctl.model.survivable import SurvivableSite, find_site
from zpctl.render.paths import node_paths
from zpctl.survivability import status, sync

SITE_ARG = click.argument("site", metavar="SITE")


@click.group("survivability")
def survivability() -> None:
    """Local survivability: a customer site keeps calling when the cloud is out of reach.

    SITE is account/site (or the site id alone when only one account has it).  Its node
    (sites[].survivability.node) holds the site's users; its phones register there when
    they cannot reach the cloud, and come back when they can (docs/SURVIVABILITY.md).

    \b
      zpctl survivability sync acme/hq                 # the running lab: push the users
      zpctl survivability status acme/hq               # state, last sync, local phones
      zpctl survivability sync acme/hq --inventory INV --platform --to /mnt/hq/survivability.sqlite
    """


def _site(inv: LoadedInventory, spec: str) -> SurvivableSite:
    try:
        return find_site(inv.model, spec)
    except ValueError as exc:
        raise ZpctlError(str(exc), ExitCode.USAGE) from None


@survivability.command("sync")
@SITE_ARG
@click.option("--inventory", type=click.Path(path_type=Path),
              help="Inventory (default: the running lab's).")
@db_options
@click.option("--to", "to", type=click.Path(path_type=Path),
              help="The node's database file (default: the running lab node's).")
@click.option("--dry-run", is_flag=True, help="Say what would be written; write nothing.")
@click.option("--timeout", type=TIMEOUT, default=3.0, show_default=True,
              help="Seconds to wait for the node's JSON-RPC answer.")
@pass_ctx
def sync_cmd(ctx: Context, site: str, inventory: Path | None, db: Path | None,
             platform_db: bool, lab_dir: Path | None, secrets_file: Path | None,
             to: Path | None, dry_run: bool, timeout: float) -> None:
    """Push SITE's users to its survivability node: their credentials as the cloud's
    database holds them (HA1 hashes, never passwords), users and devices, with the time of
    the sync, in one transaction.  The node checks the new credentials at once and reads
    the sync record again (JSON-RPC htable.reload); exit 7 if it does not answer (the file
    is written: it reads the record when it next starts).  The cloud's database is the
    running lab's unless --db or --platform says otherwise.
    """
    lab = Lab(lab_dir)
    inv = load_inventory(inventory) if inventory is not None else None
    if inv is None:
        if lab.state() is None:
            raise ZpctlError(f"no --inventory and no lab in {lab.dir}", ExitCode.USAGE)
        inv = lab.inventory()
    s = _site(inv, site)
    source, _ = db_target(inv, db, lab_dir if db is None and not platform_db else None,
                          secrets_file, platform_db)
    if to is None:
        if lab.state() is None:
            raise ZpctlError(f"where is {s.config.node}'s database? It is on the node's host: "
                             "give --to PATH (docs/SURVIVABILITY.md)", ExitCode.USAGE)
        to = Path(node_paths(inv.model, s.config.node, lab.dir).survivability_db)
    control = None if dry_run else make_control(inventory, lab_dir, timeout, False, loaded=inv)
    report = sync(inv, s, source, to, control, dry_run=dry_run)
    verb = "would write" if dry_run else "wrote"
    emit(ctx.output, report.as_dict(),
         text=f"{s.where}: {verb} {report.credentials} credentials of {report.users} users to "
              f"{report.node} ({report.to})" + ("" if report.changed else ", unchanged"))
    if report.missing:
        info(f"not in {report.source}: {', '.join(report.missing)} (run `zpctl accounts sync`)")
    if report.node_reloaded is False:
        raise ZpctlError(f"{report.node} did not reload the sync record: {report.node_error}",
                         ExitCode.UNREACHABLE)


@survivability.command("status")
@SITE_ARG
@control_options
@pass_ctx
def status_cmd(ctx: Context, site: str, inventory: Path | None, lab_dir: Path | None,
               timeout: float, local: bool) -> None:
    """SITE's state (cloud, survivable, returning; unknown when its node does not
    answer), the node's last sync and its age, and which of the site's phones are
    registered at the node and in the cloud.  Exit 7 with each problem named: no users
    synced, a sync older than max_sync_age_hours, a node that does not answer."""
    control = make_control(inventory, lab_dir, timeout, local)
    s = _site(control.inv, site)
    st = status(control.inv, s, control)
    local_n = "?" if st["registered_locally"] is None else len(st["registered_locally"])
    cloud_n = "?" if st["registered_in_cloud"] is None else len(st["registered_in_cloud"])
    age = "never" if st["sync_age_s"] is None else f"{st['sync_age_s']} s ago"
    emit(ctx.output, st,
         text=f"{st['site']}: {st['state']} (node {st['node']}); synced {age}, "
              f"{st['users_synced'] or 0}/{st['users']} users; phones at the node: {local_n}, "
              f"in the cloud: {cloud_n}")
    for p in st["problems"]:
        info(p)
    if st["problems"]:
        raise ZpctlError(f"{st['site']}: {len(st['problems'])} problem(s)", ExitCode.UNREACHABLE)
