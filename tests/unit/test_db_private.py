"""The subscriber database holds HA1 hashes (as good as passwords): created private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from zpctl.db import create_sqlite


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the usual umask, under which sqlite3 alone makes a 0644 file
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_a_new_database_is_0600_in_a_new_0700_folder(tmp_path: Path) -> None:
    db = tmp_path / "state" / "subscriber.sqlite"
    create_sqlite(db)
    assert _mode(db) == 0o600
    assert _mode(db.parent) == 0o700


@pytest.mark.usefixtures("umask_022")
def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    """A host's Kamailio may read it through its group (the Ansible role installs 0640)."""
    db = tmp_path / "subscriber.sqlite"
    create_sqlite(db)
    db.chmod(0o640)
    create_sqlite(db)
    assert _mode(db) == 0o640
