"""A plain `pip install` of zpctl works away from the source tree.

The wheel is built from a copy of the tree, installed into a new virtualenv, and the copy
is deleted before the installed zpctl runs from an unrelated directory: every template,
SIPp scenario, Ansible role and shipped inventory must come from the wheel.  The new
virtualenv borrows the third-party dependencies of the project's own (a .pth file) so the
test needs no package index; zpctl itself is imported only from the wheel (asserted).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO
from zpctl.model import load_inventory
from zpctl.render import render
from zpctl.secrets import Secrets

SKIP = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                              ".*_cache", ".lab")


def _run(argv: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300,
                         check=False, **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{' '.join(argv)}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a new virtualenv holding only the zpctl wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    shutil.rmtree(src)  # from here on, nothing can be read from a source tree but the repo's
    wheel = next((tmp / "dist").glob("zpctl-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
          "-q", "--no-deps", str(wheel)], cwd=tmp)
    site = Path(_run([str(venv / "bin" / "python"), "-c",
                      "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp)
                .stdout.strip())
    (site / "zz_project_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def test_zpctl_is_imported_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "python"), "-c",
                "import zpctl, zpctl.paths as p, zpctl.sipp as s; "
                "print(zpctl.__file__); print(p.data_dir('kamailio')); print(s.SCENARIOS)"],
               cwd=tmp_path).stdout.split()
    venv = str(installed.parent)
    assert all(line.startswith(venv) for line in out), out
    assert (Path(out[2]) / "uas.xml").exists()


def test_validate_and_render_a_shipped_inventory(installed: Path, tmp_path: Path) -> None:
    inventories = Path(_run([str(installed / "python"), "-c",
                             "from zpctl.paths import data_dir; print(data_dir('inventories'))"],
                            cwd=tmp_path).stdout.strip())
    assert inventories.is_relative_to(installed.parent)
    env = {"PATH": f"{installed}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "ZPCTL_SECRETS": str(tmp_path / "secrets.yml")}
    zpctl = str(installed / "zpctl")
    for name in ("lab", "us01"):
        out = _run([zpctl, "inventory", "validate", str(inventories / name), "-o", "json"],
                   cwd=tmp_path, env=env)
        assert json.loads(out.stdout)["valid"] is True
    out = _run([zpctl, "render", str(inventories / "lab"), "--out", str(tmp_path / "build"),
                "-o", "json"], cwd=tmp_path, env=env)
    result = json.loads(out.stdout)
    assert result["failures"] == []
    assert result["kamailio_checked"] is True  # every Kamailio config passed kamailio -c
    # Byte for byte what the source tree renders from the same inventory and secrets.
    mine = render(load_inventory(REPO / "inventories" / "lab"),
                  Secrets.load(tmp_path / "secrets.yml"))
    assert result["build"] == mine.digest()
    # `lab up` with no inventory, away from a checkout, plans the shipped lab inventory and
    # points SIPp at the installed scenarios.
    out = _run([zpctl, "lab", "up", "--dry-run", "-o", "json", "--lab-dir",
                str(tmp_path / "lab")], cwd=tmp_path, env=env)
    commands = " ".join(r["command"] for r in json.loads(out.stdout))
    assert f"{installed.parent}/lib/" in commands  # scenario files from the wheel
    assert "/src/" not in commands
