"""Steady load for chaos tests: calls and registrations at fixed rates, in the background,
while something breaks; then what happened, with the time each failure occurred.

``SteadyLoad(lab).start()`` registers a callee that answers (RTP echo), starts SIPp placing
authenticated calls to it at ``call_rate`` and a second SIPp registering users at
``reg_rate``; ``finish()`` waits for both and reads their statistics and error logs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl import sipp
from zpctl.accounts import SipUser
from zpctl.errors import ExitCode, RemoteFailure, ZpctlError
from zpctl.lab import Lab
from zpctl.lab.phones import wait_reachable
from zpctl.loadtest import results

# SIPp writes an event right after the closing quote of the message it quotes, on the same
# line: an event starts a line or follows a quote.
_FAIL = re.compile(r"(?:^|')(\d{4}-\d\d-\d\d)\t[\d:.]+\t(\d+\.\d+): Aborting call(.*)$", re.M)
_FAILED_CALL = re.compile(r"Aborting call[^\n]*?Call-Id '(\d+)-\d+@")


def failure_times(errors_log: Path) -> list[tuple[float, str]]:
    """(epoch, SIP code or 'timeout') of every call SIPp aborted."""
    if not errors_log.exists():
        return []
    text = errors_log.read_text(errors="replace")
    out = []
    for m in _FAIL.finditer(text):
        rest = text[m.end(3) - len(m.group(3)): m.end(3) + 300]
        code = re.search(r"received 'SIP/2\.0 ([1-6]\d\d) ", rest)
        out.append((float(m.group(2)), code.group(1) if code else "timeout"))
    return out


def failed_call_numbers(errors_log: Path) -> set[int]:
    """SIPp's numbers of the calls it aborted (its Call-IDs are ``<number>-<pid>@<ip>``)."""
    if not errors_log.exists():
        return set()
    return {int(n) for n in _FAILED_CALL.findall(errors_log.read_text(errors="replace"))}


def failed_kinds(stats: dict[str, Any]) -> dict[str, int]:
    """SIPp's own reasons for failed calls (``FailedMaxUDPRetrans``, ``FailedTimeoutOnRecv``,
    ``FailedUnexpectedMessage``, ...), the ones that occurred: a failure the error log has no
    SIP code for (a lost BYE, a missing 200) still says what it was."""
    out = {}
    for key, value in stats.items():
        if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)":
            n = int(value or 0) if str(value or "0").isdigit() else 0
            if n:
                out[key[len("Failed"):-3]] = n
    return out


@dataclass
class SteadyLoad:
    lab: Lab
    workdir: Path
    call_rate: float = 20.0
    hold_ms: int = 1000
    reg_rate: float = 10.0
    duration_s: float = 30.0
    account: str = "loadco"
    local_ip: str = "127.0.6.1"
    lb: str = ""
    runs: dict[str, sipp.SippRun] = field(default_factory=dict)
    started_at: float = 0.0

    def users(self) -> list[SipUser]:
        users = [u for u in self.lab.users() if u.account == self.account]
        if len(users) < 10:
            raise ZpctlError(f"steady load needs the {self.account} account's users in the lab",
                             ExitCode.USAGE)
        return users

    def start(self) -> SteadyLoad:
        """Start the callee and both loads; if any step fails, whatever it started is
        stopped (a callee left running would hold its address for every later run)."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> SteadyLoad:
        inv = self.lab.inventory()
        lb = next(n for n in inv.model.datacenters[0].nodes if n.role.value == "lb")
        self.lb = self.lb or f"{lb.address}:{lb.ports.sip}"
        users = self.users()
        callee, callers = users[0], users[1:]
        ip_callee = "127.0.6.2"
        csv = sipp.users_csv(self.workdir / "callee.csv",
                             [(callee.username, callee.domain, callee.password)])
        reg = sipp.run("register", self.lb, workdir=self.workdir, name="callee-register",
                       local_ip=ip_callee, local_port=5060, users=csv,
                       keys={"expires": "3600"}, wait_s=15)
        if reg.returncode != 0:
            raise RemoteFailure("steady load: the callee could not register")
        self.runs["callee"] = sipp.start("uas", None, workdir=self.workdir, name="callee",
                                         local_ip=ip_callee, local_port=5060, calls=None,
                                         media_port=25000, rtp_echo=True, trace=False)
        wait_reachable(inv, inv.model.datacenters[0], callee, ip_callee)
        calls = int(self.call_rate * self.duration_s)
        call_csv = sipp.users_csv(self.workdir / "callers.csv",
                                  [(u.username, u.domain, u.password) for u in callers])
        self.runs["calls"] = sipp.start_argv(sipp.command(
            "call", self.lb, workdir=self.workdir, name="calls", local_ip=self.local_ip,
            local_port=5300, users=call_csv, service=callee.username, calls=calls,
            rate=self.call_rate, media_port=24000, hold_ms=self.hold_ms, trace=False,
            extra=["-trace_err", "-error_file", str(self.workdir / "calls.errors.log"),
                   "-trace_rtt", "-rtt_freq", "1"]), self.workdir, "calls")
        regs = int(self.reg_rate * self.duration_s)
        self.runs["registrations"] = sipp.start_argv(sipp.command(
            "register", self.lb, workdir=self.workdir / "reg", name="registrations",
            local_ip="127.0.6.3", local_port=5400, users=call_csv, calls=regs,
            rate=self.reg_rate, keys={"expires": "600"}, trace=False,
            extra=["-trace_err", "-error_file", str(self.workdir / "reg" / "registrations.errors.log")]),
            self.workdir / "reg", "registrations")
        self.started_at = time.time()
        return self

    def finish(self, fault_at: float | None = None, detection_s: float = 0.0) -> dict[str, Any]:
        """Wait for the load to end; attempts, failures by code and the recovery time.  With
        ``fault_at``, the calls started before ``fault_at + detection_s`` (up when the fault
        came, or set up while it was not yet detected) and their failures are counted apart
        from the rest (``new_*``)."""
        wait = self.duration_s * 2 + 60
        self.runs["calls"].wait(wait)
        self.runs["registrations"].wait(wait)
        self.runs["callee"].stop()
        out: dict[str, Any] = {}
        for name in ("calls", "registrations"):
            run = self.runs[name]
            stats = results.last_row(run.stats)
            fails = failure_times(run.errors)
            attempted = int(stats.get("TotalCallCreated", 0) or 0)
            failed = int(stats.get("FailedCall(C)", 0) or 0)
            codes: dict[str, int] = {}
            for _, code in fails:
                codes[code] = codes.get(code, 0) + 1
            after = [t for t, _ in fails if fault_at is not None and t >= fault_at]
            out[name] = {
                "attempted": attempted, "succeeded": int(stats.get("SuccessfulCall(C)", 0) or 0),
                "failed": failed, "failed_by_code": codes, "failed_by_kind": failed_kinds(stats),
                "failed_pct": round(100.0 * failed / attempted, 3) if attempted else 0.0,
                "recovery_s": round(max(after) - fault_at, 2) if after and fault_at else 0.0,
                "fail_times": [round(t - (fault_at or self.started_at), 2) for t, _ in fails],
            }
        if fault_at is not None:
            # Calls SIPp had started by then (it starts call n at about (n - 1) / rate): a
            # failure among them is one the fault caught; the rest count against the calls
            # started after it.
            calls = out["calls"]
            crossed = max(0.0, fault_at + detection_s - self.started_at)
            before = min(calls["attempted"], int(crossed * self.call_rate) + 1)
            across = sorted(n for n in failed_call_numbers(self.runs["calls"].errors)
                                 if n <= before)
            new = calls["attempted"] - before
            new_failed = calls["failed"] - len(across)
            calls.update(started_before_fault=before, failed_across_fault=across,
                         new_attempted=new, new_failed=new_failed,
                         new_failed_pct=round(100.0 * new_failed / new, 3) if new else 0.0)
        # BYEs answered 481 (the dialog had already ended on the far side: RFC 3261 15.1.1).
        out["calls"]["bye_481"] = int(results.last_row(self.runs["calls"].stats)
                                      .get("GenericCounter1(C)", 0) or 0)
        return out

    def stop(self) -> None:
        for run in self.runs.values():
            run.stop()
