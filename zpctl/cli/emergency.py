"""zpctl emergency: each emergency call's notice to its account's security desk."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
import yaml

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.cli.switch import load_live, selection_options, show_plan
from zpctl.cli.types import seconds
from zpctl.errors import RemoteFailure
from zpctl.freeswitch import control as fsc
from zpctl.freeswitch import emergency as em
from zpctl.lab import Lab
from zpctl.model import LoadedInventory, load_inventory

SPOOL = click.option("--spool", type=click.Path(path_type=Path, dir_okay=False),
                     metavar="FILE",
                     help="The notice spool (sqlite). Default: state/" + em.SPOOL_FILE + " in "
                          "the lab directory when the lab runs this inventory's platform, else "
                          "<paths.state_dir>/" + em.SPOOL_FILE + ".")
LAB_DIR = click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR",
                       help="The lab directory to look in for a running lab (default lab "
                            "directory).")


def _lab_of(loaded: LoadedInventory, lab_dir: Path | None) -> Lab | None:
    """The lab, when one runs ``loaded``'s platform."""
    lab = Lab(lab_dir)
    st = lab.state()
    return lab if st is not None and st.get("platform") == loaded.model.platform.name else None


def default_spool(loaded: LoadedInventory, lab: Lab | None) -> Path:
    """The spool of ``loaded``'s notifier: in the running lab's state folder (``lab``, from
    :func:`_lab_of`), else in the platform's ``paths.state_dir``."""
    return em.spool_path(lab.dir / "state" if lab is not None
                         else Path(loaded.model.paths.state_dir))


@click.group("emergency")
def emergency() -> None:
    """Emergency calls: each one's notice to its account's security desk.

    \b
    zpctl emergency watch INVENTORY [--spool FILE] [--zone DC/ZONE] [--duration S]
    zpctl emergency ls    INVENTORY [--spool FILE] [--state pending|delivered|failed]
    \b
    As a zone proxy routes an emergency call, it sends a SIP MESSAGE (a JSON notice: call,
    account, site, user, number, callback) to a switch of its zone and one of the sister
    zone; `watch` hears it over ESL from every switch, keeps it in the spool and posts it
    to the account's security_desk.webhook, retrying until the desk takes it (up to 24 h).
    docs/EMERGENCY.md has the payload.
    """


def _show(ctx: Context, report: em.Report) -> None:
    if ctx.output == "json":
        click.echo(json.dumps(report.as_dict()))
    elif ctx.output == "yaml":
        click.echo("---\n" + yaml.safe_dump(report.as_dict(), sort_keys=False).rstrip())
    else:
        click.echo(report.line())
    sys.stdout.flush()


@emergency.command("watch")
@INVENTORY_ARG
@SPOOL
@selection_options
@LAB_DIR
@click.option("--duration", type=seconds(30 * 86400.0),
              help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--dry-run", is_flag=True,
              help="Print the ESL commands, the spool and each account's webhook; connect to "
                   "nothing, post nothing.")
@pass_ctx
def watch_cmd(ctx: Context, inventory: Path, spool: Path | None, zone: str | None,
              switch_name: str | None, esl_address: str | None, secrets_file: Path | None,
              timeout: float, lab_dir: Path | None, duration: float | None,
              dry_run: bool) -> None:
    """Listen for emergency-call notices on every switch and deliver each to its account's
    security desk, until interrupted.

    \b
    Examples:
      zpctl emergency watch inventories/us01
      zpctl -o json emergency watch inventories/lab --spool /tmp/notices.sqlite
      zpctl emergency watch inventories/us01 --dry-run
    \b
    Each switch is subscribed to RECV_MESSAGE (MESSAGEs to zp-emergency); one that goes
    away is reconnected to with a growing delay (0.2 s to 15 s), said on stderr, one that
    refuses the ESL password is not retried.  Every notice is written to the spool before
    it is posted, once per call (both switches relay it).  The post (JSON; headers
    X-ZP-Event: emergency-call and X-ZP-Delivery: CALL-ID, the same on every attempt) is
    tried again after 1 s, 2 s, 4 s ... up to 60 s apart for 24 h while the desk is
    unreachable, times out (5 s) or answers 5xx, 408 or 429; any other answer, or an
    account without security_desk, fails the notice.  A restart resumes the pending ones.
    \b
    Stdout: one line per notice received, duplicate, delivered, retry or failed (-o json:
    a JSON object per line).  Without --secrets, the ESL password comes from the running
    lab's secrets when the lab runs this platform.  Exit 6 when every switch refused,
    9 when the spool cannot be written, 0 at the end of --duration.
    """
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address, guard=not dry_run)
    lab = _lab_of(loaded, lab_dir)
    path = spool or default_spool(loaded, lab)
    if dry_run:
        hooks = {a.id: a.security_desk.webhook if a.security_desk else None
                 for a in loaded.model.accounts}
        if ctx.output != "table":
            emit(ctx.output, {"dry_run": True, "spool": str(path),
                              "commands": [s.as_dict() for s in em.plan(targets)],
                              "webhooks": hooks})
            return
        show_plan(ctx, em.plan(targets))
        info(f"spool: {path}")
        for account, hook in hooks.items():
            info(f"account {account}: " + (hook or "no security_desk.webhook: its notices fail"))
        return
    if secrets_file is None and lab is not None:
        secrets_file = lab.dir / "secrets.yml"
    password = fsc.esl_password(loaded, secrets_file)
    with em.Spool(path) as store:
        notifier = em.Notifier(loaded.model, store, report=lambda r: _show(ctx, r))
        info(f"listening to {len(targets)} switch(es); notices in {path}"
             + (f" for {duration:g} s" if duration else "; Ctrl-C to stop"))
        stats = asyncio.run(em.watch(targets, password, notifier, say=info, duration=duration,
                                     timeout=timeout))
    if len(stats.refused) == len(targets):
        raise RemoteFailure(f"every switch refused: {'; '.join(stats.refused.values())}")


@emergency.command("ls")
@INVENTORY_ARG
@SPOOL
@LAB_DIR
@click.option("--state", type=click.Choice(em.STATES), help="Only the notices in this state.")
@pass_ctx
def ls_cmd(ctx: Context, inventory: Path, spool: Path | None, lab_dir: Path | None,
           state: str | None) -> None:
    """List the notices in the spool, oldest first: call, when it arrived, account, site,
    user, state (pending, delivered, failed), attempts and the last error.

    \b
    Examples:
      zpctl emergency ls inventories/us01 --state failed
      zpctl -o json emergency ls inventories/lab
    \b
    -o json|yaml adds the switch that relayed it first, how many relayed it, the webhook,
    the desk's last HTTP status, the next attempt and the payload posted.
    """
    loaded = load_inventory(inventory)
    path = spool or default_spool(loaded, _lab_of(loaded, lab_dir))
    if not path.exists():
        info(f"no spool at {path}: no notice was received there")
        rows = []
    else:
        with em.Spool(path, create=False) as store:
            rows = [r.as_dict() for r in store.rows(state)]
    emit(ctx.output, rows, rows=rows, columns=em.SPOOL_COLUMNS)
