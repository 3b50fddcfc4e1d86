"""RTP counted where it arrives: each end of a lab call, by its address.

The lab's phones and peers each have an address of their own, so the RTP a party sent and
received is every RTP packet from and to its address.  :class:`RtpCounter` captures the
UDP to and from those addresses on ``lo`` while a call runs (:class:`LoopbackCapture`,
root or CAP_NET_RAW) and, when stopped, counts per address the RTP packets it sent and
received and their payload types.  RTCP (payload types 72-76 in the second byte) and
anything that is not RTP version 2 (SIP, ng, DMQ) are left out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from zpctl.errors import EnvironmentProblem
from zpctl.lab.capture import LoopbackCapture

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


def rtp_payload_type(payload: bytes) -> int | None:
    """The payload type of an RTP packet, or None when ``payload`` is not RTP (v2)."""
    if len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    pt = payload[1] & 0x7F
    return None if pt in RTCP_TYPES else pt


class RtpCounter:
    """Count RTP to and from ``addresses`` on ``lo`` between enter and exit::

        with RtpCounter({"127.0.7.11", "127.0.9.1"}) as rtp:
            ...  # place the call
        rtp.parties["127.0.7.11"].received
    """

    def __init__(self, addresses: set[str]) -> None:
        self.parties = {a: PartyRtp() for a in addresses}
        try:
            self._capture = LoopbackCapture(addresses, both_ways=True)
        except PermissionError:
            raise EnvironmentProblem("counting RTP needs root (or CAP_NET_RAW): it watches "
                                     "the lo interface with a packet socket") from None

    def __enter__(self) -> RtpCounter:
        self._capture.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._capture.__exit__(None, None, None)
        for d in self._capture.snapshot():
            pt = rtp_payload_type(d.payload)
            if pt is None:
                continue
            if d.src in self.parties:
                self.parties[d.src].sent += 1
                self.parties[d.src].sent_types[pt] += 1
            if d.dst in self.parties:
                self.parties[d.dst].received += 1
                self.parties[d.dst].received_types[pt] += 1
