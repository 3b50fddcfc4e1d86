"""The emergency-call notifier (zpctl.freeswitch.emergency): a RECV_MESSAGE event as a real
switch fires it for the proxy's MESSAGE, the payload, the spool, and delivery to a real HTTP
receiver on 127.0.0.1 (up, down then up, refusing, overloaded), over ESL from two scripted
switches that relay the same call.  Retry delays are shortened to a few tens of ms."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import esl_peer
from tests.conftest import INVENTORIES
from tests.esl_peer import EslPeer
from zpctl.cli.main import main
from zpctl.clients.esl import Backoff, SwitchTarget
from zpctl.errors import Unreachable
from zpctl.freeswitch import emergency as em
from zpctl.model import load_inventory
from zpctl.model.emergency import location
from zpctl.model.schema import Inventory, SecurityDesk
from zpctl.protocols import esl

FAST = em.RetryPolicy(initial=0.03, cap=0.1, timeout=2.0)
BODY = {"call_id": "a84b4c76e66710@127.1.1.10", "account": "acme", "site": "acme/hq",
        "user": "1001", "domain": "acme.lab.zpctl.test", "number": "911", "country": "US",
        "callback": "+15550100002", "at": 1772373909, "proxy": "lab1-a-proxy"}


# --- a real HTTP receiver ----------------------------------------------------------------------

class Receiver:
    """A security desk: an HTTP server on 127.0.0.1 that records every request and answers
    with the next status of ``statuses`` (the last one repeats)."""

    def __init__(self, port: int = 0, statuses: tuple[int, ...] = (200,)) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                # header names as urllib sends them (title case): HTTP's are case-insensitive
                owner.requests.append({"path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": json.loads(body)})
                status = owner.statuses.pop(0) if len(owner.statuses) > 1 else owner.statuses[0]
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/desk"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def free_port() -> int:
    """A port nothing listens on (a desk that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Posts to 127.0.0.1 never go through an HTTP proxy of this machine."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def lab() -> Inventory:
    return load_inventory(INVENTORIES / "lab").model


def with_desk(inv: Inventory, url: str | None, account: str = "acme") -> Inventory:
    """``inv`` with ``account``'s security desk at ``url`` (None: without one)."""
    desk = SecurityDesk(webhook=url) if url else None
    accounts = [a.model_copy(update={"security_desk": desk}) if a.id == account else a
                for a in inv.accounts]
    return inv.model_copy(update={"accounts": accounts})


def notice(switch: str = "lab1-a-switch1", **over: Any) -> em.Notice:
    return em.Notice.from_body(json.dumps({**BODY, **over}), switch)


def run(coro_fn: Callable[[], Any], limit: float = 4.5) -> Any:
    async def main_() -> Any:
        return await asyncio.wait_for(coro_fn(), limit)
    return asyncio.run(main_())


async def until(cond: Callable[[], bool], limit: float = 3.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# --- the event ---------------------------------------------------------------------------------

def recv_message(to_user: str = em.NOTICE_USER, body: str = json.dumps(BODY),
                 content_type: str = "application/json") -> list[tuple[str, str]]:
    """The headers of the RECV_MESSAGE a switch fires for the proxy's MESSAGE, in
    FreeSWITCH's order: sofia_presence_handle_sip_i_message builds a MESSAGE event (its
    headers are unique: EF_UNIQ_HEADERS) and fires a copy whose Event-Name is replaced, so
    Event-Name comes last; the MESSAGE's body is the event's body."""
    return [
        ("Core-UUID", "6f1e2a8c-0d4b-4e61-9a55-2b7c3f9d1e04"),
        ("FreeSWITCH-Hostname", "lab1-a-switch1"), ("FreeSWITCH-Switchname", "lab1-a-switch1"),
        ("FreeSWITCH-IPv4", "127.1.1.14"), ("FreeSWITCH-IPv6", "::1"),
        ("Event-Date-Local", "2026-03-01 09:05:09"),
        ("Event-Date-GMT", "Sun, 01 Mar 2026 14:05:09 GMT"),
        ("Event-Date-Timestamp", "1772373909512034"),
        ("Event-Calling-File", "sofia_presence.c"),
        ("Event-Calling-Function", "sofia_presence_handle_sip_i_message"),
        ("Event-Calling-Line-Number", "4912"), ("Event-Sequence", "60721"),
        ("login", "sip:mod_sofia@127.1.1.14:5080"), ("proto", "sip"), ("to_proto", "sip"),
        ("from", "zp-emergency@127.1.1.10"), ("from_user", "zp-emergency"), ("from_host", "127.1.1.10"),
        ("to_user", to_user), ("to_host", "127.1.1.14"), ("from_sip_ip", "127.1.1.10"),
        ("from_sip_port", "5060"), ("to", f"{to_user}@127.1.1.14"),
        ("subject", "SIMPLE MESSAGE"), ("context", "public"), ("type", content_type),
        ("from_full", "<sip:zp-emergency@127.1.1.10>;tag=9f3c1a7e"), ("sip_profile", "internal"),
        ("Event-Name", "RECV_MESSAGE"),
    ]


def decoded(headers: list[tuple[str, str]], body: str, fmt: str = "plain") -> esl.Event:
    """The event as the client's codec reads it off the socket, one byte at a time."""
    parser = esl.FrameParser()
    for b in esl.event_frame(headers, body, fmt):
        parser.receive_data(bytes([b]))
    frame = parser.next_frame()
    assert isinstance(frame, esl.Frame)
    ev = esl.decode_frame(frame)
    assert isinstance(ev, esl.Event)
    return ev


@pytest.mark.parametrize("fmt", ["plain", "json", "xml"])
def test_a_recv_message_event_is_a_notice(fmt: str) -> None:
    body = json.dumps(BODY)
    got = em.parse_event(decoded(recv_message(body=body), body, fmt), "lab1-a-switch1")
    assert got == em.Notice("a84b4c76e66710@127.1.1.10", "acme", "acme/hq", "1001",
                            "acme.lab.zpctl.test", "911", "US", "+15550100002", 1772373909,
                            "lab1-a-proxy", "lab1-a-switch1")
    assert got.site_id == "hq"


def test_other_messages_and_events_are_not_notices() -> None:
    chat = json.dumps({"text": "lunch?"})
    assert em.parse_event(decoded(recv_message("1002", chat, "text/plain"), chat), "s") is None
    ev = esl.Event("CHANNEL_CREATE", esl.Headers.of({"Event-Name": "CHANNEL_CREATE"}))
    assert em.parse_event(ev, "s") is None


def test_a_notice_that_cannot_be_read_is_bad_not_ignored() -> None:
    for body in ("911 from 1001", json.dumps(["x"]), json.dumps({"account": "acme"})):
        with pytest.raises(em.BadNotice):
            em.parse_event(decoded(recv_message(body=body), body), "s")


def test_a_message_from_a_phone_is_not_a_notice() -> None:
    """A phone in a call through a switch can send an in-dialog MESSAGE to zp-emergency:
    FreeSWITCH then adds the channel's data (Unique-ID), and its From is the phone's.
    Neither is a proxy's notice: refused, never delivered (it could page any account's
    desk, or hide a real notice behind its Call-ID)."""
    body = json.dumps(BODY)
    in_call = [*recv_message(body=body), ("Unique-ID", "0b5e0c1e-7f2b-4b39-9a3e-5a0d6b3c2f11")]
    with pytest.raises(em.BadNotice, match="inside call"):
        em.parse_event(decoded(in_call, body), "s")
    phone = [(k, "1001" if k == "from_user" else v) for k, v in recv_message(body=body)]
    with pytest.raises(em.BadNotice, match="'1001'"):
        em.parse_event(decoded(phone, body), "s")


def test_an_odd_call_id_or_time_does_not_lose_the_notice() -> None:
    """Kamailio's escape turns a ' in a Call-ID into \\' (not JSON); a time out of range
    (1e400, 1e18) is replaced by the event's."""
    raw = json.dumps({**BODY, "call_id": "PLACEHOLDER"}).replace("PLACEHOLDER", "it\\'s@h")
    assert em.Notice.from_body(raw).call_id == "it's@h"
    for at in ("1e400", "1e18", "-5"):
        body = json.dumps(BODY).replace(str(BODY["at"]), at)
        assert em.Notice.from_body(body, default_at=1772373909).at == 1772373909


def test_missing_fields_are_empty_and_the_time_falls_back_to_the_events() -> None:
    body = json.dumps({"call_id": "c1", "account": "acme"})
    got = em.parse_event(decoded(recv_message(body=body), body), "s")
    assert got is not None
    assert (got.site, got.user, got.callback, got.at) == ("", "", "", 1772373909)


# --- the payload ---------------------------------------------------------------------------------

def test_payload_names_the_site_user_and_location(lab: Inventory) -> None:
    hq = next(s for a in lab.accounts if a.id == "acme" for s in a.sites if s.id == "hq")
    got = em.payload(notice(), lab)
    assert got["site"]["location"]["city"] == "Springfield"
    assert got == {
        "event": "emergency_call", "call_id": "a84b4c76e66710@127.1.1.10",
        "at": "2026-03-01T14:05:09Z",
        "account": {"id": "acme", "name": "Acme Corporation"},
        "site": {"id": "hq", "name": "Acme HQ", "location": location(hq)},
        "user": {"extension": "1001", "name": "Alice Able"},
        "number": "911", "country": "US", "callback": "+15550100002",
        "switch": "lab1-a-switch1"}


def test_payload_keeps_what_is_known_of_an_unknown_site_or_user(lab: Inventory) -> None:
    got = em.payload(notice(site="acme/gone", user="7777", callback=""), lab)
    assert got["site"] == {"id": "gone", "name": None, "location": None}
    assert got["user"] == {"extension": "7777", "name": None}
    assert got["callback"] is None
    # no site in the notice: the user's own
    assert em.payload(notice(site=""), lab)["site"]["name"] == "Acme HQ"
    unknown = em.payload(notice(account="nobody"), lab)
    assert unknown["account"] == {"id": "nobody", "name": None}
    assert unknown["number"] == "911"


# --- delivery ------------------------------------------------------------------------------------

def test_delivered_with_the_payload_and_headers(lab: Inventory, receiver: Receiver,
                                                tmp_path: Path) -> None:
    inv = with_desk(lab, receiver.url)
    reports: list[em.Report] = []
    with em.Spool(tmp_path / "spool.sqlite") as spool:
        n = em.Notifier(inv, spool, policy=FAST, report=reports.append)
        assert n.receive(notice())
        assert spool.get(BODY["call_id"]).state == "pending"  # stored before any post
        run(n.drain)
        row = spool.get(BODY["call_id"])
    assert (row.state, row.attempts, row.status, row.webhook) == ("delivered", 1, 200,
                                                                  receiver.url)
    [req] = receiver.requests
    assert req["path"] == "/desk"
    assert req["body"] == em.payload(notice(), inv)
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["x-zp-event"] == "emergency-call"
    assert req["headers"]["x-zp-delivery"] == BODY["call_id"]
    assert [r.kind for r in reports] == ["received", "delivered"]
    assert stat.S_IMODE(os.stat(tmp_path / "spool.sqlite").st_mode) == 0o600


def test_a_desk_that_is_down_is_retried_until_it_is_up(lab: Inventory, tmp_path: Path) -> None:
    port = free_port()
    inv = with_desk(lab, f"http://127.0.0.1:{port}/desk")
    reports: list[em.Report] = []
    desk: list[Receiver] = []

    async def body() -> None:
        with em.Spool(tmp_path / "spool.sqlite") as spool:
            n = em.Notifier(inv, spool, policy=FAST, report=reports.append)
            task = asyncio.create_task(n.run())
            n.receive(notice())
            await until(lambda: sum(r.kind == "retry" for r in reports) >= 3)
            desk.append(Receiver(port))
            await until(lambda: reports[-1].kind == "delivered")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            row = spool.get(BODY["call_id"])
            assert row.state == "delivered"
            assert row.attempts >= 4

    try:
        run(body)
    finally:
        for d in desk:
            d.stop()
    retries = [r for r in reports if r.kind == "retry"]
    assert "cannot reach" in retries[0].detail
    assert [r.retry_in for r in retries[:3]] == [0.03, 0.06, 0.1]  # doubling to the cap
    assert len(desk[0].requests) == 1


def test_overloaded_desk_is_retried_5xx_408_429(lab: Inventory, tmp_path: Path) -> None:
    desk = Receiver(statuses=(503, 408, 429, 500, 200))
    try:
        with em.Spool(tmp_path / "spool.sqlite") as spool:
            n = em.Notifier(with_desk(lab, desk.url), spool, policy=FAST)
            n.receive(notice())
            run(n.drain)
            row = spool.get(BODY["call_id"])
    finally:
        desk.stop()
    assert (row.state, row.attempts) == ("delivered", 5)
    assert len({r["headers"]["x-zp-delivery"] for r in desk.requests}) == 1


def test_a_4xx_fails_the_notice_with_the_status(lab: Inventory, tmp_path: Path) -> None:
    desk = Receiver(statuses=(404,))
    reports: list[em.Report] = []
    try:
        with em.Spool(tmp_path / "spool.sqlite") as spool:
            n = em.Notifier(with_desk(lab, desk.url), spool, policy=FAST, report=reports.append)
            n.receive(notice())
            run(n.drain)
            row = spool.get(BODY["call_id"])
    finally:
        desk.stop()
    assert (row.state, row.attempts, row.status) == ("failed", 1, 404)
    assert "HTTP 404" in row.last_error
    assert len(desk.requests) == 1
    assert reports[-1].kind == "failed"
    assert reports[-1].status == 404


def test_an_account_without_a_security_desk_fails_clearly(lab: Inventory,
                                                          tmp_path: Path) -> None:
    reports: list[em.Report] = []
    with em.Spool(tmp_path / "spool.sqlite") as spool:
        n = em.Notifier(with_desk(lab, None, "globex"), spool, policy=FAST,
                        report=reports.append)
        n.receive(notice(account="globex", site="globex/main", user="2001"))
        run(n.drain)
        row = spool.get(BODY["call_id"])
    assert (row.state, row.attempts) == ("failed", 0)
    assert "globex has no security_desk.webhook" in row.last_error
    assert [r.kind for r in reports] == ["received", "failed"]


def test_retries_end_after_the_window(lab: Inventory, tmp_path: Path) -> None:
    policy = em.RetryPolicy(initial=0.03, cap=0.05, give_up_after=0.2, timeout=1.0)
    with em.Spool(tmp_path / "spool.sqlite") as spool:
        n = em.Notifier(with_desk(lab, f"http://127.0.0.1:{free_port()}/"), spool, policy=policy)
        n.receive(notice())
        run(n.drain)
        row = spool.get(BODY["call_id"])
    assert row.state == "failed"
    assert row.last_error.startswith(f"gave up after {row.attempts} attempts")


def test_desks_that_hang_hold_none_of_the_event_loops_threads(lab: Inventory,
                                                              tmp_path: Path) -> None:
    """Every post hangs (a desk whose name never resolves): they hold the notifier's own
    threads, so the event loop's default pool, which the ESL connections need to resolve
    the switches, still answers at once."""
    release = threading.Event()
    started: list[str] = []

    def hang(url: str, body: bytes, call_id: str, timeout: float) -> em.PostResult:
        started.append(threading.current_thread().name)
        release.wait(10)
        return em.PostResult(False, True, None, "released")

    async def scenario() -> float:
        with em.Spool(tmp_path / "spool.sqlite") as spool:
            n = em.Notifier(with_desk(lab, "http://desk.invalid/"), spool, policy=FAST,
                            post=hang, concurrency=16)
            for i in range(16):
                n.receive(notice(call_id=f"hang-{i}@127.1.1.10"))
            task = asyncio.create_task(n.run())
            try:
                await until(lambda: len(started) == 16)
                t0 = time.monotonic()
                await asyncio.to_thread(lambda: None)
                return time.monotonic() - t0
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    try:
        waited = run(scenario)
    finally:
        release.set()
    assert waited < 1.0
    assert all(name.startswith("emergency-post") for name in started), started


def test_the_same_call_from_two_switches_is_delivered_once(lab: Inventory, receiver: Receiver,
                                                           tmp_path: Path) -> None:
    reports: list[em.Report] = []
    with em.Spool(tmp_path / "spool.sqlite") as spool:
        n = em.Notifier(with_desk(lab, receiver.url), spool, policy=FAST, report=reports.append)
        assert n.receive(notice("lab1-a-switch1"))
        assert not n.receive(notice("lab1-b-switch1"))
        run(n.drain)
        assert not n.receive(notice("lab1-b-switch1"))  # late, after delivery
        run(n.drain)
        [row] = spool.rows()
    assert (row.state, row.relays, row.switch) == ("delivered", 3, "lab1-a-switch1")
    assert len(receiver.requests) == 1
    assert receiver.requests[0]["body"]["switch"] == "lab1-a-switch1"
    assert [r.kind for r in reports] == ["received", "duplicate", "delivered", "duplicate"]


def test_a_new_notifier_on_the_spool_delivers_what_was_pending(lab: Inventory,
                                                              tmp_path: Path) -> None:
    port = free_port()
    inv = with_desk(lab, f"http://127.0.0.1:{port}/desk")
    path = tmp_path / "spool.sqlite"

    async def first() -> None:  # the desk is down; the notifier stops (a restart)
        with em.Spool(path) as spool:
            n = em.Notifier(inv, spool, policy=FAST)
            task = asyncio.create_task(n.run())
            n.receive(notice())
            n.receive(notice(call_id="second-call"))
            await until(lambda: all(r.attempts >= 1 for r in spool.rows()))
            t0 = time.monotonic()
            task.cancel()  # while posts end and wake it: it stops all the same
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert time.monotonic() - t0 < 0.5

    run(first)
    with em.Spool(path) as spool:
        assert {r.state for r in spool.rows()} == {"pending"}
    desk = Receiver(port)
    try:
        with em.Spool(path) as spool:
            run(em.Notifier(inv, spool, policy=FAST).drain)
            rows = spool.rows()
    finally:
        desk.stop()
    assert [r.state for r in rows] == ["delivered", "delivered"]
    assert sorted(r["headers"]["x-zp-delivery"] for r in desk.requests) == \
        sorted([BODY["call_id"], "second-call"])


# --- over ESL, from two switches -----------------------------------------------------------------

def test_watch_hears_both_switches_and_delivers_once(lab: Inventory, receiver: Receiver,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The scripted switch takes subscriptions to the event names it knows; RECV_MESSAGE is
    # one of FreeSWITCH's (switch_event.c) that it does not list.
    monkeypatch.setattr(esl_peer, "EVENT_NAMES", esl_peer.EVENT_NAMES | {em.EVENT})
    reports: list[em.Report] = []
    said: list[str] = []
    body = json.dumps(BODY)
    chat = json.dumps({"text": "lunch?"})

    async def scenario() -> None:
        async with EslPeer("s3cret") as sw1, EslPeer("s3cret") as sw2:
            targets = [SwitchTarget("lab1-a-switch1", sw1.host, sw1.port, "lab1", "a"),
                       SwitchTarget("lab1-b-switch1", sw2.host, sw2.port, "lab1", "b")]
            with em.Spool(tmp_path / "spool.sqlite") as spool:
                n = em.Notifier(with_desk(lab, receiver.url), spool, policy=FAST,
                                report=reports.append)
                task = asyncio.create_task(em.watch(targets, "s3cret", n, say=said.append,
                                                    timeout=2.0, backoff=Backoff(0.05, cap=0.1)))
                await until(lambda: all(f"filter to_user {em.NOTICE_USER}" in s.commands
                                        for s in (sw1, sw2)))
                sw1.fire(em.EVENT, headers=recv_message("1002", chat, "text/plain"), body=chat)
                sw1.fire(em.EVENT, headers=recv_message(body=body), body=body)
                sw2.fire(em.EVENT, headers=recv_message(body=body), body=body)
                await until(lambda: any(r.kind == "delivered" for r in reports)
                            and any(r.kind == "duplicate" for r in reports))
                await sw1.drop_connections()  # a switch restarts: heard again after it
                await until(lambda: sum("listening" in s or "reconnected" in s
                                        for s in said) >= 3)
                sw1.fire(em.EVENT, headers=recv_message(body=body.replace("a84b", "b95c")),
                         body=body.replace("a84b", "b95c"))
                await until(lambda: sum(r.kind == "delivered" for r in reports) == 2)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert [r.relays for r in spool.rows()] == [2, 1]

    run(scenario)
    assert [r["headers"]["x-zp-delivery"] for r in receiver.requests] == \
        [BODY["call_id"], BODY["call_id"].replace("a84b", "b95c")]
    kinds = [r.kind for r in reports]
    assert (kinds.count("received"), kinds.count("duplicate"), kinds.count("delivered")) == \
        (2, 1, 2)
    assert any("reconnected" in s for s in said)


def test_watch_goes_on_without_a_switch_that_refuses_and_stops_when_all_do(
        lab: Inventory, tmp_path: Path) -> None:
    async def scenario(password: str, duration: float | None) -> tuple[em.WatchStats, float]:
        async with EslPeer("s3cret") as good, EslPeer("other") as bad:
            targets = [SwitchTarget("good", good.host, good.port),
                       SwitchTarget("bad", bad.host, bad.port)]
            with em.Spool(tmp_path / "spool.sqlite") as spool:
                n = em.Notifier(lab, spool, policy=FAST)
                t0 = time.monotonic()
                stats = await em.watch(targets, password, n, say=lambda s: None,
                                       duration=duration, timeout=2.0)
                return stats, time.monotonic() - t0

    stats, took = run(lambda: scenario("s3cret", 0.5))
    assert list(stats.refused) == ["bad"]
    assert 0.5 <= took < 1.5
    stats, took = run(lambda: scenario("wrong", None))  # every switch refused: no waiting
    assert sorted(stats.refused) == ["bad", "good"]
    assert "password refused" in stats.refused["good"]
    assert took < 1.5


# --- the commands ----------------------------------------------------------------------------------

def test_emergency_ls_lists_the_spool(lab: Inventory, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spool.sqlite"
    with em.Spool(path) as spool:
        n = em.Notifier(with_desk(lab, None, "globex"), spool)
        n.receive(notice(account="globex", site="globex/main", user="2001"))
    rc = main(["-o", "json", "emergency", "ls", str(INVENTORIES / "lab"), "--spool", str(path)])
    out = capsys.readouterr().out
    assert rc == 0
    [row] = json.loads(out)
    assert (row["call"], row["account"], row["site"], row["user"], row["state"]) == \
        (BODY["call_id"], "globex", "globex/main", "2001", "failed")
    assert row["payload"]["user"]["name"] == "Hank Scorpio"
    rc = main(["emergency", "ls", str(INVENTORIES / "lab"), "--spool", str(path),
               "--state", "pending"])
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == \
        ["CALL  RECEIVED  ACCOUNT  SITE  USER  STATE  ATTEMPTS  LAST_ERROR"]


def test_emergency_watch_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZPCTL_LAB_DIR", str(tmp_path / "no-lab"))
    rc = main(["-o", "json", "emergency", "watch", str(INVENTORIES / "lab"), "--dry-run",
               "--zone", "lab1/a", "--spool", str(tmp_path / "s.sqlite")])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["spool"] == str(tmp_path / "s.sqlite")
    assert {c["command"] for c in doc["commands"]} == {
        "event plain BACKGROUND_JOB RECV_MESSAGE", "filter Event-Name BACKGROUND_JOB",
        "filter to_user zp-emergency"}
    assert set(doc["webhooks"]) == {"acme", "globex", "initech", "loadco"}
    assert not (tmp_path / "s.sqlite").exists()


def test_watch_argv_runs_the_command(tmp_path: Path) -> None:
    argv = em.watch_argv(Path("inventories/lab"), tmp_path / "s.sqlite",
                         secrets=tmp_path / "secrets.yml", lab_dir=tmp_path)
    assert argv[1:] == ["-o", "json", "emergency", "watch", "inventories/lab", "--spool",
                        str(tmp_path / "s.sqlite"), "--secrets", str(tmp_path / "secrets.yml"),
                        "--lab-dir", str(tmp_path)]
    with pytest.raises(Unreachable):
        em.spool_ready(tmp_path / "s.sqlite")
    em.Spool(tmp_path / "s.sqlite").close()
    em.spool_ready(tmp_path / "s.sqlite")
