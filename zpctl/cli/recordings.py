"""zpctl recordings: the call-recording index of the switch tier."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.cli.switch import load_live, selection_options, show_fallback_plan
from zpctl.cli.types import count
from zpctl.freeswitch import control as fsc
from zpctl.freeswitch import recordings as rec

COLUMNS = ["started", "account", "caller", "callee", "duration", "switch", "path"]


def _row(r: rec.Recording) -> dict[str, Any]:
    return {"started": r.started_iso, "account": r.account, "caller": r.caller,
            "callee": r.callee, "duration": f"{r.duration_s:.1f}", "switch": r.switch,
            "path": r.path}


@click.group("recordings")
def recordings() -> None:
    """Call recordings on the switch tier: the index of what was recorded, where.

    \b
    zpctl recordings ls INVENTORY [ACCOUNT] [--limit N] [--dry-run]

    What is recorded: every call to a user with the feature call_recording_automatic
    (after the "this call may be recorded" prompt when the account's pbx.recording.announce
    is on), and calls to a user with call_recording_adhoc from the moment *2 is pressed
    during the call.  The switch that took the call writes the file in its own recordings
    folder, the PATH column (<state>/freeswitch/recordings/<account>/<date>/<uuid>.wav,
    the uuid of the call's channel; .mp3 with pbx.recording.file_format mp3), on the disk
    of the switch in the SWITCH column: fetch the file from there.

    When a recording stops, the switch's Lua hook zp_recordings.lua (RECORD_STOP) adds a
    row to its data center's index, an sqlite table the switches of that data center share.
    Each data center keeps its own index: `ls` reads one switch of each (the first that
    answers) and merges the rows by start time.

    Exit codes: 2 unknown account or switch; 6 a switch answered with an error (mod_lua or
    the script missing); 7 no switch of a data center answered (the rows of the others
    are still printed); 9 no ESL password.
    """


@recordings.command("ls")
@INVENTORY_ARG
@click.argument("account", metavar="[ACCOUNT]", required=False)
@selection_options
@click.option("--limit", type=count(1, 1_000_000), metavar="N",
              help="Only the newest N recordings.")
@click.option("--dry-run", is_flag=True, help="Print the ESL commands; connect to nothing.")
@pass_ctx
def ls_cmd(ctx: Context, inventory: Path, account: str | None, zone: str | None,
           switch_name: str | None, esl_address: str | None, secrets_file: Path | None,
           timeout: float, limit: int | None, dry_run: bool) -> None:
    """List recorded calls, oldest first: all of them, or ACCOUNT's.

    Without ACCOUNT the index of every data center with switches is read; with it, those of
    the data centers of the account's sites and of their pairs (which record the account's
    calls during a failover).  --zone DC or --switch NAME reads only that data center's.

    STARTED is in UTC; DURATION in seconds, read from the file.  --limit N keeps the newest
    N.  With -o json|yaml: the rows as the switches wrote them (uuid, account, path,
    switch, caller, callee, started in epoch seconds, duration_ms).
    """
    loaded = load_live(inventory)
    by_dc = rec.list_targets(loaded, account, zone, switch_name, esl_address,
                             guard=not dry_run)
    if dry_run:
        show_fallback_plan(ctx, rec.list_plan(by_dc, account), by_dc.values())
        return
    password = fsc.esl_password(loaded, secrets_file)
    found, failures = asyncio.run(rec.acollect(by_dc, password, account, timeout,
                                               progress=info))
    rows = rec.newest(found, limit)
    if not rows and ctx.output == "table":
        info("no recordings" + (f" of account {account}" if account else "")
             + " in the index" + ("es" if len(by_dc) > 1 else "") + " read")
    emit(ctx.output, [r.as_dict() for r in rows], rows=[_row(r) for r in rows],
         columns=COLUMNS)
    rec.raise_for_failures(failures)
