"""Shared test set-up: secrets in a temporary file, markers by folder."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = REPO / "inventories"


@pytest.fixture(autouse=True, scope="session")
def _secrets_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("ZPCTL_SECRETS", str(tmp_path_factory.mktemp("secrets") / "secrets.yml"))
    # `zpctl render` starts every switch config in a scratch FreeSWITCH where one is
    # installed (seconds per config): only tests/integration/test_render_freeswitch.py,
    # which switches it back on, is about that.
    mp.setenv("ZPCTL_SWITCH_CHECK", "0")
    yield
    mp.undo()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "golden" in parts:
            item.add_marker(pytest.mark.golden)


# Integration tests bind fixed loopback addresses (the lab's 127.0.x.y plan): two pytest
# sessions running them at once would collide.  A session that collected any of them waits
# for this lock; the deploy tests use network namespaces and have their own.
LOOPBACK_LOCK = Path("/run/zpctl-loopback-tests.lock")
_held: list[IO[str]] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any("integration" in Path(str(i.fspath)).parts
               and Path(str(i.fspath)).name != "test_deploy.py" for i in session.items):
        return
    fh = open(LOOPBACK_LOCK, "a+")  # noqa: SIM115 - held for the whole session
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        sys.stderr.write(f"\nwaiting for {LOOPBACK_LOCK} (held by pid {fh.read().strip()})\n")
        fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    _held.append(fh)


def shipped_inventories() -> list[Path]:
    return sorted(p for p in INVENTORIES.iterdir() if (p / "platform.yml").exists())
