"""`zpctl render` proves each switch config with FreeSWITCH itself (issue 15, item 4).

Wherever FreeSWITCH is installed, render starts every distinct switch config of the build
in a scratch FreeSWITCH on 127.0.0.1 (zpctl/freeswitch/scratch.py): every module of
modules.conf.xml loaded, the sofia profile RUNNING, no [ERR]/[CRIT] line in its log.  A
config FreeSWITCH rejects is exit 4 with FreeSWITCH's own line, naming switch and file.

Needs a real ``freeswitch`` (tests/freeswitch_binary.py: skipped with the reason printed
without one, a failure when ZPCTL_REQUIRE_FREESWITCH=1 as in CI).  The scratch instances
bind only 127.0.0.1, on ports the kernel hands out (none of the lab's addresses); the file
also runs with ``--noconftest`` (it sets its own secrets file and marker).  About 40 s.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.freeswitch_binary import require_freeswitch
from zpctl.cli import render as cli_render
from zpctl.cli.main import main
from zpctl.errors import ExitCode, RenderError
from zpctl.freeswitch import scratch
from zpctl.render.build import Build

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "tests" / "unit" / "fixtures" / "switch-mini"
SWITCHES = ["lab1-a-switch1", "lab1-b-switch1", "lab2-a-switch1", "lab2-b-switch1"]
MODULES = "freeswitch/autoload_configs/modules.conf.xml"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """FreeSWITCH for the CLI ($ZPCTL_FREESWITCH, as the tests find it) and a secrets file."""
    binary = require_freeswitch()
    mp = pytest.MonkeyPatch()
    mp.setenv(scratch.FREESWITCH_ENV, binary)
    mp.setenv("ZPCTL_SWITCH_CHECK", "1")  # tests/conftest.py turns it off for the others
    root = tmp_path_factory.mktemp("render-fs")
    mp.setenv("ZPCTL_SECRETS", str(root / "secrets.yml"))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def mini_build(env: Path) -> Path:
    """switch-mini rendered and checked by kamailio -c, without the switch check."""
    out = env / "mini-no-switch-check"
    assert main(["render", str(MINI), "--out", str(out), "--no-switch-check"]) == 0
    return out


def _scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("zpctl-fs-*")}


@pytest.fixture
def no_scratch_left() -> Iterator[None]:
    """Every scratch FreeSWITCH folder a test made is gone when the check returns."""
    before = _scratch_folders()
    yield
    assert not _scratch_folders() - before, "scratch folders left behind"


def test_render_starts_every_switch_config_in_freeswitch(
        env: Path, capsys: pytest.CaptureFixture[str], no_scratch_left: None) -> None:
    out = env / "mini"
    code = main(["-o", "json", "render", str(MINI), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    check = result["switch_check"]
    assert check["ran"] is True
    assert check["switches"] == len(SWITCHES)
    _assert_passed(check["configs"])
    assert "[4/4]" in captured.err  # progress on stderr
    # switch-mini's codecs include g729; the FreeSWITCH installed here (../shared/freeswitch,
    # scripts/build-freeswitch.sh) has no mod_g729: a note, not a rejection.
    if not Path("/usr/local/freeswitch/lib/freeswitch/mod/mod_g729.so").exists():
        assert all(c["not_installed_here"] == ["mod_g729"] for c in check["configs"]), check
        assert "not installed in this FreeSWITCH, so not checked here: mod_g729" in captured.out \
            or "mod_g729" in json.dumps(check)


def _assert_passed(configs: list[dict[str, Any]]) -> None:
    assert sorted(s for c in configs for s in c["switches"]) == SWITCHES
    for c in configs:
        assert c["ok"] is True, c
        assert c["profiles"] == ["zpctl"]
        assert c["modules"] >= 20, c  # mod_sofia, mod_callcenter, mod_voicemail, ...


def _corrupt(build: Path, node: str, rel: str, old: str, new: str) -> None:
    path = build / node / "freeswitch" / rel
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_a_config_freeswitch_rejects_is_named_with_freeswitchs_own_line(
        mini_build: Path, tmp_path: Path, no_scratch_left: None) -> None:
    build = tmp_path / "build"
    shutil.copytree(mini_build, build, symlinks=True)
    # A value FreeSWITCH logs as invalid (and replaces with its default), a module it
    # cannot load, and a file it cannot parse (it exits at once).
    _corrupt(build, "lab1-a-switch1", "autoload_configs/voicemail.conf.xml",
             'name="play-date-announcement" value="first"',
             'name="play-date-announcement" value="before"')
    _corrupt(build, "lab1-b-switch1", "autoload_configs/modules.conf.xml",
             '<load module="mod_sofia"/>', '<load module="mod_sofia"/><load module="mod_nonexistent"/>')
    _corrupt(build, "lab2-a-switch1", "dialplan/acme.xml", "</context>", "</contxt>")
    seen: list[str] = []
    results = scratch.check_switch_configs(build, SWITCHES[:3], progress=seen.append)
    assert len(seen) == 3 and all("REJECTED" in s for s in seen), seen
    by_switch = {r.switches[0]: r for r in results}
    assert not any(r.ok for r in results)

    vm = [p for p in by_switch["lab1-a-switch1"].problems if p.field == "play-date-announcement"]
    assert vm, by_switch["lab1-a-switch1"].problems
    assert vm[0].file == f"{build}/lab1-a-switch1/freeswitch/autoload_configs/voicemail.conf.xml"
    assert vm[0].line is not None
    assert "Invalid value [before] for parameter [play-date-announcement]" in vm[0].reason

    mod = [p for p in by_switch["lab1-b-switch1"].problems if p.field == "mod_nonexistent"]
    assert mod, by_switch["lab1-b-switch1"].problems
    assert mod[0].file == f"{build}/lab1-b-switch1/{MODULES}"
    assert "Error Loading module" in mod[0].reason and "mod_nonexistent.so" in mod[0].reason

    (xml,) = by_switch["lab2-a-switch1"].problems
    assert xml.file == f"{build}/lab2-a-switch1/freeswitch/dialplan/acme.xml"
    assert "FreeSWITCH exited at start" in xml.reason
    assert "Cannot Initialize" in xml.reason  # FreeSWITCH's own words

    with pytest.raises(RenderError) as err:
        scratch.raise_for(results)
    assert err.value.exit_code == ExitCode.RENDER_FAILED
    text = err.value.message
    assert "3 switch configs rejected by FreeSWITCH" in text
    for node in SWITCHES[:3]:
        assert f"/{node}/freeswitch/" in text


def test_render_exits_4_with_freeswitchs_line(env: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              no_scratch_left: None) -> None:
    """Through the CLI: a render whose switch configs load a module FreeSWITCH cannot load
    (the XML validator accepts any mod_<name>)."""
    real = cli_render.render

    def broken(*args: object, **kwargs: object) -> Build:
        build = real(*args, **kwargs)  # type: ignore[arg-type]
        for path, f in list(build.files.items()):
            if path.endswith(MODULES):
                build.files[path] = dataclasses.replace(f, data=f.data.replace(
                    b'<load module="mod_sofia"/>',
                    b'<load module="mod_sofia"/><load module="mod_nonexistent"/>'))
        return build

    monkeypatch.setattr(cli_render, "render", broken)
    code = main(["render", str(MINI), "--out", str(env / "broken")])
    err = capsys.readouterr().err
    assert code == ExitCode.RENDER_FAILED, err
    assert "rejected by FreeSWITCH" in err
    for node in SWITCHES:
        assert f"/{node}/{MODULES}" in err
    lines = [ln for ln in err.splitlines() if "mod_nonexistent" in ln]
    assert len(lines) == len(SWITCHES), err
    assert all("FreeSWITCH: [CRIT]" in ln and "Error Loading module" in ln for ln in lines)


def test_no_switch_check_skips_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = env / "skipped"
    assert main(["-o", "json", "render", str(MINI), "--out", str(out),
                 "--no-switch-check"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["switch_check"] == {"ran": False,
                                                        "skipped": "--no-switch-check"}
    assert "scratch FreeSWITCH" not in captured.err
    # --no-check skips every check by a real program, this one too.
    assert main(["-o", "json", "render", str(MINI), "--out", str(out), "--no-check"]) == 0
    assert json.loads(capsys.readouterr().out)["switch_check"] == {"ran": False,
                                                                   "skipped": "--no-check"}


def test_without_freeswitch_render_says_so_and_goes_on(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(scratch, "freeswitch_binary", lambda: None)
    assert main(["-o", "json", "render", str(MINI), "--out", str(env / "no-fs")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["switch_check"] == {"ran": False,
                                                        "skipped": "FreeSWITCH is not installed"}
    assert "switch configs not started in FreeSWITCH: it is not installed" in captured.err
