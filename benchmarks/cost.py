"""The cost curve: CPU per call by tier, and memory per dialog and per channel, measured
while a load runs (``make bench`` calls :func:`measure` at 10, 50 and 90 % of the full
path's call capacity).

CPU comes from ``/proc/<pid>/stat`` (user + system ticks) of every process of the lab,
grouped by what runs and for which role: the node a process serves is named in its
command line (``.../build/<node>/...``), the postgres backends by themselves, SIPp apart
(the load generator, not the platform).  Memory is sampled in the middle of the run: the
zone proxies' shared memory in use (Kamailio's own count, ``core.shmmem``) against the
dialogs they hold, and the switches' resident memory against their channels.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HZ = os.sysconf("SC_CLK_TCK")
_NODE = re.compile(r"/build/([a-z0-9.-]+)/")


def procs() -> dict[int, tuple[str, int]]:
    """pid -> (command line, CPU ticks so far)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry.name)] = (cmd, int(stat[11]) + int(stat[12]))
    return out


def _group(cmd: str, roles: dict[str, str]) -> str | None:
    if cmd.startswith("postgres"):
        return "postgres"
    if "sipp" in cmd.split(" ", 1)[0]:
        return "sipp (load generator)"
    m = _NODE.search(cmd)
    if m is None or m.group(1) not in roles:
        return None
    program = Path(cmd.split(" ", 1)[0]).name
    return f"{program} ({roles[m.group(1)]})"


def cpu_seconds(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
                roles: dict[str, str]) -> dict[str, float]:
    """CPU seconds each group used between two snapshots (processes that ended in between
    are lost: the lab's services live for the whole run)."""
    used: dict[str, float] = {}
    for pid, (cmd, ticks) in after.items():
        group = _group(cmd, roles)
        if group is None:
            continue
        used[group] = used.get(group, 0.0) + (ticks - before[pid][1] if pid in before else ticks) / HZ
    return used


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(run: Callable[[Callable[[str], None]], dict[str, Any]], roles: dict[str, str],
            sample: Callable[[], dict[str, float]], at_s: float) -> dict[str, Any]:
    """Run ``run(progress)`` once; CPU per group over the whole run and what ``sample()``
    returns ``at_s`` seconds in (called from the run's progress callback)."""
    state: dict[str, Any] = {"t0": time.monotonic(), "mid": None}

    def progress(_line: str) -> None:
        if state["mid"] is None and time.monotonic() - state["t0"] >= at_s:
            state["mid"] = sample()

    before = procs()
    result = run(progress)
    cpu = cpu_seconds(before, procs(), roles)
    return {"result": result, "cpu_s": cpu, "mid": state["mid"] or {}}
