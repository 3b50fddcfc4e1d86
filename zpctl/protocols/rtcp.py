"""RTCP receiver reports (RFC 3550 section 6.4), sans-IO: the statistics a receiver keeps
of one RTP source and the compound packet (RR + SDES CNAME) that reports them, and the
reading of a sender report's NTP time (for the LSR field).

The lab's phones send these so that the media relay (rtpengine) can compute the call's
quality (MOS, jitter, loss): rtpengine computes it only from the reports the endpoints
send, never from the RTP alone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
SDES_CNAME = 1
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def ntp_middle(unix_s: float) -> int:
    """The middle 32 bits of the NTP timestamp of ``unix_s`` (what LSR carries)."""
    ntp = unix_s + NTP_EPOCH_OFFSET
    seconds = int(ntp)
    fraction = int((ntp - seconds) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds & 0xFFFF) << 16) | (fraction >> 16)


def sender_report_lsr(data: bytes) -> int | None:
    """The LSR a report about this sender report's source carries (the middle 32 bits of
    its NTP time), or None when ``data`` does not start with a sender report."""
    if len(data) < 28 or data[0] >> 6 != 2 or data[1] != RTCP_SR:
        return None
    ntp_hi, ntp_lo = struct.unpack("!II", data[8:16])
    return int(((ntp_hi & 0xFFFF) << 16) | (ntp_lo >> 16))


@dataclass
class ReceptionStats:
    """What a receiver knows of one source (RFC 3550 A.1, A.3, A.8), at 8 kHz."""

    clock_hz: int = 8000
    ssrc: int | None = None
    base_seq: int = 0
    max_seq: int = 0
    cycles: int = 0
    received: int = 0
    jitter: float = 0.0  # in timestamp units
    _transit: int | None = None
    _expected_prior: int = 0
    _received_prior: int = 0

    def update(self, ssrc: int, seq: int, ts: int, arrival_s: float) -> None:
        """One RTP packet of the source arrived (``arrival_s``: the receiver's clock)."""
        if self.ssrc != ssrc:  # a new source: start over
            self.ssrc, self.base_seq, self.max_seq, self.cycles = ssrc, seq, seq, 0
            self.received, self.jitter, self._transit = 0, 0.0, None
            self._expected_prior = self._received_prior = 0
        elif (seq - self.max_seq) & 0xFFFF < 0x8000:  # in order (or a small gap)
            if seq < self.max_seq:
                self.cycles += 1 << 16
            self.max_seq = seq
        self.received += 1
        transit = int(arrival_s * self.clock_hz) - ts
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16
        self._transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    def lost(self) -> int:
        """Packets expected but not received (negative with duplicates)."""
        return self.extended_max - self.base_seq + 1 - self.received

    def report_block(self, lsr: int, dlsr: int) -> bytes:
        """The 24-byte report block, and the start of the next interval."""
        assert self.ssrc is not None
        expected = self.extended_max - self.base_seq + 1
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = (lost_interval << 8) // expected_interval \
            if expected_interval > 0 and lost_interval > 0 else 0
        cumulative = max(min(self.lost(), 0x7FFFFF), -0x800000) & 0xFFFFFF
        return struct.pack("!IIIIII", self.ssrc, (fraction << 24) | cumulative,
                           self.extended_max & 0xFFFFFFFF, int(self.jitter) & 0xFFFFFFFF,
                           lsr & 0xFFFFFFFF, dlsr & 0xFFFFFFFF)


def receiver_report(sender_ssrc: int, block: bytes | None, cname: str) -> bytes:
    """A compound RTCP packet: a receiver report (with ``block``, or none) and an SDES
    chunk with the CNAME, as RFC 3550 6.1 requires of every compound packet."""
    count = 1 if block else 0
    body = struct.pack("!I", sender_ssrc) + (block or b"")
    rr = struct.pack("!BBH", 0x80 | count, RTCP_RR, len(body) // 4) + body
    name = cname.encode()[:255]
    chunk = struct.pack("!IBB", sender_ssrc, SDES_CNAME, len(name)) + name + b"\0"
    chunk += b"\0" * (-len(chunk) % 4)  # the item list ends with a null, padded to 32 bits
    sdes = struct.pack("!BBH", 0x81, RTCP_SDES, len(chunk) // 4) + chunk
    return rr + sdes
