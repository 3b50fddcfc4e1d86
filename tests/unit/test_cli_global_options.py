"""-o/--output, -v/--verbose and --debug mean the same before and after any subcommand.

SREs write `zpctl lab status -o json` as often as `zpctl -o json lab status`.  Every command
is checked to accept the options after it; every command that prints data without a running
lab is run both ways and must print the same bytes, in the format asked for.  The commands
that need a running lab are run both ways in tests/integration/test_control_cli.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from tests.cli_tree import command, leaves
from tests.conftest import INVENTORIES
from zpctl.cli.main import main


@pytest.mark.parametrize("path", list(leaves()), ids=" ".join)
def test_every_command_takes_the_global_options_after_it(path: tuple[str, ...]) -> None:
    opts = {o for p in command(path).params for o in getattr(p, "opts", [])}
    assert {"-o", "--output", "-v", "--verbose", "--debug"} <= opts


LAB = str(INVENTORIES / "lab")
US01 = str(INVENTORIES / "us01")
# Commands that print data and run without a lab (dry runs print the exact plan).
OFFLINE = [
    ["inventory", "validate", LAB],
    ["inventory", "show", LAB],
    ["inventory", "schema"],
    ["render", LAB, "--dry-run", "--no-check"],
    ["diff", LAB, "--stat"],
    ["accounts", "users", LAB],
    ["accounts", "devices", LAB],
    ["lab", "up", LAB, "--dry-run"],
    ["switch", "status", US01, "--dry-run"],
    ["switch", "pause", US01, "--dry-run"],
    ["calls", "kill", US01, "0f0e-uuid", "--dry-run"],
    ["deploy", "run", LAB, "--dry-run"],
]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("args", OFFLINE, ids=lambda a: " ".join(a[:2]))
def test_output_before_and_after_the_command_is_the_same(
        args: list[str], fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZPCTL_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("ZPCTL_DEPLOY_DIR", str(tmp_path / "deploy"))
    monkeypatch.chdir(tmp_path)  # a default build/ directory lands here
    assert main(["-o", fmt, *args]) == 0
    before = capsys.readouterr().out
    assert main([*args, "-o", fmt]) == 0
    after = capsys.readouterr().out
    assert after == before
    data = json.loads(after) if fmt == "json" else yaml.safe_load(after)
    assert data not in (None, "", [], {})


def test_after_the_command_wins_over_before(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-o", "yaml", "inventory", "validate", LAB, "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    assert main(["inventory", "validate", LAB]) == 0  # table: the default
    assert ": valid — " in capsys.readouterr().out


def test_verbose_after_the_command_raises_the_log_level(
        capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.level
    try:
        assert main(["inventory", "validate", LAB, "-vv"]) == 0
        assert root.level == logging.DEBUG
        assert main(["inventory", "validate", LAB, "-v"]) == 0
        assert root.level == logging.INFO
        assert main(["-v", "inventory", "validate", LAB, "-v"]) == 0
        assert root.level == logging.DEBUG  # counts add up, as -vv would
    finally:
        root.setLevel(saved)


def test_a_bad_format_after_the_command_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "validate", LAB, "-o", "xml"]) == 2
    err = capsys.readouterr().err
    assert "'xml' is not one of 'table', 'json', 'yaml'" in err
    assert "Traceback" not in err
