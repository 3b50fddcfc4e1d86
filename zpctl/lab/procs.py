"""Processes the lab starts: launched in their own session, recorded by pid and start time.

A pid file here is JSON: pid, the process's start time (field 22 of /proc/<pid>/stat) and
its argv.  A recorded process counts as ours only while a process with that pid *and* that
start time exists, so a reused pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def _stat(pid: int) -> tuple[str, int] | None:
    """The process's state letter and start time (fields 3 and 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def _start_time(pid: int) -> int | None:
    """The start time of a running process (a zombie is not running)."""
    st = _stat(pid)
    return None if st is None or st[0] == "Z" else st[1]


@dataclass(frozen=True)
class ProcRecord:
    name: str
    pid: int
    start_time: int
    argv: list[str]
    log: str
    stop_signal: str = "TERM"  # the first signal `stop_all` sends (KILL follows)

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start_time

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ProcRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def as_user_kwargs(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``user``: its uid, its primary group and
    no supplementary group (``user=`` alone keeps root's groups)."""
    if user is None:
        return {}
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def launch(name: str, argv: list[str], log: Path, cwd: Path,
           env: dict[str, str] | None = None, stop_signal: str = "TERM",
           user: str | None = None) -> ProcRecord:
    """Start ``argv`` detached (own session), output appended to ``log``.

    The log is mode 0600 (a log can hold what a peer sent) and the process runs with umask
    077, so what it writes itself (SIPp's message traces, Redis's dump, sockets) is private
    too.  With ``user`` it runs as that user, with that user's group and no other group.
    """
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not cwd.is_dir():
        cwd.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)  # a log from before keeps its mode otherwise
    as_user = as_user_kwargs(user)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True, env=env, umask=0o077,
                                **as_user)
    start = None
    for _ in range(50):
        start = _start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    return ProcRecord(name, proc.pid, start or 0, argv, str(log), stop_signal)


@dataclass
class StopReport:
    """What :func:`stop_all` did: who was running, who needed SIGKILL, how long it took."""

    stopped: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    unreaped: list[int] = field(default_factory=list)  # exited, still listed until pid 1 reaps
    seconds: float = 0.0


def stop_all(recs: list[ProcRecord], grace: float = 5.0, kill_wait: float = 5.0,
             reap_wait: float = 3.0) -> StopReport:
    """Stop ``recs`` and every process of their groups; return only once all have exited.

    How it works: SIGTERM goes to each running record's process group (a Kamailio and its
    children, an rtpengine and its threads) all at once; the groups are then polled until no
    member runs.  Groups still running after ``grace`` seconds get SIGKILL, and if any
    member survives ``kill_wait`` more seconds, :class:`ProcessError` says which.  Exited
    processes whose parent is gone become zombies of pid 1 until it reaps them: they hold no
    port, file or memory, but ``ps`` lists them, so we wait up to ``reap_wait`` for them to
    vanish too and report the pids that did not.
    """
    t0 = time.monotonic()
    report = StopReport()
    running = [r for r in recs if _ours_running(r)]
    report.stopped = [r.name for r in running]
    for rec in running:
        _signal_group(rec, signal.Signals[f"SIG{rec.stop_signal}"])
    left = _wait_groups(running, grace, dead=_not_running)
    if left:
        for rec in left:
            _signal_group(rec, signal.SIGKILL)
        report.killed = [r.name for r in left]
        left = _wait_groups(left, kill_wait, dead=_not_running)
        if left:
            raise ProcessError("still running after SIGKILL: " + ", ".join(
                f"{r.name} (pid {r.pid})" for r in left))
    report.unreaped = await_reaped(running, reap_wait)
    report.seconds = time.monotonic() - t0
    return report


def await_reaped(recs: list[ProcRecord], timeout: float) -> list[int]:
    """Wait up to ``timeout`` until no process of the records' groups is listed any more,
    zombies included; the pids still listed."""
    _wait_groups(recs, timeout, dead=lambda members: not members)
    return sorted(pid for members in _members({r.pid for r in recs}).values()
                  for pid, _ in members)


class ProcessError(RuntimeError):
    """A process the lab started could not be stopped."""


def _ours_running(rec: ProcRecord) -> bool:
    """The recorded process runs, or it has exited (a zombie, or gone) while members of its
    group still run.  A live process with the recorded pid and another start time is not
    ours; Linux hands out no pid that is still some group's id, so a leaderless group with
    the recorded pid is."""
    st = _stat(rec.pid)
    if st is not None and st[1] != rec.start_time:
        return False
    if st is not None and st[0] != "Z":
        return True
    return not _not_running(_members({rec.pid}).get(rec.pid, []))


def _not_running(members: list[tuple[int, str]]) -> bool:
    return all(state == "Z" for _, state in members)


def _wait_groups(recs: list[ProcRecord], timeout: float,
                 dead: Callable[[list[tuple[int, str]]], bool]) -> list[ProcRecord]:
    """Poll until ``dead`` holds for every record's group; the records for which it does not."""
    deadline = time.monotonic() + timeout
    while True:
        for rec in recs:
            _reap(rec.pid)
        members = _members({r.pid for r in recs})
        left = [r for r in recs if not dead(members.get(r.pid, []))]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _signal_group(rec: ProcRecord, sig: signal.Signals) -> None:
    try:
        os.killpg(rec.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, sig)


def _members(pgids: set[int]) -> dict[int, list[tuple[int, str]]]:
    """Every process (zombies too) whose process group is one of ``pgids``: pid and state."""
    out: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pgid = int(fields[2])
        if pgid in pgids:
            out.setdefault(pgid, []).append((int(entry.name), fields[0]))
    return out


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
