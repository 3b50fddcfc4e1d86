"""What a switch needs on disk besides its rendered config: TLS files for its sofia profile,
the sounds and hold music its config names (``sounds.txt``), and its folders.

The lab, the render check (a scratch FreeSWITCH per rendered config) and the tests call
:func:`provision`; a deploy provisions the same from the production PKI and sound store.
Every standard prompt of a language folder is spoken by espeak-ng
(:mod:`zpctl.freeswitch.prompts`, docs/PROMPTS.md); any other sound it names (an account's
own recordings, ``accounts/<account>/<id>.wav``, which the account uploads) is a short
silence until it is there, and every hold-music folder holds a quiet tone, so a config that
names them loads and plays.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from zpctl.freeswitch.prompts import TEXTS, VOICES, Outcome, generate, write_wav
from zpctl.render.freeswitch import NAMES_FOLDER

log = logging.getLogger(__name__)

NAMES_LANGUAGE = "en-US"  # the voice that speaks the directory's names
# Hold music is a quiet tone of this frequency (Hz), so that a test can tell it from silence.
MUSIC_HZ = 440.0
# Threads that speak prompts at once: espeak-ng runs in its own process, the resampling
# holds the GIL, so more threads than cores gain nothing.
WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class SwitchFiles:
    """Where one switch's files go: its rendered ``freeswitch`` folder, its state folder
    (``zp_sounds``, ``zp_music``, ... of vars.xml live under ``<state>/freeswitch``) and
    the TLS folder its sofia profile names (``tls-cert-dir``)."""

    conf: Path
    state: Path
    tls: Path


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


def provision(files: SwitchFiles, agent_pem: bytes, ca_pem: bytes) -> dict[str, Outcome]:
    """Write a switch's TLS files (``agent.pem`` = certificate + key, ``cafile.pem`` = the
    CA its peers' certificates chain to; 0600), a sound for every prompt and hold-music
    folder of its ``sounds.txt`` and its state folders.  Returns how each spoken prompt
    (path under the sounds folder) was made; other sounds are written only when missing."""
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
    outcomes = speak(base / "sounds", prompts)
    for prompt in prompts:
        path = base / "sounds" / prompt
        if prompt not in outcomes and not path.exists():
            write_wav(path, 0.3)
    for folder in music:
        path = base / "music" / folder / "tone.wav"
        if not path.exists():
            write_wav(path, 2.0, MUSIC_HZ)
    return outcomes


def speak(folder: Path, prompts: list[str]) -> dict[str, Outcome]:
    """Have espeak-ng speak every prompt of ``prompts`` (``<language>/<path>`` under
    ``folder``) that :data:`~zpctl.freeswitch.prompts.TEXTS` has a text for, and every name
    of the dial-by-name directory (``names/<name>.wav``), replacing what
    is there if it differs (``folder``'s language folders are zpctl's); log the languages
    that got the English voice or silence.  Returns how each was made."""
    jobs = [(p, lang, TEXTS[rest]) for p in prompts
            for lang, _, rest in [p.partition("/")] if lang in VOICES and rest in TEXTS]
    # the dial-by-name directory's names (names/<name>.wav): the name itself, in English
    jobs += [(p, NAMES_LANGUAGE, rest.removesuffix(".wav")) for p in prompts
             for folder, _, rest in [p.partition("/")] if folder == NAMES_FOLDER and rest]
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="zpctl-prompts") as pool:
        made = list(pool.map(lambda job: generate(folder / job[0], job[2], job[1]), jobs))
    outcomes = {p: o for (p, _, _), o in zip(jobs, made, strict=True)}
    degraded = Counter((lang, o) for (_, lang, _), o in zip(jobs, made, strict=True)
                       if o != Outcome.SPOKEN)
    for (lang, outcome), n in sorted(degraded.items()):
        log.warning("%s: %d prompts %s (%s)", folder / lang, n, outcome,
                    "no espeak-ng voice that reads the texts" if outcome == Outcome.ENGLISH_FALLBACK
                    else "espeak-ng is not installed or failed")
    return outcomes
