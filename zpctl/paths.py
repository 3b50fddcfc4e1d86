"""Where zpctl keeps its own state on the machine it runs on (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def state_home() -> Path:
    """The XDG state home: ``$XDG_STATE_HOME``, else ``~/.local/state``."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")


def state_dir(name: str, override_env: str) -> Path:
    """zpctl's state directory ``name``: ``$override_env`` if set, else under :func:`state_home`."""
    env = os.environ.get(override_env)
    if env:
        return Path(env)
    return state_home() / "zpctl" / name
