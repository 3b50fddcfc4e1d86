"""A standby switch takes over a dead one, in the lab: its addresses, its build and its
calls.

A zone's ``switch-standby`` node runs nothing until a switch of its zone dies.  Then
:func:`takeover` starts FreeSWITCH on the standby with the dead switch's configuration
(which binds the dead switch's SIP, RTP and ESL addresses: in production the standby host
takes those addresses over; in the lab every address is already on loopback) but with the
standby's own folders for its local files (core files, run folder, console log; the
configuration names FreeSWITCH's own log, so in the lab that is the dead switch's).  The calls come back
from the dead switch's core database on the shared PostgreSQL (``switch_recovery``):
``sofia recover`` re-creates each channel and re-INVITEs both parties of every call
(RFC 3261 14), which restarts the media.  :func:`giveback` stops the standby and starts the
repaired switch again.

Limits (docs/FREESWITCH.md, "Switch failure and the standby"): only calls that were
answered and whose state reached the database are recovered (FreeSWITCH writes it through a
queue, so a call answered a moment before the failure can be missing); SRTP legs cannot be
recovered (no SDES keys are restored), which is why a standby requires
``security.srtp.switch_legs: plain``; what a call was doing (a menu, a queue, a recording)
is not resumed, only its bridge.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from zpctl.clients.esl import EslConnection
from zpctl.errors import EnvironmentProblem, ExitCode, ZpctlError
from zpctl.freeswitch.control import targets_for
from zpctl.lab.procs import ProcessError, ProcRecord, launch, stop_all
from zpctl.lab.services import Service, switch_env
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.schema import Role
from zpctl.secrets import ESL_PASSWORD_KEY, Secrets

Progress = Callable[[str], None]


class Lab(Protocol):
    """What a takeover needs of :class:`zpctl.lab.runner.Lab` (which imports this module)."""

    dir: Path

    def inventory(self, inventory: Path | None = None) -> LoadedInventory: ...
    def service(self, name: str, inventory: Path | None = None) -> Service: ...
    def pid_path(self, service: str) -> Path: ...
    def save_record(self, rec: ProcRecord) -> None: ...
    def wait_up(self, s: Service, rec: ProcRecord, progress: Progress, timeout: float) -> None: ...
    def secrets(self) -> Secrets: ...
    def start(self, name: str, progress: Progress = ..., timeout: float = ...,
              wait: bool = ...) -> ProcRecord: ...
# The command-line options of FreeSWITCH that name a host's own folders: on a standby they
# name the standby's (the configuration, sounds and prompts are the dead switch's).
LOCAL_FOLDER_OPTIONS = {"-db": "state", "-run": "run", "-log": "run", "-temp": "run"}
_RECOVERED = re.compile(r"Recovered (\d+) call")


def standby_for(inv: LoadedInventory, switch: str, standby: str | None = None
                ) -> tuple[PlacedNode, PlacedNode]:
    """(the switch, its standby): ``standby`` or the first of the switch's zone."""
    try:
        dead = inv.node(switch)
    except KeyError:
        raise ZpctlError(f"no node {switch!r} in the inventory", ExitCode.USAGE) from None
    if dead.role != Role.SWITCH:
        raise ZpctlError(f"{switch} is a {dead.role.value} node, not a switch", ExitCode.USAGE)
    candidates = [p for p in inv.nodes() if p.role == Role.SWITCH_STANDBY
                  and p.dc.id == dead.dc.id and p.zone == dead.zone]
    if standby is not None:
        chosen = [p for p in inv.nodes() if p.name == standby]
        if not chosen or chosen[0].role != Role.SWITCH_STANDBY:
            raise ZpctlError(f"{standby} is not a switch-standby node", ExitCode.USAGE)
        if chosen[0] not in candidates:
            raise ZpctlError(f"{standby} stands by for zone {chosen[0].dc.id}/{chosen[0].zone}, "
                             f"not for {switch}'s ({dead.dc.id}/{dead.zone})", ExitCode.USAGE)
        return dead, chosen[0]
    if not candidates:
        raise ZpctlError(f"zone {dead.dc.id}/{dead.zone} has no switch-standby node",
                         ExitCode.USAGE)
    return dead, candidates[0]


def standby_argv(argv: list[str], folders: dict[str, Path]) -> list[str]:
    """The dead switch's command line with the standby's local folders."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in LOCAL_FOLDER_OPTIONS:
            out[i + 1] = str(folders[LOCAL_FOLDER_OPTIONS[arg]])
    return out


def stands_in_for(rec: ProcRecord) -> str | None:
    """The switch a running standby's process stands in for (its ``-conf`` folder's node)."""
    if "-conf" not in rec.argv[:-1]:
        return None
    conf = Path(rec.argv[rec.argv.index("-conf") + 1])
    return conf.parent.name  # <build>/<switch>/freeswitch


def parse_recovered(reply: str) -> int:
    """The count in ``sofia recover``'s answer ("Recovered 3 call(s)", "No calls to recover")."""
    m = _RECOVERED.search(reply)
    return int(m[1]) if m else 0


async def _recover(host: str, port: int, password: str) -> str:
    async with EslConnection(host, port, password, name="standby", timeout=10) as conn:
        return await conn.api("sofia recover")


def takeover(lab: Lab, switch: str, standby: str | None = None,
             progress: Progress = lambda s: None, timeout: float = 30.0) -> dict[str, Any]:
    """Start ``standby`` as the dead ``switch`` and recover its calls; what it took."""
    inv = lab.inventory()
    dead, spare = standby_for(inv, switch, standby)
    svc = lab.service(f"{dead.name}/freeswitch")
    old = ProcRecord.load(lab.pid_path(svc.name))
    if old is not None and old.alive():
        raise ZpctlError(f"{dead.name} is running (pid {old.pid}): a standby takes over a "
                         "dead switch only", ExitCode.USAGE)
    name = f"{spare.name}/freeswitch"
    mine = ProcRecord.load(lab.pid_path(name))
    if mine is not None and mine.alive():
        raise ZpctlError(f"{spare.name} already stands in for {stands_in_for(mine)} (pid "
                         f"{mine.pid}); `zpctl lab giveback` first", ExitCode.USAGE)
    other = standing_in(lab, inv, dead.name)
    if other is not None:
        raise ZpctlError(f"{other} already stands in for {dead.name}", ExitCode.USAGE)
    home = lab.dir / "nodes" / spare.name
    folders = {sub: home / sub for sub in ("state", "run", "log")}
    for d in folders.values():
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    t0 = time.monotonic()
    argv = standby_argv(svc.argv, folders)
    rec = launch(name, argv, folders["log"] / "freeswitch.console.log", folders["run"],
                 stop_signal=svc.stop_signal, env=switch_env(argv))
    lab.save_record(rec)
    lab.wait_up(svc, rec, progress, timeout)  # the dead switch's ESL address answers
    started = time.monotonic() - t0
    target = targets_for(inv, switch=dead.name)[0]
    reply = asyncio.run(_recover(target.host, target.port, lab.secrets().get(ESL_PASSWORD_KEY)))
    recovered = parse_recovered(reply)
    progress(f"  {spare.name} took over {dead.name}: {recovered} channel(s) recovered")
    return {"switch": dead.name, "standby": spare.name, "pid": rec.pid,
            "started_s": round(started, 2), "recovered_channels": recovered,
            "took_s": round(time.monotonic() - t0, 2), "reply": reply.strip()}


def standing_in(lab: Lab, inv: LoadedInventory, switch: str) -> str | None:
    """The standby node running as ``switch`` now, if one is."""
    for p in inv.nodes():
        if p.role == Role.SWITCH_STANDBY:
            rec = ProcRecord.load(lab.pid_path(f"{p.name}/freeswitch"))
            if rec is not None and rec.alive() and stands_in_for(rec) == switch:
                return p.name
    return None


def giveback(lab: Lab, switch: str, standby: str | None = None,
             progress: Progress = lambda s: None) -> dict[str, Any]:
    """Stop the standby that stands in for ``switch`` (its calls end) and start the switch."""
    inv = lab.inventory()
    dead, spare = standby_for(inv, switch, standby)
    rec = ProcRecord.load(lab.pid_path(f"{spare.name}/freeswitch"))
    stopped = False
    if rec is not None and rec.alive():
        if stands_in_for(rec) != dead.name:
            raise ZpctlError(f"{spare.name} stands in for {stands_in_for(rec)}, not for "
                             f"{dead.name}", ExitCode.USAGE)
        try:
            stop_all([rec])
        except ProcessError as exc:
            raise EnvironmentProblem(f"{spare.name}: {exc}") from exc
        stopped = True
    lab.pid_path(f"{spare.name}/freeswitch").unlink(missing_ok=True)  # idle again
    own = ProcRecord.load(lab.pid_path(f"{dead.name}/freeswitch"))
    if own is None or not own.alive():  # (a giveback with no takeover before: nothing to do)
        lab.start(f"{dead.name}/freeswitch", progress=progress)
    return {"switch": dead.name, "standby": spare.name, "standby_stopped": stopped}
