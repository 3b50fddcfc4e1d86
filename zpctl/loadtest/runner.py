"""Run a bundled load scenario with SIPp and merge what SIPp measured into one result.

How it works: a scenario names a SIPp scenario file and what it needs around it — the
injection file of users (from the inventory and its secrets, or ``--users``), a callee
that answers (a UAS registered as one of the users), the number to dial.  SIPp runs with
``-trace_stat`` (cumulative counters), ``-trace_rtt`` (every call-setup time) and
``-trace_err`` (why calls failed); we read them while it runs for the progress line and
after it ends for the result.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl import sipp
from zpctl.accounts import SipUser
from zpctl.clients.probes import sip_options
from zpctl.errors import EnvironmentProblem, ExitCode, Unreachable, ZpctlError
from zpctl.lab.services import port_free
from zpctl.loadtest import limits, results
from zpctl.loadtest.slo import Objective, evaluate


@dataclass(frozen=True)
class Scenario:
    name: str
    sipp_file: str
    description: str
    needs_callee: bool = False
    number: str | None = None  # the number dialled (PSTN), else the callee's extension
    storm: bool = False  # every user at once
    media: bool = True  # RTP both ways (the callee echoes); False: signalling only


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("register", "register", "REGISTER with digest auth (401 then 200), users cycling"),
    Scenario("ext-call", "call", "extension to extension call with digest auth and RTP "
             "(PCMU), callee answering with RTP echo", needs_callee=True),
    Scenario("ext-call-signalling", "call+nomedia", "extension to extension call with "
             "digest auth and SDP but no RTP: the signalling path's capacity",
             needs_callee=True, media=False),
    Scenario("pstn", "call", "outbound PSTN call with digest auth and RTP to the carrier",
             number="+15550009999"),
    Scenario("did", "trunk_call", "inbound call from a carrier to a user's DID, with RTP",
             needs_callee=True),
    Scenario("storm", "register", "registration storm: every user registers at once, as "
             "after an outage", storm=True),
)}


@dataclass
class Plan:
    """Everything a run needs, resolved before anything starts."""

    scenario: Scenario
    target: str  # host:port of the lb (or sbc public address for did)
    users: list[SipUser]
    local_ip: str
    rate: float
    calls: int
    concurrency: int | None = None
    hold_ms: int = 1000
    callee: SipUser | None = None
    trunk_ip: str | None = None  # did: the carrier address calls come from
    lb: str | None = None  # where the callee registers (default: target)
    expires: int = 120  # registration lifetime for register / storm
    duration_s: float | None = None  # stop starting calls after this (default calls / rate)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="zpctl-load-")))


Progress = Callable[[str], None]


def _free_port(ip: str, start: int) -> int:
    for port in range(start, start + 200):
        if port_free(ip, port, "udp"):
            return port
    raise EnvironmentProblem(f"no free UDP port on {ip} from {start}")


def preflight(plan: Plan) -> None:
    """Refuse clearly before starting anything: SIPp present, target answering, ports free."""
    sipp.sipp_binary()
    try:
        ipaddress.ip_address(plan.local_ip)
    except ValueError:
        raise ZpctlError(f"--local-ip {plan.local_ip!r} is not an IP address",
                         ExitCode.USAGE) from None
    host, _, port = plan.target.partition(":")
    try:
        sip_options(host, int(port or 5060), timeout=2.0, source=plan.local_ip)
    except Unreachable as exc:
        raise Unreachable(f"target {plan.target} does not answer SIP OPTIONS: {exc.message}") \
            from None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot send from {plan.local_ip} to {plan.target}: {exc}") \
            from None
    if not plan.users:
        raise ZpctlError("no users to load-test with (the inventory has none, or --users is "
                         "empty)", ExitCode.USAGE)


def run(plan: Plan, objectives: list[Objective], progress: Progress = lambda s: None,
        ) -> dict[str, Any]:
    """Run the plan; the merged result (with the SLO report)."""
    preflight(plan)
    work = plan.workdir
    work.mkdir(parents=True, exist_ok=True)
    sc = plan.scenario
    callers = [u for u in plan.users if plan.callee is None or u != plan.callee]
    uas: sipp.SippRun | None = None
    try:
        if sc.needs_callee:
            uas = _start_callee(plan, work)
        kwargs: dict[str, Any] = {}
        if sc.name == "did":
            assert plan.callee is not None
            assert plan.trunk_ip is not None
            local_ip, users_file = plan.trunk_ip, None
            kwargs["service"] = plan.callee.dids[0]
            host = plan.target.split(":")[0]
            kwargs["keys"] = {"caller": "+12125550199", "domain": host}
        else:
            local_ip = plan.local_ip
            users_file = sipp.users_csv(work / "users.csv",
                                        [(u.username, u.domain, u.password) for u in callers])
            if sc.sipp_file == "register":
                kwargs["keys"] = {"expires": str(plan.expires)}
            elif sc.number:
                kwargs["service"] = sc.number
            else:
                assert plan.callee is not None
                kwargs["service"] = plan.callee.username
        # Registration load leaves contacts behind (until they expire): they point at a port
        # range no caller of a later run uses, so a forked INVITE never lands in a caller.
        local_port = _free_port(local_ip, 5400 if sc.sipp_file == "register" else 5300)
        argv = sipp.command(sc.sipp_file, plan.target, workdir=work, name="load",
                            local_ip=local_ip, local_port=local_port, users=users_file,
                            calls=plan.calls, rate=plan.rate, concurrency=plan.concurrency,
                            media_port=_free_port(local_ip, 24000), hold_ms=plan.hold_ms,
                            trace=False, extra=["-trace_err", "-error_file",
                                                str(work / "load.errors.log"),
                                                "-trace_rtt", "-rtt_freq", "1",
                                                "-max_recv_loops", "5000",
                                                "-max_sched_loops", "5000"],
                            **kwargs)
        t0 = time.monotonic()
        run_ = sipp.start_argv(argv, work, "load")
        # The run ends on time whatever the rate: no new call after the planned duration
        # (SIGUSR1: SIPp starts none and exits once its calls have ended), then a bounded
        # grace for calls in progress, then SIPp is killed.
        planned = plan.duration_s if plan.duration_s is not None else plan.calls / plan.rate
        stop_at = t0 + planned + limits.STOP_SLACK_S
        kill_at = stop_at + limits.grace_s(plan.hold_ms)
        stopping = False
        while run_.proc is not None and run_.proc.poll() is None:
            now = time.monotonic()
            if now >= kill_at:
                progress(f"[{now - t0:5.1f} s] calls still in progress "
                         f"{limits.grace_s(plan.hold_ms):g} s after the end: stopping SIPp")
                run_.stop(grace=2)
                break
            if not stopping and now >= stop_at:
                run_.proc.send_signal(signal.SIGUSR1)
                stopping = True
                progress(f"[{now - t0:5.1f} s] {planned:g} s planned: starting no new "
                         "call, waiting for calls in progress")
            with contextlib.suppress(subprocess.TimeoutExpired):
                run_.proc.wait(timeout=max(0.05, min(1.0, (kill_at if stopping else stop_at)
                                                     - now)))
            row = results.last_row(run_.stats)
            if row:
                progress(f"[{time.monotonic() - t0:5.1f} s] {row.get('TotalCallCreated', '0')}/"
                         f"{plan.calls} {'registrations' if sc.sipp_file == 'register' else 'calls'}"
                         f", {row.get('SuccessfulCall(C)', '0')} ok, "
                         f"{row.get('FailedCall(C)', '0')} failed, "
                         f"{row.get('CallRate(P)', '0')}/s")
        elapsed = time.monotonic() - t0
        if run_.proc is not None and run_.proc.returncode not in (0, 1):
            screen = (work / "load.screen.log").read_text(errors="replace")[-1500:]
            if not run_.stats.exists():
                raise ZpctlError(f"SIPp failed to run scenario {sc.name}:\n{screen}",
                                 ExitCode.ENVIRONMENT)
        stats = results.last_row(run_.stats)
        rtt = results.rtt_rows(work)
        created_in = results.creation_seconds(run_.stats) or elapsed
        summary = results.summarize(stats, [ms for _, ms in rtt],
                                    results.failures_by_code(run_.errors), created_in)
        rate = results.achieved_rate(rtt)
        if rate is not None:
            summary["rate"] = round(rate, 2)
        summary["duration_s"] = round(elapsed, 2)
    finally:
        if uas is not None:
            uas.stop()
    summary.update({
        "scenario": sc.name, "target": plan.target, "offered_rate": plan.rate,
        "sipp_command": " ".join(argv), "workdir": str(work),
    })
    summary["slo"] = evaluate(objectives, summary)
    summary["slo_met"] = all(o["met"] for o in summary["slo"])
    return summary


def _start_callee(plan: Plan, work: Path) -> sipp.SippRun:
    """Register the callee from its own address and answer there until the run ends."""
    assert plan.callee is not None
    ip = str(ipaddress.ip_address(plan.local_ip) + 1)
    csv = sipp.users_csv(work / "callee.csv",
                         [(plan.callee.username, plan.callee.domain, plan.callee.password)])
    reg = sipp.run("register", plan.lb or plan.target,
                   workdir=work, name="callee-register", local_ip=ip, local_port=5060,
                   users=csv, keys={"expires": "3600"}, wait_s=15)
    if reg.returncode != 0:
        raise ZpctlError(f"the callee {plan.callee.username}@{plan.callee.domain} could not "
                         f"register: {reg.errors.read_text(errors='replace')[-500:]}",
                         ExitCode.REMOTE_ERROR)
    uas = sipp.start("uas", None, workdir=work, name="callee", local_ip=ip, local_port=5060,
                     calls=None, media_port=25000, rtp_echo=plan.scenario.media, trace=False)
    time.sleep(0.3)
    return uas


def cleanup(plan: Plan) -> None:
    shutil.rmtree(plan.workdir, ignore_errors=True)
