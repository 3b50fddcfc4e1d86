"""zpctl accounts: provision an inventory's accounts into a subscriber database."""

from __future__ import annotations

import os
from pathlib import Path

import click

from zpctl.accounts import SyncResult, sip_devices, sip_users, sync
from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.model import LoadedInventory, load_inventory
from zpctl.secrets import Secrets, default_path
from zpctl.sipp import users_csv


@click.group()
def accounts() -> None:
    """Provision accounts: subscribers (HA1 hashes only) and DID aliases.

    \b
      zpctl accounts sync inventories/lab                  # into the running lab's database
      zpctl accounts sync INV --db /var/lib/zpctl/subscriber.sqlite --secrets FILE
      zpctl accounts users inventories/lab --sipp users.csv  # SIPp injection file
    Passwords come from the secrets file (generated when missing), never from the inventory.
    """


def _target(inventory: Path, db: Path | None, lab_dir: Path | None,
            secrets_file: Path | None) -> tuple[Path, Secrets]:
    inv = load_inventory(inventory)
    if db is not None:
        return db, Secrets.load(secrets_file or default_path(inv.model.platform.name))
    lab = Lab(lab_dir)
    if lab.state() is None:
        raise ZpctlError(f"no lab in {lab.dir} and no --db given: say where the database is",
                         ExitCode.USAGE)
    return lab.db_path, Secrets.load(secrets_file or lab.dir / "secrets.yml")


LAB_DIR = click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR",
                       help="Use this lab's database and secrets (default lab directory).")
DB = click.option("--db", type=click.Path(path_type=Path),
                  help="A sqlite subscriber database (default: the lab's).")
SECRETS = click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
                       help="Secrets file with the SIP passwords.")


@accounts.command("sync")
@INVENTORY_ARG
@DB
@LAB_DIR
@SECRETS
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@pass_ctx
def sync_cmd(ctx: Context, inventory: Path, db: Path | None, lab_dir: Path | None,
             secrets_file: Path | None, dry_run: bool) -> None:
    """Make the database's subscribers of INVENTORY's platform match its accounts: create,
    update and remove users, and rewrite the DID aliases.  Other platforms' rows are kept."""
    path, secrets = _target(inventory, db, lab_dir, secrets_file)
    result = sync(load_inventory(inventory), secrets, path, dry_run=dry_run)
    if not dry_run:
        secrets.save()
    emit(ctx.output, {"db": str(path), "dry_run": dry_run, **result.as_dict()},
         text=f"{path}: {_summary(result, dry_run)}")


def _summary(result: SyncResult, dry_run: bool) -> str:
    verb = "would " if dry_run else ""
    return (f"{verb}create {len(result.created)}, {verb}update {len(result.updated)}, "
            f"{verb}remove {len(result.removed)} subscribers; {result.unchanged} unchanged; "
            f"{result.aliases} DID aliases")


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
