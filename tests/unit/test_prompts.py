"""Voice prompts spoken by espeak-ng (zpctl/freeswitch/prompts.py, docs/PROMPTS.md).

The real espeak-ng speaks: without it these tests skip, or fail when
ZPCTL_REQUIRE_FREESWITCH=1 (CI), as the real-FreeSWITCH tests do.  Each test has its own
cache folder ($XDG_CACHE_HOME), so nothing is shared with a developer's cache.
"""

from __future__ import annotations

import math
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from tests.freeswitch_binary import REQUIRE_ENV, required
from zpctl.freeswitch import prompts
from zpctl.freeswitch.prompts import TEXTS, VOICES, Outcome, generate, write_wav
from zpctl.freeswitch.provision import MUSIC_HZ, SwitchFiles, provision
from zpctl.lab import audio
from zpctl.model.catalog import LANGUAGES
from zpctl.model.pbx import STANDARD_PROMPTS


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "zpctl" / "prompts"


@pytest.fixture
def espeak() -> str:
    binary = prompts.espeak_binary()
    if binary is not None:
        return binary
    if required():
        pytest.fail(f"{REQUIRE_ENV}=1 and espeak-ng is not installed (make install)", pytrace=False)
    pytest.skip("espeak-ng is not installed (make install): the prompt tests did not run")


def _read(path: Path) -> tuple[tuple[int, int, int, int], list[int]]:
    """(channels, bytes per sample, rate, frames) and the samples of a WAV."""
    with wave.open(str(path), "rb") as w:
        params = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
    return params, audio.read_wav(path)


def _rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def test_every_catalog_language_has_a_voice_entry() -> None:
    assert set(VOICES) == set(LANGUAGES)
    assert [lang for lang, voice in VOICES.items() if voice is None] == ["tl"]


def test_every_standard_prompt_has_a_text() -> None:
    assert set(STANDARD_PROMPTS) <= set(TEXTS)
    assert all(TEXTS.values())


def test_every_voice_is_one_espeak_ng_has_and_speaks(espeak: str, tmp_path: Path) -> None:
    listed = {line.split()[1] for line in subprocess.run(
        [espeak, "--voices"], capture_output=True, text=True, check=True).stdout.splitlines()[1:]}
    assert {v for v in VOICES.values() if v is not None} <= listed
    for lang in sorted(VOICES):
        out = tmp_path / lang / "welcome.wav"
        outcome = generate(out, "Welcome.", lang)
        want = (Outcome.ENGLISH_FALLBACK if VOICES[lang] is None or lang in prompts.SPELLS_LATIN
                else Outcome.SPOKEN)
        assert outcome == want, lang
        samples = audio.read_wav(out)
        assert 0.4 < len(samples) / audio.RATE < 1.5, lang  # a word, not one spelled out
        assert _rms(samples) > 1000, lang


def test_a_prompt_is_8khz_mono_16bit_speech_peaking_at_minus_3_dbfs(espeak: str,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "en-US" / "voicemail" / "vm-enter_pass.wav"
    assert generate(out, TEXTS["voicemail/vm-enter_pass.wav"], "en-US") == Outcome.SPOKEN
    (channels, width, rate, frames), samples = _read(out)
    assert (channels, width, rate) == (1, 2, 8000)
    assert 1.5 < frames / 8000 < 5.0
    assert _rms(samples) > 2000  # speech; a silence is 0
    assert max(map(abs, samples)) == pytest.approx(32767 * 10 ** (-3 / 20), abs=2)
    # loud and quiet 20 ms frames alternate (syllables and pauses), unlike a tone
    env = audio.envelope(samples)
    assert min(env) < 0.1 * max(env)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_second_generate_reuses_the_cache_without_running_espeak_ng(
        espeak: str, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = TEXTS["ivr/ivr-thank_you_for_calling.wav"]
    start = time.perf_counter()
    assert generate(tmp_path / "a.wav", text, "de") == Outcome.SPOKEN
    cold = time.perf_counter() - start
    [entry] = cache.iterdir()
    before = entry.stat()

    calls: list[Any] = []
    run = subprocess.run

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return run(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    start = time.perf_counter()
    assert generate(tmp_path / "b.wav", text, "de") == Outcome.SPOKEN
    warm = time.perf_counter() - start
    assert calls == []
    assert [p.name for p in cache.iterdir()] == [entry.name]
    assert (entry.stat().st_mtime_ns, entry.stat().st_ino) == (before.st_mtime_ns, before.st_ino)
    assert (tmp_path / "b.wav").read_bytes() == entry.read_bytes()
    assert warm < cold


def test_a_language_without_a_voice_gets_the_english_one(espeak: str, tmp_path: Path,
                                                         cache: Path) -> None:
    text = TEXTS["voicemail/vm-goodbye.wav"]
    assert generate(tmp_path / "tl.wav", text, "tl") == Outcome.ENGLISH_FALLBACK
    assert generate(tmp_path / "ja.wav", text, "ja") == Outcome.ENGLISH_FALLBACK
    assert generate(tmp_path / "en.wav", text, "en-US") == Outcome.SPOKEN
    assert len(list(cache.iterdir())) == 1  # the same voice and text: one file
    assert (tmp_path / "tl.wav").read_bytes() == (tmp_path / "en.wav").read_bytes()
    assert _rms(audio.read_wav(tmp_path / "tl.wav")) > 1000


def test_without_espeak_ng_a_prompt_is_a_short_silence(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompts, "espeak_binary", lambda: None)
    out = tmp_path / "en-US" / "ivr" / "ivr-welcome.wav"
    assert generate(out, "Welcome.", "en-US") == Outcome.SILENCE
    params, samples = _read(out)
    assert params == (1, 2, 8000, 2400)
    assert not any(samples)


def test_resample_keeps_the_telephone_band_and_drops_what_would_fold_back() -> None:
    def level(hz: float) -> float:
        x = [round(10000 * math.sin(2 * math.pi * hz * i / 22050)) for i in range(11025)]
        y = prompts.resample(x, 22050)
        assert len(y) == 4000
        return _rms([round(v) for v in y[200:-200]]) / (10000 / math.sqrt(2))

    assert level(1000) == pytest.approx(1.0, abs=0.02)
    assert level(3000) > 0.9
    assert level(5000) < 0.01  # would fold back to 3 kHz
    assert level(9000) < 0.01


def test_cache_dir_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert prompts.cache_dir() == tmp_path / "zpctl" / "prompts"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert prompts.cache_dir() == Path.home() / ".cache" / "zpctl" / "prompts"


def test_provision_speaks_standard_prompts_and_keeps_account_recordings(
        espeak: str, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "sounds.txt").write_text("# a comment\nen-US/ivr/ivr-welcome.wav\n"
                                     "tl/voicemail/vm-goodbye.wav\nen-US/ivr/ivr-unknown.wav\n"
                                     "accounts/acme/main-greeting.wav\n"
                                     "accounts/acme/old.wav\nmusic acme/jazz/\n")
    sounds = tmp_path / "state" / "freeswitch" / "sounds"
    # a silence of an earlier provision is replaced; an account's own recording is kept
    welcome = sounds / "en-US" / "ivr" / "ivr-welcome.wav"
    write_wav(welcome, 0.3)
    own = sounds / "accounts" / "acme" / "old.wav"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"the account's recording")
    files = SwitchFiles(conf, tmp_path / "state", tmp_path / "tls")

    outcomes = provision(files, b"agent", b"ca")
    assert outcomes == {"en-US/ivr/ivr-welcome.wav": Outcome.SPOKEN,
                        "tl/voicemail/vm-goodbye.wav": Outcome.ENGLISH_FALLBACK}
    assert _rms(audio.read_wav(welcome)) > 1000
    assert _rms(audio.read_wav(sounds / "tl" / "voicemail" / "vm-goodbye.wav")) > 1000
    for silent in ("en-US/ivr/ivr-unknown.wav", "accounts/acme/main-greeting.wav"):
        assert not any(audio.read_wav(sounds / silent)), silent
    assert own.read_bytes() == b"the account's recording"
    music = audio.read_wav(tmp_path / "state" / "freeswitch" / "music" / "acme" / "jazz" / "tone.wav")
    assert audio.tone_seconds(music, MUSIC_HZ) > 1.5

    first = welcome.stat()
    assert provision(files, b"agent", b"ca") == outcomes
    assert (welcome.stat().st_ino, welcome.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
