"""Running SIPp: the scenarios shipped with zpctl, injection files, traces and results.

SIPp is the real UA in every call-flow test and load test.  This module builds command
lines, runs SIPp (to completion, or in the background as a long-lived UAS) and reads what it
left: the message trace (what this endpoint saw), the log (``final CODE`` lines of the
``call_attempt`` scenario) and the statistics CSV.
"""

from __future__ import annotations

import csv
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zpctl.errors import EnvironmentProblem
from zpctl.media import write_opus_pcap, write_tone

SCENARIOS = Path(__file__).parent / "scenarios"


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise EnvironmentProblem("sipp is not installed (Debian: sip-tester; `make install`)")
    return path


def scenario(name: str) -> Path:
    path = SCENARIOS / f"{name}.xml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.xml")))
        raise EnvironmentProblem(f"unknown SIPp scenario {name!r}; known: {known}")
    return path


#: A scenario name with this suffix is the scenario without its media: the ``<nop>`` actions
#: that start and stop SIPp's RTP stream are left out (signalling-only load).
NO_MEDIA = "+nomedia"
_RTP_ACTION = re.compile(r"\s*<nop>\s*<action>\s*<exec rtp_stream=[^>]*/>\s*</action>\s*</nop>")


def signalling_only(name: str, workdir: Path) -> Path:
    """Scenario ``name`` without its RTP stream, written into ``workdir``."""
    text = scenario(name).read_text()
    path = workdir / f"{name}-nomedia.xml"
    path.write_text(_RTP_ACTION.sub("", text))
    return path


def users_csv(path: Path, rows: Iterable[Sequence[str]], order: str = "SEQUENTIAL") -> Path:
    """A SIPp injection file: one row per user (user;domain;password;...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(order + "\n")
        for row in rows:
            fh.write(";".join(row) + ";\n")
    return path


@dataclass
class SippRun:
    """One SIPp run and the files it wrote."""

    argv: list[str]
    workdir: Path
    name: str
    returncode: int | None = None
    output: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def messages(self) -> Path:
        return self.workdir / f"{self.name}.messages.log"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def errors(self) -> Path:
        return self.workdir / f"{self.name}.errors.log"

    @property
    def stats(self) -> Path:
        return self.workdir / f"{self.name}.stats.csv"

    def message_text(self) -> str:
        return self.messages.read_text(errors="replace") if self.messages.exists() else ""

    def received(self, first_line_prefix: str = "") -> list[str]:
        """Every SIP message this SIPp received (optionally those starting with a prefix)."""
        return [m for m in parse_trace(self.message_text())
                if m.startswith(first_line_prefix)]

    def finals(self) -> list[int]:
        """The ``final CODE`` lines the call_attempt scenario logged."""
        if not self.log.exists():
            return []
        return [int(line.split()[-1]) for line in self.log.read_text().splitlines()
                if line.strip().startswith("final ")]

    def last_stats(self) -> dict[str, str]:
        if not self.stats.exists():
            return {}
        with open(self.stats, encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh, delimiter=";"))
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0], rows[-1], strict=False))

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        return self.returncode

    def soft_exit(self, timeout: float = 30.0) -> int:
        """SIGUSR1: SIPp places no new call and exits once the calls in progress have
        ended (as its 'q' key); SIGKILL if it has not after ``timeout`` seconds."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
        return self.wait(timeout)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (SIPp writes its last statistics), SIGKILL after ``grace`` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_SEPARATOR = "-----------------------------------------------"


def parse_trace(text: str) -> list[str]:
    """The messages a SIPp ``-trace_msg`` file shows as received, in order.

    Each entry in the file starts with a line of dashes (and a timestamp), then a line such
    as ``UDP message received [410] bytes :``, a blank line and the message.
    """
    out = []
    for block in text.split(_SEPARATOR)[1:]:
        lines = block.split("\n")
        idx = next((i for i, ln in enumerate(lines[:3]) if " message received " in ln), None)
        if idx is None:
            continue
        msg = "\n".join(lines[idx + 1:]).strip("\n").replace("\r", "")
        out.append(msg)
    return out


def command(scenario_name: str, target: str | None, *, workdir: Path, name: str, local_ip: str,
            local_port: int = 0, users: Path | None = None, service: str | None = None,
            keys: dict[str, str] | None = None, calls: int | None = 1, rate: float | None = None,
            rate_period_ms: int = 1000, concurrency: int | None = None,
            media_port: int | None = None, rtp_echo: bool = False, timeout_s: float | None = None,
            hold_ms: int | None = None,
            trace: bool = True, stats_period_s: int = 1, extra: Sequence[str] = ()) -> list[str]:
    """The SIPp command line for a run of one of zpctl's scenarios (``NAME+nomedia``: the
    scenario without its RTP stream)."""
    base, nomedia, _ = scenario_name.partition(NO_MEDIA)
    sf = signalling_only(base, workdir) if nomedia else scenario(base)
    argv = [sipp_binary(), "-sf", str(sf), "-i", local_ip, "-mi", local_ip,
            "-nostdin", "-t", "u1"]
    if target:
        argv.append(target)
    if local_port:
        argv += ["-p", str(local_port)]
    if users is not None:
        argv += ["-inf", str(users)]
    if service:
        argv += ["-s", service]
    for k, v in sorted((keys or {}).items()):
        argv += ["-key", k, v]
    if calls is not None:
        argv += ["-m", str(calls)]
    if rate is not None:
        argv += ["-r", f"{rate:g}", "-rp", str(rate_period_ms)]
    if concurrency is not None:
        argv += ["-l", str(concurrency)]
    if media_port:
        argv += ["-mp", str(media_port)]
    if rtp_echo:
        argv.append("-rtp_echo")
    if hold_ms is not None:
        argv += ["-d", str(hold_ms)]
    if timeout_s is not None:
        argv += ["-timeout", f"{timeout_s:g}s", "-timeout_error"]
    if trace:
        argv += ["-trace_msg", "-message_file", str(workdir / f"{name}.messages.log"),
                 "-trace_logs", "-log_file", str(workdir / f"{name}.log"),
                 "-trace_err", "-error_file", str(workdir / f"{name}.errors.log")]
    argv += ["-trace_stat", "-stf", str(workdir / f"{name}.stats.csv"),
             "-fd", str(stats_period_s)]
    return argv + list(extra)


def start(scenario_name: str, target: str | None, *, workdir: Path, name: str, local_ip: str,
          **kwargs: object) -> SippRun:
    """Start SIPp in the background (e.g. a UAS that answers until stopped)."""
    argv = command(scenario_name, target, workdir=workdir, name=name, local_ip=local_ip,
                   **kwargs)  # type: ignore[arg-type]
    return start_argv(argv, workdir, name)


def start_argv(argv: list[str], workdir: Path, name: str) -> SippRun:
    """Start a prepared SIPp command line in the background."""
    workdir.mkdir(parents=True, exist_ok=True)
    for helper, make in (("tone.ulaw", write_tone), ("opus.pcap", write_opus_pcap)):
        if not (workdir / helper).exists():
            make(workdir / helper)
    out = open(workdir / f"{name}.screen.log", "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=workdir)
    return SippRun(argv, workdir, name, proc=proc)


def run(scenario_name: str, target: str | None, *, workdir: Path, name: str, local_ip: str,
        wait_s: float = 60.0, **kwargs: object) -> SippRun:
    """Run SIPp to completion; the run (its return code: 0 all calls succeeded)."""
    r = start(scenario_name, target, workdir=workdir, name=name, local_ip=local_ip, **kwargs)
    r.wait(wait_s)
    r.output = (workdir / f"{name}.screen.log").read_text(errors="replace")[-4000:]
    return r
