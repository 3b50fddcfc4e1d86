"""zpctl switch: status, pause and resume of the FreeSWITCH switch tier over ESL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.cli.types import DEADLINE, TIMEOUT, host_ports, seconds
from zpctl.clients.esl import SwitchTarget
from zpctl.clients.guard import AddressGuard
from zpctl.control import Control, inventory_line
from zpctl.errors import ZpctlError
from zpctl.freeswitch import ESL_OVERRIDE_ENV
from zpctl.freeswitch import control as fsc
from zpctl.model import LoadedInventory, load_inventory

F = TypeVar("F", bound=Callable[..., Any])

COLUMNS = ["switch", "dc", "zone", "address", "state", "sessions", "detail"]


def selection_options(f: F) -> F:
    """--zone, --switch, --esl-address, --secrets and --timeout (shared with `zpctl calls`)."""
    for opt in reversed([
        click.option("--zone", metavar="DC/ZONE", help="Only the switches of this zone (or DC)."),
        click.option("--switch", "switch_name", metavar="NAME", help="Only this switch."),
        click.option("--esl-address", envvar=ESL_OVERRIDE_ENV, metavar="HOST:PORT",
                     callback=host_ports,
                     help="For tests and labs: send ESL here instead of each switch's "
                          "management address (or NAME=HOST:PORT,...). Env: "
                          f"{ESL_OVERRIDE_ENV}."),
        click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
                     help="Secrets file holding esl_password (default: $ZPCTL_SECRETS or "
                          "~/.config/zpctl/secrets/<platform>.yml)."),
        click.option("--timeout", type=TIMEOUT, default=5.0, show_default=True,
                     help="Seconds to wait for a switch to answer."),
    ]):
        f = opt(f)
    return f


def load_live(inventory: Path) -> LoadedInventory:
    """The inventory of a live command, said on stderr (which platform is about to be
    touched is the first thing an operator should see)."""
    loaded = load_inventory(inventory)
    info(inventory_line(loaded))
    return loaded


def show_plan(ctx: Context, steps: list[fsc.Step]) -> None:
    """--dry-run: the exact ESL commands, one per line (or as data with -o json|yaml)."""
    if ctx.output != "table":
        emit(ctx.output, {"dry_run": True, "commands": [s.as_dict() for s in steps]})
        return
    for s in steps:
        click.echo(str(s))


def show_fallback_plan(ctx: Context, steps: list[fsc.Step],
                       groups: Iterable[Sequence[SwitchTarget]]) -> None:
    """--dry-run of a command one switch of each group answers for the group (the first
    that answers): the exact commands for the first, and on stderr who follows if it is
    down (``fallback_switches`` with -o json|yaml, keyed by the first switch)."""
    rest = {ts[0].name: [t.name for t in ts[1:]] for ts in groups if ts}
    if ctx.output != "table":
        emit(ctx.output, {"dry_run": True, "commands": [s.as_dict() for s in steps],
                          "fallback_switches": rest})
        return
    for s in steps:
        click.echo(str(s))
    for first, others in rest.items():
        if others:
            info(f"if {first} does not answer, the same commands go to {', then '.join(others)}")


def show_results(ctx: Context, results: list[fsc.SwitchResult]) -> None:
    rows = [r.as_dict() for r in results]
    for row in rows:
        if "error" in row:
            row["detail"] = row["error"]
    emit(ctx.output, rows, rows=rows, columns=COLUMNS)
    fsc.raise_for_errors(results)


@click.group("switch")
def switch() -> None:
    """Operate the FreeSWITCH switches of an inventory over ESL (the event socket).

    \b
    zpctl switch status INVENTORY [--zone DC/ZONE] [--switch NAME]
    zpctl switch pause  INVENTORY --zone us-east-ny/a [--wait --deadline 600]
    zpctl switch resume INVENTORY --zone us-east-ny/a
    zpctl switch drain  INVENTORY us-east-ny-a-switch1 [--deadline 600]
    Every command connects to each selected switch's management address and ESL port with
    the esl_password secret.  Exit codes: 6 a switch answered with an error, 7 a switch did
    not answer (or a drain missed its deadline).
    """


@switch.command("status")
@INVENTORY_ARG
@selection_options
@click.option("--dry-run", is_flag=True, help="Print the ESL commands; connect to nothing.")
@pass_ctx
def status_cmd(ctx: Context, inventory: Path, zone: str | None, switch_name: str | None,
               esl_address: str | None, secrets_file: Path | None, timeout: float,
               dry_run: bool) -> None:
    """Show each switch: reachable, current sessions, inbound paused or not."""
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address,
                              guard=not dry_run)
    if dry_run:
        show_plan(ctx, fsc.status_plan(targets))
        return
    password = fsc.esl_password(loaded, secrets_file)
    show_results(ctx, asyncio.run(fsc.astatus(targets, password, timeout)))


@switch.command("pause")
@INVENTORY_ARG
@selection_options
@click.option("--wait", is_flag=True,
              help="Drain: after pausing, wait until every switch has 0 sessions.")
@click.option("--deadline", type=DEADLINE, default=600.0, show_default=True,
              help="With --wait: give up after this many seconds (exit 7; inbound stays paused).")
@click.option("--poll", type=seconds(60.0), default=2.0, show_default=True, hidden=True)
@click.option("--dry-run", is_flag=True, help="Print the ESL commands; change nothing.")
@pass_ctx
def pause_cmd(ctx: Context, inventory: Path, zone: str | None, switch_name: str | None,
              esl_address: str | None, secrets_file: Path | None, timeout: float, wait: bool,
              deadline: float, poll: float, dry_run: bool) -> None:
    """Refuse new inbound calls (`fsctl pause inbound`); calls in progress go on.

    With --wait this is a drain: progress on stderr until the session count of every
    selected switch reaches zero (HEARTBEAT Session-Count and `api status`).
    """
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address,
                              guard=not dry_run)
    if dry_run:
        steps = fsc.pause_plan(targets)
        if wait:
            steps += [fsc.Step(s.switch, s.address, c) for s in steps
                      for c in ("event plain BACKGROUND_JOB HEARTBEAT", "api status (every "
                                f"{poll:g}s until 0 sessions or {deadline:g}s)")]
        show_plan(ctx, steps)
        return
    password = fsc.esl_password(loaded, secrets_file)
    results = asyncio.run(fsc.apause(targets, password, wait=wait, deadline_s=deadline,
                                     poll_s=poll, timeout=timeout, progress=info))
    show_results(ctx, results)


@switch.command("resume")
@INVENTORY_ARG
@selection_options
@click.option("--dry-run", is_flag=True, help="Print the ESL commands; change nothing.")
@pass_ctx
def resume_cmd(ctx: Context, inventory: Path, zone: str | None, switch_name: str | None,
               esl_address: str | None, secrets_file: Path | None, timeout: float,
               dry_run: bool) -> None:
    """Accept new inbound calls again (`fsctl resume inbound`)."""
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, zone, switch_name, esl_address,
                              guard=not dry_run)
    if dry_run:
        show_plan(ctx, fsc.resume_plan(targets))
        return
    password = fsc.esl_password(loaded, secrets_file)
    results = asyncio.run(fsc.aresume(targets, password, timeout))
    # a drained switch (`switch drain`) is selected by the proxies again
    try:
        Control(loaded, guard=AddressGuard(loaded)).switch_dispatch([t.name for t in targets], "a")
    except ZpctlError as exc:
        info(f"not selected again by every proxy: {exc.message}")
    show_results(ctx, results)


@switch.command("drain")
@INVENTORY_ARG
@click.argument("node", metavar="NODE")
@click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
              help="Secrets file holding esl_password (default: $ZPCTL_SECRETS or "
                   "~/.config/zpctl/secrets/<platform>.yml).")
@click.option("--timeout", type=TIMEOUT, default=5.0, show_default=True,
              help="Seconds to wait for a switch or proxy to answer.")
@click.option("--deadline", type=DEADLINE, default=600.0, show_default=True,
              help="Give up waiting after this many seconds (exit 7; the switch stays out).")
@click.option("--poll", type=seconds(60.0), default=2.0, show_default=True, hidden=True)
@click.option("--dry-run", is_flag=True,
              help="Print the JSON-RPC and ESL commands; change nothing.")
@pass_ctx
def drain_cmd(ctx: Context, inventory: Path, node: str, secrets_file: Path | None,
              timeout: float, deadline: float, poll: float, dry_run: bool) -> None:
    """Take switch NODE out of service without failing a call: the zone proxies of its data
    center stop selecting it (`dispatcher.set_state d` on each of its entries), it refuses
    new inbound calls (`fsctl pause inbound`), and the command waits, with progress on
    stderr, until its sessions reach 0.  `zpctl switch resume INV --switch NODE` brings
    it back (both steps)."""
    loaded = load_live(inventory)
    targets = fsc.targets_for(loaded, None, node, None, guard=not dry_run)
    proxies = Control(loaded, timeout=min(timeout, 3.0), dry_run=dry_run,
                      guard=AddressGuard(loaded))
    entries = proxies.switch_dispatch([node], "d")
    if dry_run:
        steps = [fsc.Step(r.node, r.endpoint, f"jsonrpc {r.method} {' '.join(map(str, r.params))}")
                 for r in proxies.sent]
        steps += fsc.pause_plan(targets)
        steps += [fsc.Step(t.name, f"{t.host}:{t.port}", f"api status (every {poll:g}s until "
                                                         f"0 sessions or {deadline:g}s)")
                  for t in targets]
        show_plan(ctx, steps)
        return
    info(f"{node}: the proxies select it no more ({len(entries)} dispatcher entries)")
    password = fsc.esl_password(loaded, secrets_file)
    results = asyncio.run(fsc.apause(targets, password, wait=True, deadline_s=deadline,
                                     poll_s=poll, timeout=timeout, progress=info))
    for r in results:
        r.extra["proxy_entries"] = len(entries)
    show_results(ctx, results)
