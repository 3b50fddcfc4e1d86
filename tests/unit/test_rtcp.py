"""RTCP receiver reports (zpctl.protocols.rtcp): the statistics of RFC 3550 appendix A and
the packet layout of section 6.4.2, checked field by field."""

from __future__ import annotations

import struct

from zpctl.protocols.rtcp import (
    RTCP_RR,
    RTCP_SDES,
    ReceptionStats,
    ntp_middle,
    receiver_report,
    sender_report_lsr,
)


def _feed(stats: ReceptionStats, seqs: list[int], ssrc: int = 7, jitter_ms: float = 0.0) -> None:
    for i, seq in enumerate(seqs):
        # 20 ms apart on both clocks, every other packet late by jitter_ms
        late = jitter_ms / 1000 if i % 2 else 0.0
        stats.update(ssrc, seq & 0xFFFF, (1000 + 160 * i) & 0xFFFFFFFF, 100.0 + 0.02 * i + late)


def _block(stats: ReceptionStats) -> tuple[int, int, int, int, int, int, int]:
    ssrc, lost, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", stats.report_block(5, 6))
    return ssrc, lost >> 24, lost & 0xFFFFFF, highest, jitter, lsr, dlsr


def test_nothing_lost_in_order() -> None:
    stats = ReceptionStats()
    _feed(stats, list(range(100, 150)))
    assert _block(stats) == (7, 0, 0, 149, 0, 5, 6)


def test_a_gap_is_counted_as_lost_once() -> None:
    stats = ReceptionStats()
    _feed(stats, [*range(10), *range(15, 25)])  # 5 of 25 missing
    _, fraction, cumulative, highest, *_ = _block(stats)
    assert (cumulative, highest) == (5, 24)
    assert fraction == (5 << 8) // 25
    # the next interval: nothing new lost, the fraction is back to 0, the total stays
    _feed(stats, list(range(25, 35)))
    assert _block(stats)[1:3] == (0, 5)


def test_the_sequence_number_wraps_into_the_cycle_count() -> None:
    stats = ReceptionStats()
    _feed(stats, list(range(65530, 65546)))
    assert _block(stats)[3] == (1 << 16) + 9  # 65545 = one cycle and 9
    assert stats.lost() == 0


def test_jitter_follows_the_interarrival_variation() -> None:
    steady, jittery = ReceptionStats(), ReceptionStats()
    _feed(steady, list(range(200)))
    _feed(jittery, list(range(200)), jitter_ms=10.0)
    assert steady.jitter == 0
    # each arrival moves by 10 ms (80 timestamp units) against the one before
    assert 70 < jittery.jitter <= 80


def test_a_new_source_starts_over() -> None:
    stats = ReceptionStats()
    _feed(stats, [*range(10), *range(20, 30)], ssrc=1)
    _feed(stats, list(range(500, 510)), ssrc=2)
    assert _block(stats)[:3] == (2, 0, 0)


def test_compound_packet_layout() -> None:
    stats = ReceptionStats()
    _feed(stats, list(range(10)))
    data = receiver_report(0xABCDEF01, stats.report_block(1, 2), "me@127.0.0.1")
    first, pt, length, sender = struct.unpack("!BBHI", data[:8])
    assert (first >> 6, first & 0x1F, pt, length) == (2, 1, RTCP_RR, 7)
    assert sender == 0xABCDEF01
    sdes = data[4 * (length + 1):]
    first, pt, length = struct.unpack("!BBH", sdes[:4])
    assert (first & 0x1F, pt, len(sdes)) == (1, RTCP_SDES, 4 * (length + 1))
    assert sdes[8:10] == bytes([1, len("me@127.0.0.1")])
    assert sdes[10:22] == b"me@127.0.0.1"
    # no report block before anything arrived
    assert receiver_report(1, None, "x")[0] & 0x1F == 0


def test_lsr_of_a_sender_report_is_the_middle_of_its_ntp_time() -> None:
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 9, 0x12345678, 0x9ABCDEF0, 0, 0, 0)
    assert sender_report_lsr(sr) == 0x56789ABC
    assert sender_report_lsr(b"\x80\xc9" + bytes(30)) is None  # an RR
    assert ntp_middle(0.5) == ((2_208_988_800 & 0xFFFF) << 16) | 0x8000
