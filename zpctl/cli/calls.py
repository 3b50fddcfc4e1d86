"""zpctl calls: list and control calls on the FreeSWITCH switches over ESL."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info, table
from zpctl.cli.switch import load_live, selection_options, show_plan
from zpctl.cli.types import count, seconds
from zpctl.errors import ExitCode, RemoteFailure, ZpctlError
from zpctl.freeswitch import control as fsc
from zpctl.freeswitch.watch import BOARD_COLUMNS, CallBoard, CallEvent, watch
from zpctl.model.pbx import MONITOR_MODES

CALL_COLUMNS = ["switch", "uuid", "direction", "cid_num", "dest", "callstate", "b_uuid", "b_dest"]
UUID_ARG = click.argument("uuid", metavar="UUID")
SEARCH_DEADLINE = click.option("--deadline", type=seconds(3600.0), default=fsc.FIND_DEADLINE_S,
                               show_default=True,
                               help="Seconds for asking every selected switch (all at once); "
                                    "those that have not answered by then count as unreachable "
                                    "(exit 7).")


@click.group("calls")
def calls() -> None:
    """List and control calls on the switch tier over ESL.

    \b
    zpctl calls ls INVENTORY [--zone DC/ZONE] [--switch NAME]
    zpctl calls show|kill|hold|park INVENTORY UUID
    zpctl calls transfer INVENTORY UUID DEST [--leg a|b|both] [--context CTX]
    zpctl calls record INVENTORY UUID start|stop PATH
    zpctl calls monitor INVENTORY UUID --mode listen|whisper|barge|takeover --supervisor EXT@ACCOUNT
    zpctl calls originate INVENTORY --from EXT@ACCOUNT DEST
    Commands that change a call take --dry-run (prints the exact ESL commands).  Without
    --switch the switch holding UUID is found with `show channels as json`.
    Exit codes: 2 bad input or not permitted, 6 the switch answered -ERR, 7 unreachable.
    """


@calls.command("ls")
@INVENTORY_ARG
@selection_options
@SEARCH_DEADLINE
@pass_ctx
def ls_cmd(ctx: Context, inventory: Path, zone: str | None, switch_name: str | None,
           esl_address: str | None, secrets_file: Path | None, timeout: float,
           deadline: float) -> None:
    """List the calls on the selected switches (both legs of a bridged call on one row)."""
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address, guard=True)
    rows, results = asyncio.run(fsc.alist_calls(targets, fsc.esl_password(loaded, secrets_file),
                                                timeout, deadline))
    emit(ctx.output, rows, rows=rows, columns=CALL_COLUMNS)
    fsc.raise_for_errors(results)


@calls.command("show")
@INVENTORY_ARG
@UUID_ARG
@selection_options
@SEARCH_DEADLINE
@pass_ctx
def show_cmd(ctx: Context, inventory: Path, uuid: str, zone: str | None, switch_name: str | None,
             esl_address: str | None, secrets_file: Path | None, timeout: float,
             deadline: float) -> None:
    """Show one channel: its switch, state, numbers, application, and the other leg."""
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address, guard=True)
    t, row, calls_ = asyncio.run(fsc.afind_channel(
        targets, fsc.esl_password(loaded, secrets_file), fsc.check_uuid(uuid), timeout, deadline))
    doc = {"switch": t.name, **row, "other_leg": fsc.partner_of(uuid, calls_)}
    emit(ctx.output, doc, text="\n".join(f"{k}: {v}" for k, v in doc.items() if v))


DRY = click.option("--dry-run", is_flag=True, help="Print the exact ESL command; send nothing.")


def _call_action(name: str, *options: Callable[[Any], Any]
                 ) -> Callable[[Callable[..., str]], click.Command]:
    """Register ``calls NAME INVENTORY UUID`` with ``options``: one ESL command to a call.

    The decorated function gets UUID and the values of ``options`` and returns the command
    (its docstring is the ``--help``); choosing the switch, --dry-run and sending the
    command are the same for every such command and live here.
    """
    def register(command_for: Callable[..., str]) -> click.Command:
        def run(ctx: Context, inventory: Path, uuid: str, zone: str | None,
                switch_name: str | None, esl_address: str | None, secrets_file: Path | None,
                timeout: float, deadline: float, dry_run: bool, **own: Any) -> None:
            command = command_for(uuid, **own)
            loaded = load_live(inventory)
            targets = fsc.targets_for(loaded, zone, switch_name, esl_address,
                                      guard=not dry_run)
            if dry_run:
                where = targets[0] if len(targets) == 1 else None
                show_plan(ctx, [fsc.Step(where.name if where else "<switch holding the call>",
                                         f"{where.host}:{where.port}" if where else "found with "
                                         "`api show channels as json`", command)])
                return
            t, out = asyncio.run(fsc.acall_action(targets, fsc.esl_password(loaded, secrets_file),
                                                  uuid, command, timeout, deadline))
            emit(ctx.output, {"switch": t.name, "uuid": uuid, "command": command, "reply": out},
                 text=f"{t.name}: {command}: {out}")

        run.__doc__ = command_for.__doc__
        decorators: list[Callable[[Any], Any]] = [INVENTORY_ARG, UUID_ARG, *options,
                                                  selection_options, SEARCH_DEADLINE, DRY, pass_ctx]
        f: Any = run
        for decorate in reversed(decorators):  # as if stacked above ``run``, top first
            f = decorate(f)
        return calls.command(name)(f)

    return register


@_call_action("kill", click.option("--cause", default="NORMAL_CLEARING", show_default=True,
                                   type=click.Choice(fsc.HANGUP_CAUSES_ALLOWED),
                                   help="Hangup cause."))
def kill_cmd(uuid: str, cause: str) -> str:
    """Hang up a channel (`uuid_kill`)."""
    return fsc.call_command("kill", uuid, cause=cause)


@_call_action(
    "transfer",
    click.argument("dest", metavar="DEST"),
    click.option("--leg", type=click.Choice(["a", "b", "both"]), default="a", show_default=True,
                 help="Transfer this leg, its other leg (-bleg) or both (-both)."),
    click.option("--context",
                 help="Dialplan context (default: the channel's own), e.g. acct-northwind."))
def transfer_cmd(uuid: str, dest: str, leg: str, context: str | None) -> str:
    """Send a call to extension DEST of the dialplan (`uuid_transfer`)."""
    return fsc.call_command("transfer", uuid, dest=dest, leg=leg, context=context)


@_call_action("hold",
              click.option("--off", "mode", flag_value="off", help="Take the call off hold."),
              click.option("--toggle", "mode", flag_value="toggle", help="Toggle hold."))
def hold_cmd(uuid: str, mode: str | None) -> str:
    """Put a call on hold (the other party hears hold music) (`uuid_hold`)."""
    return fsc.call_command("hold", uuid, hold=mode or "on")


@_call_action("unhold")
def unhold_cmd(uuid: str) -> str:
    """Take a call off hold (`uuid_hold off`; the same as `calls hold --off`)."""
    return fsc.call_command("hold", uuid, hold="off")


@_call_action("park")
def park_cmd(uuid: str) -> str:
    """Park a channel (`uuid_park`): it leaves its bridge and waits."""
    return fsc.call_command("park", uuid)


@_call_action("record",
              click.argument("action", type=click.Choice(["start", "stop"])),
              click.argument("path", metavar="PATH"),
              click.option("--limit", type=count(1, 86400), help="Stop after this many seconds."))
def record_cmd(uuid: str, action: str, path: str, limit: int | None) -> str:
    """Start or stop an ad hoc recording of a call to PATH on the switch (`uuid_record`)."""
    return fsc.call_command("record", uuid, record=action, path=path, limit=limit)


@calls.command("monitor")
@INVENTORY_ARG
@UUID_ARG
@click.option("--mode", type=click.Choice(MONITOR_MODES), required=True,
              help="listen (silent), whisper (to the monitored user), barge (to both), "
                   "takeover (replace the monitored user).")
@click.option("--supervisor", required=True, metavar="EXT@ACCOUNT",
              help="The supervisor to connect; must hold a monitoring grant for the call's user.")
@selection_options
@SEARCH_DEADLINE
@DRY
@pass_ctx
def monitor_cmd(ctx: Context, inventory: Path, uuid: str, mode: str, supervisor: str,
                zone: str | None, switch_name: str | None, esl_address: str | None,
                secrets_file: Path | None, timeout: float, deadline: float,
                dry_run: bool) -> None:
    """Connect a supervisor to the call leg UUID (eavesdrop, or a takeover bridge).

    Only supervisors the inventory permits: their license allows call monitoring, they
    have the call_monitoring feature, and a pbx.monitoring grant covers the mode and the
    user on the call.  UUID may be either leg of the call: the monitored user's own leg is
    found (whisper reaches that user; takeover ends that user's leg).
    """
    _monitor(ctx, inventory, uuid, mode, supervisor, zone, switch_name, esl_address,
             secrets_file, timeout, deadline, dry_run)


def _monitor(ctx: Context, inventory: Path, uuid: str, mode: str, supervisor: str,
             zone: str | None, switch_name: str | None, esl_address: str | None,
             secrets_file: Path | None, timeout: float, deadline: float,
             dry_run: bool) -> None:
    loaded = load_live(inventory)
    if dry_run:
        plan = fsc.monitor_plan(loaded, uuid, mode, supervisor)
        show_plan(ctx, [fsc.Step("<switch holding the call>", "found with `api show channels as "
                                 "json`", c) for c in plan])
        return
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address, guard=True)
    doc = asyncio.run(fsc.amonitor(loaded, targets, fsc.esl_password(loaded, secrets_file), uuid,
                                   mode, supervisor, timeout, deadline))
    emit(ctx.output, doc, text=f"{doc['switch']}: {supervisor} is on {uuid} "
                               f"({mode}, user {doc['monitored_user']}) as {doc['supervisor_uuid']}")


@calls.command("takeover")
@INVENTORY_ARG
@UUID_ARG
@click.option("--supervisor", required=True, metavar="EXT@ACCOUNT",
              help="The supervisor who takes the call; must hold a takeover grant for the "
                   "call's user.")
@selection_options
@SEARCH_DEADLINE
@DRY
@pass_ctx
def takeover_cmd(ctx: Context, inventory: Path, uuid: str, supervisor: str, zone: str | None,
                 switch_name: str | None, esl_address: str | None, secrets_file: Path | None,
                 timeout: float, deadline: float, dry_run: bool) -> None:
    """Take a call over: ring the supervisor, connect the other party to it, end the
    monitored user's leg (the same as `calls monitor --mode takeover`).  UUID may be
    either leg of the call."""
    _monitor(ctx, inventory, uuid, "takeover", supervisor, zone, switch_name, esl_address,
             secrets_file, timeout, deadline, dry_run)


@calls.command("originate")
@INVENTORY_ARG
@click.argument("dest", metavar="DEST")
@click.option("--from", "from_user", metavar="EXT@ACCOUNT",
              help="Call this user first; DEST runs in the account's dialplan.")
@click.option("--endpoint", help="Or a raw FreeSWITCH endpoint, e.g. loopback/8000/acct-northwind.")
@click.option("--context", help="Dialplan context for DEST (default: acct-<account> with --from).")
@click.option("--cid-name", default="", help="Caller ID name shown to DEST.")
@click.option("--cid-num", default="", help="Caller ID number shown to DEST.")
@click.option("--ring", type=count(1, 3600), default=30, show_default=True, help="Seconds to ring.")
@selection_options
@DRY
@pass_ctx
def originate_cmd(ctx: Context, inventory: Path, dest: str, from_user: str | None,
                  endpoint: str | None, context: str | None, cid_name: str, cid_num: str,
                  ring: int, zone: str | None, switch_name: str | None, esl_address: str | None,
                  secrets_file: Path | None, timeout: float, dry_run: bool) -> None:
    """Place a call: ring --from (or --endpoint), then connect it to DEST (bgapi originate)."""
    loaded = load_live(inventory)
    if bool(from_user) == bool(endpoint):
        raise ZpctlError("give exactly one of --from EXT@ACCOUNT and --endpoint", ExitCode.USAGE)
    if from_user:
        acct, ext = fsc.parse_user(from_user, loaded)
        endpoint = f"user/{ext}@{loaded.model.account_domain(acct)}"
        context = context or f"acct-{acct.id}"
    assert endpoint is not None
    command = fsc.originate_command(endpoint, dest, context, cid_name=cid_name, cid_num=cid_num,
                                    timeout_s=ring)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address, guard=not dry_run)[:1]
    if dry_run:
        show_plan(ctx, [fsc.Step(targets[0].name, f"{targets[0].host}:{targets[0].port}", command)])
        return
    t, out = asyncio.run(fsc.acall_action(targets, fsc.esl_password(loaded, secrets_file), "x",
                                          command, max(timeout, ring + 5.0)))
    emit(ctx.output, {"switch": t.name, "command": command, "reply": out},
         text=f"{t.name}: {out}")


@calls.command("watch")
@INVENTORY_ARG
@selection_options
@click.option("--duration", type=seconds(30 * 86400.0),
              help="Stop after this many seconds (default: until Ctrl-C).")
@pass_ctx
def watch_cmd(ctx: Context, inventory: Path, zone: str | None, switch_name: str | None,
              esl_address: str | None, secrets_file: Path | None, timeout: float,
              duration: float | None) -> None:
    """Watch the calls of the selected switches live: CHANNEL_CREATE, ANSWER, BRIDGE,
    HOLD, HANGUP ... as they happen (ESL events).

    On a terminal the table of calls in progress is redrawn on every event; otherwise (or
    with -o json / -o yaml) one line (a JSON object, a YAML document) per event:
    time, switch, event, uuid, direction, cid_num, dest, callstate, other_leg, cause.  A
    switch that goes away is reconnected to with a growing delay (0.2 s to 15 s), said on
    stderr; one that refuses the ESL password is not retried.  Exit 6 when every switch
    refused, 0 at the end of --duration.
    """
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address, guard=True)
    password = fsc.esl_password(loaded, secrets_file)
    live = ctx.output == "table" and sys.stdout.isatty()
    board = CallBoard()

    def on_event(e: CallEvent) -> None:
        board.apply(e)
        if ctx.output == "json":
            click.echo(json.dumps(e.as_dict()))
        elif ctx.output == "yaml":
            click.echo("---\n" + yaml.safe_dump(e.as_dict(), sort_keys=False).rstrip())
        elif live:
            click.echo("\x1b[H\x1b[2J" + table(board.rows(), BOARD_COLUMNS), nl=True)
        else:
            click.echo("  ".join(f"{v}" for v in e.as_dict().values() if v))
        sys.stdout.flush()

    def on_lost(name: str) -> None:
        board.forget(name)

    info(f"watching {len(targets)} switch(es)"
         + (f" for {duration:g} s" if duration else "; Ctrl-C to stop"))
    stats = asyncio.run(watch(targets, password, on_event=on_event, say=info, on_lost=on_lost,
                              duration=duration, timeout=timeout))
    if len(stats.refused) == len(targets):
        raise RemoteFailure(f"every switch refused: {'; '.join(stats.refused.values())}")
