"""Voicemail boxes on the switch tier over ESL: PIN lockout state, message counts, unlock.

How it works: mod_voicemail limits wrong PINs per call only, so the Lua hook
``freeswitch/scripts/zp_vm_auth.lua.j2`` (run on every ``vm::maintenance`` authentication
event) counts wrong PINs per box across calls in mod_db's key/value store, which the
switches of a data center share (an sqlite file on their shared storage): realm
``zp_vmfail`` holds the count of wrong PINs in a row, realm ``zp_vmlock`` the value
``locked`` once the account's ``pbx.voicemail.pin.lockout_after`` is reached.  Both are
keyed by the box, ``<extension>@<account domain>``.  Reading a box is two ``db select``
and one ``vm_boxcount``; unlocking is two ``db delete`` (after reading what is undone).
The store is shared, so one switch is enough: the switches of the data center of the
user's site are asked one after another and the first that answers is used; one that
answers with an error stops the search (the others would answer the same).

Reply formats, from FreeSWITCH's source (mod_db.c, mod_voicemail.c, mod_event_socket.c):
``db select`` writes the value, or nothing for a key that is not set - and an ``api``
over ESL with no output is answered ``-ERR no reply``; malformed ``db`` arguments give
``!err!``; ``db delete`` always ``+OK``; ``vm_boxcount <profile>/<box>|all`` gives
``new:saved:new-urgent:saved-urgent`` (new and saved include the urgent ones), or
``-ERR No such profile`` for a profile the switch does not have.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zpctl.clients.esl import EslConnection, SwitchTarget
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError
from zpctl.freeswitch import select_switches, switches
from zpctl.freeswitch.control import Step, esl_password, placed_targets
from zpctl.model import LoadedInventory
from zpctl.model.pbx_checks import has_feature
from zpctl.model.schema import Account
from zpctl.render.freeswitch import VM_PROFILE_PREFIX

R = TypeVar("R")
Progress = Callable[[str], None]

FAIL_REALM = "zp_vmfail"  # wrong PINs in a row (the Lua hook's counter)
LOCK_REALM = "zp_vmlock"  # "locked" once the account's lockout_after is reached
LOCKED = "locked"
NO_REPLY = "-ERR no reply"  # mod_event_socket's answer to an api with empty output
_BOXCOUNT = re.compile(r"^(\d+):(\d+):(\d+):(\d+)$")


@dataclass(frozen=True)
class Box:
    """One user's voicemail box, resolved from the inventory."""

    account: str
    extension: str
    domain: str
    dc: str  # data center of the user's site: its switches share the lock store
    serving_dcs: tuple[str, ...]  # that data center and its pair (the switches with the box)
    lockout_after: int

    @property
    def key(self) -> str:
        """``<ext>@<domain>``: the box's mod_db key and mod_voicemail id."""
        return f"{self.extension}@{self.domain}"

    @property
    def profile(self) -> str:
        return f"{VM_PROFILE_PREFIX}{self.account}"


@dataclass(frozen=True)
class BoxState:
    """A box's PIN lockout state and message counts, as one switch saw them."""

    account: str
    extension: str
    box: str
    locked: bool
    wrong_pins: int
    new: int
    saved: int
    switch: str
    dc: str = ""
    lockout_after: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "extension": self.extension, "box": self.box,
                "locked": self.locked, "wrong_pins": self.wrong_pins,
                "lockout_after": self.lockout_after, "new": self.new, "saved": self.saved,
                "switch": self.switch, "dc": self.dc}


@dataclass(frozen=True)
class UnlockResult:
    """What an unlock undid."""

    account: str
    extension: str
    box: str
    was_locked: bool
    wrong_pins: int  # the count before the reset
    switch: str
    dc: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "extension": self.extension, "box": self.box,
                "unlocked": True, "was_locked": self.was_locked, "wrong_pins": self.wrong_pins,
                "switch": self.switch, "dc": self.dc}

    def __str__(self) -> str:
        was = "was locked" if self.was_locked else "was not locked"
        pins = f"{self.wrong_pins} wrong PIN{'' if self.wrong_pins == 1 else 's'}"
        return f"unlocked {self.box} ({was}, {pins})"


def short_list(names: Sequence[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def find_account(loaded: LoadedInventory, account: str) -> Account:
    """The inventory's account ``account``; exit 2 naming the known ones."""
    inv = loaded.model
    acct = inv.account(account)
    if acct is None:
        known = [a.id for a in inv.accounts]
        raise ZpctlError(f"no account {account!r} in inventory {inv.platform.name}; known: "
                         f"{short_list(known) or 'none'}", ExitCode.USAGE)
    return acct


def resolve_box(loaded: LoadedInventory, account: str, extension: str) -> Box:
    """The box of ``extension`` of ``account``; exit 2 for an unknown account or extension,
    or a user without the voicemail feature."""
    inv = loaded.model
    acct = find_account(loaded, account)
    user = acct.user(extension)
    with_vm = [u.extension for u in acct.users if has_feature(u, "voicemail")]
    if user is None:
        raise ZpctlError(f"no extension {extension!r} in account {acct.id}; known: "
                         f"{short_list([u.extension for u in acct.users]) or 'none'}", ExitCode.USAGE)
    if not has_feature(user, "voicemail"):
        raise ZpctlError(f"{extension} ({user.name}) of account {acct.id} has no voicemail box: "
                         "the voicemail feature is not in its features; users with one: "
                         f"{short_list(with_vm) or 'none'}", ExitCode.USAGE)
    site = next(s for s in acct.sites if s.id == user.site)
    dc = next(d for d in inv.datacenters if d.id == site.datacenter)
    serving = (dc.id,) + ((dc.pair,) if dc.pair else ())
    return Box(acct.id, extension, inv.account_domain(acct), dc.id, serving,
               acct.pbx.voicemail.pin.lockout_after)


def box_targets(loaded: LoadedInventory, box: Box, zone: str | None = None,
                switch: str | None = None, esl_override: str | None = None, *,
                guard: bool = False) -> list[SwitchTarget]:
    """The switches to ask about ``box``, in order: by default those of the data center of
    the user's site; ``zone``/``switch`` choose others among the switches that have the box
    (that data center's and its pair's).  ``guard`` as in :func:`control.targets_for`."""
    if not zone and not switch:
        placed = [p for p in switches(loaded) if p.dc.id == box.dc]
        if not placed:
            raise ZpctlError(f"data center {box.dc}, where box {box.key} lives, has no switch"
                             + (f"; its pair: --zone {box.serving_dcs[1]}"
                                if len(box.serving_dcs) > 1 else ""), ExitCode.USAGE)
    else:
        chosen = select_switches(loaded, zone, switch)
        placed = [p for p in chosen if p.dc.id in box.serving_dcs]
        if not placed:
            raise ZpctlError(f"{short_list([p.name for p in chosen])}: not a switch of account "
                             f"{box.account}; box {box.key} is on the switches of "
                             f"{' and '.join(box.serving_dcs)}", ExitCode.USAGE)
    return placed_targets(loaded, placed, esl_override, guard=guard)


# --- the ESL commands and their replies ----------------------------------------------------

def status_commands(box: Box) -> list[str]:
    """The ESL commands that read ``box``: its lock, its wrong-PIN count, its messages."""
    return [f"api db select/{LOCK_REALM}/{box.key}", f"api db select/{FAIL_REALM}/{box.key}",
            f"api vm_boxcount {box.profile}/{box.key}|all"]


def unlock_commands(box: Box) -> list[str]:
    """The ESL commands of an unlock: read what is undone, then reset the count before
    removing the lock (a wrong PIN in between meets the lock and is not counted, so it
    cannot lock the box again at once)."""
    return [f"api db select/{LOCK_REALM}/{box.key}", f"api db select/{FAIL_REALM}/{box.key}",
            f"api db delete/{FAIL_REALM}/{box.key}", f"api db delete/{LOCK_REALM}/{box.key}"]


def _plan(commands: list[str], targets: Sequence[SwitchTarget]) -> list[Step]:
    if not targets:
        return []
    t = targets[0]
    return [Step(t.name, f"{t.host}:{t.port}", c) for c in commands]


def status_plan(box: Box, targets: Sequence[SwitchTarget]) -> list[Step]:
    """--dry-run of status: the commands for the first switch (the others only if it does
    not answer)."""
    return _plan(status_commands(box), targets)


def unlock_plan(box: Box, targets: Sequence[SwitchTarget]) -> list[Step]:
    """--dry-run of unlock: the commands for the first switch (the others only if it does
    not answer)."""
    return _plan(unlock_commands(box), targets)


def _failed(switch: str, command: str, body: str, hint: str = "") -> RemoteFailure:
    return RemoteFailure(f"switch {switch}: {command}: {body}{hint}")


def parse_db_select(text: str, switch: str = "", command: str = "api db select") -> str | None:
    """The value of ``db select/<realm>/<key>``; None when the key is not set."""
    body = text.strip()
    if body == NO_REPLY:
        return None
    if body == "!err!" or body.startswith(("-ERR", "-USAGE")):
        raise _failed(switch, command, body, " (is mod_db loaded?)" if "not found" in body else "")
    return body


def parse_wrong_pins(value: str | None) -> int:
    """The wrong-PIN count as the hook reads it (Lua ``tonumber``, else 0)."""
    if value is None:
        return 0
    try:
        return max(0, int(float(value)))
    except ValueError:
        return 0


def parse_boxcount(text: str, switch: str = "", command: str = "api vm_boxcount") -> tuple[int, int]:
    """(new, saved) from ``vm_boxcount ...|all`` (``new:saved:new-urgent:saved-urgent``;
    new and saved already include the urgent messages)."""
    body = text.strip()
    m = _BOXCOUNT.match(body)
    if m:
        return int(m.group(1)), int(m.group(2))
    hint = ""
    if "No such profile" in body:
        hint = " (the switch has no such voicemail profile: is the rendered config deployed?)"
    elif "not found" in body:
        hint = " (is mod_voicemail loaded?)"
    raise _failed(switch, command, body or "(empty)", hint)


# --- talking to the switches --------------------------------------------------------------

async def first_answer(targets: Sequence[SwitchTarget], password: str, timeout: float,
                        work: Callable[[EslConnection], Awaitable[R]],
                        progress: Progress | None = None) -> tuple[SwitchTarget, R]:
    """``work`` on the first of ``targets`` that answers, in order.  A switch that cannot
    be reached (or times out) is skipped; an error answer (exit 6) stops the search."""
    say = progress or (lambda _m: None)
    down: list[tuple[str, Unreachable]] = []
    for i, t in enumerate(targets):
        try:
            async with EslConnection(t.host, t.port, password, name=t.name,
                                     timeout=timeout) as conn:
                return t, await work(conn)
        except Unreachable as exc:
            down.append((t.name, exc))
            if i + 1 < len(targets):
                say(f"{exc.message}; asking {targets[i + 1].name}")
    names = ", ".join(n for n, _ in down)
    why = down[0][1].message if down else "no switch selected"
    raise Unreachable(f"none of the {len(down)} switch(es) answered ({names}): {why}")


async def _run(conn: EslConnection, command: str) -> str:
    return await conn.api(command.removeprefix("api "), check=False)


async def abox_status(box: Box, targets: Sequence[SwitchTarget], password: str,
                      timeout: float = 5.0, progress: Progress | None = None) -> BoxState:
    """Lock, wrong-PIN count and message counts of ``box`` (the first switch that answers)."""
    lock_cmd, fail_cmd, count_cmd = status_commands(box)

    async def work(conn: EslConnection) -> tuple[str | None, str | None, tuple[int, int]]:
        lock = parse_db_select(await _run(conn, lock_cmd), conn.name, lock_cmd)
        fails = parse_db_select(await _run(conn, fail_cmd), conn.name, fail_cmd)
        counts = parse_boxcount(await _run(conn, count_cmd), conn.name, count_cmd)
        return lock, fails, counts

    t, (lock, fails, (new, saved)) = await first_answer(targets, password, timeout, work,
                                                         progress)
    return BoxState(box.account, box.extension, box.key, lock == LOCKED,
                    parse_wrong_pins(fails), new, saved, t.name, t.dc, box.lockout_after)


async def aunlock(box: Box, targets: Sequence[SwitchTarget], password: str,
                  timeout: float = 5.0, progress: Progress | None = None) -> UnlockResult:
    """Unlock ``box`` and reset its wrong-PIN count (idempotent: an unlocked box stays so)."""
    lock_cmd, fail_cmd, *deletes = unlock_commands(box)

    async def work(conn: EslConnection) -> tuple[str | None, str | None]:
        lock = parse_db_select(await _run(conn, lock_cmd), conn.name, lock_cmd)
        fails = parse_db_select(await _run(conn, fail_cmd), conn.name, fail_cmd)
        for cmd in deletes:
            out = (await _run(conn, cmd)).strip()
            if out != "+OK":
                raise _failed(conn.name, cmd, out or "(empty)")
        return lock, fails

    t, (lock, fails) = await first_answer(targets, password, timeout, work, progress)
    return UnlockResult(box.account, box.extension, box.key, lock == LOCKED,
                        parse_wrong_pins(fails), t.name, t.dc)


def box_status(loaded: LoadedInventory, account: str, extension: str, *,
               zone: str | None = None, switch: str | None = None,
               esl_override: str | None = None, password: str | None = None,
               secrets_file: Path | None = None, timeout: float = 5.0,
               progress: Progress | None = None) -> BoxState:
    """:func:`abox_status` for callers that are not async (the lab's feature flows)."""
    box = resolve_box(loaded, account, extension)
    targets = box_targets(loaded, box, zone, switch, esl_override, guard=True)
    pw = password or esl_password(loaded, secrets_file)
    return asyncio.run(abox_status(box, targets, pw, timeout, progress))


def unlock_box(loaded: LoadedInventory, account: str, extension: str, *,
               zone: str | None = None, switch: str | None = None,
               esl_override: str | None = None, password: str | None = None,
               secrets_file: Path | None = None, timeout: float = 5.0,
               progress: Progress | None = None) -> UnlockResult:
    """:func:`aunlock` for callers that are not async (the lab's feature flows)."""
    box = resolve_box(loaded, account, extension)
    targets = box_targets(loaded, box, zone, switch, esl_override, guard=True)
    pw = password or esl_password(loaded, secrets_file)
    return asyncio.run(aunlock(box, targets, pw, timeout, progress))
