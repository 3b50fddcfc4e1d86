"""Stopping the lab's processes: real processes (bash and sleep), real signals.

`lab down` must return only once everything it started has exited, so a following
`lab up` never finds a straggler holding a port.
"""

from __future__ import annotations

import time
from pathlib import Path

from zpctl.lab.procs import ProcRecord, _members, launch, stop_all
from zpctl.testing import wait_for


def _running(rec: ProcRecord) -> list[int]:
    return [pid for pid, state in _members({rec.pid}).get(rec.pid, []) if state != "Z"]


def _launch(tmp_path: Path, name: str, script: str) -> ProcRecord:
    rec = launch(name, ["bash", "-c", script], tmp_path / f"{name}.log", tmp_path)
    wait_for(f"{name}: bash and its child to run", lambda: len(_running(rec)) >= 2, 5, 0.02)
    return rec


def test_sigterm_stops_a_group_and_its_children(tmp_path: Path) -> None:
    rec = _launch(tmp_path, "polite", "sleep 60 & wait")
    report = stop_all([rec], grace=5)
    assert report.stopped == ["polite"]
    assert report.killed == []
    assert _running(rec) == []


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    rec = _launch(tmp_path, "stubborn", "trap '' TERM; sleep 60 & wait; sleep 60")
    t0 = time.monotonic()
    report = stop_all([rec], grace=0.5)
    assert report.killed == ["stubborn"]
    assert time.monotonic() - t0 < 5
    assert _running(rec) == []


def test_children_left_by_a_dead_leader_are_stopped(tmp_path: Path) -> None:
    # The leader exits at once and leaves its child running in the group: still ours.
    rec = _launch(tmp_path, "orphaned", "sleep 60 & sleep 0.3")
    deadline = time.monotonic() + 5
    while rec.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not rec.alive()
    assert _running(rec)
    report = stop_all([rec], grace=5)
    assert report.stopped == ["orphaned"]
    assert _running(rec) == []


def test_a_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    rec = _launch(tmp_path, "other", "sleep 60 & wait")
    forged = ProcRecord("forged", rec.pid, rec.start_time + 1, rec.argv, rec.log)
    assert stop_all([forged]).stopped == []
    assert _running(rec)
    stop_all([rec])
