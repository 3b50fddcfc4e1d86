"""The lab's audio checks: what a receiver says it heard must be what was sent."""

from __future__ import annotations

import random
import time

from zpctl.lab import audio
from zpctl.lab.sipua import RtpMedia
from zpctl.testing import wait_for


def test_ulaw_round_trip_keeps_the_signal() -> None:
    samples = audio.tone(1000, 0.1, 0.5)
    back = audio.ulaw_decode(audio.ulaw_encode(samples))
    assert len(back) == len(samples)
    # G.711 is logarithmic: the error is a few percent of the sample's magnitude
    assert all(abs(a - b) <= max(64, abs(a) // 16) for a, b in zip(samples, back, strict=True))
    assert audio.ulaw_encode([0]) == b"\xff" and audio.ulaw_encode([-32768, 32767]) == b"\x00\x80"


def test_goertzel_tells_the_frequency() -> None:
    t = audio.tone(1000, 0.5)
    assert audio.tone_seconds(t, 1000) >= 0.48
    assert audio.tone_seconds(t, 440) == 0
    assert audio.tone_seconds(audio.tone(440, 0.5), 1000) == 0
    assert audio.tone_seconds([0] * 4000, 1000) == 0
    noise = [random.randint(-8000, 8000) for _ in range(4000)]
    assert audio.tone_seconds(noise, 1000) == 0


def test_a_prompt_is_found_by_its_envelope_not_by_loudness() -> None:
    rng = random.Random(7)

    def syllables(seed: int, n: int) -> list[int]:
        r = random.Random(seed)
        out: list[int] = []
        for _ in range(n):
            out += audio.tone(r.choice((300, 500, 700)), r.uniform(0.08, 0.3), r.uniform(0.1, 0.6))
            out += [0] * int(audio.RATE * r.uniform(0.03, 0.2))
        return out

    prompt = syllables(1, 12)
    heard = [0] * 2400 + [int(x * 0.5) for x in prompt] + [rng.randint(-50, 50) for _ in range(800)]
    assert audio.best_match(heard, prompt) > 0.9
    assert audio.best_match(syllables(2, 30), prompt) < 0.7
    assert audio.best_match(audio.tone(440, 3.0), prompt) < 0.5


def test_rtp_and_telephone_event_packets() -> None:
    pkt = audio.RtpPacket(101, 65535, 2**32 - 1, 1234, True, audio.dtmf_payload("#", True, 1280))
    back = audio.RtpPacket.parse(pkt.pack())
    assert back == pkt
    assert audio.dtmf_event(back.payload) == ("#", True, 1280)
    assert audio.RtpPacket.parse(b"\x00" * 12) is None  # not version 2


def test_rtp_media_carries_a_tone_and_digits_between_two_endpoints() -> None:
    a, b = RtpMedia("127.0.0.1", 40100), RtpMedia("127.0.0.1", 40102)
    try:
        a.start(("127.0.0.1", 40102))
        b.start(("127.0.0.1", 40100))
        a.play(audio.tone(1000, 1.0))
        a.send_dtmf("1234#")
        wait_for("a's tone and digits at b", lambda: len(b.digits) >= 5 or None, 5)
        time.sleep(0.1)
        assert b.digits == list("1234#")
        assert b.tone_heard(1000) >= 0.9
        assert b.tone_heard(440) == 0
        assert a.tone_heard(1000) == 0  # b sent silence
        assert a.packets_in > 50 and b.packets_in > 50
    finally:
        a.close()
        b.close()
