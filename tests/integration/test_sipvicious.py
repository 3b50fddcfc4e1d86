"""SIPVicious against the lab's lb: svmap and svwar learn nothing, svcrack finds no
password, and the lab's users keep registering.  (SIPVicious 0.3.3 here sends from the
kernel's default loopback source whatever -b says; that source is in the management
network, so it is dropped but not banned — the ban of a scanner's source is tested from a
non-exempt address in test_flood.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from zpctl.lab import Lab
from zpctl.lab.phones import Phones

pytestmark = pytest.mark.skipif(shutil.which("svmap") is None,
                                reason="sipvicious is not installed (make install)")


def _run(*argv: str) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    return out.stdout + out.stderr


def test_svmap_finds_nothing(zpctl_lab: Lab) -> None:
    # The lb (phones' entry), the sbc's public side (carriers' entry) and even a zone proxy.
    out = _run("svmap", "127.0.1.1", "127.0.1.11", "127.0.1.113")
    assert "found nothing" in out, out[-500:]


def test_svwar_enumerates_nothing(zpctl_lab: Lab) -> None:
    out = _run("svwar", "-e1000-1010", "-m", "REGISTER", "127.0.1.1")
    assert "found nothing" in out, out[-500:]


def test_svcrack_fails_and_users_keep_registering(zpctl_lab: Lab, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    user = next(u for u in zpctl_lab.users() if u.username == "1001")
    words.write_text("1234\npassword\n1001\n" + user.password + "\n")  # even the right one
    out = _run("svcrack", "-u", "1001", "-d", str(words), "127.0.1.1")
    assert "found nothing" in out, out[-500:]
    assert user.password not in out
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path / "p", subnet="127.0.57")
    run = phones.register("1002@acme")
    assert run.returncode == 0
