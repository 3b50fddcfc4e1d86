"""What a switch needs on disk besides its rendered config: TLS files for its sofia profile,
the sounds and hold music its config names (``sounds.txt``), and its folders.

The lab, the render check (a scratch FreeSWITCH per rendered config) and the tests call
:func:`provision`; a deploy provisions the same from the production PKI and sound store.
Until prompts are generated (issue 16), every prompt is a short silence and every
hold-music folder holds a quiet tone, so a config that names them loads and plays.
"""

from __future__ import annotations

import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

# Hold music is a quiet tone of this frequency (Hz), so that a test can tell it from silence.
MUSIC_HZ = 440.0
RATE = 8000


@dataclass(frozen=True)
class SwitchFiles:
    """Where one switch's files go: its rendered ``freeswitch`` folder, its state folder
    (``zp_sounds``, ``zp_music``, ... of vars.xml live under ``<state>/freeswitch``) and
    the TLS folder its sofia profile names (``tls-cert-dir``)."""

    conf: Path
    state: Path
    tls: Path


def write_wav(path: Path, seconds: float, hz: float = 0.0, amplitude: float = 0.1) -> None:
    """A mono 16-bit 8 kHz WAV: silence, or a sine of ``hz`` at ``amplitude`` (0..1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(RATE * seconds)
    peak = int(32767 * amplitude)
    frames = (b"\0\0" * n if not hz else b"".join(
        struct.pack("<h", int(peak * math.sin(2 * math.pi * hz * i / RATE))) for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames)


def sounds(conf: Path) -> tuple[list[str], list[str]]:
    """The prompts (paths under the sounds folder) and hold-music folders ``sounds.txt``
    of a rendered switch config names."""
    prompts, music = [], ["default"]
    for raw in (conf / "sounds.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("music "):
            music.append(line[6:].strip().strip("/"))
        else:
            prompts.append(line)
    return prompts, sorted(set(music))


def provision(files: SwitchFiles, agent_pem: bytes, ca_pem: bytes) -> None:
    """Write a switch's TLS files (``agent.pem`` = certificate + key, ``cafile.pem`` = the
    CA its peers' certificates chain to; 0600), a sound for every prompt and hold-music
    folder of its ``sounds.txt`` that is not there yet, and its state folders."""
    files.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.tls.chmod(0o700)
    for name, data in (("agent.pem", agent_pem), ("cafile.pem", ca_pem)):
        path = files.tls / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        path.chmod(0o600)
    base = files.state / "freeswitch"
    for sub in ("sounds", "music", "recordings", "storage", "cache"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    prompts, music = sounds(files.conf)
    for prompt in prompts:
        path = base / "sounds" / prompt
        if not path.exists():
            write_wav(path, 0.3)
    for folder in music:
        path = base / "music" / folder / "tone.wav"
        if not path.exists():
            write_wav(path, 2.0, MUSIC_HZ)
