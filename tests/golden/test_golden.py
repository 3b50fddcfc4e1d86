"""Golden files: the rendered lab, byte for byte.

Regenerate after an intended change with ``ZPCTL_REGEN_GOLDEN=1 make test-unit`` and review
the diff in git.  Secrets files are excluded (their bytes depend on the secrets).
"""

from __future__ import annotations

import difflib
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.model import load_inventory
from zpctl.render import render
from zpctl.secrets import Secrets

GOLDEN = Path(__file__).parent / "lab"
LAB_ROOT = Path("/srv/zpctl-lab")  # fixed, so paths in the files are stable


def _rendered() -> dict[str, bytes]:
    secrets = Secrets(Path("/nonexistent"), {"topoh_mask_key": "golden", "db_password": "golden",
                                              "auth_nonce_secret": "golden"})
    build = render(load_inventory(INVENTORIES / "lab"), secrets, lab_root=LAB_ROOT)
    return {p: f.data for p, f in build.files.items()
            if not p.endswith(("secrets.cfg", "secrets.xml", "/pgpass"))}  # secrets: never in git


def test_lab_matches_golden_files() -> None:
    files = _rendered()
    if os.environ.get("ZPCTL_REGEN_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, data in files.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(data)
        pytest.skip("golden files regenerated; review them with git diff")
    expected = {str(p.relative_to(GOLDEN)): p.read_bytes()
                for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert sorted(files) == sorted(expected), "set of rendered files changed"
    problems = []
    for rel in sorted(files):
        if files[rel] != expected[rel]:
            diff = difflib.unified_diff(expected[rel].decode().splitlines(),
                                        files[rel].decode().splitlines(),
                                        f"golden/{rel}", f"rendered/{rel}", lineterm="", n=2)
            problems.append("\n".join(list(diff)[:40]))
    assert not problems, "rendered files differ from golden files " \
        "(ZPCTL_REGEN_GOLDEN=1 to accept):\n" + "\n\n".join(problems)
