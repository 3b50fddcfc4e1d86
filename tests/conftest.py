"""Shared test set-up: secrets in a temporary file, markers by folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = REPO / "inventories"


@pytest.fixture(autouse=True, scope="session")
def _secrets_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("ZPCTL_SECRETS", str(tmp_path_factory.mktemp("secrets") / "secrets.yml"))
    yield
    mp.undo()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "golden" in parts:
            item.add_marker(pytest.mark.golden)


def shipped_inventories() -> list[Path]:
    return sorted(p for p in INVENTORIES.iterdir() if (p / "platform.yml").exists())
