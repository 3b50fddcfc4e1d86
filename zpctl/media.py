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


def write_opus_pcap(path: Path, seconds: float = 4.0, payload_type: int = 96) -> Path:
    """A pcap of Opus RTP (20 ms frames) for SIPp's play_pcap_audio.

    Each frame is a valid Opus packet: TOC byte 0xF8 (CELT-only, fullband, 20 ms, one frame)
    and a short CELT payload.  Decoders accept it; it is enough to make rtpengine transcode.
    """
    import struct  # noqa: PLC0415

    frames = int(seconds * 50)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(frames):
        rtp = struct.pack("!BBHII", 0x80, payload_type, i & 0xFFFF, (i * 960) & 0xFFFFFFFF,
                          0x5A9C0001) + b"\xf8\xff\xfe\x00\x01\x02\x03\x04"
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2])) + udp
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        ts_us = i * 20000
        out += struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000, len(frame), len(frame))
        out += frame
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path
