"""Compare a fresh build with the previous one written to a directory."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.render.build import MANIFEST, Build


@dataclass
class BuildDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    patches: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed),
                "changed": len(self.changed)}

    def short(self) -> str:
        s = self.summary()
        return f"{s['added']} added, {s['changed']} changed, {s['removed']} removed"

    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_dict(self, include_patch: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"added": self.added, "removed": self.removed,
                             "changed": self.changed}
        if include_patch:
            d["patches"] = self.patches
        return d

    def text(self, stat: bool = False) -> str:
        lines = [f"A {p}" for p in self.added] + [f"D {p}" for p in self.removed]
        lines += [f"M {p}" for p in self.changed]
        lines.sort(key=lambda s: s[2:])
        if stat or self.empty():
            return "\n".join(lines)
        body = "".join(self.patches[p] for p in sorted(self.patches))
        return "\n".join(lines) + "\n\n" + body


def _old_files(out: Path) -> dict[str, bytes]:
    if not out.is_dir():
        return {}
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def diff_build(build: Build, out: Path) -> BuildDiff:
    """What writing ``build`` to ``out`` would change."""
    old = _old_files(out)
    delta = BuildDiff()
    for path in sorted(set(old) | set(build.files)):
        if path not in old:
            delta.added.append(path)
        elif path not in build.files:
            delta.removed.append(path)
        elif old[path] != build.files[path].data:
            delta.changed.append(path)
            if build.files[path].mode & 0o077 == 0:
                delta.patches[path] = f"--- a/{path}\n+++ b/{path}\n(secret file changed)\n"
                continue
            delta.patches[path] = "".join(difflib.unified_diff(
                old[path].decode("utf-8", "replace").splitlines(keepends=True),
                build.files[path].data.decode("utf-8", "replace").splitlines(keepends=True),
                fromfile=f"a/{path}", tofile=f"b/{path}"))
    return delta
