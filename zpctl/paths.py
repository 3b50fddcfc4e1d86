"""Where zpctl finds its data files and keeps its own state (XDG base directories).

Data (templates, Ansible roles, the shipped inventories) lives at the top of the source
tree, where DESIGN.md puts it.  A wheel carries a copy under ``zpctl/_data/`` (setup.py's
build step), so an installed zpctl finds it there; a source checkout or an editable install
finds it in the tree.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
SOURCE_TREE = Path(__file__).resolve().parents[1]
# The folders a wheel copies from the source tree (setup.py keeps the same list: the build
# must not import the package).
DATA_DIRS = ("kamailio", "templates", "freeswitch", "roles", "inventories")
# Where a binary is looked for when it is not on PATH (a root shell without sbin on PATH, a
# FreeSWITCH built from source or installed from ../shared/freeswitch under its own prefix).
BINARY_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/freeswitch/bin")


def find_binary(binary: str, search: str | None = None) -> str | None:
    """The path of ``binary``: on PATH (or on ``search``, a PATH string, instead of PATH
    and :data:`BINARY_DIRS`), else in :data:`BINARY_DIRS`; None when there is none."""
    if search is not None:
        return shutil.which(binary, path=search)
    return shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(BINARY_DIRS))


def data_dir(name: str) -> Path:
    """One of :data:`DATA_DIRS`: the installed copy if there is one, else the source tree's."""
    if name not in DATA_DIRS:
        raise ValueError(f"not a zpctl data folder: {name}")
    packaged = PACKAGE_DATA / name
    return packaged if packaged.is_dir() else SOURCE_TREE / name


def default_inventory() -> Path:
    """The inventory `zpctl lab` runs when given none: ``inventories/lab`` under the current
    directory when there is one (a checkout), else the lab inventory zpctl ships."""
    local = Path("inventories") / "lab"
    return local if (local / "platform.yml").exists() else data_dir("inventories") / "lab"


def state_home() -> Path:
    """The XDG state home: ``$XDG_STATE_HOME``, else ``~/.local/state``."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")


def state_dir(name: str, override_env: str) -> Path:
    """zpctl's state directory ``name``: ``$override_env`` if set, else under :func:`state_home`."""
    env = os.environ.get(override_env)
    if env:
        return Path(env)
    return state_home() / "zpctl" / name
