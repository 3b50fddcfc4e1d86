"""Live control of the switch tier over ESL: status, pause/resume (drain), and calls.

Library functions for the ``zpctl switch`` and ``zpctl calls`` commands and for zone drain
(:func:`pause_switches` / :func:`resume_switches`).  Every operation is first built as a
plan - the exact ESL commands per switch - so ``--dry-run`` prints what would be sent and
the real run sends exactly that.  The async functions do the work; the plain functions
wrap them in ``asyncio.run`` for callers that are not async.

Drain follows the reference (2.9): there is no drain command; ``fsctl pause inbound``
refuses new sessions, then we wait until every switch's session count reaches zero - from
HEARTBEAT ``Session-Count`` and, more often, from the ``N session(s) -`` line of ``api
status`` (a line the reference does not document: it is parsed tolerantly, and a switch
whose status cannot be parsed is waited for by HEARTBEAT alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from zpctl.clients.esl import EslConnection, EslPool, SwitchTarget
from zpctl.clients.guard import AddressGuard
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError
from zpctl.freeswitch import esl_targets, select_switches
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.pbx import MONITOR_MODES
from zpctl.model.pbx_checks import monitor_permitted
from zpctl.model.schema import Account
from zpctl.secrets import ESL_PASSWORD_KEY, Secrets, _env_name, default_path

R = TypeVar("R")
# A channel found on a switch: the switch, its row in `show channels`, `show calls`.
Hit = tuple[SwitchTarget, dict[str, str], list[dict[str, str]]]

Progress = Callable[[str], None]
_UUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,127}$")
HANGUP_CAUSES_ALLOWED = ("NORMAL_CLEARING", "USER_BUSY", "CALL_REJECTED", "MANAGER_REQUEST",
                         "NO_ANSWER", "NORMAL_UNSPECIFIED", "ORIGINATOR_CANCEL", "UNWANTED",
                         "SYSTEM_SHUTDOWN", "NORMAL_TEMPORARY_FAILURE")


@dataclass(frozen=True)
class Step:
    """One ESL command for one switch."""

    switch: str
    address: str
    command: str  # e.g. "api fsctl pause inbound" or "bgapi originate ..."

    def as_dict(self) -> dict[str, str]:
        return {"switch": self.switch, "address": self.address, "command": self.command}

    def __str__(self) -> str:
        return f"{self.switch} ({self.address}): {self.command}"


@dataclass
class SwitchResult:
    """What happened on one switch."""

    switch: str
    dc: str
    zone: str
    address: str
    state: str = "ok"  # ok | paused | resumed | drained | unreachable | error
    sessions: int | None = None
    detail: str = ""
    error: ZpctlError | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"switch": self.switch, "dc": self.dc, "zone": self.zone,
                               "address": self.address, "state": self.state,
                               "sessions": self.sessions}
        if self.detail:
            out["detail"] = self.detail
        if self.error is not None:
            out["error"] = self.error.message
        out.update(self.extra)
        return out


def _result(t: SwitchTarget) -> SwitchResult:
    return SwitchResult(t.name, t.dc, t.zone, f"{t.host}:{t.port}")


def esl_password(loaded: LoadedInventory, secrets_file: Path | None = None) -> str:
    """The platform's ESL password: $ZPCTL_SECRET_ESL_PASSWORD or the secrets file (the
    value the renderer wrote into secrets.xml).  Never generated here."""
    env = os.environ.get(_env_name(ESL_PASSWORD_KEY))
    if env:
        return env
    path = secrets_file or default_path(loaded.model.platform.name)
    secrets = Secrets.load(path)
    if ESL_PASSWORD_KEY not in secrets.values:
        raise ZpctlError(f"no {ESL_PASSWORD_KEY} in {path}: render the inventory first (it "
                         f"generates one), or set {_env_name(ESL_PASSWORD_KEY)}", ExitCode.ENVIRONMENT)
    return secrets.values[ESL_PASSWORD_KEY]


def raise_for_errors(results: Sequence[SwitchResult]) -> None:
    """Raise the most telling error of ``results`` (unreachable beats remote), if any."""
    errors = [r.error for r in results if r.error is not None]
    if not errors:
        return
    worst = next((e for e in errors if e.exit_code == ExitCode.UNREACHABLE), errors[0])
    names = ", ".join(r.switch for r in results if r.error is not None)
    raise ZpctlError(f"{len(errors)} switch(es) failed ({names}): {worst.message}", worst.exit_code)


_SESSIONS = re.compile(r"^(\d+) session\(s\) - ", re.M)
_SINCE_STARTUP = re.compile(r"^(\d+) session\(s\) since startup", re.M)


def parse_status_sessions(text: str) -> int | None:
    """Current sessions from ``api status`` output, or None if the line is not there."""
    m = _SESSIONS.search(text)
    return int(m.group(1)) if m else None


def parse_status_total(text: str) -> int | None:
    """Sessions since the switch started (``N session(s) since startup`` of ``api
    status``): the difference over a run is the calls the switch took."""
    m = _SINCE_STARTUP.search(text)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class SofiaProfile:
    """One line of ``sofia status`` of type ``profile`` (a TLS-only profile has only its
    TLS line): listed only while the profile runs."""

    name: str
    url: str
    state: str  # RUNNING
    calls: int  # the profile's calls in use (the number in parentheses)
    tls: bool


def parse_sofia_status(text: str) -> list[SofiaProfile]:
    """The running profiles of a ``sofia status`` reply (mod_sofia.c: a header, a line of
    ``=``, then ``name<TAB>type<TAB>  data<TAB>state`` rows, a line of ``=``, a count);
    aliases and gateways are skipped."""
    out = []
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("\t")]
        if len(cols) < 4 or cols[1] != "profile":
            continue
        m = re.fullmatch(r"(\w+) \((\d+)\)( \(TLS\))?", cols[3])
        if m:
            out.append(SofiaProfile(cols[0], cols[2], m[1], int(m[2]), bool(m[3])))
    return out


def parse_rows(text: str) -> list[dict[str, str]]:
    """Rows of ``show calls|channels as json`` ({"row_count": N, "rows": [...]})."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise RemoteFailure(f"unexpected output of show ... as json: {text[:80]!r}") from None
    rows = doc.get("rows", []) if isinstance(doc, dict) else []
    return [{str(k): "" if v is None else str(v) for k, v in r.items()} for r in rows
            if isinstance(r, dict)]


async def _connect(t: SwitchTarget, password: str, timeout: float) -> EslConnection:
    conn = EslConnection(t.host, t.port, password, name=t.name, timeout=timeout)
    await conn.connect()
    return conn


async def _each(targets: Sequence[SwitchTarget], password: str, timeout: float,
                work: Callable[[EslConnection, SwitchResult], Any],
                deadline: float | None = None) -> list[SwitchResult]:
    """Run ``work(conn, result)`` on every switch at once; errors land in the results.
    With ``deadline`` (seconds for all of it), switches still busy then are unreachable."""
    results = [_result(t) for t in targets]

    async def one(t: SwitchTarget, res: SwitchResult) -> None:
        await _session(t, password, timeout, res, lambda conn: work(conn, res))

    await _all_within([one(t, r) for t, r in zip(targets, results, strict=True)], results,
                      deadline)
    return results


async def _session(t: SwitchTarget, password: str, timeout: float, res: SwitchResult,
                   work: Callable[[EslConnection], Awaitable[R]]) -> R | None:
    """Connect to one switch, run ``work`` and close; an error lands in ``res`` (None is
    returned), and a cancellation (a deadline passed) drops the connection at once."""
    try:
        conn = await _connect(t, password, timeout)
    except ZpctlError as exc:
        _failed(res, exc)
        return None
    out: R | None = None
    try:
        out = await work(conn)
    except ZpctlError as exc:
        _failed(res, exc)
    except asyncio.CancelledError:
        await conn.abort()
        raise
    await conn.close()
    return out


def _failed(res: SwitchResult, exc: ZpctlError) -> None:
    res.state = "unreachable" if exc.exit_code == ExitCode.UNREACHABLE else "error"
    res.error = exc


async def _all_within(coros: Sequence[Coroutine[Any, Any, None]], results: Sequence[SwitchResult],
                      deadline: float | None) -> None:
    """Run ``coros`` (one per result) at once; those not done at ``deadline`` are cancelled
    and their switch marked unreachable."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return
    try:
        _, pending = await asyncio.wait(tasks, timeout=deadline)
    except asyncio.CancelledError:  # our caller gives up (e.g. another switch had the answer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task, res in zip(tasks, results, strict=True):
        if task not in pending and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # a bug: not a switch's fault
        if task in pending:
            _failed(res, Unreachable(f"switch {res.switch}: no answer within the "
                                     f"{deadline:g} s deadline"))


# --- switch status / pause / resume --------------------------------------------------------

def inventory_pool(loaded: LoadedInventory, password: str, *, zone: str | None = None,
                   switch: str | None = None, esl_override: str | None = None,
                   timeout: float = 5.0, reconnect: bool = True) -> EslPool:
    """One ESL connection per selected switch of the inventory (not yet connected: use
    ``async with``), reconnecting with backoff - e.g. for an exporter following HEARTBEAT."""
    return EslPool(targets_for(loaded, zone, switch, esl_override), password, timeout=timeout,
                   reconnect=reconnect)


def targets_for(loaded: LoadedInventory, zone: str | None = None, switch: str | None = None,
                esl_override: str | None = None, *, guard: bool = False) -> list[SwitchTarget]:
    """ESL addresses of the selected switches.  With ``guard`` (live commands), an
    inventory address this machine must not contact is refused (exit 9, see
    :class:`zpctl.clients.guard.AddressGuard`); addresses given by an override are the
    operator's own choice and are not checked."""
    return placed_targets(loaded, select_switches(loaded, zone, switch), esl_override,
                          guard=guard)


def placed_targets(loaded: LoadedInventory, placed: Sequence[PlacedNode],
                   esl_override: str | None = None, *, guard: bool = False
                   ) -> list[SwitchTarget]:
    """ESL addresses of ``placed`` switches, guarded as in :func:`targets_for`."""
    targets = esl_targets(list(placed), esl_override)
    if guard:
        check = AddressGuard(loaded)
        for p, t in zip(placed, targets, strict=True):
            if (t.host, t.port) == (p.node.mgmt, p.node.ports.esl):
                check.check(t.host, t.name)
    return targets


def status_plan(targets: Sequence[SwitchTarget]) -> list[Step]:
    return [Step(t.name, f"{t.host}:{t.port}", c) for t in targets
            for c in ("api status", "api fsctl pause_check inbound")]


async def astatus(targets: Sequence[SwitchTarget], password: str, timeout: float = 5.0
                  ) -> list[SwitchResult]:
    """Up/down, current sessions and inbound pause state of each switch."""
    async def work(conn: EslConnection, res: SwitchResult) -> None:
        out = await conn.api("status")
        res.sessions = parse_status_sessions(out)
        res.extra["sessions_since_startup"] = parse_status_total(out)
        res.detail = out.splitlines()[0] if out else ""
        paused = (await conn.api("fsctl pause_check inbound", check=False)).strip()
        res.extra["paused_inbound"] = {"true": True, "false": False}.get(paused)
        res.state = "paused" if paused == "true" else "ok"

    return await _each(targets, password, timeout, work)


def pause_plan(targets: Sequence[SwitchTarget]) -> list[Step]:
    return [Step(t.name, f"{t.host}:{t.port}", "api fsctl pause inbound") for t in targets]


def resume_plan(targets: Sequence[SwitchTarget]) -> list[Step]:
    return [Step(t.name, f"{t.host}:{t.port}", "api fsctl resume inbound") for t in targets]


async def apause(targets: Sequence[SwitchTarget], password: str, *, wait: bool = False,
                 deadline_s: float = 600.0, poll_s: float = 2.0, timeout: float = 5.0,
                 progress: Progress | None = None) -> list[SwitchResult]:
    """``fsctl pause inbound`` on every switch; with ``wait``, drain: keep the connections
    and return when every session count is zero, or raise at the deadline (exit 7)."""
    say = progress or (lambda _m: None)
    conns: dict[str, EslConnection] = {}
    results: dict[str, SwitchResult] = {t.name: _result(t) for t in targets}

    async def pause_one(t: SwitchTarget) -> None:
        res = results[t.name]
        try:
            conn = await _connect(t, password, timeout)
            await conn.api("fsctl pause inbound")
            res.state = "paused"
            if wait:
                await conn.subscribe(["HEARTBEAT"])
                conns[t.name] = conn
            else:
                await conn.close()
        except ZpctlError as exc:
            res.state = "unreachable" if exc.exit_code == ExitCode.UNREACHABLE else "error"
            res.error = exc

    await asyncio.gather(*(pause_one(t) for t in targets))
    for r in results.values():
        say(f"switch {r.switch}: {'inbound paused' if r.error is None else r.error.message}")
    if not wait:
        return list(results.values())
    try:
        await _drain(conns, results, deadline_s, poll_s, say)
    finally:
        await asyncio.gather(*(c.close() for c in conns.values()))
    return list(results.values())


async def _drain(conns: dict[str, EslConnection], results: dict[str, SwitchResult],
                 deadline_s: float, poll_s: float, say: Progress) -> None:
    end = time.monotonic() + deadline_s
    counts: dict[str, int | None] = dict.fromkeys(conns)

    def heartbeat(name: str) -> Callable[[Any], None]:
        def cb(ev: Any) -> None:
            if ev.name == "HEARTBEAT" and (ev.get("Session-Count") or "").isdigit():
                counts[name] = int(ev.get("Session-Count"))
        return cb

    for name, conn in conns.items():
        conn.on_event(heartbeat(name))
    last_report = ""
    while True:
        for name, conn in conns.items():
            if counts.get(name) == 0:
                continue
            try:
                n = parse_status_sessions(await conn.api("status"))
            except ZpctlError as exc:
                results[name].state, results[name].error = "unreachable", exc
                counts[name] = None
                continue
            if n is not None:
                counts[name] = n
        for name, n in counts.items():
            results[name].sessions = n
        waiting = {k: v for k, v in counts.items() if v != 0 and results[k].error is None}
        report = ", ".join(f"{k}: {'?' if v is None else v}" for k, v in sorted(waiting.items()))
        if not waiting:
            for name in conns:
                if results[name].error is None:
                    results[name].state = "drained"
            say("drain: every switch is at 0 sessions")
            return
        if report != last_report:
            say(f"drain: waiting for sessions to end ({report})")
            last_report = report
        if time.monotonic() >= end:
            total = sum(v or 0 for v in waiting.values())
            left = await _channels_left({k: conns[k] for k in waiting})
            raise Unreachable(f"drain deadline of {deadline_s:g}s passed with {total} session(s) "
                              f"left ({report}); inbound stays paused (zpctl switch resume to undo)"
                              + (f"; still up: {left} (zpctl calls kill UUID ends one)"
                                 if left else ""))
        await asyncio.sleep(min(poll_s, max(0.0, end - time.monotonic())))


def describe_channels(rows: Sequence[dict[str, str]], now: float, limit: int = 5) -> str:
    """``uuid (caller -> destination, state, N s old)`` for the first ``limit`` channels: what
    an operator needs to pick the one to end."""
    out = []
    for r in rows[:limit]:
        created = r.get("created_epoch", "")
        age = f", {now - int(created):.0f} s old" if created.isdigit() else ""
        out.append(f"{r.get('uuid', '?')} ({r.get('cid_num', '') or '?'} -> "
                   f"{r.get('dest', '') or '?'}, {r.get('callstate', '') or '?'}{age})")
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(out) + more


async def _channels_left(conns: dict[str, EslConnection]) -> str:
    """The channels still up on the switches a drain waited for (best effort: a switch
    that does not answer is already named by the drain's own report)."""
    rows: list[dict[str, str]] = []
    for conn in conns.values():
        try:
            rows += parse_rows(await conn.api("show channels as json"))
        except ZpctlError:
            continue
    return describe_channels(sorted(rows, key=lambda r: r.get("created_epoch", "")), time.time())


async def aresume(targets: Sequence[SwitchTarget], password: str, timeout: float = 5.0
                  ) -> list[SwitchResult]:
    async def work(conn: EslConnection, res: SwitchResult) -> None:
        await conn.api("fsctl resume inbound")
        res.state = "resumed"

    return await _each(targets, password, timeout, work)


def pause_switches(loaded: LoadedInventory, *, zone: str | None = None, switch: str | None = None,
                   wait: bool = False, deadline_s: float = 600.0, poll_s: float = 2.0,
                   password: str | None = None, secrets_file: Path | None = None,
                   esl_override: str | None = None, timeout: float = 5.0,
                   progress: Progress | None = None) -> list[SwitchResult]:
    """Pause inbound sessions on the selected switches (for zone drain: ``zone="dc/zone"``);
    with ``wait``, drain them.  Per-switch errors are in the results (see raise_for_errors)."""
    targets = targets_for(loaded, zone, switch, esl_override, guard=True)
    pw = password or esl_password(loaded, secrets_file)
    return asyncio.run(apause(targets, pw, wait=wait, deadline_s=deadline_s, poll_s=poll_s,
                              timeout=timeout, progress=progress))


def resume_switches(loaded: LoadedInventory, *, zone: str | None = None, switch: str | None = None,
                    password: str | None = None, secrets_file: Path | None = None,
                    esl_override: str | None = None, timeout: float = 5.0) -> list[SwitchResult]:
    """Resume inbound sessions on the selected switches (undo of pause_switches)."""
    targets = targets_for(loaded, zone, switch, esl_override, guard=True)
    pw = password or esl_password(loaded, secrets_file)
    return asyncio.run(aresume(targets, pw, timeout))


# --- calls ---------------------------------------------------------------------------------

def check_uuid(uuid: str) -> str:
    if not _UUID.match(uuid):
        raise ZpctlError(f"not a channel UUID: {uuid!r}", ExitCode.USAGE)
    return uuid


def _word(value: str, what: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise ZpctlError(f"{what} must be one word without spaces: {value!r}", ExitCode.USAGE)
    return value


async def alist_calls(targets: Sequence[SwitchTarget], password: str, timeout: float = 5.0,
                      deadline: float | None = None
                      ) -> tuple[list[dict[str, str]], list[SwitchResult]]:
    """Every call (``show calls as json``) on every switch, each row with its switch."""
    rows: list[dict[str, str]] = []

    async def work(conn: EslConnection, res: SwitchResult) -> None:
        found = parse_rows(await conn.api("show calls as json"))
        res.sessions = len(found)
        for r in found:
            rows.append({"switch": res.switch, **r})

    results = await _each(targets, password, timeout, work, deadline)
    return sorted(rows, key=lambda r: (r["switch"], r.get("created_epoch", ""), r.get("uuid", ""))), \
        results


FIND_DEADLINE_S = 10.0  # default for finding the switch that holds a channel
MONITOR_RING_SECONDS = 30  # how long a supervisor's phone rings for a monitor or takeover


async def afind_channel(targets: Sequence[SwitchTarget], password: str, uuid: str,
                        timeout: float = 5.0, deadline: float = FIND_DEADLINE_S
                        ) -> tuple[SwitchTarget, dict[str, str], list[dict[str, str]]]:
    """The switch holding channel ``uuid``, its row, and the call rows of that switch.

    Every switch is asked at once (``show channels as json``); the first that holds the
    channel wins and the others are let go.  After ``deadline`` seconds the switches that
    have not answered count as unreachable.  Not found: exit 6 when every switch answered,
    exit 7 when some did not (the channel may be on one of them), naming them.
    """
    results = [_result(t) for t in targets]
    found: list[Hit] = []
    done = asyncio.Event()

    async def probe(t: SwitchTarget, res: SwitchResult) -> None:
        async def look(conn: EslConnection) -> Hit | None:
            chans = parse_rows(await conn.api("show channels as json"))
            hit = next((r for r in chans if r.get("uuid") == uuid), None)
            if hit is None:
                return None
            return t, hit, parse_rows(await conn.api("show calls as json"))

        got = await _session(t, password, min(timeout, deadline), res, look)
        if got is not None:
            found.append(got)
            done.set()

    async def first_hit() -> None:
        await done.wait()

    watcher = asyncio.ensure_future(first_hit())
    search = asyncio.ensure_future(_all_within([probe(t, r) for t, r in
                                                zip(targets, results, strict=True)],
                                               results, deadline))
    await asyncio.wait([watcher, search], return_when=asyncio.FIRST_COMPLETED)
    if not search.done():  # found: the other switches need not answer
        search.cancel()
    watcher.cancel()
    await asyncio.gather(watcher, search, return_exceptions=True)
    if found:
        return found[0]
    if not search.cancelled() and search.exception() is not None:
        raise search.exception()  # type: ignore[misc]
    raise not_found(uuid, results)


def not_found(uuid: str, results: Sequence[SwitchResult]) -> ZpctlError:
    """The error for a channel no switch holds: how many were asked, which could not be."""
    reached = [r for r in results if r.error is None]
    down = [r for r in results if r.error is not None
            and r.error.exit_code == ExitCode.UNREACHABLE]
    failed = [r for r in results if r.error is not None and r not in down]
    bad = down + failed
    if not bad:
        return RemoteFailure(f"no channel {uuid} on the {_switches_n(len(reached))} reached")
    names = ", ".join(r.switch for r in bad)
    why = bad[0].error.message if bad[0].error is not None else ""
    code = ExitCode.UNREACHABLE if down else ExitCode.REMOTE_ERROR
    what = f"{len(down)} unreachable" + (f", {len(failed)} failed" if failed else "")
    if not reached:
        return ZpctlError(f"cannot look for channel {uuid}: reached none of the "
                          f"{_switches_n(len(results))}; {what}: {names} (e.g. {why})", code)
    return ZpctlError(f"no channel {uuid} on the {_switches_n(len(reached))} reached; "
                      f"{what}: {names} (e.g. {why})", code)


def _switches_n(n: int) -> str:
    return f"{n} switch" if n == 1 else f"{n} switches"


def partner_of(uuid: str, calls: Sequence[dict[str, str]]) -> str | None:
    for r in calls:
        if r.get("uuid") == uuid and r.get("b_uuid"):
            return r["b_uuid"]
        if r.get("b_uuid") == uuid:
            return r.get("uuid")
    return None


def call_command(action: str, uuid: str, *, cause: str = "NORMAL_CLEARING", dest: str = "",
                 leg: str = "a", context: str | None = None, hold: str = "on",
                 record: str = "start", path: str = "", limit: int | None = None) -> str:
    """The exact ESL command (``api ...``) of a call-control action on ``uuid``."""
    check_uuid(uuid)
    if action == "kill":
        if cause not in HANGUP_CAUSES_ALLOWED:
            raise ZpctlError(f"cause must be one of {', '.join(HANGUP_CAUSES_ALLOWED)}",
                             ExitCode.USAGE)
        return f"api uuid_kill {uuid} {cause}"
    if action == "transfer":
        flag = {"a": "", "b": "-bleg ", "both": "-both "}[leg]
        ctx = f" XML {_word(context, 'context')}" if context else ""
        return f"api uuid_transfer {uuid} {flag}{_word(dest, 'destination')}{ctx}"
    if action == "hold":
        return f"api uuid_hold {'' if hold == 'on' else hold + ' '}{uuid}"
    if action == "park":
        return f"api uuid_park {uuid}"
    if action == "record":
        tail = f" {limit}" if limit else ""
        return f"api uuid_record {uuid} {record} {_word(path, 'path')}{tail}"
    raise ZpctlError(f"unknown call action {action!r}", ExitCode.USAGE)


async def acall_action(targets: Sequence[SwitchTarget], password: str, uuid: str, command: str,
                       timeout: float = 5.0, deadline: float = FIND_DEADLINE_S
                       ) -> tuple[SwitchTarget, str]:
    """Run ``command`` on the switch holding ``uuid`` (searched for within ``deadline``
    seconds); (switch, output)."""
    if len(targets) == 1:
        t = targets[0]
    else:
        t, _, _ = await afind_channel(targets, password, uuid, timeout, deadline)
    conn = await _connect(t, password, timeout)
    try:
        verb, _, rest = command.partition(" ")
        out = await conn.api(rest) if verb == "api" else await conn.bgapi(rest)
    finally:
        await conn.close()
    return t, out.strip()


def parse_user(value: str, loaded: LoadedInventory) -> tuple[Account, str]:
    """``EXT@ACCOUNT`` -> (account, extension)."""
    ext, _, acct_id = value.partition("@")
    acct = loaded.model.account(acct_id)
    if acct is None or not ext:
        raise ZpctlError(f"give a user as EXT@ACCOUNT (e.g. 1003@northwind), not {value!r}",
                         ExitCode.USAGE)
    if acct.user(ext) is None:
        raise ZpctlError(f"{ext} is not a user of account {acct.id}", ExitCode.USAGE)
    return acct, ext


def monitor_plan(loaded: LoadedInventory, uuid: str, mode: str, supervisor: str,
                 new_uuid: str | None = None, partner: str | None = None) -> list[str]:
    """ESL commands that connect ``supervisor`` to call leg ``uuid`` in ``mode``.

    ``uuid`` is the monitored user's own leg.  listen/whisper/barge: one ``bgapi
    originate`` of the supervisor into ``eavesdrop`` of that leg; whisper sends the
    supervisor's voice to that leg's endpoint, the user (``eavesdrop_whisper_bleg``;
    measured against FreeSWITCH 1.11: ``..._aleg`` reaches the other party), barge to
    both.  takeover: originate the supervisor parked, bridge the monitored leg's partner
    (the other party) to it, and hang up the user's leg.
    """
    check_uuid(uuid)
    if mode not in MONITOR_MODES:
        raise ZpctlError(f"mode must be one of {', '.join(MONITOR_MODES)}", ExitCode.USAGE)
    acct, ext = parse_user(supervisor, loaded)
    why = monitor_permitted(acct, ext, mode)
    if why is not None:
        raise ZpctlError(f"not permitted: {why}", ExitCode.USAGE)
    domain = loaded.model.account_domain(acct)
    spy = new_uuid or str(uuidlib.uuid4())
    vars_ = [f"origination_uuid={spy}", f"origination_caller_id_name=Monitor-{mode}",
             f"origination_caller_id_number={ext}", f"leg_timeout={MONITOR_RING_SECONDS}"]
    if mode == "takeover":
        return [f"bgapi originate {{{','.join(vars_)}}}user/{ext}@{domain} &park()",
                f"api uuid_bridge {partner or '<partner-of-' + uuid + '>'} {spy}",
                f"api uuid_kill {uuid} NORMAL_CLEARING"]
    vars_.append("eavesdrop_enable_dtmf=true")
    if mode in ("whisper", "barge"):
        vars_.append("eavesdrop_whisper_bleg=true")
    if mode == "barge":
        vars_.append("eavesdrop_whisper_aleg=true")
    return [f"bgapi originate {{{','.join(vars_)}}}user/{ext}@{domain} &eavesdrop({uuid})"]


def user_leg(row: dict[str, str], target_ext: str, calls: Sequence[dict[str, str]]) -> str:
    """The uuid of ``target_ext``'s own leg of the call ``row`` (a channel) is on: the
    channel itself when it is the user's (an inbound leg the user placed, or an outbound
    leg to the user), else its partner."""
    own = (row.get("direction") == "inbound" and row.get("cid_num") == target_ext) or \
        (row.get("direction") == "outbound" and row.get("dest") == target_ext)
    uuid = row.get("uuid", "")
    return uuid if own else (partner_of(uuid, calls) or uuid)


def target_extension(acct: Account, row: dict[str, str]) -> str | None:
    """The account user a channel row is the leg of (its number or destination)."""
    exts = {u.extension for u in acct.users}
    for key in ("dest", "cid_num", "callee_num"):
        if row.get(key) in exts:
            return row[key]
    return None


async def amonitor(loaded: LoadedInventory, targets: Sequence[SwitchTarget], password: str,
                   uuid: str, mode: str, supervisor: str, timeout: float = 10.0,
                   deadline: float = FIND_DEADLINE_S) -> dict[str, Any]:
    """Connect a supervisor to a call after checking the grant covers that call's user."""
    acct, ext = parse_user(supervisor, loaded)
    t, row, calls = await afind_channel(targets, password, uuid, timeout, deadline)
    target_ext = target_extension(acct, row)
    if target_ext is None:
        raise ZpctlError(f"channel {uuid} is not a call of a user of {acct.id}", ExitCode.USAGE)
    why = monitor_permitted(acct, ext, mode, target_ext)
    if why is not None:
        raise ZpctlError(f"not permitted: {why}", ExitCode.USAGE)
    leg = user_leg(row, target_ext, calls)
    partner = partner_of(leg, calls)
    if mode == "takeover" and partner is None:
        raise RemoteFailure(f"channel {uuid} is not bridged: nothing to take over")
    spy = str(uuidlib.uuid4())
    plan = monitor_plan(loaded, leg, mode, supervisor, spy, partner)
    conn = await _connect(t, password, timeout)
    outputs = []
    try:
        for cmd in plan:
            verb, _, rest = cmd.partition(" ")
            if verb == "bgapi":
                out = await conn.bgapi(rest, timeout=timeout)
            else:
                # A plan's uuid_kill (takeover's) wants the user's leg gone: FreeSWITCH may
                # have hung it up already, when its partner left the bridge.
                kill = rest.startswith("uuid_kill ")
                out = await conn.api(rest, check=not kill)
                if kill and out.startswith("-ERR") and "No such channel" not in out:
                    raise RemoteFailure(f"switch {t.name}: api {rest}: {out.strip()}")
            outputs.append(out.strip())
    finally:
        await conn.close()
    return {"switch": t.name, "uuid": uuid, "user_leg": leg, "mode": mode,
            "supervisor": supervisor, "monitored_user": target_ext, "supervisor_uuid": spy,
            "commands": plan,
            "outputs": outputs}


def originate_command(endpoint: str, dest: str, context: str | None, *, cid_name: str = "",
                      cid_num: str = "", timeout_s: int = 30, new_uuid: str | None = None) -> str:
    """``bgapi originate {origination_uuid=...}<endpoint> <dest> XML <context> ...``."""
    _word(endpoint, "endpoint")
    _word(dest, "destination")
    spy = new_uuid or str(uuidlib.uuid4())
    # leg_timeout as well: the switch's user dial string fails over between proxies only
    # on "proxy down" causes, and with that cause list only a leg's own timeout ends a ring.
    cmd = (f"bgapi originate {{origination_uuid={spy},originate_timeout={timeout_s},"
           f"leg_timeout={timeout_s}}}{endpoint} {dest}")
    if context:
        cmd += f" XML {_word(context, 'context')}"
        if cid_name or cid_num:
            cmd += f" {_word(cid_name or cid_num, 'caller ID name')} {_word(cid_num or cid_name, 'number')}"
    return cmd
