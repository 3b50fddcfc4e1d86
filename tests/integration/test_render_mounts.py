"""`zpctl render --out DIR` on a mount point: a real tmpfs in a private mount namespace
(``unshare --mount``, so nothing leaks to the machine).  Before the fix the previous build was
deleted, then the rename failed with "[Errno 16] Device or resource busy" (exit 4) and left
``mnt.tmp`` behind; a read-only mount gave the same.  Unit cases: tests/unit/test_cli_render_safety.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LAB = str(Path(__file__).parents[2] / "inventories" / "lab")


SCRIPT = """
import sys
from pathlib import Path
from zpctl.cli.main import main
sys.exit(main(["render", sys.argv[1], "--no-check", "--out", sys.argv[2]]))
"""


def _in_namespace(tmp_path: Path, shell: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    (tmp_path / "render.py").write_text(SCRIPT)
    run = f"{sys.executable} {tmp_path / 'render.py'} {LAB}"
    return subprocess.run(["unshare", "--mount", "sh", "-ec", shell.replace("RENDER", run)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "ZPCTL_SECRETS": str(tmp_path / "secrets.yml")})


def test_mount_point_build_is_replaced_in_place(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _in_namespace(tmp_path, f"""
        mount -t tmpfs none {mnt}
        RENDER {mnt} >/dev/null
        echo stale > {mnt}/lab1-lb/node.json
        RENDER {mnt}
        mountpoint -q {mnt} && echo STILL-MOUNTED
        ls -A {mnt} | grep -c zpctl- || true
        cat {mnt}/lab1-lb/node.json | head -c 1
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert "STILL-MOUNTED" in lines
    assert "1 changed" in proc.stdout
    assert lines[-2:] == ["0", "{"]  # no temporary folder left; the file rendered again


def test_mount_point_with_foreign_files_is_refused(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _in_namespace(tmp_path, f"""
        mount -t tmpfs none {mnt}
        echo mine > {mnt}/notes.txt
        RENDER {mnt} || echo "rc=$?"
        ls -A {mnt}
    """)
    assert "rc=9" in proc.stdout, proc.stderr
    assert proc.stdout.split()[-1] == "notes.txt"
    assert "not a zpctl build" in proc.stderr


def test_read_only_mount_is_exit_9_with_the_path(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _in_namespace(tmp_path, f"""
        mount -t tmpfs none {mnt}
        RENDER {mnt} >/dev/null
        mount -o remount,ro {mnt}
        RENDER {mnt} || echo "rc=$?"
        RENDER {mnt}/sub || echo "rc=$?"
        ls -A {mnt} | grep -c zpctl- || true
    """)
    assert proc.stdout.split()[:2] == ["rc=9", "rc=9"], proc.stderr
    assert proc.stdout.split()[-1] == "0"
    assert str(mnt) in proc.stderr and "read-only" in proc.stderr
    assert "Errno 16" not in proc.stderr and ".tmp" not in proc.stderr
