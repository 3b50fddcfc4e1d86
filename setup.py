"""Build step that makes a wheel self-sufficient (everything else is in pyproject.toml).

zpctl's templates, Ansible roles and shipped inventories live at the top of the source tree
(DESIGN.md's layout).  An installed zpctl must find them without the tree, so the wheel
carries a copy under ``zpctl/_data/``; ``zpctl.paths.data_dir`` looks there first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# Same list as zpctl.paths.DATA_DIRS (kept here too: the build must not import the package).
DATA_DIRS = ("kamailio", "templates", "freeswitch", "roles", "inventories")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the tree itself
            return
        top = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "zpctl" / "_data"
        for name in DATA_DIRS:
            shutil.rmtree(dest / name, ignore_errors=True)
            shutil.copytree(top / name, dest / name, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithData})
