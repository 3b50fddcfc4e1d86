"""Test audio: G.711 mu-law tones for SIPp's rtp_stream (raw 8 kHz, one byte a sample)."""

from __future__ import annotations

import math
from pathlib import Path

_BIAS = 0x84
_CLIP = 32635


def ulaw_byte(sample: int) -> int:
    """Encode one 16-bit linear sample as G.711 mu-law."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), _CLIP) + _BIAS
    exponent = 7
    for exp in range(7, -1, -1):
        if magnitude & (0x4000 >> (7 - exp)):
            exponent = exp
            break
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def write_tone(path: Path, seconds: float = 1.0, hz: float = 440.0, level: float = 0.3) -> Path:
    """A sine tone as raw mu-law at 8 kHz (RTP payload type 0)."""
    n = int(8000 * seconds)
    data = bytes(ulaw_byte(int(level * 32767 * math.sin(2 * math.pi * hz * i / 8000)))
                 for i in range(n))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
