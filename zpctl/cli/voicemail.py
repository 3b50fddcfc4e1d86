"""zpctl voicemail: PIN lockout state and unlock of voicemail boxes on the switch tier."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.cli.switch import load_live, selection_options, show_fallback_plan
from zpctl.freeswitch import control as fsc
from zpctl.freeswitch import voicemail as vm

F = TypeVar("F", bound=Callable[..., Any])

COLUMNS = ["account", "extension", "locked", "wrong pins", "locks at", "new", "saved", "switch"]


def box_arguments(f: F) -> F:
    """INVENTORY ACCOUNT EXTENSION."""
    f = click.argument("extension", metavar="EXTENSION")(f)
    f = click.argument("account", metavar="ACCOUNT")(f)
    return INVENTORY_ARG(f)


@click.group("voicemail")
def voicemail() -> None:
    """Voicemail boxes on the switch tier: PIN lockout state and unlock, over ESL.

    \b
    zpctl voicemail status INVENTORY ACCOUNT EXTENSION
    zpctl voicemail unlock INVENTORY ACCOUNT EXTENSION [--dry-run]

    Wrong voicemail PINs are counted per box across calls (a right PIN resets the count).
    After the account's pbx.voicemail.pin.lockout_after wrong PINs in a row the box is
    locked: every call that tries it is ended, whatever PIN it enters, until an
    administrator runs `zpctl voicemail unlock`.  Messages are kept while it is locked.

    The count and the lock are kept by the switches (the zp_vm_auth.lua hook) in mod_db's
    store, which the switches of a data center share.  The switches of the data center of
    the user's site are asked one after another; the first that answers is used.  --zone
    DC (or --switch) picks a switch of the paired data center instead, which keeps its own
    store (it counts the PINs of the calls it took during a failover).

    Exit codes: 2 unknown account or extension, or a user without voicemail; 6 a switch
    answered with an error (mod_db or the account's voicemail profile missing); 7 no
    switch answered; 9 no ESL password.
    """


@voicemail.command("status")
@box_arguments
@selection_options
@click.option("--dry-run", is_flag=True, help="Print the ESL commands; connect to nothing.")
@pass_ctx
def status_cmd(ctx: Context, inventory: Path, account: str, extension: str, zone: str | None,
               switch_name: str | None, esl_address: str | None, secrets_file: Path | None,
               timeout: float, dry_run: bool) -> None:
    """Show whether a box is locked, its wrong PINs in a row, and its messages.

    LOCKED yes: the box refuses every call until `zpctl voicemail unlock`.  WRONG PINS:
    wrong PINs entered in a row, across calls; LOCKS AT: the account's lockout_after, the
    count at which the box locks.  NEW and SAVED count the messages in the inbox (urgent
    ones included).
    """
    loaded = load_live(inventory)
    box = vm.resolve_box(loaded, account, extension)
    targets = vm.box_targets(loaded, box, zone, switch_name, esl_address, guard=not dry_run)
    if dry_run:
        show_fallback_plan(ctx, vm.status_plan(box, targets), [targets])
        return
    password = fsc.esl_password(loaded, secrets_file)
    state = asyncio.run(vm.abox_status(box, targets, password, timeout, progress=info))
    row = {"account": state.account, "extension": state.extension,
           "locked": "yes" if state.locked else "no", "wrong pins": state.wrong_pins,
           "locks at": state.lockout_after, "new": state.new, "saved": state.saved,
           "switch": state.switch}
    emit(ctx.output, state.as_dict(), rows=[row], columns=COLUMNS)


@voicemail.command("unlock")
@box_arguments
@selection_options
@click.option("--dry-run", is_flag=True, help="Print the ESL commands; change nothing.")
@pass_ctx
def unlock_cmd(ctx: Context, inventory: Path, account: str, extension: str, zone: str | None,
               switch_name: str | None, esl_address: str | None, secrets_file: Path | None,
               timeout: float, dry_run: bool) -> None:
    """Unlock a box and reset its wrong-PIN count to 0.

    Removes the lock and the count from the data center's shared store, so the next call
    may try the PIN again, with the account's full lockout_after allowance.  Unlocking a
    box that is not locked only resets the count.  Prints what was undone, e.g.
    "unlocked 1002@acme.lab.zpctl.test (was locked, 3 wrong PINs)".  The PIN itself is
    not changed.
    """
    loaded = load_live(inventory)
    box = vm.resolve_box(loaded, account, extension)
    targets = vm.box_targets(loaded, box, zone, switch_name, esl_address, guard=not dry_run)
    if dry_run:
        show_fallback_plan(ctx, vm.unlock_plan(box, targets), [targets])
        return
    password = fsc.esl_password(loaded, secrets_file)
    done = asyncio.run(vm.aunlock(box, targets, password, timeout, progress=info))
    info(f"switch {done.switch} answered")
    emit(ctx.output, done.as_dict(), text=str(done))
