"""zpctl accounts: provision an inventory's accounts into a subscriber database."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from zpctl.accounts import SyncResult, sip_devices, sip_users
from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.clients.guard import AddressGuard
from zpctl.control import Control, sync_accounts, unanswered
from zpctl.db import DbTarget
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.model import LoadedInventory, load_inventory
from zpctl.render import AUTH_FRESH_S
from zpctl.secrets import Secrets, default_path
from zpctl.sipp import users_csv


@click.group()
def accounts() -> None:
    """Provision accounts: subscribers (HA1 hashes only) and DID aliases.

    \b
      zpctl accounts sync inventories/lab                  # into the running lab's database
      zpctl accounts sync INV --platform --secrets FILE     # the inventory's PostgreSQL
      zpctl accounts sync INV --db /var/lib/zpctl/subscriber.sqlite --secrets FILE
      zpctl accounts users inventories/lab --sipp users.csv  # SIPp injection file
    Passwords come from the secrets file (generated when missing), never from the inventory.
    """


def db_target(inv: LoadedInventory, db: Path | None, lab_dir: Path | None,
              secrets_file: Path | None, platform_db: bool = False) -> tuple[DbTarget, Secrets]:
    """The database a command works on, and the secrets file with its password: ``--db``
    (a sqlite file), ``--platform`` (the inventory's own database: PostgreSQL, with the
    password from the platform's secrets file), else the running lab's."""
    if db is not None or platform_db:
        secrets = Secrets.load(secrets_file or default_path(inv.model.platform.name))
        return (DbTarget.sqlite(db) if db is not None
                else DbTarget.of_inventory(inv, secrets)), secrets
    lab = Lab(lab_dir)
    if lab.state() is None:
        raise ZpctlError(f"no lab in {lab.dir}, and neither --db nor --platform given: say "
                         "which database", ExitCode.USAGE)
    secrets = Secrets.load(secrets_file or lab.dir / "secrets.yml")
    return lab.db_target(secrets=secrets), secrets


LAB_DIR = click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR",
                       help="Use this lab's database and secrets (default lab directory).")
DB = click.option("--db", type=click.Path(path_type=Path),
                  help="A sqlite platform database file (default: the lab's database).")
PLATFORM_DB = click.option(
    "--platform", "platform_db", is_flag=True,
    help="Use the database the inventory names (engine postgres: host, port, name and "
         "user from it, the password `db_password` from the secrets file).")
SECRETS = click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
                       help="Secrets file with the SIP passwords.")


def db_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The four options that name the platform database: --db (a sqlite file), --platform
    (the inventory's PostgreSQL), --lab-dir (the running lab's) and --secrets."""
    for option in (SECRETS, LAB_DIR, PLATFORM_DB, DB):
        f = option(f)
    return f


@accounts.command("sync")
@INVENTORY_ARG
@db_options
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@pass_ctx
def sync_cmd(ctx: Context, inventory: Path, db: Path | None, platform_db: bool,
             lab_dir: Path | None, secrets_file: Path | None, dry_run: bool) -> None:
    """Make the database's subscribers of INVENTORY's platform match its accounts: create,
    update and remove users and devices, and rewrite the DID aliases, in one transaction
    (a sync that fails changes nothing).  Other platforms' rows are kept.

    The sync also writes what each switch knows of the accounts (their dialplan contexts
    and directory domains, the switch_xml rows).  The zone proxies check the credentials
    they read in the last 15 minutes in memory; the sync deletes the changed and removed
    users' entries on every proxy (exit 7, and the proxies named, when one does not
    answer), and the switches read the database at each lookup: a change is live as soon
    as the sync returns, with no restart or redeploy.  A PostgreSQL database must be at
    zpctl's schema version (`zpctl db status`); a sqlite file is created or migrated.
    """
    inv = load_inventory(inventory)
    target, secrets = db_target(inv, db, lab_dir, secrets_file, platform_db)
    # The proxies of the platform whose database this is: the running lab's, or INVENTORY's.
    nodes = Lab(lab_dir).inventory() if db is None and not platform_db and not dry_run else inv
    result, forgotten = sync_accounts(inv, secrets, target,
                                      Control(nodes, guard=AddressGuard(nodes)), dry_run)
    emit(ctx.output, {"db": target.label, "dry_run": dry_run, **result.as_dict(),
                      "credentials_forgotten": forgotten},
         text=f"{target.label}: {_summary(result, dry_run)}")
    for r in forgotten:
        if r.get("error"):
            info(f"{r['proxy']} ({r['zone']}) did not forget the changed users' credentials: "
                 f"{r['error']}; it trusts them for up to {AUTH_FRESH_S // 60} minutes")
    failed = unanswered(forgotten)
    if failed is not None:
        raise failed


def _summary(result: SyncResult, dry_run: bool) -> str:
    verb = "would " if dry_run else ""
    return (f"{verb}create {len(result.created)}, {verb}update {len(result.updated)}, "
            f"{verb}remove {len(result.removed)} subscribers; {result.unchanged} unchanged; "
            f"{result.aliases} DID aliases; {verb}write {len(result.switch_written)}, "
            f"{verb}remove {len(result.switch_removed)} switch documents")


@accounts.command("users")
@INVENTORY_ARG
@LAB_DIR
@SECRETS
@click.option("--sipp", "sipp_file", type=click.Path(path_type=Path),
              help="Write a SIPp injection file (user;domain;password) here.")
@pass_ctx
def users_cmd(ctx: Context, inventory: Path, lab_dir: Path | None, secrets_file: Path | None,
              sipp_file: Path | None) -> None:
    """List INVENTORY's SIP users (passwords only go into the --sipp file, mode 0600)."""
    inv = load_inventory(inventory)
    secrets = _secrets(inv, lab_dir, secrets_file)
    users = sip_users(inv, secrets)
    secrets.save()
    if sipp_file is not None:
        users_csv(sipp_file, [(u.username, u.domain, u.password) for u in users])
        sipp_file.chmod(0o600)
    rows = [{"user": f"{u.username}@{u.domain}", "account": u.account, "offering": u.offering,
             "dids": ",".join(u.dids)} for u in users]
    emit(ctx.output, rows, rows=rows, columns=["user", "account", "offering", "dids"])


def _secrets(inv: LoadedInventory, lab_dir: Path | None, secrets_file: Path | None) -> Secrets:
    """The secrets file given, else the running lab's, else the platform's default one."""
    if secrets_file is not None:
        return Secrets.load(secrets_file)
    lab = Lab(lab_dir)
    return Secrets.load(lab.dir / "secrets.yml" if lab.state() is not None
                        else default_path(inv.model.platform.name))


@accounts.command("devices")
@INVENTORY_ARG
@LAB_DIR
@SECRETS
@click.option("--credentials", "cred_file", type=click.Path(path_type=Path),
              help="Write each device's SIP credentials (id;domain;password;extension) here, "
                   "mode 0600, to provision the phones.")
@pass_ctx
def devices_cmd(ctx: Context, inventory: Path, lab_dir: Path | None, secrets_file: Path | None,
                cred_file: Path | None) -> None:
    """List INVENTORY's provisioned devices: the credentials each one registers with (its id,
    acting as its user's extension) and the media policy its leg gets (an SRTP suite, or
    plain RTP).  Passwords only go into the --credentials file.

    \b
    Example:
      zpctl accounts devices inventories/lab
      zpctl -o json accounts devices inventories/lab --credentials /root/phones.csv
    """
    inv = load_inventory(inventory)
    secrets = _secrets(inv, lab_dir, secrets_file)
    devices = sip_devices(inv, secrets)
    secrets.save()
    if cred_file is not None:
        fd = os.open(cred_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(f"{d.username};{d.domain};{d.password};{d.aor}\n" for d in devices)
        cred_file.chmod(0o600)  # an existing file keeps its mode on O_CREAT
    rows = [{"device": f"{d.username}@{d.domain}", "extension": d.aor, "kind": d.kind,
             "media": d.srtp} for d in devices]
    emit(ctx.output, rows, rows=rows, columns=["device", "extension", "kind", "media"])
