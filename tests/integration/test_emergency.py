"""Emergency calling through the running lab (docs/EMERGENCY.md), proven at the far end.

- A call to 911, dialled with and without the outside-line prefix, from a user with a
  calling plan and from one without: the lab's answering point (SIPp, psap.xml) answers
  only a call that carries the site's PIDF-LO, Geolocation and a callback number; the
  caller hears it; RTP is counted both ways at its address; the call records have the
  whole journey, flagged emergency.
- Priority: an emergency call succeeds during an INVITE flood that is being banned (even
  from the banned address), during a zone drain, with every switch at its session limit,
  and with the account at its concurrent-call limit; an ordinary call in the same
  situation does not.
- Callback: the answering point calls the callback number back and reaches the phone
  that made the emergency call, past always-forwarding and do-not-disturb.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.freeswitch_binary import require_freeswitch
from tests.integration.test_flood import InviteFlood
from zpctl.control import Control
from zpctl.errors import RemoteFailure
from zpctl.freeswitch.emergency import Spool, SpoolRow, spool_path
from zpctl.lab import Lab
from zpctl.lab.emergency import (
    SecurityDesk,
    check_notice,
    desk_url,
    emergency_call,
    emergency_callback,
    psap,
    psap_records,
)
from zpctl.lab.features import FeatureLab
from zpctl.lab.sipua import Ua
from zpctl.model.schema import Node, Role
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

# Outside the lab's flood_exempt networks: the lb rate-limits and bans these (and no other
# test file uses them: a ban lasts 5 minutes, and this file lifts its own at the end).
FLOODER = "127.0.59.1"
BYSTANDER = "127.0.59.2"


@pytest.fixture
def fl(zpctl_lab: Lab) -> FeatureLab:
    require_freeswitch()
    return FeatureLab(zpctl_lab)


@pytest.fixture
def control(zpctl_lab: Lab) -> Control:
    return Control(zpctl_lab.inventory(), secrets_file=zpctl_lab.dir / "secrets.yml")


def _ok(out: object) -> None:
    assert out.ok, out.row()


@pytest.mark.parametrize(("caller", "dial"), [("1001@acme", "9911"), ("1003@acme", "911")],
                         ids=["prefix-9-with-plan", "direct-without-plan"])
def test_emergency_call_reaches_the_answering_point_with_its_location(
        fl: FeatureLab, caller: str, dial: str) -> None:
    out = emergency_call(fl, caller, dial)
    print(f"\n{out.flow} {caller} {dial}: {out.detail}")
    _ok(out)


def test_the_answering_point_refuses_a_call_without_location(fl: FeatureLab) -> None:
    """The check is real: an INVITE straight from the emergency carrier's side with no
    Geolocation gets 424 from the simulated answering point."""
    point = psap(fl)
    from zpctl.lab.emergency import log_mark  # noqa: PLC0415

    mark = log_mark(fl)
    ua = Ua("127.0.9.22", 5080, "probe", "probe", point.address, "", (point.address, point.port),
            media_port=20200)
    try:
        call = ua.dial("911", timeout=10)
        assert call.call.status == 424, (call.call.status, call.call.reason)
    finally:
        ua.close()
    assert [r["result"] for r in psap_records(fl, mark)] == ["REFUSED"]


@pytest.mark.parametrize(("caller", "situation"), [("1005@acme", "forwarded"),
                                                   ("1006@acme", "dnd")])
def test_the_callback_reaches_the_phone_past_its_features(fl: FeatureLab, caller: str,
                                                          situation: str) -> None:
    out = emergency_callback(fl, caller, situation)
    print(f"\n{out.flow}: {out.detail}")
    _ok(out)


# -- priority ----------------------------------------------------------------------------

def _ordinary_call(ua: Ua, number: str = "1002") -> int:
    call = ua.dial(number, timeout=6)
    if call.established:
        call.bye()
    return call.call.status


def _emergency_invites(source: str, lb: tuple[str, int], count: int) -> int:
    """``count`` INVITEs to 911 from ``source``, each a new call with no credentials: how
    many got any answer (a challenge) within 2 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        port = s.getsockname()[1]
        for i in range(count):
            s.sendto((f"INVITE sip:911@acme.lab.zpctl.test SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bKemburst{i};rport\r\n"
                      "Max-Forwards: 70\r\nFrom: <sip:1002@acme.lab.zpctl.test>;tag=b{i}\r\n"
                      "To: <sip:911@acme.lab.zpctl.test>\r\n"
                      f"Call-ID: emburst-{i}-{time.time()}\r\nCSeq: 1 INVITE\r\n"
                      "Content-Length: 0\r\n\r\n").encode(), lb)
        s.settimeout(0.2)
        calls: set[str] = set()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                data = s.recv(4000).decode(errors="replace")
            except TimeoutError:
                continue
            m = re.search(r"Call-ID: (\S+)", data)
            if m and not data.startswith("SIP/2.0 100"):
                calls.add(m.group(1))
    return len(calls)


@pytest.fixture
def lift_bans(control: Control, fl: FeatureLab) -> Iterator[None]:
    yield
    lb = next(p.node for p in fl.inv.nodes() if p.role == Role.LB and p.dc.id == fl.dc.id)
    for table in ("ipban", "empass"):
        for source in (FLOODER, BYSTANDER):
            with contextlib.suppress(RemoteFailure):  # not there: fine
                control.change(lb, "htable.delete", table, source)


def test_priority_during_an_invite_flood_being_banned(fl: FeatureLab, zpctl_lab: Lab,
                                                      lift_bans: None) -> None:
    flood = InviteFlood(FLOODER, fl.lb, rate=800)
    flooder = threading.Thread(target=flood.run, name="invite-flood", daemon=True)
    lb_log = zpctl_lab.dir / "nodes" / "lab1-lb" / "log" / "kamailio.log"
    flooder.start()
    try:
        wait_for("the flooder banned",
                 lambda: f"flood from {FLOODER}: banned" in lb_log.read_text(errors="replace"),
                 timeout=15)
        # A phone behind the flooder's address (one NAT): an ordinary call is dropped
        # with everything else from there, an emergency call goes through.
        u = fl.user("1002@acme")
        behind = Ua(FLOODER, 5062, u.username, u.username, u.domain, u.password, fl.lb,
                    media_port=34900)
        try:
            assert _ordinary_call(behind, "1001") == 0  # no answer at all
        finally:
            behind.close()
        same_nat = emergency_call(fl, "1002@acme", "911", ip=FLOODER, register=False)
        other = emergency_call(fl, "1001@acme", "9911", ip=BYSTANDER)
        # The exception is bounded: a burst of 40 more emergency INVITEs from the banned
        # address gets at most 30 answers in the minute (with the call above's requests).
        burst = _emergency_invites(FLOODER, fl.lb, 40)
    finally:
        flood.stop()
        flooder.join(10)
    print(f"\nflood: {len(flood.sent_at)} INVITEs; behind the banned address: "
          f"{same_nat.detail}; bystander: {other.detail}; a burst of 40 emergency INVITEs "
          f"from the banned address: {burst} answered")
    _ok(same_nat)
    _ok(other)
    assert flood.sent_at and len(flood.sent_at) > 1000, "the flood did not run"
    assert 0 < burst <= 30, burst


@pytest.fixture
def restore_zones(zpctl_lab: Lab, control: Control) -> Iterator[None]:
    yield
    try:
        control.zone_restore("lab1/a")
    finally:
        control.zone_restore("lab1/b")


def test_priority_during_a_zone_drain(fl: FeatureLab, control: Control,
                                      restore_zones: None) -> None:
    # The zone takes no new calls from here on; calls left by earlier tests may stay up.
    control.zone_drain("lab1/a", wait=False)
    out = emergency_call(fl, "1001@acme", "911")
    print(f"\nzone lab1/a drained: {out.detail}")
    _ok(out)


@pytest.fixture
def switches_full(fl: FeatureLab) -> Iterator[list[str]]:
    """Every switch of the lab's first data center at its session limit (max-sessions 1:
    a call's first leg is its one session, so no call can be bridged)."""
    switches = [p for p in fl.inv.nodes() if p.role == Role.SWITCH and p.dc.id == fl.dc.id]
    try:
        for p in switches:
            fl.switch_api("fsctl max_sessions 1", switch=p.name)
        yield [p.name for p in switches]
    finally:
        problems = []
        for p in switches:  # every one, whatever happened to the others
            try:
                fl.switch_api(f"fsctl max_sessions {p.node.capacity.cps * 10}", switch=p.name)
            except Exception as exc:
                problems.append(f"{p.name}: {exc}")
        assert not problems, problems


def test_priority_at_a_full_switch_session_limit(fl: FeatureLab, switches_full: list[str]
                                                 ) -> None:
    with fl.phone("1001@acme") as phone:
        status = _ordinary_call(phone, "+15557770001")
    assert status != 200, "an ordinary PSTN call got through the full switches"
    out = emergency_call(fl, "1001@acme", "911")
    print(f"\nswitches {', '.join(switches_full)} full (ordinary call: {status}): {out.detail}")
    _ok(out)


def _acme_calls(control: Control, node: Node, proxy: str) -> int:
    """What ``node`` holds as acme's calls through ``proxy`` (its own count, or the sister's
    as DMQ brought it); 0 when it holds none."""
    try:
        return int(control.call(node, "htable.get", "acalls", f"acme::{proxy}")["item"]["value"])
    except RemoteFailure:
        return 0


def _dc_proxies(fl: FeatureLab) -> list[Node]:
    return [p.node for p in fl.inv.nodes() if p.role == Role.PROXY and p.dc.id == fl.dc.id]


@pytest.fixture
def account_limit_one(fl: FeatureLab, control: Control) -> Iterator[int]:
    """acme's limit: one call more than it has up now (JSON-RPC, both zone proxies)."""
    proxies = _dc_proxies(fl)
    limit = 1 + sum(_acme_calls(control, n, n.name) for n in proxies)
    try:
        for node in proxies:
            control.change(node, "htable.seti", "acctlimit", "acme", limit)
        yield limit
    finally:
        configured = fl.account("acme").limits.concurrent_calls or 0
        for node in proxies:
            control.change(node, "htable.seti", "acctlimit", "acme", configured)


def test_priority_at_the_account_call_limit(fl: FeatureLab, control: Control,
                                           account_limit_one: int) -> None:
    """acme's limit lowered to one call more than it has (JSON-RPC, both zone proxies):
    with one more call up, the next ordinary call is refused (403) whichever zone proxy
    it reaches, and an emergency call goes through."""
    proxies = _dc_proxies(fl)

    def full_everywhere() -> bool:  # each proxy counts its own and its sister's (DMQ)
        return all(sum(_acme_calls(control, node, q.name) for q in proxies)
                   >= account_limit_one for node in proxies)

    with fl.phone("1002@acme") as bob, fl.phone("1004@acme") as dave, \
            fl.phone("1001@acme") as alice:
        first = alice.dial("1002")
        assert first.established, first.call
        try:
            wait_for("both zone proxies to count the call", full_everywhere, timeout=5)
            second = dave.dial("1001", timeout=6)
            assert second.call.status == 403, (second.call.status, second.call.reason)
            out = emergency_call(fl, "1003@acme", "911")
        finally:
            first.bye()
        assert bob.answered
    print(f"\naccount at its limit (second call {second.call.status} {second.call.reason}): "
          f"{out.detail}")
    _ok(out)



# -- the security desk and the records -----------------------------------------------------

def _spool_row(lab: Lab, call_id: str) -> SpoolRow | None:
    with Spool(spool_path(lab.dir / "state"), create=False) as spool:
        return spool.get(call_id)


def test_the_security_desk_hears_of_it_once_it_is_up(fl: FeatureLab, zpctl_lab: Lab) -> None:
    """The desk is down when the call is made: the notice waits in the spool, tried again,
    and reaches the desk (a real HTTP server at acme's webhook) once it is up, with the
    site, the user and the address."""
    out = emergency_call(fl, "1001@acme", "9911")
    _ok(out)
    call_id = out.facts["call_id"]
    failed = wait_for("a failed delivery attempt", lambda: (
        r if (r := _spool_row(zpctl_lab, call_id)) and r.attempts >= 1 else None), timeout=15)
    assert failed.state == "pending", failed
    time.sleep(2.0)
    with SecurityDesk(desk_url(fl)) as desk:
        notice = desk.notice(call_id, timeout=40)
    check_notice(out, fl, "1001@acme", "9911", notice)
    _ok(out)
    row = wait_for("the notice delivered", lambda: (
        r if (r := _spool_row(zpctl_lab, call_id)) and r.state == "delivered" else None))
    print(f"\nnotice of {call_id}: delivered after {row.attempts} attempts "
          f"({failed.last_error!r} first), {len(desk.notices)} post(s)")
    assert row.attempts >= 2
    assert [n for n in desk.notices if n[1]["call_id"] == call_id] == [notice], \
        "the desk got the notice more than once"


def test_the_call_records_list_emergency_calls_and_call_backs(fl: FeatureLab,
                                                             zpctl_lab: Lab) -> None:
    since = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    out = emergency_callback(fl, "1006@acme", "dnd")
    _ok(out)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "zpctl"), "-o", "json", "cdr", "ls",
         str(zpctl_lab.inventory().root), "--emergency",
         "--since", since.strftime("%Y-%m-%dT%H:%M:%S"), "--lab-dir", str(zpctl_lab.dir)],
        capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = json.loads(result.stdout)
    print(f"\ncdr ls --emergency: {[(c['callee'], c['emergency'], c['result']) for c in calls]}")
    # the flow's emergency call (1006 to 911) and the answering point's call back; the
    # call back placed before the emergency call (busy, ordinary path) is not marked
    assert sorted((c["callee"], c["emergency"]) for c in calls) == [
        ("+15550100005", "callback"), ("911", "US")], calls
    assert all(c["result"] == "answered" for c in calls), calls
