"""Media relays under RTP load: a bare rtpengine and a bare FreeSWITCH, with sessions set up
through them for :func:`zpctl.loadtest.rtpload.run_media`.

- :func:`start_rtpengine`: userspace forwarding (``--table=-1``), no Redis, its own port
  range; :func:`rtpengine_sessions` sets up each session with an ng ``offer`` (A's SDP:
  the reply names the port B sends to) and ``answer`` (B's SDP: the port A sends to), as the
  zone proxies do for a call.
- :func:`start_switch`: FreeSWITCH with ``templates/bench/freeswitch.xml.j2`` (one sofia
  profile on UDP, the event socket, nothing else); :class:`SwitchCalls` makes each session
  a bridged call: ``originate`` to leg A at a small UAS of ours, ``&bridge`` to leg B at the
  same UAS, which answers each leg with the SDP of the generator's endpoint.  The switch
  anchors the media of both legs (no bypass, no proxy media), reads each packet on one leg
  and writes it on the other, as it does for every call of the platform.

Both are the same Debian rtpengine and the same FreeSWITCH package the platform's nodes run.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from zpctl.clients.esl import EslConnection
from zpctl.clients.probes import ng_command
from zpctl.errors import Unreachable
from zpctl.lab.sipua import Msg, offer_sdp, parse, reply_text, sdp_media
from zpctl.loadtest.rtpload import Session, endpoint_port

SWITCH_PROFILE = "bench"
SWITCH_ESL_PASSWORD = "bench"  # noqa: S105 - a loopback-only bench switch


def _media_of(sdp: object) -> tuple[str, int]:
    got = sdp_media(sdp) if isinstance(sdp, str) else None
    if got is None:
        raise Unreachable(f"no audio stream in the relay's SDP: {sdp!r}")
    return got[0], got[1]


def _wait_port(host: str, port: int, proto: int, proc: subprocess.Popen[bytes],
               log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unreachable(f"exited with {proc.returncode}:\n{log.read_text()[-1500:]}")
        if proto == socket.SOCK_STREAM:
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
                return
        else:
            with contextlib.suppress(Unreachable):
                ng_command(host, port, "ping", timeout=0.5)
                return
        time.sleep(0.2)
    raise Unreachable(f"nothing answers on {host}:{port} after {timeout:.0f}s")


def start_rtpengine(work: Path, ip: str, ng_port: int = 2223, threads: int = 2,
                    ports: tuple[int, int] = (30000, 59999)) -> subprocess.Popen[bytes]:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "rtpengine.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["rtpengine", "--table=-1", f"--interface={ip}", f"--listen-ng={ip}:{ng_port}",
             f"--port-min={ports[0]}", f"--port-max={ports[1]}", f"--num-threads={threads}",
             "--foreground", "--log-stderr", "--log-level=4", "--no-fallback",
             f"--pidfile={work / 'rtpengine.pid'}", "--delete-delay=0"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(ip, ng_port, socket.SOCK_DGRAM, proc, log)
    except Unreachable:
        proc.kill()
        raise
    return proc


def _ng(ng: tuple[str, int], command: str, params: dict[str, Any]) -> dict[str, object]:
    return ng_command(ng[0], ng[1], command, **params)


def rtpengine_sessions(ng: tuple[str, int], count: int, a_ip: str, b_ip: str, base_port: int,
                       workers: int, tag: str = "mb") -> list[Session]:
    out = []
    for i in range(count):
        port = endpoint_port(base_port, i, workers)
        call = f"{tag}-{i}"
        offer = _ng(ng, "offer", {"call-id": call, "from-tag": "a", "sdp": offer_sdp(a_ip, port, [])})
        answer = _ng(ng, "answer", {"call-id": call, "from-tag": "a", "to-tag": "b",
                                    "sdp": offer_sdp(b_ip, port, [])})
        if offer.get("result") != "ok" or answer.get("result") != "ok":
            raise Unreachable(f"rtpengine refused session {call}: {offer} {answer}")
        out.append(Session(a_to=_media_of(answer.get("sdp")), b_to=_media_of(offer.get("sdp"))))
    return out


def delete_rtpengine_sessions(ng: tuple[str, int], count: int, tag: str = "mb") -> None:
    for i in range(count):
        _ng(ng, "delete", {"call-id": f"{tag}-{i}", "from-tag": "a"})


def start_switch(work: Path, ip: str, sip_port: int = 5080, esl_port: int = 8021,
                 sessions: int = 4000) -> subprocess.Popen[bytes]:
    from zpctl.render import BANNER, environment  # noqa: PLC0415 - the bench's template

    conf = work / "conf"
    for d in ("conf", "run", "db", "log"):
        (work / d).mkdir(parents=True, exist_ok=True)
    (conf / "freeswitch.xml").write_text(environment().get_template(
        "bench/freeswitch.xml.j2").render(banner=BANNER, ip=ip, sip_port=sip_port,
                                          esl_port=esl_port, password=SWITCH_ESL_PASSWORD,
                                          log=work / "log",
                                          profile=SWITCH_PROFILE, sessions=sessions))
    log = work / "freeswitch.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["freeswitch", "-nf", "-nc", "-nonat", "-conf", str(conf), "-log", str(work / "log"),
             "-run", str(work / "run"), "-db", str(work / "db"), "-temp", str(work / "run")],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(ip, esl_port, socket.SOCK_STREAM, proc, log, timeout=30)
    except Unreachable:
        proc.kill()
        raise
    return proc


class SwitchCalls:
    """Bridged calls through a switch: leg A and leg B of call ``i`` are INVITEs from the
    switch to ``a-i`` and ``b-i`` at this UAS, answered with the generator's endpoints."""

    def __init__(self, switch_ip: str, esl_port: int, uas: tuple[str, int], a_ip: str,
                 b_ip: str, base_port: int, workers: int) -> None:
        self.switch_ip, self.esl_port = switch_ip, esl_port
        self.uas, self.a_ip, self.b_ip = uas, a_ip, b_ip
        self.base_port, self.workers = base_port, workers
        self.legs: dict[tuple[str, int], tuple[str, int]] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(uas)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, src = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if data.startswith(b"SIP/2.0"):
                continue
            req = parse(data)
            try:
                if req.method == "INVITE":
                    self._invite(req, src)
                elif req.method in ("BYE", "OPTIONS", "CANCEL", "UPDATE"):
                    self._reply(req, src, "200 OK")
            except OSError:
                return  # closed while answering

    def _invite(self, req: Msg, src: tuple[str, int]) -> None:
        m = re.match(r"INVITE sip:([ab])-(\d+)@", req.first)
        far = sdp_media(req.body)
        if m is None or far is None:
            self._reply(req, src, "488 Not Acceptable Here")
            return
        leg, i = m[1], int(m[2])
        ip = self.a_ip if leg == "a" else self.b_ip
        self.legs[(leg, i)] = far[:2]
        port = endpoint_port(self.base_port, i, self.workers)
        self._reply(req, src, "200 OK", offer_sdp(ip, port, []))

    def _reply(self, req: Msg, src: tuple[str, int], status: str, body: str = "") -> None:
        contact = f"<sip:uas@{self.uas[0]}:{self.uas[1]}>"
        text = reply_text(req, status, contact, body, secrets.token_hex(4))
        self._sock.sendto(text.encode(), src)

    async def _originate(self, count: int, per_second: float, timeout: float) -> None:
        target = f"{self.uas[0]}:{self.uas[1]}"
        codec = "absolute_codec_string=PCMU,ignore_early_media=true"
        async with EslConnection(self.switch_ip, self.esl_port, SWITCH_ESL_PASSWORD,
                                 name="bench-switch", timeout=30.0) as esl:
            jobs = []
            t0 = time.monotonic()
            for i in range(count):
                delay = t0 + i / per_second - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                jobs.append(asyncio.ensure_future(esl.bgapi(
                    f"originate {{{codec}}}sofia/{SWITCH_PROFILE}/a-{i}@{target} "
                    f"&bridge({{{codec}}}sofia/{SWITCH_PROFILE}/b-{i}@{target})",
                    timeout=timeout)))
            for out in await asyncio.gather(*jobs, return_exceptions=True):
                if isinstance(out, BaseException):
                    raise Unreachable(f"originate failed: {out}")

    def setup(self, count: int, per_second: float = 100.0, timeout: float = 60.0) -> list[Session]:
        """Originate ``count`` calls; once both legs of each are answered, the sessions.
        A call not answered ``timeout`` seconds after its originate fails the set-up."""
        asyncio.run(self._originate(count, per_second, timeout))
        deadline = time.monotonic() + timeout
        while len(self.legs) < 2 * count and time.monotonic() < deadline:
            time.sleep(0.1)
        missing = [i for i in range(count) if ("a", i) not in self.legs or ("b", i) not in self.legs]
        if missing:
            raise Unreachable(f"{len(missing)} of {count} bridged calls did not set up "
                              f"(first: {missing[0]})")
        time.sleep(0.5)  # the last legs' ACKs
        return [Session(self.legs[("a", i)], self.legs[("b", i)]) for i in range(count)]

    def hang_up(self) -> None:
        async def hupall() -> None:
            async with EslConnection(self.switch_ip, self.esl_port, SWITCH_ESL_PASSWORD,
                                     name="bench-switch") as esl:
                await esl.api("hupall NORMAL_CLEARING", check=False)
        asyncio.run(hupall())
        self.legs.clear()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)
