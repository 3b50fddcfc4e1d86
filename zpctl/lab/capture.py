"""UDP datagrams on the loopback interface, whatever their port: a packet socket on ``lo``.

The lab's phones, peers and nodes each have an address of their own, so what an address
sent and received is every datagram from and to it.  Used to count the RTP each end of a
lab call sent and received (:mod:`zpctl.lab.rtpcount`) and, by the torture tests, to see
Kamailio's answers to the RFC 4475 messages, which go to the Via's own port (5060 unless
the Via has ``rport``, RFC 3261 18.2.2) on the sender's address.  It needs CAP_NET_RAW
(root).

How it works: :func:`parse_ipv4_udp` turns one IPv4 packet into a :class:`Datagram` (or
None for anything else); :class:`LoopbackCapture` is the thin transport, a thread reading
the packet socket and keeping the datagrams to (or, with ``both_ways``, also from) the
watched addresses.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4  # on lo every packet shows up twice: once outgoing, once received


@dataclass(frozen=True)
class Datagram:
    at: float  # time.monotonic() when captured
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def parse_ipv4_udp(packet: bytes, at: float = 0.0) -> Datagram | None:
    """The UDP datagram in an IPv4 packet, or None (not IPv4/UDP, a fragment, truncated)."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    frag = struct.unpack_from("!H", packet, 6)[0]
    if frag & 0x3FFF or len(packet) < ihl + 8:  # more-fragments flag or an offset
        return None
    sport, dport, length = struct.unpack_from("!HHH", packet, ihl)
    payload = packet[ihl + 8: ihl + length]
    if len(payload) != length - 8:
        return None
    return Datagram(at, str(ipaddress.IPv4Address(packet[12:16])), sport,
                    str(ipaddress.IPv4Address(packet[16:20])), dport, payload)


class LoopbackCapture:
    """Capture, in the background, the UDP datagrams sent to ``watch`` on ``lo`` (with
    ``both_ways``, those sent from it too)."""

    def __init__(self, watch: Iterable[str], both_ways: bool = False) -> None:
        self.watch = frozenset(watch)
        self.both_ways = both_ways
        self.datagrams: list[Datagram] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(("lo", ETH_P_IP))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, name="lo-capture", daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet, addr = self._sock.recvfrom(65600)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            dgram = parse_ipv4_udp(packet, time.monotonic())
            if dgram is not None and (dgram.dst in self.watch
                                      or (self.both_ways and dgram.src in self.watch)):
                with self._lock:
                    self.datagrams.append(dgram)

    def snapshot(self) -> list[Datagram]:
        with self._lock:
            return list(self.datagrams)
