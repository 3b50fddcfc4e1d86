"""The call-recording index of the switch tier, read over ESL.

How it works: a switch records a call when the user has ``call_recording_automatic``
(``record_session`` in the dialplan) or presses ``*2`` with ``call_recording_adhoc``; the
file lands in that switch's own recordings folder
(``<state>/freeswitch/recordings/<account>/<date>/<uuid>.<format>``).  When a recording
stops, the Lua hook ``freeswitch/scripts/zp_recordings.lua.j2`` (bound to ``RECORD_STOP``
in ``lua.conf.xml``) adds a row to the ``recordings`` table of an sqlite file on the data
center's shared storage: one index per data center, shared by its switches.  Run as an
API, ``lua zp_recordings.lua list [account]``, the same script writes the rows as JSON
lines ordered by ``started``.  Reading an index therefore needs one switch of the data
center: they are asked one after another, the first that answers is used, and one that
answers with an error stops the search (the others would answer the same).  Without an
account every data center with switches is read; with one, the data centers of the
account's sites and their pairs (which take the account's calls during a failover, and
index those recordings in their own index).  The data centers are read at once and the
rows merged by ``started``.

Reply formats, from FreeSWITCH's source (mod_lua.cpp, mod_event_socket.c): the script's
output as written; nothing (no rows, or an index the script could not open: it only logs
that) becomes ``-ERR no reply`` over ESL, read as no rows; a script that is missing or
fails gives ``-ERR Cannot execute script`` (after whatever it wrote before failing; the
reason is in the switch's log); without mod_lua, ``-ERR lua Command not found!``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zpctl.clients.esl import EslConnection, SwitchTarget
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError
from zpctl.freeswitch import select_switches
from zpctl.freeswitch.control import Step, esl_password, placed_targets
from zpctl.freeswitch.voicemail import (
    NO_REPLY,
    Progress,
    find_account,
    first_answer,
    short_list,
)
from zpctl.model import LoadedInventory

SCRIPT = "zp_recordings.lua"  # scripts/ of every switch (rendered from the .j2)
_TEXT = ("uuid", "account", "path", "switch", "caller", "callee")
_NUMBERS = ("started", "duration_ms")
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: beyond it a start time is not a date


@dataclass(frozen=True)
class Recording:
    """One row of a data center's recording index, as the switch's script wrote it."""

    uuid: str  # the recorded channel's Unique-ID
    account: str
    path: str  # on the disk of ``switch``, the switch that recorded the call
    switch: str
    caller: str
    callee: str
    started: int  # epoch seconds (UTC) of the RECORD_STOP event
    duration_ms: int  # read from the WAV header (0 for a file the hook could not read)

    @property
    def duration_s(self) -> float:
        return self.duration_ms / 1000

    @property
    def started_iso(self) -> str:
        """``started`` as ISO 8601 in UTC, e.g. ``2024-05-01T09:30:00Z``."""
        return datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def as_dict(self) -> dict[str, Any]:
        """The row as the script writes it (the same keys, in the same order)."""
        return asdict(self)


# --- which switches are asked -----------------------------------------------------------

def account_dcs(loaded: LoadedInventory, account: str) -> tuple[str, ...]:
    """The data centers whose index may hold ``account``'s recordings, in inventory order:
    those of its sites and their pairs.  Exit 2 for an unknown account, naming the known."""
    inv = loaded.model
    acct = find_account(loaded, account)
    home = {s.datacenter for s in acct.sites}
    pairs = {d.pair for d in inv.datacenters if d.id in home and d.pair}
    return tuple(d.id for d in inv.datacenters if d.id in home | pairs)


def list_targets(loaded: LoadedInventory, account: str | None = None, zone: str | None = None,
                 switch: str | None = None, esl_override: str | None = None, *,
                 guard: bool = False) -> dict[str, list[SwitchTarget]]:
    """The switches to ask, by data center (one index each), each list in the order its
    switches are tried: every data center with switches, or those of ``account``
    (:func:`account_dcs`); ``zone``/``switch`` narrow the choice.  ``guard`` as in
    :func:`control.targets_for`."""
    dcs = account_dcs(loaded, account) if account else None
    chosen = select_switches(loaded, zone, switch)  # every switch without zone and switch
    placed = chosen if dcs is None else [p for p in chosen if p.dc.id in dcs]
    if not placed:
        if zone or switch:
            raise ZpctlError(f"{short_list([p.name for p in chosen])}: not a switch of account "
                             f"{account}; its recordings are indexed by the switches of "
                             f"{', '.join(dcs or ())}", ExitCode.USAGE)
        raise ZpctlError(f"account {account}: no switch in its data centers "
                         f"({', '.join(dcs or ()) or 'none'})", ExitCode.USAGE)
    targets = placed_targets(loaded, placed, esl_override, guard=guard)
    by_dc: dict[str, list[SwitchTarget]] = {}
    for t in targets:
        by_dc.setdefault(t.dc, []).append(t)
    return by_dc


# --- the ESL command and its reply --------------------------------------------------------

def list_command(account: str | None = None) -> str:
    """The ESL command that reads an index (all of it, or ``account``'s rows)."""
    return f"api lua {SCRIPT} list" + (f" {account}" if account else "")


def list_plan(by_dc: Mapping[str, Sequence[SwitchTarget]],
              account: str | None = None) -> list[Step]:
    """--dry-run: the command for the first switch of each data center (the others only if
    it does not answer)."""
    command = list_command(account)
    return [Step(ts[0].name, f"{ts[0].host}:{ts[0].port}", command)
            for ts in by_dc.values() if ts]


def _failed(switch: str, command: str, body: str, hint: str = "") -> RemoteFailure:
    return RemoteFailure(f"switch {switch}: {command}: {body}{hint}")


def _hint(line: str) -> str:
    if "Command not found" in line:
        return " (is mod_lua loaded?)"
    if "Cannot execute script" in line:
        return (f" (scripts/{SCRIPT} is missing or failed: is the rendered config deployed? "
                "the switch's log says why)")
    return ""


def _count(value: object, maximum: int | None) -> bool:
    """A whole number from 0 (Lua may write ``12.0``), at most ``maximum``."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0 and (maximum is None or value <= maximum))


def _row(line: str, n: int, switch: str, command: str) -> Recording:
    def bad(why: str) -> RemoteFailure:
        shown = line if len(line) <= 120 else line[:117] + "..."
        return _failed(switch, command, f"line {n} is not a recording row ({why}): {shown}")

    try:
        obj = json.loads(line)
    except ValueError:
        raise bad("not JSON") from None
    if not isinstance(obj, dict):
        raise bad("not a JSON object")
    missing = [k for k in (*_TEXT, *_NUMBERS) if k not in obj]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    wrong = [k for k in _TEXT if not isinstance(obj[k], str)]
    wrong += [k for k in _NUMBERS if not _count(obj[k], _MAX_EPOCH if k == "started" else None)]
    if wrong:
        raise bad(f"bad {', '.join(wrong)}")
    return Recording(uuid=obj["uuid"], account=obj["account"], path=obj["path"],
                     switch=obj["switch"], caller=obj["caller"], callee=obj["callee"],
                     started=int(obj["started"]), duration_ms=int(obj["duration_ms"]))


def parse_rows(text: str, switch: str = "", command: str = "api lua zp_recordings.lua list"
               ) -> list[Recording]:
    """The rows of ``lua zp_recordings.lua list``: one JSON object a line (blank lines
    skipped); ``-ERR no reply`` is no rows.  An ``-ERR`` line or a line that is not a row
    is a remote error (exit 6) naming ``switch``."""
    if text.strip() == NO_REPLY:
        return []
    rows = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(("-ERR", "-USAGE")):
            raise _failed(switch, command, line, _hint(line))
        rows.append(_row(line, n, switch, command))
    return rows


def merge(per_dc: Iterable[Sequence[Recording]]) -> list[Recording]:
    """The rows of several indexes as one list, oldest first."""
    return sorted((r for rows in per_dc for r in rows), key=lambda r: r.started)


def newest(rows: Sequence[Recording], limit: int | None = None) -> list[Recording]:
    """The last ``limit`` of ``rows`` (oldest first, as merged); all without a limit."""
    if limit is None:
        return list(rows)
    return list(rows[max(0, len(rows) - limit):])


# --- talking to the switches --------------------------------------------------------------

async def acollect(by_dc: Mapping[str, Sequence[SwitchTarget]], password: str,
                   account: str | None = None, timeout: float = 5.0,
                   progress: Progress | None = None
                   ) -> tuple[list[Recording], dict[str, ZpctlError]]:
    """Read every data center's index at once (the first of its switches that answers):
    the merged rows of those that answered, and the error of each data center that did
    not (see :func:`raise_for_failures`)."""
    command = list_command(account)

    async def work(conn: EslConnection) -> list[Recording]:
        out = await conn.api(command.removeprefix("api "), check=False)
        return parse_rows(out, conn.name, command)

    async def one(targets: Sequence[SwitchTarget]) -> list[Recording]:
        _t, rows = await first_answer(targets, password, timeout, work, progress)
        return rows

    dcs = list(by_dc)
    results = await asyncio.gather(*(one(by_dc[dc]) for dc in dcs), return_exceptions=True)
    found: list[list[Recording]] = []
    failures: dict[str, ZpctlError] = {}
    for dc, result in zip(dcs, results, strict=True):
        if isinstance(result, ZpctlError):
            failures[dc] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            found.append(result)
    return merge(found), failures


def raise_for_failures(failures: Mapping[str, ZpctlError]) -> None:
    """One error for the data centers whose index was not read, if any, with the exit code
    of the most telling (7 when one did not answer, else that of the first: 6 for an error
    answer)."""
    if not failures:
        return
    why = "; ".join(f"data center {dc}: {e.message}" for dc, e in failures.items())
    if len(failures) > 1:
        why = f"the index of {len(failures)} data centers was not read: {why}"
    worst = next((e for e in failures.values() if e.exit_code == ExitCode.UNREACHABLE),
                 next(iter(failures.values())))
    if isinstance(worst, Unreachable):
        raise Unreachable(why) from worst
    if isinstance(worst, RemoteFailure):
        raise RemoteFailure(why) from worst
    raise ZpctlError(why, worst.exit_code) from worst


async def alist(by_dc: Mapping[str, Sequence[SwitchTarget]], password: str,
                account: str | None = None, timeout: float = 5.0,
                progress: Progress | None = None) -> list[Recording]:
    """Every row of the indexes of ``by_dc``, oldest first; an error if one was not read."""
    rows, failures = await acollect(by_dc, password, account, timeout, progress)
    raise_for_failures(failures)
    return rows


def list_recordings(loaded: LoadedInventory, account: str | None = None, *,
                    zone: str | None = None, switch: str | None = None,
                    esl_override: str | None = None, password: str | None = None,
                    secrets_file: Path | None = None, timeout: float = 5.0,
                    progress: Progress | None = None) -> list[Recording]:
    """:func:`alist` for callers that are not async (the lab's feature flows)."""
    by_dc = list_targets(loaded, account, zone, switch, esl_override, guard=True)
    pw = password or esl_password(loaded, secrets_file)
    return asyncio.run(alist(by_dc, pw, account, timeout, progress))
