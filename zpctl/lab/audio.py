"""Audio with known content, and what a receiver can prove it heard.

The lab's feature flows send a tone of a known frequency or RFC 4733 (RFC 2833) DTMF
events from a phone and check, at the far end, what arrived: the tone's frequency found by
a Goertzel filter over 20 ms frames, the digits decoded from telephone-event packets, a
prompt recognised by its loudness envelope.  Pure Python (no numpy here): G.711 mu-law,
8 kHz mono, 20 ms frames of 160 samples, as the phones and the switches use.
"""

from __future__ import annotations

import math
import struct
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

RATE = 8000
FRAME = 160  # samples per 20 ms packet
DTMF_DIGITS = "0123456789*#ABCD"  # RFC 4733 event codes 0..15

_BIAS, _CLIP = 0x84, 32635


def _ulaw_byte(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    mag = min(-sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = max(0, mag.bit_length() - 8)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _linear(byte: int) -> int:
    u = ~byte & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return _BIAS - t if u & 0x80 else t - _BIAS


_ENCODE = bytes(_ulaw_byte(s) for s in range(-32768, 32768))
_DECODE = [_linear(b) for b in range(256)]


def ulaw_encode(samples: Iterable[int]) -> bytes:
    """16-bit linear samples -> G.711 mu-law bytes (PCMU, RTP payload type 0)."""
    return bytes(_ENCODE[max(-32768, min(32767, s)) + 32768] for s in samples)


def ulaw_decode(data: bytes) -> list[int]:
    return [_DECODE[b] for b in data]


def tone(hz: float, seconds: float, amplitude: float = 0.3) -> list[int]:
    """A sine of ``hz`` (``amplitude`` of full scale), 8 kHz samples."""
    peak = 32767 * amplitude
    return [int(peak * math.sin(2 * math.pi * hz * i / RATE)) for i in range(int(RATE * seconds))]


def goertzel(samples: Sequence[int], hz: float) -> float:
    """Power of ``hz`` in ``samples`` (one Goertzel filter), normalised so that a full-scale
    sine of that frequency gives about 0.25 whatever the block length."""
    n = len(samples)
    if not n:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x / 32768 + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)


def energy(samples: Sequence[int]) -> float:
    """Mean power of ``samples`` (full-scale square wave: 1.0)."""
    return sum((x / 32768) ** 2 for x in samples) / len(samples) if samples else 0.0


def tone_seconds(samples: Sequence[int], hz: float, share: float = 0.6,
                 floor: float = 1e-4) -> float:
    """How long ``hz`` dominates: 20 ms frames whose power at ``hz`` carries at least
    ``share`` of the frame's energy (and is above ``floor``), in seconds."""
    hits = 0
    for i in range(0, len(samples) - FRAME + 1, FRAME):
        frame = samples[i:i + FRAME]
        total = energy(frame)
        # a sine's total power is A^2/2; its Goertzel power (normalised as above) is A^2/4
        if total > floor and 2 * goertzel(frame, hz) >= share * total:
            hits += 1
    return hits * FRAME / RATE


def envelope(samples: Sequence[int]) -> list[float]:
    """Loudness per 20 ms frame (RMS)."""
    return [math.sqrt(energy(samples[i:i + FRAME]))
            for i in range(0, len(samples) - FRAME + 1, FRAME)]


def best_match(heard: Sequence[int], reference: Sequence[int]) -> float:
    """How well ``reference`` (a prompt) is found in ``heard``: the best correlation of
    their loudness envelopes over every 20 ms offset, -1..1.  Speech has a distinctive
    envelope (syllables, pauses); a tone, silence or another prompt scores low."""
    a, b = envelope(heard), envelope(reference)
    if len(b) < 5 or len(a) < len(b):
        return 0.0
    mb = sum(b) / len(b)
    db = [x - mb for x in b]
    nb = math.sqrt(sum(x * x for x in db))
    best = 0.0
    for off in range(len(a) - len(b) + 1):
        win = a[off:off + len(b)]
        ma = sum(win) / len(win)
        da = [x - ma for x in win]
        na = math.sqrt(sum(x * x for x in da))
        if na and nb:
            best = max(best, sum(x * y for x, y in zip(da, db, strict=True)) / (na * nb))
    return best


def read_wav(path: Path) -> list[int]:
    """A 16-bit mono WAV as 8 kHz samples (other rates are resampled linearly)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit audio, want 16-bit")
        channels, rate = w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    samples = list(struct.unpack(f"<{len(raw) // 2}h", raw))[::channels]
    if rate == RATE or not samples:
        return samples
    step = rate / RATE
    out = []
    for i in range(int(len(samples) / step)):
        pos = i * step
        j = int(pos)
        frac = pos - j
        nxt = samples[j + 1] if j + 1 < len(samples) else samples[j]
        out.append(int(samples[j] * (1 - frac) + nxt * frac))
    return out


# --- RTP and RFC 4733 telephone events -----------------------------------------------------

@dataclass(frozen=True)
class RtpPacket:
    pt: int
    seq: int
    ts: int
    ssrc: int
    marker: bool
    payload: bytes

    def pack(self) -> bytes:
        return struct.pack("!BBHII", 0x80, (0x80 if self.marker else 0) | self.pt, self.seq,
                           self.ts, self.ssrc) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket | None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return None
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
        start = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10 and len(data) >= start + 4:  # header extension
            start += 4 + 4 * struct.unpack("!H", data[start + 2:start + 4])[0]
        end = len(data) - (data[-1] if b0 & 0x20 else 0)  # padding
        return cls(b1 & 0x7F, seq, ts, ssrc, bool(b1 & 0x80), data[start:end])


def dtmf_payload(digit: str, end: bool, duration: int, volume: int = 10) -> bytes:
    """One telephone-event payload: event code, E bit, volume (-dBm0), duration (samples)."""
    return struct.pack("!BBH", DTMF_DIGITS.index(digit.upper()), (0x80 if end else 0) | volume,
                       duration)


def dtmf_event(payload: bytes) -> tuple[str, bool, int] | None:
    """(digit, end bit, duration) of a telephone-event payload; None for other events."""
    if len(payload) < 4 or payload[0] >= len(DTMF_DIGITS):
        return None
    return DTMF_DIGITS[payload[0]], bool(payload[1] & 0x80), struct.unpack("!H", payload[2:4])[0]
