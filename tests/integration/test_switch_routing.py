"""The proxy's routing to the switch tier when no switch answers: in a lab whose switches
were started and then killed, calls are offered to this zone's switches, bounded, and then
take the direct path to the user.  (Calls through switches that answer are every flow of
test_call_flows.py.)
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")


def _switch_lab(dest: Path) -> Path:
    """The lab moved to 127.0.6x/127.1.6x, with two switches in every zone."""
    shutil.copytree(INVENTORIES / "lab", dest)
    (dest / "accounts" / "loadco.yml").unlink()
    for f in dest.rglob("*.yml"):
        text = re.sub(r"127\.(0|1)\.([129])\.", lambda m: f"127.{m[1]}.6{m[2]}.", f.read_text())
        text = text.replace("127.0.53.1", "127.0.53.61")  # the lab's DNS server
        f.write_text(text.replace("127.1.0.5", "127.1.60.5"))  # the switches' database
    for dc in ("lab1", "lab2"):
        f = dest / "datacenters" / f"{dc}.yml"
        n = dc[-1]
        text = f.read_text()
        for zone, z in (("a", "1"), ("b", "2")):
            if f"{dc}-{zone}-switch2" in text:
                continue
            anchor = f"      - {{name: {dc}-{zone}-switch1,"
            sw = (f"      - {{name: {dc}-{zone}-switch2, role: switch, "
                  f"address: 127.0.6{n}.{z}5, mgmt_address: 127.1.6{n}.{z}5}}\n")
            text = text.replace(anchor, sw + anchor)
        f.write_text(text)
    return dest


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    inv = _switch_lab(tmp_path_factory.mktemp("inv") / "lab")
    lab = Lab(tmp_path_factory.mktemp("lab"))
    try:
        lab.up(inv)
        for s in lab.services(lab.inventory(inv)):
            if s.kind == "freeswitch":
                lab.kill(s.name)
        yield lab, inv
    finally:
        lab.down()


def test_calls_fall_back_to_the_direct_path_when_no_switch_answers(
        lab: tuple[Lab, Path], tmp_path: Path) -> None:
    lab_, inv = lab
    loaded = lab_.inventory(inv)
    phones = Phones(loaded, lab_.users(loaded), tmp_path, subnet="127.0.68")
    try:
        phones.answer("1002@acme")
        run = phones.call("1001@acme", "1002", hold_ms=500, calls=3, rate=1, wait_s=60)
        assert run.returncode == 0, run.errors.read_text()[-600:]
    finally:
        phones.stop_all()
    logs = "".join((lab_.dir / "nodes" / n / "log" / "kamailio.log").read_text(errors="replace")
                   for n in ("lab1-a-proxy", "lab1-b-proxy"))
    # Each call was offered to switches first (their TLS ports are closed): this zone's two,
    # then one of the sister zone's — three tries, the bound — and then went straight to
    # the user.
    calls: dict[str, list[str]] = {}
    for m in re.finditer(r"switch sip:127\.0\.61\.(\d)(\d):5061;transport=tls unreachable "
                         r"for (\S+)", logs):
        calls.setdefault(m.group(3), []).append(m.group(1))  # the zone digit: 1=a, 2=b
    assert len(calls) == 3, logs[-2000:]
    for cid, zones in calls.items():
        assert len(zones) == 3, (cid, zones)
        assert zones[0] == zones[1] != zones[2], (cid, zones)  # own zone first
        assert f"no switch answered {cid} after 3 tries: direct path" in logs


def test_killed_switches_are_shown_down(lab: tuple[Lab, Path]) -> None:
    lab_, inv = lab
    rows = [r for r in lab_.status(inv) if r["role"] == "switch"]
    assert len(rows) == 8
    assert all(r["state"] == "down" and r["sessions"] is None for r in rows), rows
