"""RTP load: many G.711 streams through a media relay, with the loss and jitter each one saw.

SIPp plays RTP from a capture file, one thread per call, and caps a run near 100 calls/s
with media; it cannot say what arrived.  This generator sends and receives the packets
itself, so a run measures the relay:

- a *session* is two endpoints, A and B, each sending 50 packets/s (20 ms of PCMU, 172
  bytes) to the relay and receiving the other's packets back from it: two *streams*, one
  each way;
- the sessions are split over ``workers`` processes; each worker owns one UDP socket for
  its A endpoints and one for its B endpoints (its own port on ``a_ip`` and ``b_ip``), so
  many sessions share a socket;
- the first 8 bytes of each payload carry the stream and the frame number: a relay that
  does not transcode passes the payload through (FreeSWITCH renumbers the RTP header's
  sequence, timestamp and SSRC; the payload it leaves alone), so the receiver knows which
  sent packet arrived, whatever the relay did to the header;
- sends are spread over the 20 ms frame (session ``i`` in slot ``i % SLOTS``), not sent in
  one burst, as real phones' clocks are not aligned;
- each receiver keeps, per stream, the packets that arrived and the interarrival jitter of
  RFC 3550 (section 6.4.1: J += (|D| - J) / 16, in RTP timestamp units);
- the worker notes how late each slot's sends started: when it falls behind, the generator
  and not the relay is the bottleneck, and :attr:`MediaResult.generator_behind` says so.

Loss is 1 - received / sent over the packets sent after the first :data:`WARM_S` of the
run (a relay may drop a stream's first packets while it learns it: FreeSWITCH drops two),
counted once the senders have stopped and the relay has had :data:`DRAIN_S` to deliver
what it holds.  Jitter is reckoned against the frame number in the payload, so it is the
jitter of the whole path, the relay's own pacing included.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import selectors
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

FRAME_MS = 20
FRAME_TS = 160  # 8 kHz x 20 ms
PAYLOAD = bytes((0x80 + i) % 256 for i in range(160))  # not silence: nothing suppresses it
HEADER = struct.Struct("!BBHII")
SLOTS = 10  # sends spread over the frame in 2 ms slots
DRAIN_S = 0.5
WARM_S = 1.0
MAGIC = 0x5A
TAG = struct.Struct("!II")  # at the payload's start: MAGIC << 24 | stream, frame number
BEHIND_MS = 10.0  # a slot this late means the generator, not the relay, fell behind
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
BUFFER_BYTES = 8 << 20

Addr = tuple[str, int]


@dataclass(frozen=True)
class Session:
    """Where A sends to (the relay's port facing A) and where B sends to."""
    a_to: Addr
    b_to: Addr


@dataclass(frozen=True)
class MediaResult:
    sessions: int
    streams: int
    seconds: float
    packets_sent: int
    packets_received: int
    loss: float  # 1 - received / sent, both directions
    worst_stream_loss: float
    jitter_ms_mean: float
    jitter_ms_p99: float  # over streams, of each stream's final RFC 3550 jitter
    late_slots: int  # slots whose sends started more than BEHIND_MS late
    slots: int
    generator_cpu_s: float

    @property
    def generator_behind(self) -> bool:
        """More than 1 % of the slots started over BEHIND_MS late: the generator, not the
        relay, set the pace (the late packets still go, in a burst, and their jitter
        counts)."""
        return self.late_slots > self.slots // 100

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "generator_behind": self.generator_behind}


def endpoint_port(base_port: int, session: int, workers: int) -> int:
    """The port of the worker that owns ``session`` (on ``a_ip`` for A, ``b_ip`` for B)."""
    return base_port + session % workers


def _socket(addr: Addr) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt, fallback in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, BUFFER_BYTES)
        except PermissionError:
            s.setsockopt(socket.SOL_SOCKET, fallback, BUFFER_BYTES)
    s.bind(addr)
    s.setblocking(False)
    return s


def _worker(worker: int, sessions: Sequence[tuple[int, Session]], a_addr: Addr, b_addr: Addr,
            seconds: float, start_at: float, out: Any) -> None:
    socks = (_socket(a_addr), _socket(b_addr))
    n = len(sessions)
    # stream k: direction 0 (A -> B, received on the B socket) is k = i, 1 is k = n + i
    sent = [0] * (2 * n)
    got = [0] * (2 * n)
    jitter = [0.0] * (2 * n)
    transit: list[float | None] = [None] * (2 * n)
    ssrc0 = 0x5A000000 + (worker << 16)
    warm = int(WARM_S * 1000 / FRAME_MS)  # frames before this one are not counted
    slot_of = [[j for j, (i, _) in enumerate(sessions) if i % SLOTS == slot]
               for slot in range(SLOTS)]
    packet = bytearray(HEADER.size + len(PAYLOAD))
    packet[HEADER.size:] = PAYLOAD
    buf = bytearray(2048)
    sel = selectors.DefaultSelector()
    for side, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_READ, side)

    def receive(side: int) -> None:
        s = socks[side]
        while True:
            try:
                size = s.recv_into(buf)
            except BlockingIOError:
                return
            if size < HEADER.size + TAG.size:
                continue
            now_ts = time.monotonic() * 8000.0
            tag, frame_no = TAG.unpack_from(buf, HEADER.size)
            k = tag & 0xFFFFFF
            # A's socket gets the B -> A streams (k >= n), B's the A -> B ones
            if tag >> 24 != MAGIC or k >= 2 * n or (k >= n) != (side == 0):
                continue
            if frame_no >= warm:
                got[k] += 1
            t = now_ts - frame_no * FRAME_TS
            last = transit[k]
            if last is not None:
                jitter[k] += (abs(t - last) - jitter[k]) / 16.0
            transit[k] = t

    late = slots = 0
    frame = FRAME_MS / 1000.0
    step = frame / SLOTS
    while time.monotonic() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    tick = 0
    while True:
        due = start_at + tick * step
        if due >= end:
            break
        now = time.monotonic()
        while now < due:
            for key, _ in sel.select(due - now):
                receive(key.data)
            now = time.monotonic()
        slots += 1
        if (now - due) * 1000.0 > BEHIND_MS:
            late += 1
        frame_no = tick // SLOTS
        for j in slot_of[tick % SLOTS]:
            ses = sessions[j][1]
            for direction, (sock, to) in enumerate(((socks[0], ses.a_to), (socks[1], ses.b_to))):
                k = j + direction * n
                HEADER.pack_into(packet, 0, 0x80, 0, frame_no & 0xFFFF,
                                 (frame_no * FRAME_TS) & 0xFFFFFFFF, ssrc0 + k)
                TAG.pack_into(packet, HEADER.size, MAGIC << 24 | k, frame_no)
                try:
                    sock.sendto(packet, to)
                except BlockingIOError:
                    continue  # a full send buffer: counted as lost, never as sent
                sent[k] += frame_no >= warm
        tick += 1
    drain_end = time.monotonic() + DRAIN_S
    while (left := drain_end - time.monotonic()) > 0:
        for key, _ in sel.select(left):
            receive(key.data)
    for sock in socks:
        sock.close()
    out.send({"sent": sent, "got": got, "jitter": [j / 8.0 for j in jitter],
              "late": late, "slots": slots, "cpu": time.process_time()})
    out.close()


def run_media(sessions: Sequence[Session], a_ip: str, b_ip: str, base_port: int,
              seconds: float, *, workers: int = 2) -> MediaResult:
    """Send both ways on every session for ``seconds``; what arrived.  Session ``i``'s
    endpoints are ``a_ip``/``b_ip`` at :func:`endpoint_port` (the addresses its SDP named)."""
    ctx = mp.get_context("fork")
    start_at = time.monotonic() + 0.5 + len(sessions) / 20000
    procs, pipes = [], []
    for w in range(workers):
        mine = [(i, s) for i, s in enumerate(sessions) if i % workers == w]
        if not mine:
            continue
        recv_end, send_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, daemon=True, args=(
            w, mine, (a_ip, base_port + w), (b_ip, base_port + w), seconds, start_at, send_end))
        p.start()
        send_end.close()
        procs.append(p)
        pipes.append(recv_end)
    parts = []
    for p, pipe in zip(procs, pipes, strict=True):
        if not pipe.poll(seconds + 30):
            p.kill()
            raise RuntimeError(f"RTP load worker {p.pid} did not report")
        parts.append(pipe.recv())
        p.join(5)
    sent = sum(sum(x["sent"]) for x in parts)
    got = sum(sum(x["got"]) for x in parts)
    losses = [1 - g / s for x in parts for s, g in zip(x["sent"], x["got"], strict=True) if s]
    jitters = sorted(j for x in parts for j in x["jitter"])
    return MediaResult(
        sessions=len(sessions), streams=2 * len(sessions), seconds=seconds,
        packets_sent=sent, packets_received=got,
        loss=max(0.0, 1 - got / sent) if sent else 1.0,
        worst_stream_loss=max(0.0, max(losses, default=1.0)),
        jitter_ms_mean=sum(jitters) / len(jitters) if jitters else 0.0,
        jitter_ms_p99=jitters[min(len(jitters) - 1, int(len(jitters) * 0.99))] if jitters else 0.0,
        late_slots=sum(x["late"] for x in parts), slots=sum(x["slots"] for x in parts),
        generator_cpu_s=sum(x["cpu"] for x in parts))


def direct_sessions(count: int, a_ip: str, b_ip: str, base_port: int,
                    workers: int) -> list[Session]:
    """The reference: A sends straight to B's socket and B to A's (no relay)."""
    return [Session((b_ip, endpoint_port(base_port, i, workers)),
                    (a_ip, endpoint_port(base_port, i, workers))) for i in range(count)]


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks a process (all its threads) has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


HZ = os.sysconf("SC_CLK_TCK")
