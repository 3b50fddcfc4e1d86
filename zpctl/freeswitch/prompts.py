"""The switches' voice prompts, spoken offline by espeak-ng (Debian's ``espeak-ng`` package).

No FreeSWITCH sound pack can be downloaded here, so :func:`provision
<zpctl.freeswitch.provision.provision>` has espeak-ng speak each prompt of :data:`TEXTS`
once per language folder.  How it works: :func:`generate` picks the language's voice from
:data:`VOICES`, runs ``espeak-ng -w`` (22050 Hz), resamples the result to 8 kHz with a
windowed-sinc filter (pure Python: a telephone band with little aliasing), normalises its
peak to -3 dBFS and keeps it in a content-addressed cache (``$XDG_CACHE_HOME/zpctl/prompts``,
keyed by voice, speed, text, espeak-ng version and :data:`VERSION`), so a lab that starts
again copies files instead of running espeak-ng.  Every file is written to a temporary name
and renamed, so a switch never reads half a prompt.

The texts are English.  Translations are out of scope: a language other than English has
the English text spoken with that language's voice (docs/PROMPTS.md: how that sounds), and
an account's own recordings (``pbx.prompts``, ``accounts/<account>/<id>.wav``) replace any
prompt its menus name.  A language with no espeak-ng voice (Tagalog), and one whose voice spells Latin
script letter by letter (Japanese, Hebrew), gets the English voice; without espeak-ng a
prompt is a short silence.  :func:`generate` says which of the three happened
(:class:`Outcome`) so the caller can report it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import wave
from array import array
from collections.abc import Callable, Sequence
from enum import StrEnum
from operator import mul
from pathlib import Path

from zpctl.paths import find_binary

log = logging.getLogger(__name__)

RATE = 8000  # Hz: every prompt is 16-bit mono at the switches' narrowband rate


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


# Bump when the audio this module makes changes for the same voice and text (filter, level,
# format): the cache key includes it, so old entries are not reused.
VERSION = "1"
SPEED = 150  # words per minute (espeak-ng's default is 175): clearer on a phone line
PEAK_DBFS = -3.0
SILENCE_SECONDS = 0.3
ENGLISH = "en-us"  # the voice of the English fallback

# espeak-ng voice (what `espeak-ng -v` takes; `espeak-ng --voices` lists them) of every
# language code of zpctl.model.catalog.LANGUAGES; None: espeak-ng has no voice for it.
# Each was checked by synthesising a word with espeak-ng 1.51 (Debian 12).
VOICES: dict[str, str | None] = {
    "ar": "ar", "bn": "bn", "ca": "ca",
    "zh-HK": "yue",  # Cantonese
    "zh-TW": "cmn", "zh-CN": "cmn",  # Mandarin (the script does not change the voice)
    "cs": "cs", "da": "da", "nl": "nl", "en-US": "en-us", "en-GB": "en-gb", "et": "et",
    "fi": "fi",
    "fr-CA": "fr-fr",  # no Canadian French voice: French (France)
    "fr-FR": "fr-fr", "de": "de", "el": "el", "he": "he", "hi": "hi", "hu": "hu", "id": "id",
    "it": "it", "ja": "ja", "ko": "ko", "ms": "ms", "fa": "fa", "pl": "pl", "pt-BR": "pt-br",
    "pt-PT": "pt", "ro": "ro",
    "es-US": "es-419",  # Spanish (Latin America)
    "es-ES": "es", "sv": "sv",
    "tl": None,  # no Tagalog (Filipino) voice in espeak-ng 1.51
    "ta": "ta", "te": "te", "th": "th", "tr": "tr", "vi": "vi", "uk": "uk",
}

# Languages whose espeak-ng voice spells Latin-script text letter by letter ("Welcome." is
# "double-u, e, l, c, o, m, e"): their English texts are spoken with the English voice.  A
# text in the language's own script would use its voice.
SPELLS_LATIN = frozenset({"ja", "he"})

# The spoken text of every prompt the configs use, keyed by its path under a language folder:
# zpctl.model.pbx.STANDARD_PROMPTS and the voicemail prompts.  A plain dict: add prompts here.
TEXTS: dict[str, str] = {
    "ivr/ivr-welcome.wav": "Welcome.",
    "ivr/ivr-that_was_an_invalid_entry.wav": "That was an invalid entry.",
    "ivr/ivr-please_try_again.wav": "Please try again.",
    "ivr/ivr-call_being_transferred.wav": "Your call is being transferred.",
    "ivr/ivr-thank_you_for_calling.wav": "Thank you for calling.",
    "ivr/ivr-not_available.wav": "The person you are trying to reach is not available.",
    "ivr/ivr-you_will_be_called_back.wav": "You will be called back.",
    "ivr/ivr-this_call_may_be_recorded.wav": "This call may be recorded.",
    "ivr/ivr-your_call_is_being_placed_in_queue.wav": "Your call is being placed in a queue. "
                                                      "Please hold.",
    "ivr/ivr-closed.wav": "We are closed. Please call again during business hours.",
    "ivr/ivr-holiday.wav": "We are closed for the holiday.",
    "ivr/ivr-call_rejected.wav": "Your call has been rejected.",
    "ivr/ivr-you_are_now_logged_in.wav": "You are now logged in.",
    "ivr/ivr-you_are_now_logged_out.wav": "You are now logged out.",
    "conference/conf-pin.wav": "Please enter the conference PIN, then press pound.",
    "conference/conf-bad-pin.wav": "That PIN is incorrect.",
    "voicemail/vm-goodbye.wav": "Goodbye.",
    "voicemail/vm-enter_id.wav": "Please enter your mailbox number, then press pound.",
    "voicemail/vm-enter_pass.wav": "Please enter your password, then press pound.",
    "voicemail/vm-fail_auth.wav": "Login incorrect.",
    "voicemail/vm-not_available.wav": "The person you are calling is not available. "
                                      "Please leave a message after the tone.",
    "voicemail/vm-record_message.wav": "Record your message after the tone. "
                                       "Press pound when done.",
    "voicemail/vm-you_have.wav": "You have",
    "voicemail/vm-new_messages.wav": "new messages.",
    "voicemail/vm-main_menu.wav": "To listen to new messages, press 1. To exit, press pound.",
    "voicemail/vm-message_saved.wav": "Message saved.",
    "voicemail/vm-locked.wav": "This mailbox is locked. Please contact your administrator.",
    # the dial-by-name directory (mod_directory's phrase macros)
    "directory/dir-enter_person.wav": "Please enter the first three letters of the person's "
                                      "last name, then press pound.",
    "directory/dir-min_digits.wav": "Please enter at least three letters.",
    "directory/dir-no_matching_results.wav": "No names match.",
    "directory/dir-too_many_results.wav": "Too many names match. Please enter more letters.",
    "directory/dir-to_select_entry.wav": "To select this name, press 1. For the next name, "
                                         "press 6. For the previous one, press 4. To search "
                                         "again, press 3.",
    "directory/dir-last_entry.wav": "That was the last name.",
}


class Outcome(StrEnum):
    """What :func:`generate` wrote."""

    SPOKEN = "spoken"  # the language's own voice
    ENGLISH_FALLBACK = "english-fallback"  # the English voice: the language has no usable one
    SILENCE = "silence"  # no espeak-ng (or it failed): a short silence


class SpeechError(Exception):
    """espeak-ng ran but made no usable audio."""


def cache_dir() -> Path:
    """The prompt cache: ``$XDG_CACHE_HOME/zpctl/prompts``, else ``~/.cache/zpctl/prompts``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zpctl" / "prompts"


def espeak_binary() -> str | None:
    """The espeak-ng binary, or None when it is not installed."""
    return find_binary("espeak-ng")


@functools.lru_cache(maxsize=4)
def espeak_version(binary: str) -> str:
    """``espeak-ng --version`` (part of the cache key: another version speaks differently)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30,
                         check=True)
    return out.stdout.strip()


def voice_for(language: str, text: str) -> tuple[str, Outcome]:
    """The espeak-ng voice that speaks ``text`` for ``language``, and whether it is the
    language's own or the English fallback."""
    voice = VOICES.get(language)
    if voice is None or (language in SPELLS_LATIN and text.isascii()):
        return ENGLISH, Outcome.ENGLISH_FALLBACK
    return voice, Outcome.SPOKEN


def cache_key(voice: str, text: str, version: str) -> str:
    """The cache file name (without ``.wav``) of ``text`` spoken by ``voice``."""
    blob = "\0".join((VERSION, version, voice, str(SPEED), text)).encode()
    return hashlib.sha256(blob).hexdigest()


def generate(path: Path, text: str, language: str, cache: Path | None = None) -> Outcome:
    """Write ``text`` spoken in ``language`` to ``path`` (mono 16-bit 8 kHz WAV), through
    the cache (``cache``, by default :func:`cache_dir`); say which voice it took."""
    binary = espeak_binary()
    if binary is None:
        _warn_once("espeak-ng is not installed (make install): the prompts are silences")
        _silence(path)
        return Outcome.SILENCE
    first = voice_for(language, text)
    # the language's voice failing (another espeak-ng build may lack it): the English one
    attempts = [first] + ([(ENGLISH, Outcome.ENGLISH_FALLBACK)] if first[0] != ENGLISH else [])
    for voice, outcome in attempts:
        try:
            cached = _cached(binary, voice, text, cache or cache_dir())
        except (OSError, subprocess.SubprocessError, SpeechError, wave.Error) as e:
            log.warning("espeak-ng -v %s failed for %s: %s", voice, path, e)
            continue
        _place(cached, path)
        return outcome
    _silence(path)
    return Outcome.SILENCE


@functools.cache
def _warn_once(message: str) -> None:
    log.warning("%s", message)


def _cached(binary: str, voice: str, text: str, cache: Path) -> Path:
    """The cache file of ``text`` spoken by ``voice``, made now if it is not there."""
    key = cache_key(voice, text, espeak_version(binary))
    cached = cache / f"{key}.wav"
    if cached.exists():
        return cached
    with _lock(key):  # two languages sharing a voice: one espeak-ng run, not two
        if not cached.exists():
            _synthesise(binary, voice, text, cached)
    return cached


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _lock(key: str) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


def _synthesise(binary: str, voice: str, text: str, cached: Path) -> None:
    """Speak ``text`` with ``voice`` into ``cached`` (8 kHz, trimmed, normalised)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zpctl-espeak-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run([binary, "-v", voice, "-s", str(SPEED), "-b", "1", "-w", str(raw),
                        "--stdin"], input=text.encode(), capture_output=True, timeout=60,
                       check=True)
        raw_samples, rate = _read(raw)
    samples = trim(raw_samples, rate)
    out = normalise(resample(samples, rate) if rate != RATE else [float(s) for s in samples])
    if not any(out):
        raise SpeechError(f"espeak-ng -v {voice} made no sound for {text!r}")
    _write_atomic(cached, lambda tmp: _write_wav(tmp, out))


def _read(path: Path) -> tuple[list[int], int]:
    """The samples (first channel) and rate of a 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise SpeechError(f"{path}: {8 * w.getsampwidth()}-bit audio, want 16-bit")
        channels, rate = w.getnchannels(), w.getframerate()
        data = array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        data.byteswap()
    return data.tolist()[::channels], rate


# The resampling filter: a Hann-windowed sinc of HALF taps either side (at the input rate)
# with its -6 dB point at CUTOFF Hz: flat to 3 kHz, -2 dB at 3.4 kHz (the telephone band
# ends there), more than 40 dB down from 4.4 kHz, so little of espeak-ng's 4-11 kHz folds
# back.  48 taps per output sample: the pure-Python loop is most of a prompt's cost.
HALF = 24
CUTOFF = 3700.0
# espeak-ng ends a text with about 0.4 s of silence: keep this much of it (seconds), so
# that prompts played one after another ("You have" 3 "new messages.") do not drag.
TAIL = 0.1


@functools.lru_cache(maxsize=4)
def _kernels(rate: int) -> tuple[tuple[float, ...], ...]:
    """One filter per output phase (polyphase): ``rate`` -> :data:`RATE`."""
    g = math.gcd(rate, RATE)
    up = RATE // g
    fc = min(CUTOFF, RATE / 2) / rate  # cycles per input sample
    kernels = []
    for p in range(up):
        frac = p / up
        taps = []
        for m in range(2 * HALF):
            tau = HALF - 1 - m + frac  # distance from the output instant, in input samples
            x = 2 * fc * tau
            sinc = 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)
            taps.append(sinc * 0.5 * (1 + math.cos(math.pi * tau / HALF)))
        total = sum(taps)
        kernels.append(tuple(t / total for t in taps))
    return tuple(kernels)


def resample(samples: Sequence[int], rate: int) -> list[float]:
    """``samples`` at ``rate`` Hz resampled to :data:`RATE` (low-pass filtered)."""
    g = math.gcd(rate, RATE)
    up, down = RATE // g, rate // g
    count = len(samples) * up // down
    width = 2 * HALF
    # Output n lies between inputs k and k + 1, k = n * down // up, at phase n % up; the
    # pattern repeats every `up` outputs (`down` inputs), so one period's offsets serve all.
    plan = [(kernel, n * down // up + 1) for n, kernel in enumerate(_kernels(rate))]
    padded = [0.0] * HALF + [float(s) for s in samples] + [0.0] * (HALF + down + width)
    out = [sum(map(mul, kernel, padded[base + off:base + off + width]))
           for base in range(0, len(samples) + down, down) for kernel, off in plan]
    return out[:count]


def trim(samples: Sequence[int], rate: int) -> Sequence[int]:
    """``samples`` without the silence before the speech and with :data:`TAIL` after it
    (silence: below 1 % of the peak)."""
    floor = max(map(abs, samples), default=0) // 100
    first = next((i for i, s in enumerate(samples) if abs(s) > floor), None)
    if first is None:
        return samples
    last = next(i for i in range(len(samples) - 1, -1, -1) if abs(samples[i]) > floor)
    return samples[max(0, first - rate // 50):last + int(rate * TAIL)]


def normalise(samples: Sequence[float], dbfs: float = PEAK_DBFS) -> list[int]:
    """``samples`` scaled so that their peak is ``dbfs`` of 16-bit full scale."""
    peak = max(map(abs, samples), default=0.0)
    if not peak:
        return [0] * len(samples)
    scale = min(1.0, 10 ** (dbfs / 20)) * 32767 / peak
    return [round(s * scale) for s in samples]


def _write_wav(path: Path, samples: Sequence[int]) -> None:
    data = array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data.tobytes())


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _silence(path: Path) -> None:
    _write_atomic(path, lambda tmp: write_wav(tmp, SILENCE_SECONDS))


def _place(cached: Path, path: Path) -> None:
    """Copy ``cached`` to ``path`` unless ``path`` already holds the same bytes.  A copy,
    not a hard link: a prompt rewritten in place must not change the cache."""
    try:
        if path.stat().st_size == cached.stat().st_size and \
                path.read_bytes() == cached.read_bytes():
            return
    except FileNotFoundError:
        pass
    _write_atomic(path, lambda tmp: shutil.copyfile(cached, tmp))
