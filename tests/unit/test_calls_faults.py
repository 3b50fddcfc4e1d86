"""`zpctl calls` and `zpctl switch` when switches do not answer: no hang, honest answers.

The 64 switches of inventories/us01 are pointed (ZPCTL_ESL_OVERRIDE, NAME=HOST:PORT per
switch) at a black hole (a listening socket that never accepts: connections open and then
nothing is said), at a closed port (refused), or at a scripted ESL peer answering with a
real switch's recorded words.  The CLI
runs as a real process so that what asyncio prints on stderr at exit is seen too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.esl_peer import ThreadedEslPeer, recorded
from zpctl.errors import ExitCode
from zpctl.freeswitch import switches
from zpctl.model import load_inventory

REPO = Path(__file__).resolve().parents[2]
US01 = REPO / "inventories" / "us01"
PW = "esl-secret-42"
ZPCTL = str(Path(sys.executable).parent / "zpctl")
NAMES = [p.name for p in switches(load_inventory(US01))]
UUID = "0b0e0c43-1d55-4b7a-9f0d-2a1c5f2f0a11"
ASYNCIO_NOISE = ("Future exception was never retrieved", "Task was destroyed",
                 "Task exception was never retrieved", "Traceback", "Unclosed", "unclosed")


@pytest.fixture
def blackhole() -> Iterator[str]:
    """host:port that accepts TCP connections (kernel backlog) and never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(512)
    yield f"127.0.0.1:{s.getsockname()[1]}"
    s.close()


@pytest.fixture
def closed() -> str:
    """host:port where nothing listens (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def zpctl(*args: str, override: str, timeout: float = 90) -> tuple[int, str, str, float]:
    env = {**os.environ, "ZPCTL_ESL_OVERRIDE": override, "ZPCTL_SECRET_ESL_PASSWORD": PW}
    t0 = time.monotonic()
    p = subprocess.run([ZPCTL, *args], capture_output=True, text=True, env=env,
                       timeout=timeout, check=False)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def every(where: str, **special: str) -> str:
    return ",".join(f"{n}={special.get(n, where)}" for n in NAMES)


def test_us01_has_64_switches() -> None:
    assert len(NAMES) == 64


def test_kill_with_64_silent_switches_ends_at_the_deadline_and_names_them(blackhole: str
                                                                         ) -> None:
    code, _, err, took = zpctl("calls", "kill", str(US01), UUID, "--deadline", "3",
                               override=every(blackhole))
    assert took < 8, f"took {took:.1f} s"
    assert code == ExitCode.UNREACHABLE, err
    assert "reached none of the 64 switches" in err
    assert NAMES[0] in err and NAMES[-1] in err
    assert not [n for n in ASYNCIO_NOISE if n in err], err


def test_kill_with_every_switch_refusing_is_exit_7_not_not_found(closed: str) -> None:
    code, _, err, took = zpctl("calls", "kill", str(US01), UUID, override=every(closed))
    assert took < 8
    assert code == ExitCode.UNREACHABLE, err
    assert "no channel" not in err
    assert "reached none of the 64 switches" in err
    assert not [n for n in ASYNCIO_NOISE if n in err], err


# A switch with no call (FreeSWITCH prints an empty `show ... as json` so, calls or channels).
IDLE = {"show channels as json": recorded("show-calls-idle")}
# A switch with one call: a real switch's two channels of a call from 1001 to 1002.
BUSY = {"show channels as json": recorded("show-channels-call"),
        "show calls as json": recorded("show-calls-call"), "uuid_kill": "+OK\n"}
CALL_LEG = "eb519dfc-d197-4a1f-9357-235fa21c27d3"  # the inbound leg in that recording


def test_kill_not_found_on_the_reached_ones_with_others_unreachable(closed: str) -> None:
    with ThreadedEslPeer(PW, answers=IDLE) as fs:
        code, _, err, _ = zpctl("calls", "kill", str(US01), UUID,
                                override=every(closed, **{NAMES[0]: fs.address,
                                                          NAMES[1]: fs.address}))
    assert code == ExitCode.UNREACHABLE, err
    assert f"no channel {UUID} on the 2 switches reached; 62 unreachable: {NAMES[2]}" in err
    assert not [n for n in ASYNCIO_NOISE if n in err], err


def test_kill_not_found_when_every_switch_answered_is_exit_6() -> None:
    with ThreadedEslPeer(PW, answers=IDLE) as fs:
        code, _, err, _ = zpctl("calls", "kill", str(US01), UUID, override=every(fs.address))
    assert code == ExitCode.REMOTE_ERROR, err
    assert f"no channel {UUID} on the 64 switches reached" in err


def test_kill_finds_the_call_although_other_switches_are_silent(blackhole: str) -> None:
    with ThreadedEslPeer(PW, hostname=NAMES[5], answers=BUSY) as fs:
        code, out, err, took = zpctl("calls", "kill", str(US01), CALL_LEG, "--deadline", "20",
                                     override=every(blackhole, **{NAMES[5]: fs.address}))
        assert code == 0, err
        assert took < 8, f"waited for the silent switches: {took:.1f} s"
        assert f"{NAMES[5]}: api uuid_kill {CALL_LEG} NORMAL_CLEARING" in out
        assert f"api uuid_kill {CALL_LEG} NORMAL_CLEARING" in fs.commands
    assert not [n for n in ASYNCIO_NOISE if n in err], err


def test_switch_status_with_silent_switches_says_nothing_of_asyncio(blackhole: str) -> None:
    code, _, err, took = zpctl("switch", "status", str(US01), "--zone", "us-east-ny",
                               "--timeout", "1", override=every(blackhole))
    assert code == ExitCode.UNREACHABLE, err
    assert took < 8
    assert not [n for n in ASYNCIO_NOISE if n in err], err


def test_live_commands_say_which_inventory(blackhole: str) -> None:
    _, _, err, _ = zpctl("calls", "ls", str(US01), "--timeout", "0.5", "--zone", "us-east-ny/a",
                         override=every(blackhole))
    assert f"using inventory {US01} (platform us01)" in err


# --- the address guard: a production inventory used from a machine off its network --------

def test_calls_refuse_a_production_address_from_this_machine() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ZPCTL_ESL_OVERRIDE"}
    env["ZPCTL_SECRET_ESL_PASSWORD"] = PW
    t0 = time.monotonic()
    p = subprocess.run([ZPCTL, "calls", "kill", str(US01), UUID], capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    assert p.returncode == ExitCode.ENVIRONMENT, p.stderr
    assert time.monotonic() - t0 < 5
    assert "refusing to contact 10.200." in p.stderr
    assert "10.200.0.0/16" in p.stderr
    assert f"using inventory {US01} (platform us01)" in p.stderr


def test_node_status_refuses_a_production_inventory_from_this_machine() -> None:
    p = subprocess.run([ZPCTL, "node", "status", "--inventory", str(US01)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == ExitCode.ENVIRONMENT, p.stderr
    assert "refusing to contact 10.200." in p.stderr and "10.200.0.0/16" in p.stderr
    assert p.stdout == ""


def test_guard_admits_the_lab_and_refuses_outside_its_networks() -> None:
    from zpctl.control import AddressGuard  # noqa: PLC0415
    from zpctl.errors import EnvironmentProblem  # noqa: PLC0415

    guard = AddressGuard(load_inventory(REPO / "inventories" / "lab"))
    guard.check("127.1.1.11")  # the lab's management addresses, from 127.0.0.1
    with pytest.raises(EnvironmentProblem, match=r"10\.0\.0\.1.*outside platform"
                                                 r"\.management_networks \(127\.0\.0\.1/32, "
                                                 r"127\.1\.0\.0/16\)"):
        guard.check("10.0.0.1", "somenode")
