"""zpctl db: the platform database's schema version, and its migrations."""

from __future__ import annotations

from pathlib import Path

import click

from zpctl.cli.accounts import db_options, db_target
from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.db import LATEST, MIGRATIONS, Migration, connect, migrate, status
from zpctl.model import load_inventory


@click.group("db")
def db_group() -> None:
    """The platform database (subscribers, DID aliases, call records): its schema
    version and its migrations.

    \b
      zpctl db status inventories/lab                 # the running lab's database
      zpctl db migrate inventories/us01 --platform --dry-run
      zpctl -o json db status INV --db /var/lib/zpctl/subscriber.sqlite
    The schema is numbered; each migration is one transaction, so a database is always at
    one version.  Commands that use the database refuse one at another version than
    zpctl's (exit 6); an unreachable database is exit 9.
    """


@db_group.command("status")
@INVENTORY_ARG
@db_options
@pass_ctx
def status_cmd(ctx: Context, inventory: Path, db: Path | None, platform_db: bool,
               lab_dir: Path | None, secrets_file: Path | None) -> None:
    """Show the database's schema version, zpctl's, and the migrations it lacks."""
    target, _secrets = db_target(load_inventory(inventory), db, lab_dir, secrets_file,
                                 platform_db)
    with connect(target) as conn:
        st = status(conn)
    pending = ", ".join(st.pending) or "none"
    emit(ctx.output, st.as_dict(),
         text=f"{st.target}: schema version {st.version} of {st.latest} ({st.state}); "
              f"pending: {pending}")


@db_group.command("migrate")
@INVENTORY_ARG
@db_options
@click.option("--dry-run", is_flag=True, help="List the migrations it would apply; apply none.")
@pass_ctx
def migrate_cmd(ctx: Context, inventory: Path, db: Path | None, platform_db: bool,
                lab_dir: Path | None, secrets_file: Path | None, dry_run: bool) -> None:
    """Bring the database to zpctl's schema version: apply each missing migration in
    order, each in one transaction.  A database already current is left alone; one newer
    than zpctl is refused (exit 6).  A sqlite file given with --db is created if missing."""
    target, _secrets = db_target(load_inventory(inventory), db, lab_dir, secrets_file,
                                 platform_db)

    def step(m: Migration) -> None:
        info(f"  applying {m.version:03d}_{m.name}")

    if dry_run and target.path is not None and not target.path.exists():
        done = list(MIGRATIONS)  # a new file would get every one
    else:
        with connect(target, create=target.engine == "sqlite" and not dry_run) as conn:
            done = migrate(conn, dry_run=dry_run, progress=step)
    names = [f"{m.version:03d}_{m.name}" for m in done]
    verb = "would apply" if dry_run else "applied"
    emit(ctx.output, {"database": target.label, "dry_run": dry_run, verb.replace(" ", "_"): names,
                      "version": LATEST if not dry_run or not done else done[0].version - 1},
         text=f"{target.label}: {verb} {len(names)} migration(s)"
              + (f": {', '.join(names)}" if names else "; already at version " + str(LATEST)))
