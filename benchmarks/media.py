"""Media capacity: concurrent RTP streams relayed by one rtpengine (userspace) and by one
FreeSWITCH switch (bridged calls, media anchored), with an RTP generator of our own.

``make bench`` runs it after the signalling searches; alone:

  .venv/bin/python benchmarks/bench.py --only media

For each relay the number of concurrent sessions is searched as the signalling rates are
(double, then bisect; a miss is confirmed once after a pause).  A probe starts a fresh
relay, sets the sessions up (rtpengine: ng offer and answer; the switch: ``originate`` to
leg A, ``&bridge`` to leg B), sends 20 ms PCMU both ways on every session for PROBE_S
seconds (:mod:`zpctl.loadtest.rtpload`) and passes when

- loss <= 0.1 % (both directions, every packet sent after the first second),
- the 99th percentile over streams of RFC 3550 interarrival jitter <= 10 ms, and
- the generator kept its schedule (when it falls behind, the probe measured the generator;
  it fails and the search stops there).

The relay's CPU over the probe (``/proc/<pid>/stat``, all threads) gives streams per core.
The generator shares the two cores, so the largest load that passes is the machine's, not
the relay's; streams per core is the relay's own figure.  The same generator sending
straight from A to B (no relay) is the reference: what the generator alone costs and the
jitter it adds by itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cost import rss_kb

from zpctl.errors import Unreachable
from zpctl.loadtest.relays import (
    SwitchCalls,
    rtpengine_sessions,
    start_rtpengine,
    start_switch,
)
from zpctl.loadtest.rtpload import HZ, MediaResult, Session, cpu_ticks, direct_sessions, run_media

A_IP, B_IP, BASE_PORT = "127.0.6.11", "127.0.6.12", 41000
RTPENGINE_IP, SWITCH_IP, UAS = "127.0.5.220", "127.0.5.221", ("127.0.6.13", 5090)
WORKERS = 2
PROBE_S = 10.0
MAX_LOSS = 0.001
MAX_JITTER_MS = 10.0
ORIGINATE_PER_S = 100.0
# What the projects publish (neither states a per-core capacity; see docs/PERFORMANCE.md).
PUBLISHED = {
    "rtpengine": "no published per-core figure; a user report (sipwise/rtpengine#128) gives "
                 "3,000-4,000 calls on 6.5 of 8 cores in userspace, about 1 core in-kernel",
    "freeswitch": "no published capacity; the docs' real-world table lists 140 two-leg "
                  "G.711 calls at 7 % of 8 cores (2.4 GHz Xeon), loads, not maxima",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stop(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _measure(pid: int, sessions: list[Session]) -> tuple[MediaResult, float, float]:
    """The run, the relay's CPU seconds over it and its wall-clock length."""
    c0, t0 = cpu_ticks(pid), time.monotonic()
    res = run_media(sessions, A_IP, B_IP, BASE_PORT, PROBE_S, workers=WORKERS)
    return res, (cpu_ticks(pid) - c0) / HZ, time.monotonic() - t0


def _step(n: int, res: MediaResult | None, cpu_s: float, wall_s: float, rss: int,
          reason: str = "") -> dict[str, Any]:
    if res is None:
        return {"offered": n, "ok": False, "reason": reason,
                "line": f"{n:>5} sessions: {reason}"}
    cores = cpu_s / wall_s if wall_s else 0.0
    problems = [p for p, bad in (
        (f"loss {res.loss:.3%}", res.loss > MAX_LOSS),
        (f"jitter p99 {res.jitter_ms_p99:.1f} ms", res.jitter_ms_p99 > MAX_JITTER_MS),
        ("generator behind", res.generator_behind)) if bad]
    step = {"offered": n, "achieved": n, **res.as_dict(), "relay_cores": round(cores, 3),
            "streams_per_core": round(res.streams / cores) if cores else None,
            "relay_rss_kb": rss, "ok": not problems, "reason": ", ".join(problems)}
    step["line"] = (f"{n:>5} sessions: loss {res.loss:.4%}, jitter mean "
                    f"{res.jitter_ms_mean:.2f} ms p99 {res.jitter_ms_p99:.2f} ms, relay "
                    f"{cores:.2f} cores ({step['streams_per_core']} streams/core), generator "
                    f"{res.generator_cpu_s / wall_s:.2f} cores{'; ' + step['reason'] if problems else ''}")
    return step


def rtpengine_probe(work: Path) -> Any:
    def attempt(n: int) -> dict[str, Any]:
        proc = start_rtpengine(work / f"rtpengine-{n}-{time.time():.0f}", RTPENGINE_IP)
        try:
            sessions = rtpengine_sessions((RTPENGINE_IP, 2223), n, A_IP, B_IP, BASE_PORT,
                                          WORKERS)
            res, cpu_s, wall = _measure(proc.pid, sessions)
            return _step(n, res, cpu_s, wall, rss_kb(proc.pid))
        finally:
            _stop(proc)
    return attempt


def switch_probe(work: Path) -> Any:
    def attempt(n: int) -> dict[str, Any]:
        proc = start_switch(work / f"switch-{n}-{time.time():.0f}", SWITCH_IP, sessions=4 * n)
        calls = SwitchCalls(SWITCH_IP, 8021, UAS, A_IP, B_IP, BASE_PORT, WORKERS)
        try:
            idle_rss = rss_kb(proc.pid)
            try:
                sessions = calls.setup(n, ORIGINATE_PER_S, timeout=20.0)
            except Unreachable as e:
                return _step(n, None, 0, 0, 0, f"set-up failed: {str(e)[:120]}")
            res, cpu_s, wall = _measure(proc.pid, sessions)
            step = _step(n, res, cpu_s, wall, rss_kb(proc.pid))
            step["rss_kb_per_call"] = round((step["relay_rss_kb"] - idle_rss) / n)
            return step
        finally:
            calls.close()
            _stop(proc)
    return attempt


def reference(n: int) -> dict[str, Any]:
    """The generator alone at ``n`` sessions: A straight to B, no relay."""
    t0 = time.monotonic()
    res = run_media(direct_sessions(n, A_IP, B_IP, BASE_PORT, WORKERS), A_IP, B_IP,
                    BASE_PORT, PROBE_S, workers=WORKERS)
    wall = time.monotonic() - t0
    return {**res.as_dict(), "generator_cores": round(res.generator_cpu_s / wall, 3)}


def measure(work: Path, search: Any, precision: float) -> dict[str, Any]:
    """Both relays' searches and the reference at rtpengine's largest passing load."""
    out: dict[str, Any] = {"probe_s": PROBE_S, "max_loss": MAX_LOSS,
                           "max_jitter_p99_ms": MAX_JITTER_MS, "published": PUBLISHED}
    log("bench: media through rtpengine (userspace), sessions of two 50 packet/s streams")
    out["rtpengine"] = search("rtpengine sessions", precision, 250, rtpengine_probe(work),
                              cap=8000)
    log("bench: media through one FreeSWITCH switch (bridged calls)")
    out["switch"] = search("switch bridged calls", precision, 100, switch_probe(work),
                           cap=4000)
    n = out["rtpengine"]["passing"] or 250
    log(f"bench: the generator alone at {n} sessions (A straight to B)")
    out["reference"] = reference(n)
    return out


def table(m: dict[str, Any]) -> list[str]:
    def row(name: str, key: str) -> str:
        b = m[key]["best"]
        bracket = f"{m[key]['passing']} pass, {m[key]['failing']} fail"
        if not b:
            return f"| {name} | none passed | | | | | {bracket} |"
        mem = (f"{b['rss_kb_per_call']} kB/call" if "rss_kb_per_call" in b
               else f"{b['relay_rss_kb'] >> 10} MB")
        return (f"| {name} | {b['sessions']:,} ({b['streams']:,} streams) | "
                f"{b['loss']:.4%} | {b['jitter_ms_p99']:.2f} ms | {b['relay_cores']} | "
                f"**{b['streams_per_core']:,}** | {mem} | {bracket} |")

    ref = m["reference"]
    return [
        f"Media (RTP generator of our own, 20 ms PCMU both ways, probes of {m['probe_s']:.0f} s; "
        f"pass: loss <= {m['max_loss']:.1%}, jitter p99 <= {m['max_jitter_p99_ms']:.0f} ms, "
        "generator on schedule):",
        "",
        "| relay | largest load passed | loss | jitter p99 | relay cores | streams per core "
        "| memory | search (sessions) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        row("rtpengine, userspace, 2 threads (sessions)", "rtpengine"),
        row("FreeSWITCH, bridged calls (2 legs each)", "switch"),
        "",
        f"Reference, the generator alone at {ref['sessions']:,} sessions: loss "
        f"{ref['loss']:.4%}, jitter p99 {ref['jitter_ms_p99']:.2f} ms, "
        f"{ref['generator_cores']} cores.",
        "",
    ]

