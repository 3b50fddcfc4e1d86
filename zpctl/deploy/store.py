"""Kept builds and the deploy history of one platform.

Layout of the state directory (default ``~/.local/state/zpctl/deploy/<platform>/``, mode
0700 because builds hold the secrets files)::

    builds/<build-id>/     the rendered tree exactly as shipped, with MANIFEST.json
    seed/<build-id>/       data seeded on first install (the sqlite subscriber database)
    runs/<run>/            one ansible-runner private data dir per Ansible run
    history.jsonl          one record per deploy or rollback
    good.json              the last build that passed its health check, per DC and zone
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from zpctl.errors import ExitCode, ZpctlError
from zpctl.paths import state_dir
from zpctl.render import Build


def default_state_root() -> Path:
    """The deploy state root: ``$ZPCTL_DEPLOY_DIR``, else ``<XDG state home>/zpctl/deploy``."""
    return state_dir("deploy", "ZPCTL_DEPLOY_DIR")


class BuildStore:
    def __init__(self, root: Path, platform: str) -> None:
        self.root = Path(root) / platform
        self.platform = platform

    def _ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def build_dir(self, build_id: str) -> Path:
        return self.root / "builds" / build_id

    def seed_dir(self, build_id: str) -> Path:
        return self.root / "seed" / build_id

    def save(self, build: Build) -> Path:
        """Keep ``build`` under its id (once: a build id is a content hash)."""
        self._ensure()
        out = self.build_dir(build.digest())
        if not (out / "MANIFEST.json").exists():
            build.write(out)
        return out

    def get(self, build_id: str) -> Path:
        out = self.build_dir(build_id)
        if not (out / "MANIFEST.json").exists():
            known = ", ".join(self.builds()) or "none"
            raise ZpctlError(f"no kept build {build_id!r} for {self.platform} (kept: {known})",
                             ExitCode.USAGE)
        return out

    def builds(self) -> list[str]:
        folder = self.root / "builds"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def new_run_dir(self, label: str) -> Path:
        self._ensure()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        n = len(list((self.root / "runs").glob(f"{stamp}-*"))) if (self.root / "runs").exists() else 0
        out = self.root / "runs" / f"{stamp}-{n:02d}-{label}"
        out.mkdir(parents=True)
        return out

    # -- good builds and history ------------------------------------------------------------

    def good(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads((self.root / "good.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def mark_good(self, scope: str, build_id: str) -> None:
        self._ensure()
        good = self.good()
        good[scope] = build_id
        (self.root / "good.json").write_text(json.dumps(good, indent=2, sort_keys=True) + "\n")

    def record(self, entry: dict[str, Any]) -> None:
        self._ensure()
        with open(self.root / "history.jsonl", "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / "history.jsonl").read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
