"""A REGISTER flood from one address while legitimate users place calls: the lb bans the
flooder (pike, then an htable ban for 5 minutes, packets dropped unanswered) and the
legitimate calls keep succeeding (>= 99 %)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from zpctl import sipp
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

FLOODER = "127.0.55.1"  # outside management_networks and flood_exempt


def test_flood_is_banned_and_legitimate_calls_succeed(zpctl_lab: Lab, tmp_path: Path) -> None:
    # Legitimate phones on addresses that are not exempt from flood limits.
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path / "phones",
                    subnet="127.0.57")
    try:
        phones.answer("1002@acme")
        before = phones.call("1001@acme", "1002", hold_ms=300)  # one call before the flood
        assert before.returncode == 0
        # A user that does not exist: the flood must not lock out a real user (the proxies
        # ban a user after 5 failed authentications, test_auth_bans.py).
        users = sipp.users_csv(tmp_path / "flood.csv",
                               [("9999", "acme.lab.zpctl.test", "wrong-password")])
        flood = sipp.start("register", "127.0.1.1:5060", workdir=tmp_path, name="flood",
                           local_ip=FLOODER, local_port=5700, users=users, calls=6000,
                           rate=800, keys={"expires": "60"}, trace=False, timeout_s=12,
                           extra=["-trace_err", "-error_file", str(tmp_path / "flood.errors")])
        time.sleep(1.0)
        calls = phones.call("1001@acme", "1002", hold_ms=300, calls=50, rate=5, wait_s=60)
        flood.wait(30)
    finally:
        phones.stop_all()
    from zpctl.loadtest import results  # noqa: PLC0415

    legit_stats = results.last_row(calls.stats)
    ok = int(legit_stats.get("SuccessfulCall(C)", 0))
    assert ok / 50 >= 0.99, (legit_stats, calls.errors.read_text()[-800:])
    lb_log = (zpctl_lab.dir / "nodes" / "lab1-lb" / "log" / "kamailio.log").read_text(
        errors="replace")
    assert f"flood from {FLOODER}: banned" in lb_log
    flood_stats = results.last_row(flood.stats)
    answered = int(flood_stats.get("SuccessfulCall(C)", 0))
    # Wrong password: nothing succeeds; and once banned, the flooder hears nothing more.
    assert answered == 0
    assert int(flood_stats.get("TotalCallCreated", 0)) > 1000


def test_scanner_user_agents_are_dropped_and_banned(zpctl_lab: Lab) -> None:
    from zpctl.clients.probes import sip_options  # noqa: PLC0415
    from zpctl.errors import Unreachable  # noqa: PLC0415

    # Before: the source is answered like anyone.
    assert sip_options("127.0.1.1", 5060, source="127.0.56.1").status == 200
    import socket  # noqa: PLC0415

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.56.1", 0))
        s.settimeout(1.5)
        port = s.getsockname()[1]
        s.sendto((f"OPTIONS sip:100@127.0.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.56.1:{port};"
                  "branch=z9hG4bKscan1\r\nFrom: <sip:100@127.0.56.1>;tag=1\r\n"
                  "To: <sip:100@127.0.1.1>\r\nCall-ID: scan-1\r\nCSeq: 1 OPTIONS\r\n"
                  "Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\n"
                  "Content-Length: 0\r\n\r\n").encode(), ("127.0.1.1", 5060))
        with pytest.raises(TimeoutError):
            s.recv(2000)
    # After: banned, even for an ordinary request; other sources are still answered.
    with pytest.raises(Unreachable):
        sip_options("127.0.1.1", 5060, source="127.0.56.1", timeout=1.0)
    assert sip_options("127.0.1.1", 5060, source="127.0.56.2").status == 200
