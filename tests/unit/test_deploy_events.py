"""What one Ansible run reports: each failed or unreachable host once (zpctl.deploy.runner)."""

from __future__ import annotations

from typing import Any

from zpctl.deploy.runner import EventLog

SSH_DOWN = 'Data could not be sent to remote host "10.0.0.1": Connection refused'


def _event(kind: str, host: str, task: str = "", **res: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


def test_unreachable_hosts_are_listed_once_grouped_by_reason() -> None:
    progress: list[str] = []
    log = EventLog(progress.append)
    # Ansible (strategy free, a role per service) reports a host for each task it could
    # not start; two hosts share a reason, a third has its own.
    for task in ("kamailio : install", "kamailio : config", "rtpengine : install"):
        log(_event("runner_on_unreachable", "z-media", task, msg=SSH_DOWN, unreachable=True))
        log(_event("runner_on_unreachable", "a-proxy", task, msg=SSH_DOWN, unreachable=True))
    log(_event("runner_on_unreachable", "b-sbc", "kamailio : install", msg="timed out"))
    assert log.failures() == [f"unreachable: a-proxy, z-media: {SSH_DOWN}",
                              "unreachable: b-sbc: timed out"]
    assert progress == []  # named once, in the failures, not also as progress lines


def test_failed_tasks_once_per_host_and_task() -> None:
    progress: list[str] = []
    log = EventLog(progress.append)
    for _ in range(2):
        log(_event("runner_on_failed", "lb", "kamailio : check", msg="kamailio -c failed",
                   stderr="ERROR: bad route"))
    log(_event("runner_on_failed", "lb", "kamailio : ignored", msg="x") | {
        "event_data": {"host": "lb", "task": "t", "res": {"msg": "x"}, "ignore_errors": True}})
    log(_event("runner_on_ok", "lb", "kamailio : copy", changed=True))
    assert log.failures() == ["lb: kamailio : check: kamailio -c failed\nERROR: bad route"]
    assert progress == ["    lb               FAILED   kamailio : check: kamailio -c failed",
                        "    lb               changed  kamailio : copy"]
    assert EventLog(progress.append).failures() == []
