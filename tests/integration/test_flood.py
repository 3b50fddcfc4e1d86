"""A REGISTER flood and an INVITE flood, each from one address, while legitimate users place
calls: the lb bans the flooder (pike, then an htable ban for 5 minutes, packets dropped
unanswered) and the legitimate calls keep succeeding (>= 99 %)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
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
INVITE_FLOODER = "127.0.55.2"  # another one: a ban lasts 5 minutes
LB = ("127.0.1.1", 5060)


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


@dataclass
class InviteFlood:
    """INVITEs from one address at ``rate`` per second until stopped, each a new call (new
    Call-ID, no credentials, never ACKed): what a toll-fraud scanner or a broken PBX sends.
    Records when each INVITE left and which were answered."""

    source: str
    target: tuple[str, int]
    rate: int
    sent_at: list[float] = field(default_factory=list)
    answered: dict[int, set[int]] = field(default_factory=dict)  # index -> statuses heard
    start: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _invite(self, i: int, port: int) -> bytes:
        sdp = (f"v=0\r\no=- {i} 1 IN IP4 {self.source}\r\ns=-\r\nc=IN IP4 {self.source}\r\n"
               "t=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        return (f"INVITE sip:1002@acme.lab.zpctl.test SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.source}:{port};branch=z9hG4bKinvflood{i};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:9999@acme.lab.zpctl.test>;tag=flood{i}\r\n"
                "To: <sip:1002@acme.lab.zpctl.test>\r\n"
                f"Call-ID: invflood-{i}\r\nCSeq: 1 INVITE\r\n"
                f"Contact: <sip:9999@{self.source}:{port}>\r\n"
                "Content-Type: application/sdp\r\n"
                f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.source, 0))
            s.setblocking(False)
            port = s.getsockname()[1]
            self.start = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - self.start) * self.rate)
                while len(self.sent_at) < due:
                    s.sendto(self._invite(len(self.sent_at), port), self.target)
                    self.sent_at.append(time.monotonic() - self.start)
                try:
                    while True:
                        self._reply(s.recv(65535))
                except (BlockingIOError, ConnectionRefusedError):
                    pass
                time.sleep(0.005)
            # Stragglers to the last INVITEs (a 407 takes a few ms).
            s.setblocking(True)
            s.settimeout(1.0)
            try:
                while True:
                    self._reply(s.recv(65535))
            except (TimeoutError, ConnectionRefusedError):
                pass

    def _reply(self, data: bytes) -> None:
        first, _, rest = data.partition(b"\r\n")
        marker = b"Call-ID: invflood-"
        if not first.startswith(b"SIP/2.0 ") or marker not in rest:
            return
        index = int(rest.split(marker, 1)[1].split(b"\r\n", 1)[0])
        self.answered.setdefault(index, set()).add(int(first[8:11]))

    def stop(self) -> None:
        self._stop.set()


def test_invite_flood_is_banned_and_legitimate_calls_succeed(zpctl_lab: Lab,
                                                             tmp_path: Path) -> None:
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path / "phones",
                    subnet="127.0.54")
    flood = InviteFlood(INVITE_FLOODER, LB, rate=800)
    flooder = threading.Thread(target=flood.run, name="invite-flood", daemon=True)
    legit_calls = 100
    try:
        phones.answer("1002@acme")
        assert phones.call("1001@acme", "1002", hold_ms=300).returncode == 0
        flooder.start()
        time.sleep(1.0)
        calls = phones.call("1001@acme", "1002", hold_ms=300, calls=legit_calls, rate=10,
                            wait_s=90)
        flood_s = time.monotonic() - flood.start
    finally:
        flood.stop()
        flooder.join(10)
        phones.stop_all()
    from zpctl.loadtest import results  # noqa: PLC0415

    legit_stats = results.last_row(calls.stats)
    ok = int(legit_stats.get("SuccessfulCall(C)", 0))
    sent = len(flood.sent_at)
    last_answered = max((flood.sent_at[i] for i in flood.answered), default=0.0)
    statuses = sorted(set().union(*flood.answered.values()))
    print(f"\nINVITE flood from {INVITE_FLOODER}: {sent} INVITEs in {flood_s:.1f} s "
          f"({sent / flood_s:.0f}/s); answered {len(flood.answered)} (statuses {statuses}), "
          f"the last answered one sent {last_answered:.2f} s after the start; "
          f"legitimate calls {ok}/{legit_calls} ({100 * ok / legit_calls:.0f} %)")
    assert ok / legit_calls >= 0.99, (legit_stats, calls.errors.read_text()[-800:])
    lb_log = (zpctl_lab.dir / "nodes" / "lab1-lb" / "log" / "kamailio.log").read_text(
        errors="replace")
    assert f"flood from {INVITE_FLOODER}: banned" in lb_log
    assert sent / flood_s > 500, "the flooder did not reach its rate"
    # No call from the flooder gets anywhere (no credentials: challenged, never connected;
    # past the lb's admission rate, before pike bans it, shed with 503)...
    assert all(st in (100, 407, 503) for st in statuses), statuses
    # ...and once banned (pike trips within 1-3 sampling units of 2 s) it hears nothing.
    assert last_answered < 6.0
    assert sum(1 for t in flood.sent_at if t > 6.0) > 2000, "the flood ended too soon"
