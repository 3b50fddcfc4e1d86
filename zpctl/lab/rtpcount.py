"""RTP counted where it arrives: a packet socket on the loopback interface.

The lab's phones and peers each have an address of their own, so the RTP a party sent and
received is every RTP packet from and to its address.  :class:`RtpCounter` watches ``lo``
with an ``AF_PACKET`` socket (root, or CAP_NET_RAW) in a thread while a call runs and
counts, per party address, the RTP packets it sent and received and their payload types.
Only packets as delivered are counted (``PACKET_HOST``): loopback shows each packet twice,
once leaving and once arriving.  RTCP (payload types 72-76 in the second byte) and anything
that is not RTP version 2 are left out.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

from zpctl.errors import EnvironmentProblem

ETH_P_ALL = 0x0003
PACKET_HOST = 0
RTCP_TYPES = range(72, 77)


@dataclass
class PartyRtp:
    """What one party's address sent and received."""

    sent: int = 0
    received: int = 0
    sent_types: Counter[int] = field(default_factory=Counter)
    received_types: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {"sent": self.sent, "received": self.received,
                "sent_payload_types": dict(self.sent_types),
                "received_payload_types": dict(self.received_types)}


def rtp_header(payload: bytes) -> int | None:
    """The payload type of an RTP packet, or None when ``payload`` is not RTP (v2)."""
    if len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    pt = payload[1] & 0x7F
    return None if pt in RTCP_TYPES else pt


def parse_udp(frame: bytes) -> tuple[str, str, bytes] | None:
    """(source address, destination address, UDP payload) of an IPv4/UDP frame as ``lo``
    delivers it (a 14-byte Ethernet header of zeros first), else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[23] != 17:  # not UDP
        return None
    src = socket.inet_ntoa(frame[26:30])
    dst = socket.inet_ntoa(frame[30:34])
    start = 14 + ihl + 8
    (length,) = struct.unpack("!H", frame[14 + ihl + 4:14 + ihl + 6])
    return src, dst, frame[start:14 + ihl + length]


class RtpCounter:
    """Count RTP to and from ``addresses`` on ``lo`` until :meth:`stop`::

        with RtpCounter({"127.0.7.11", "127.0.9.1"}) as rtp:
            ...  # place the call
        rtp.parties["127.0.7.11"].received
    """

    def __init__(self, addresses: set[str], interface: str = "lo") -> None:
        self.parties = {a: PartyRtp() for a in addresses}
        self._stop = threading.Event()
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self._sock.bind((interface, 0))
        except PermissionError:
            raise EnvironmentProblem("counting RTP needs root (or CAP_NET_RAW): it watches "
                                     f"the {interface} interface with a packet socket") from None
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="rtp-counter", daemon=True)

    def __enter__(self) -> RtpCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] != PACKET_HOST:
                continue
            udp = parse_udp(frame)
            if udp is None:
                continue
            src, dst, payload = udp
            if src not in self.parties and dst not in self.parties:
                continue
            pt = rtp_header(payload)
            if pt is None:
                continue
            if src in self.parties:
                self.parties[src].sent += 1
                self.parties[src].sent_types[pt] += 1
            if dst in self.parties:
                self.parties[dst].received += 1
                self.parties[dst].received_types[pt] += 1
