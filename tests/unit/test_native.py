"""The OpenSSL fork guard (zpctl/native): which Kamailio needs it, how it is built, and
that a forked child of a process running with it gets OpenSSL error state of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zpctl.errors import EnvironmentProblem
from zpctl.native import build_fork_guard, kamailio_version, needs_fork_guard, preload_env

needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler (make install: gcc)")


def _fake_kamailio(tmp_path: Path, says: str) -> str:
    """A program that prints what ``kamailio -v`` would: only its words are under test."""
    path = tmp_path / "kamailio"
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' {says!r}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(("says", "version", "needed"), [
    ("version: kamailio 5.6.3 (x86_64/linux)", (5, 6, 3), True),
    ("version: kamailio 5.7.4 (x86_64/linux) 1a2b3c", (5, 7, 4), True),
    ("version: kamailio 5.7.5 (x86_64/linux)", (5, 7, 5), False),
    ("version: kamailio 6.0.1 (aarch64/linux)", (6, 0, 1), False),
    ("something else entirely", None, True),  # cannot tell: guarded (harmless)
])
def test_which_kamailio_needs_the_guard(tmp_path: Path, says: str,
                                        version: tuple[int, int, int] | None,
                                        needed: bool) -> None:
    binary = _fake_kamailio(tmp_path, says)
    assert kamailio_version(binary) == version
    assert needs_fork_guard(binary) is needed


def test_a_missing_binary_has_no_version(tmp_path: Path) -> None:
    assert kamailio_version(str(tmp_path / "nope")) is None


def test_preload_env_puts_the_guard_first() -> None:
    env = preload_env(Path("/g.so"), {"LD_PRELOAD": "/other.so", "PATH": "/bin"})
    assert env == {"LD_PRELOAD": "/g.so /other.so", "PATH": "/bin"}
    assert preload_env(Path("/g.so"), {})["LD_PRELOAD"] == "/g.so"


@needs_cc
def test_the_guard_is_built_once_per_source(tmp_path: Path) -> None:
    lib = build_fork_guard(tmp_path / "native")
    assert lib.read_bytes()[:4] == b"\x7fELF"
    assert lib.stat().st_mode & 0o777 == 0o644
    mtime = lib.stat().st_mtime_ns
    assert build_fork_guard(tmp_path / "native") == lib
    assert lib.stat().st_mtime_ns == mtime  # not rebuilt
    assert list((tmp_path / "native").iterdir()) == [lib]  # no partial file left


def test_a_failing_compiler_is_an_environment_problem(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/bin/false")
    with pytest.raises(EnvironmentProblem, match="failed"):
        build_fork_guard(tmp_path / "native")
    assert list((tmp_path / "native").iterdir()) == []


# The parent leaves an error on OpenSSL's error queue, forks, and the child reads the
# queue: inherited (the parent's error code) or its own (empty, 0).
_FORK_PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, os
    lib = ctypes.CDLL(ctypes.util.find_library("crypto"))
    lib.ERR_peek_error.restype = ctypes.c_ulong
    lib.ERR_new(); lib.ERR_set_debug(b"probe.c", 1, b"probe"); lib.ERR_set_error(20, 100, None)
    assert lib.ERR_peek_error() != 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, str(lib.ERR_peek_error()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    print(os.read(r, 64).decode())
""")


def _child_sees(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", _FORK_PROBE], env=env, capture_output=True,
                         text=True, timeout=30, check=True)
    return int(out.stdout.strip())


@needs_cc
def test_a_forked_child_gets_openssl_state_of_its_own(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    # Without the guard the child shares the parent's error queue (what Kamailio 5.6's
    # workers do, in shared memory) ...
    assert _child_sees(base) != 0
    # ... with it, the child's queue is its own.
    assert _child_sees(preload_env(build_fork_guard(tmp_path), base)) == 0
