"""pytest plugin: the lab as a fixture, for zpctl's own tests and for SREs testing theirs.

Loaded automatically when zpctl is installed (entry point ``pytest11``).  Use::

    def test_my_flow(zpctl_lab):
        rows = zpctl_lab.status()
        assert all(r["state"] == "up" for r in rows)

Options: ``--zpctl-inventory PATH`` (default ``inventories/lab``), ``--zpctl-keep-lab``
(leave it running after the session, for debugging).  The lab is started once per session
in a temporary lab directory and torn down at the end; if a binary is missing the tests
that use it are skipped with the reason printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from zpctl.errors import EnvironmentProblem
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.paths import default_inventory, find_binary

REQUIRED_BINARIES = ("kamailio", "rtpengine", "redis-server", "freeswitch")

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 20.0,
             interval: float = 0.2) -> T:
    """Poll ``fn`` until it returns something truthy; fail the test naming ``what`` after
    ``timeout`` seconds, with the last value seen.

    For every state the platform reaches on its own time (a dispatcher probe answered, a
    registration replicated over DMQ, a metric scraped): assert it through this, never by
    reading it once and hoping it is already there.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zpctl")
    group.addoption("--zpctl-inventory", default=None,
                    help="inventory the zpctl_lab fixture runs (default ./inventories/lab, else the "
                         "lab inventory zpctl ships)")
    group.addoption("--zpctl-keep-lab", action="store_true",
                    help="leave the zpctl_lab running after the session")


def missing_binaries(names: tuple[str, ...] = REQUIRED_BINARIES) -> list[str]:
    return [b for b in names if find_binary(b) is None]


@pytest.fixture(scope="session")
def zpctl_lab(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A running lab (session-scoped): started once, torn down cleanly at the end."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"the lab needs {', '.join(missing)} (run `make install`)")
    inventory = Path(request.config.getoption("--zpctl-inventory") or default_inventory())
    lab = Lab(tmp_path_factory.mktemp("zpctl-lab"))
    try:
        lab.up(inventory)
    except EnvironmentProblem as exc:
        lab.down()
        pytest.fail(f"lab did not start: {exc.message}")
    except BaseException:
        lab.down()
        raise
    yield lab
    if not request.config.getoption("--zpctl-keep-lab"):
        lab.down()


@pytest.fixture(autouse=True)
def _zpctl_lab_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that used the lab fails, at teardown, when a Kamailio of the lab logged a
    memory fault or lost a worker to a crash meanwhile: the lines say which node and why,
    where otherwise only the next tests' timeouts would."""
    if "zpctl_lab" not in request.fixturenames:
        yield
        return
    lab: Lab = request.getfixturevalue("zpctl_lab")
    offsets = lab.kamailio_log_sizes()
    yield
    faults = lab.kamailio_faults(offsets)
    if faults:
        pytest.fail("the lab's Kamailio reported faults during this test:\n  "
                    + "\n  ".join(faults[:20]))


@pytest.fixture
def zpctl_phones(zpctl_lab: Lab, tmp_path: Path) -> Iterator[Phones]:
    """SIPp phones against the running lab's first data center; stopped after the test."""
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path)
    yield phones
    phones.stop_all()
