"""`zpctl render --out DIR` replaces only a folder zpctl wrote, and never loses anything.

Reproduces the SRE's report: a folder with an unrelated notes.txt was wiped ("1 removed"),
a mode-0555 folder was replaced by a new 0755 one, and a read-only place gave exit 4 with
"Device or resource busy" and a stray ``out.tmp``.  Mount points (a folder that cannot be
renamed): tests/integration/test_render_mounts.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zpctl.cli.main import main
from zpctl.errors import EnvironmentProblem, ExitCode
from zpctl.model import load_inventory
from zpctl.render import MANIFEST, check_out_dir, render
from zpctl.secrets import Secrets

INVENTORIES = Path(__file__).parents[2] / "inventories"
LAB = str(INVENTORIES / "lab")


def _render(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", LAB, "--no-check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_refuses_a_folder_with_unrelated_files(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    for extra in ([], ["--dry-run"]):
        code, stdout, err = _render(capsys, "--out", str(out), *extra)
        assert code == ExitCode.ENVIRONMENT, err
        assert str(out) in err and "not a zpctl build" in err
        assert "removed" not in stdout
    assert _tree(out) == {"notes.txt": b"my notes\n"}
    assert _siblings(tmp_path) == ["x"]  # no stray temporary folder


def test_refuses_a_zpctl_build_holding_a_foreign_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    assert _render(capsys, "--out", str(out))[0] == 0
    (out / "lab1-lb" / "notes.txt").write_text("keep me\n")
    before = _tree(out)
    code, _, err = _render(capsys, "--out", str(out))
    assert code == ExitCode.ENVIRONMENT
    assert "lab1-lb/notes.txt" in err
    assert _render(capsys, "--out", str(out), "--dry-run")[0] == ExitCode.ENVIRONMENT
    assert _tree(out) == before
    # Moved away, the build is replaced again as usual.
    (out / "lab1-lb" / "notes.txt").unlink()
    assert _render(capsys, "--out", str(out))[0] == 0
    assert _siblings(tmp_path) == ["b"]


def test_a_fake_or_foreign_manifest_is_not_a_marker(tmp_path: Path) -> None:
    out = tmp_path / "x"
    out.mkdir()
    (out / "data.txt").write_text("x\n")
    for text in ("{}", "not json", json.dumps({"build": "1", "files": {}, "generator": "other"}),
                 json.dumps({"build": 1, "files": []})):
        (out / MANIFEST).write_text(text)
        with pytest.raises(EnvironmentProblem):
            check_out_dir(out)
    (out / MANIFEST).unlink()
    (out / MANIFEST).mkdir()
    with pytest.raises(EnvironmentProblem):
        check_out_dir(out)


def test_replaces_a_previous_build_keeping_the_folder_mode(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    assert _render(capsys, "--out", str(out))[0] == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["generator"] == "zpctl"
    out.chmod(0o750)
    (out / "lab1-lb" / "node.json").write_text("hand edit\n")
    stale = out / "old-host" / "node.json"  # a host the inventory no longer has
    stale.parent.mkdir()
    stale.write_text("{}\n")
    manifest["files"]["old-host/node.json"] = {"sha256": "0", "mode": "0644"}
    (out / MANIFEST).write_text(json.dumps(manifest))
    code, stdout, _ = _render(capsys, "--out", str(out))
    assert code == 0
    assert "1 changed, 1 removed" in stdout
    assert not stale.parent.exists()
    assert (out / "lab1-lb" / "node.json").read_text() != "hand edit\n"
    assert oct(out.stat().st_mode & 0o777) == oct(0o750)
    assert _siblings(tmp_path) == ["b"]


def test_an_empty_folder_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert _render(capsys, "--out", str(out))[0] == 0
    assert (out / MANIFEST).is_file()


def test_read_only_folder_is_refused_and_kept(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    code, _, err = _render(capsys, "--out", str(out))
    assert code == ExitCode.ENVIRONMENT
    assert str(out) in err and "read-only" in err
    assert out.stat().st_mode & 0o777 == 0o555
    assert _siblings(tmp_path) == ["ro"]
    # a new folder below a read-only one
    code, _, err = _render(capsys, "--out", str(out / "sub"))
    assert code == ExitCode.ENVIRONMENT and str(out) in err
    assert list(out.iterdir()) == []


def test_a_file_is_not_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "f"
    target.write_text("data\n")
    code, _, err = _render(capsys, "--out", str(target))
    assert code == ExitCode.ENVIRONMENT and "not a folder" in err
    assert target.read_text() == "data\n"


def test_failure_midway_keeps_the_previous_build(tmp_path: Path) -> None:
    """The new tree cannot be written (a rendered path clashes with a file): the old build
    stays byte for byte and no temporary folder is left."""
    inv = load_inventory(INVENTORIES / "lab")
    build = render(inv, Secrets.load(tmp_path / "secrets.yml"))
    out = tmp_path / "b"
    build.write(out)
    before = _tree(out)
    broken = render(inv, Secrets.load(tmp_path / "secrets.yml"))
    broken.add("lab1-lb/node.json/inside", "x")  # node.json is a file: cannot be a folder too
    with pytest.raises(EnvironmentProblem) as exc:
        broken.write(out)
    assert exc.value.exit_code == ExitCode.ENVIRONMENT and str(out) in exc.value.message
    assert _tree(out) == before
    assert _siblings(tmp_path) == ["b"]
