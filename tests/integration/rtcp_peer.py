"""A call through a real rtpengine whose two endpoints send RTP *and* RTCP, so rtpengine
computes call quality.  SIPp sends no RTCP, so its calls never get a MOS.

The call is set up over ng directly (offer/answer with each endpoint's SDP, as the proxy
would), then each endpoint sends 20 ms PCMU packets to the port rtpengine gave it, a sender
report every second, and — starting once it has seen the other side's sender report — a
receiver report about the other side with the loss and jitter the test asks for (rtpengine
needs both legs' round trip, which it measures from the SR/RR pairs, to compute a MOS).
"""

from __future__ import annotations

import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from zpctl.clients.probes import ng_command

NTP_EPOCH_OFFSET = 2208988800


def _sdp(ip: str, port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def _media(sdp: str) -> tuple[str, int]:
    addr = re.search(r"c=IN IP4 (\S+)", sdp)
    port = re.search(r"m=audio (\d+)", sdp)
    assert addr is not None and port is not None, sdp
    return addr.group(1), int(port.group(1))


@dataclass
class _Leg:
    ip: str
    port: int
    ssrc: int
    rtp: socket.socket = field(init=False)
    rtcp: socket.socket = field(init=False)
    remote: tuple[str, int] = ("", 0)  # where rtpengine wants this leg's RTP
    last_sr: int | None = None  # middle 32 bits of the NTP time of this leg's last SR
    last_sr_at: float = 0.0

    def __post_init__(self) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((self.ip, self.port))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind((self.ip, self.port + 1))
        for s in (self.rtp, self.rtcp):
            s.setblocking(False)

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()

    def drain(self) -> None:
        for s in (self.rtp, self.rtcp):
            try:
                while True:
                    s.recv(2048)
            except BlockingIOError:
                pass


class RtcpCall:
    """One call through rtpengine at ``ng`` (address, port); ``loss`` (0-1) and ``jitter_ms``
    are what each side reports in its receiver reports."""

    def __init__(self, ng: tuple[str, int], ips: tuple[str, str], loss: float, jitter_ms: int,
                 duration_s: float = 10.0, base_port: int = 40000) -> None:
        self.ng = ng
        self.call_id = f"zpctl-rtcp-{secrets.token_hex(6)}"
        self.loss = loss
        self.jitter_units = jitter_ms * 8  # PCMU: 8000 Hz timestamp units
        self.duration_s = duration_s
        self.a = _Leg(ips[0], base_port, 0x1000_0000 + secrets.randbelow(1 << 24))
        self.b = _Leg(ips[1], base_port + 10, 0x2000_0000 + secrets.randbelow(1 << 24))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _ng(self, command: str, **params: object) -> dict[str, object]:
        reply = ng_command(self.ng[0], self.ng[1], command, 2.0, **{"call-id": self.call_id},
                           **params)
        assert reply.get("result") == "ok", (command, reply)
        return reply

    def start(self) -> RtcpCall:
        flags = {"flags": ["trust-address"], "replace": ["origin", "session-connection"]}
        offer = self._ng("offer", **{"from-tag": "a", "sdp": _sdp(self.a.ip, self.a.port)}, **flags)
        answer = self._ng("answer", **{"from-tag": "a", "to-tag": "b",
                                       "sdp": _sdp(self.b.ip, self.b.port)}, **flags)
        self.b.remote = _media(str(offer["sdp"]))  # the offer goes to b: b sends there
        self.a.remote = _media(str(answer["sdp"]))
        self._thread = threading.Thread(target=self._run, name=self.call_id, daemon=True)
        self._thread.start()
        return self

    def _sr(self, leg: _Leg, seq: int) -> None:
        now = time.time() + NTP_EPOCH_OFFSET
        sec, frac = int(now), int((now % 1) * (1 << 32))
        leg.rtcp.sendto(struct.pack("!BBHIIIIII", 0x80, 200, 6, leg.ssrc, sec, frac, seq * 160,
                                    seq, seq * 172), (leg.remote[0], leg.remote[1] + 1))
        leg.last_sr = ((sec & 0xFFFF) << 16) | (frac >> 16)
        leg.last_sr_at = time.monotonic()

    def _rr(self, leg: _Leg, about: _Leg, seq: int) -> None:
        if about.last_sr is None:
            return
        dlsr = int((time.monotonic() - about.last_sr_at) * 65536)
        lost = int(seq * self.loss) & 0xFFFFFF
        block = struct.pack("!IIIIII", about.ssrc, (int(self.loss * 256) << 24) | lost, seq,
                            self.jitter_units, about.last_sr, dlsr)
        leg.rtcp.sendto(struct.pack("!BBHI", 0x81, 201, 7, leg.ssrc) + block,
                        (leg.remote[0], leg.remote[1] + 1))

    def _run(self) -> None:
        try:
            t_end = time.monotonic() + self.duration_s
            seq = 0
            while not self._stop.is_set() and time.monotonic() < t_end:
                seq += 1
                for leg in (self.a, self.b):
                    leg.rtp.sendto(struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF,
                                               (seq * 160) & 0xFFFFFFFF, leg.ssrc) + b"\xff" * 160,
                                   leg.remote)
                if seq % 50 == 10:
                    self._sr(self.a, seq)
                    self._sr(self.b, seq)
                if seq % 50 == 30:
                    self._rr(self.b, self.a, seq)
                    self._rr(self.a, self.b, seq)
                self.a.drain()
                self.b.drain()
                time.sleep(0.02)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            ng_command(self.ng[0], self.ng[1], "delete", 2.0,
                       **{"call-id": self.call_id, "from-tag": "a"})
        finally:
            self.a.close()
            self.b.close()
        if self.error is not None:
            raise self.error
