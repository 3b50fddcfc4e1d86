"""Every exit code documented in docs/CLI.md, produced by a real command.

Mapping (code: where it is produced):

- 0 ok: ``inventory validate``, ``deploy history`` with no deploy yet (here)
- 1 internal error: only for a bug: an unexpected exception (here); and no library code
  raises a plain ``ZpctlError`` (default code 1) for a user's mistake (checked here, with the
  known leftovers listed in ``PLAIN_LEFTOVERS``)
- 2 usage: a bad option, ZPCTL_OUTPUT naming no format, no lab and no --db (here)
- 3 invalid inventory: a schema problem, a missing path, a file that is not UTF-8 (here)
- 4 render failed: tests/unit/test_freeswitch_validate.py::
  test_zpctl_render_fails_with_exit_4_on_a_violation (a template FreeSWITCH would misread)
- 5 deploy failed: tests/integration/test_deploy_check_unreachable.py (real Ansible, hosts
  refusing SSH) and tests/integration/test_deploy.py
- 6 remote error: tests/unit/test_cli_switch_calls.py::test_unreachable_and_wrong_password
  (ESL password refused by the switch)
- 7 unreachable: ``switch status`` against a closed ESL port (here)
- 8 SLO breached: tests/integration/test_loadtest.py::test_slo_breach_exits_8 (needs the lab)
- 9 environment: ``render --out`` a folder that is not a zpctl build, an inventory file that
  cannot be read (a folder, a FIFO, a broken link) (here; more in test_cli_render_safety.py)
- 130 interrupted: SIGINT to a running ``zpctl exporter`` (here)
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from zpctl.cli.main import cli, main
from zpctl.errors import ExitCode

REPO = Path(__file__).parents[2]
LAB = REPO / "inventories" / "lab"
SWITCH_MINI = Path(__file__).parent / "fixtures" / "switch-mini"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    copy = tmp_path / "inv"
    shutil.copytree(LAB, copy)
    return copy


def test_documented_codes_are_the_enum() -> None:
    table = (REPO / "docs" / "CLI.md").read_text().split("## Exit codes", 1)[1]
    documented = {int(line.split("|")[1]) for line in table.splitlines()
                  if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert documented == {int(c) for c in ExitCode}


def test_0_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, "inventory", "validate", str(LAB))[0] == ExitCode.OK
    # No deploy yet: an empty history, not "give --platform".
    code, out, err = run(capsys, "-o", "json", "deploy", "history", "--state-dir",
                         str(tmp_path / "none"))
    assert (code, out.strip()) == (ExitCode.OK, "[]")
    assert "no deploy history yet" in err and "--platform" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "deploy", "history", "--state-dir", str(tmp_path / "empty"))
    assert code == ExitCode.OK and "no deploy history yet" in err
    # Rolling back with no deploy says so (a usage mistake, not "give --platform").
    code, _, err = run(capsys, "deploy", "rollback", "--state-dir", str(tmp_path / "none"))
    assert code == ExitCode.USAGE and "no deploy recorded yet" in err


@pytest.fixture
def broken_command() -> Iterator[None]:
    @click.command("zz-bug")
    def bug() -> None:
        raise RuntimeError("a bug")

    cli.add_command(bug)
    yield
    cli.commands.pop("zz-bug")


def test_1_only_for_a_bug(broken_command: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "zz-bug")
    assert code == ExitCode.ERROR
    assert "internal error (a bug" in err


# Files allowed to raise a plain ZpctlError(...) (exit 1: a bug): none.  A new plain one,
# a user error dressed as a bug, fails this test.
PLAIN_LEFTOVERS: dict[str, int] = {}


def _plain_raises(path: Path) -> int:
    tree = ast.parse(path.read_text())
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.Call)
               and getattr(n.func, "id", None) == "ZpctlError" and len(n.args) < 2
               and not n.keywords)


def test_1_is_never_the_code_of_a_user_error() -> None:
    found = {str(p.relative_to(REPO)): n for p in sorted((REPO / "zpctl").rglob("*.py"))
             if (n := _plain_raises(p))}
    assert found == PLAIN_LEFTOVERS


def test_2_usage(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "render", str(LAB), "--no-such-option")[0] == ExitCode.USAGE
    monkeypatch.setenv("ZPCTL_OUTPUT", "xml")
    code, _, err = run(capsys, "inventory", "validate", str(LAB))
    assert code == ExitCode.USAGE
    assert "ZPCTL_OUTPUT" in err and "'-o'" not in err
    monkeypatch.delenv("ZPCTL_OUTPUT")
    code, _, err = run(capsys, "accounts", "sync", str(LAB), "--lab-dir", str(tmp_path / "x"))
    assert code == ExitCode.USAGE and "neither --db nor --platform given" in err


def test_3_invalid_inventory(capsys: pytest.CaptureFixture[str], inv: Path,
                             tmp_path: Path) -> None:
    code, _, err = run(capsys, "inventory", "validate", str(tmp_path / "nowhere"))
    assert code == ExitCode.INVALID_INVENTORY
    assert "does not exist" in err
    dc = sorted((inv / "datacenters").iterdir())[0]
    dc.write_bytes(dc.read_bytes() + b"# caf\xe9\n")  # Latin-1, not UTF-8
    code, _, err = run(capsys, "inventory", "validate", str(inv))
    assert code == ExitCode.INVALID_INVENTORY
    assert f"{dc}: not UTF-8 text" in err


def test_7_unreachable(capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZPCTL_SECRET_ESL_PASSWORD", "any")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, _, err = run(capsys, "switch", "status", str(SWITCH_MINI), "--esl-address",
                       f"127.0.0.1:{closed}", "--timeout", "1")
    assert code == ExitCode.UNREACHABLE, err


def test_9_environment_unreadable_inventory_files(capsys: pytest.CaptureFixture[str],
                                                  inv: Path) -> None:
    """A file the OS will not give us is the machine's problem (exit 9, as docs/CLI.md
    says), not the inventory's; before, such entries were silently skipped (exit 0)."""
    (inv / "datacenters" / "folder.yml").mkdir()
    os.mkfifo(inv / "datacenters" / "fifo.yml")
    (inv / "accounts" / "gone.yml").symlink_to(inv / "accounts" / "missing-target")
    code, _, err = run(capsys, "inventory", "validate", str(inv))
    assert code == ExitCode.ENVIRONMENT, err
    for name in ("datacenters/folder.yml", "datacenters/fifo.yml", "accounts/gone.yml"):
        assert f"{inv / name}: cannot read" in err
    assert run(capsys, "render", str(inv), "--dry-run", "--no-check")[0] == ExitCode.ENVIRONMENT


def test_9_environment_render_into_a_foreign_folder(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    code, _, err = run(capsys, "render", str(LAB), "--no-check", "--out", str(tmp_path))
    assert code == ExitCode.ENVIRONMENT and str(tmp_path) in err
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def _threads_taking(pid: int, sig: signal.Signals) -> list[int]:
    """The threads of ``pid`` that do not block ``sig`` (SigBlk in /proc)."""
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda t: int(t.name)):
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that has ended since (an HTTP handler)
        blocked = next(int(line.split()[1], 16) for line in text.splitlines()
                       if line.startswith("SigBlk:"))
        if not blocked & (1 << (sig - 1)):
            out.append(int(task.name))
    return out


def _signal_state(pid: int) -> list[str]:
    """Each thread's state, wait channel and signal masks, for a failure message."""
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda t: int(t.name)):
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread has ended since
        status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        keep = ("Name", "State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
        wchan = (task / "wchan").read_text() if (task / "wchan").exists() else "?"
        out.append(f"{task.name}: " + ", ".join(f"{k}={status.get(k, '').strip()}" for k in keep)
                   + f", wchan={wchan}")
    return out


def test_130_interrupted(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    zpctl = Path(sys.executable).parent / "zpctl"
    # As from a terminal: SIGINT handled, whatever this test runner inherited.  A shell's
    # background job ignores SIGINT, an ignored SIGINT stays ignored across exec, and
    # Python then installs no KeyboardInterrupt handler; a handled one is reset to the
    # default in the child, where Python installs its own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([str(zpctl), "exporter", str(LAB), "--listen",
                                 f"127.0.0.1:{port}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
        # Only the main thread may take Ctrl-C: one delivered to another thread (the ESL
        # reader, the HTTP server) leaves the main thread asleep (a CI run waited 30 s).
        # The port accepts a moment before the main thread unblocks SIGINT: wait for some
        # thread to take it, then it must be the main thread alone.
        taking: list[int] = []
        while time.monotonic() < deadline and not taking:
            taking = _threads_taking(proc.pid, signal.SIGINT)
            time.sleep(0.05)
        assert taking == [proc.pid], _signal_state(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGINT did not stop the exporter in 30 s: {_signal_state(proc.pid)}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "interrupted" in err


def test_9_an_unreadable_secrets_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "secrets.yml").mkdir(mode=0o700)
    code, _, err = run(capsys, "render", str(LAB), "--secrets", str(tmp_path / "secrets.yml"),
                       "--dry-run", "--no-check")
    assert code == ExitCode.ENVIRONMENT
    assert "cannot read the secrets file" in err


def test_6_not_7_when_every_failed_node_answered_with_an_error() -> None:
    from zpctl.control import not_up, unanswered  # noqa: PLC0415

    rows = [{"node": "a", "state": "up"}, {"node": "b", "state": "error (bad)"}]
    assert not_up(rows).exit_code == ExitCode.REMOTE_ERROR  # type: ignore[union-attr]
    rows.append({"node": "c", "state": "down (refused)"})
    assert not_up(rows).exit_code == ExitCode.UNREACHABLE  # type: ignore[union-attr]
    assert unanswered([{"proxy": "p", "error": "error (x)"}]).exit_code == 6  # type: ignore[union-attr]
    assert unanswered([{"proxy": "p", "error": "not answering (t)"}]).exit_code == 7  # type: ignore[union-attr]
