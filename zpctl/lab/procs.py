"""Processes the lab starts: launched in their own session, recorded by pid and start time.

A pid file here is JSON: pid, the process's start time (field 22 of /proc/<pid>/stat) and
its argv.  A recorded process counts as ours only while a process with that pid *and* that
start time exists, so a reused pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is not running
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcRecord:
    name: str
    pid: int
    start_time: int
    argv: list[str]
    log: str

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


def launch(name: str, argv: list[str], log: Path, cwd: Path,
           env: dict[str, str] | None = None) -> ProcRecord:
    """Start ``argv`` detached (own session), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True, env=env)
    start = None
    for _ in range(50):
        start = _start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    return ProcRecord(name, proc.pid, start or 0, argv, str(log))


def stop(rec: ProcRecord, grace: float = 5.0) -> bool:
    """SIGTERM the process group, SIGKILL after ``grace`` seconds; True if it was running."""
    if not rec.alive():
        return False
    _signal_group(rec, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(rec.pid)
        if not rec.alive() and not _group_alive(rec.pid):
            return True
        time.sleep(0.05)
    _signal_group(rec, signal.SIGKILL)
    for _ in range(100):
        _reap(rec.pid)
        if not rec.alive() and not _group_alive(rec.pid):
            break
        time.sleep(0.05)
    return True


def _signal_group(rec: ProcRecord, sig: signal.Signals) -> None:
    try:
        os.killpg(rec.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(rec.pid, sig)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
