"""A build: every rendered file by path (bytes and mode), its manifest and id, and writing
it to a folder safely (a previous zpctl build is replaced, anything else refused)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.errors import EnvironmentProblem, RenderError

MANIFEST = "MANIFEST.json"
# The manifest's "generator": the mark of a folder zpctl wrote (and may replace).
MANIFEST_GENERATOR = "zpctl"


@dataclass(frozen=True)
class RenderedFile:
    data: bytes
    mode: int = 0o644


@dataclass
class Build:
    """Every rendered file, by path relative to the build root (``<host>/<file>``)."""

    files: dict[str, RenderedFile] = field(default_factory=dict)

    def add(self, path: str, text: str, mode: int = 0o644) -> None:
        if path in self.files:
            raise RenderError(f"two templates render the same file {path}")
        self.files[path] = RenderedFile(text.encode("utf-8"), mode)

    def hosts(self) -> list[str]:
        return sorted({p.split("/", 1)[0] for p in self.files if "/" in p})

    def digest(self) -> str:
        """Content hash of the whole build, secrets excluded: the build id."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            f = self.files[path]
            if f.mode & 0o077 == 0:
                continue
            h.update(path.encode() + b"\0" + hashlib.sha256(f.data).digest())
        return h.hexdigest()[:16]

    def manifest(self) -> dict[str, Any]:
        return {
            "generator": MANIFEST_GENERATOR,
            "build": self.digest(),
            "files": {p: {"sha256": hashlib.sha256(f.data).hexdigest(), "mode": f"{f.mode:04o}"}
                      for p, f in sorted(self.files.items())},
        }

    def write(self, out: Path) -> None:
        """Write the build to ``out``, replacing a previous zpctl build there and nothing else.

        EnvironmentProblem (exit 9) when ``out`` holds anything zpctl did not write, is
        read-only or cannot be written; the previous build is then left as it was.
        """
        write_build(self, Path(out))

    def fill(self, root: Path) -> None:
        """Write every file and the manifest into the existing, empty directory ``root``."""
        for rel, f in sorted(self.files.items()):
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(f.data)
            os.chmod(target, f.mode)
        (root / MANIFEST).write_text(json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n")


# -- writing a build safely ------------------------------------------------------------------
#
# How it works: a build directory is replaced only when it is one zpctl wrote, i.e. it holds
# a MANIFEST.json of zpctl's shape and nothing but the files that manifest lists (and their
# folders).  Anything else that is not empty (a home directory, /etc/kamailio, a build with a
# user's notes in it) is refused before a byte is written.  The new build is written to a
# hidden temporary sibling, the old one renamed aside, the new one renamed into place and
# only then the old one removed; any failure puts the old one back and removes the
# temporary directories.  A directory that cannot itself be renamed (a mount point) gets
# its contents swapped the same way, inside it.

def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path`` if it is one zpctl wrote (a regular file of its shape)."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("generator", MANIFEST_GENERATOR) != MANIFEST_GENERATOR:
        return None
    files = doc.get("files")
    if not isinstance(doc.get("build"), str) or not isinstance(files, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, dict) and "sha256" in v
               for k, v in files.items()):
        return None
    return doc


def _foreign_entries(out: Path, manifest: dict[str, Any]) -> list[str]:
    """What is in ``out`` that its manifest does not account for (sorted, relative)."""
    files = set(manifest["files"]) | {MANIFEST}
    folders = {str(parent) for f in files for parent in Path(f).parents if str(parent) != "."}
    foreign = []
    for dirpath, dirnames, filenames in os.walk(out):
        base = Path(dirpath).relative_to(out)
        for name in dirnames:
            rel = str(base / name)
            if rel not in folders or (Path(dirpath) / name).is_symlink():
                foreign.append(rel + "/")
        dirnames[:] = [d for d in dirnames if str(base / d) in folders]
        foreign += [str(base / n) for n in filenames if str(base / n) not in files
                    or not (Path(dirpath) / n).is_file() or (Path(dirpath) / n).is_symlink()]
    return sorted(foreign)


def _read_only(path: Path) -> bool:
    """No write permission, by access(2) or by mode (root may write anywhere, but a folder
    with no write bit, e.g. 0555, says "do not write here")."""
    return not os.access(path, os.W_OK) or stat.S_IMODE(path.stat().st_mode) & 0o222 == 0


def _shown(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_out_dir(out: Path) -> bool:
    """Raise EnvironmentProblem (exit 9) unless a build may be written to ``out``; True when
    there is something to replace there (a previous zpctl build or an empty folder)."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise EnvironmentProblem(f"{out} is a broken symbolic link: refusing to write a build")
    if not out.exists():
        ancestor = out.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise EnvironmentProblem(f"cannot write a build to {out}: {ancestor} is not a folder")
        if _read_only(ancestor):
            raise EnvironmentProblem(f"cannot write a build to {out}: {ancestor} is read-only")
        return False
    if not out.is_dir():
        raise EnvironmentProblem(f"{out} exists and is not a folder: refusing to replace it "
                                 "with a build; choose another --out")
    if _read_only(out):
        mode = stat.S_IMODE(out.stat().st_mode)
        raise EnvironmentProblem(f"cannot write a build to {out}: it is read-only "
                                 f"(mode {mode:04o}); nothing was changed")
    if not os.path.ismount(out) and _read_only(out.resolve().parent):
        raise EnvironmentProblem(f"cannot write a build to {out}: its parent "
                                 f"{out.resolve().parent} is read-only; nothing was changed")
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read {out}: {exc.strerror}") from None
    if empty:
        return True
    manifest = _read_manifest(out / MANIFEST)
    if manifest is None:
        raise EnvironmentProblem(
            f"{out} is not empty and is not a zpctl build (no {MANIFEST} written by zpctl): "
            "refusing to replace it; give --out an empty or new folder")
    foreign = _foreign_entries(out, manifest)
    if foreign:
        raise EnvironmentProblem(
            f"{out} is a zpctl build but holds files zpctl did not write: {_shown(foreign)}; "
            "refusing to replace it (move them away, or give --out another folder)")
    return True


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` (mode from the umask, like mkdir)."""
    while True:
        path = parent / f"{prefix}{os.urandom(4).hex()}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _swap_contents(build: Build, out: Path) -> None:
    """Replace what is inside ``out`` (a folder that cannot be renamed, e.g. a mount point):
    the new tree is written inside it, then entries are moved one by one; undone on failure."""
    new = _fresh_dir(out, ".zpctl-new-")
    old = _fresh_dir(out, ".zpctl-old-")
    moved: list[str] = []
    placed: list[str] = []
    try:
        build.fill(new)
        for name in sorted(os.listdir(out)):
            if name not in (new.name, old.name):
                os.rename(out / name, old / name)
                moved.append(name)
        for name in sorted(os.listdir(new)):
            os.rename(new / name, out / name)
            placed.append(name)
    except OSError:
        for name in placed:
            _remove(out / name)
        for name in moved:
            os.rename(old / name, out / name)
        raise
    finally:
        _remove(new)
        _remove(old)


def write_build(build: Build, out: Path) -> None:
    """Write ``build`` to ``out`` (see :meth:`Build.write`)."""
    if out.is_symlink() and out.exists():
        out = out.resolve()
    exists = check_out_dir(out)
    try:
        if exists and os.path.ismount(out):
            _swap_contents(build, out)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = _fresh_dir(out.parent, f".{out.name}.zpctl-new-")
        try:
            build.fill(tmp)
            if not exists:
                os.rename(tmp, out)
                return
            os.chmod(tmp, stat.S_IMODE(out.stat().st_mode))
            old = out.parent / f".{out.name}.zpctl-old-{os.urandom(4).hex()}"
            try:
                os.rename(out, old)
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM):
                    raise
                _remove(tmp)  # out cannot be renamed (a bind mount): swap inside it
                _swap_contents(build, out)
                return
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old, out)
                raise
            _remove(old)
        finally:
            _remove(tmp)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise EnvironmentProblem(f"cannot write the build to {out}: "
                                 f"{exc.strerror or exc}{where}; the previous contents are "
                                 "unchanged") from None
