"""The in-process ESL simulator speaks the reference's wire protocol byte for byte.

Raw TCP on 127.0.0.1 (ephemeral port): the expected bytes are written out from
shared/reference/freeswitch-esl-protocol.md (2.4, 2.7), so a drift in the simulator - the
thing every client test relies on - is caught here, not hidden by our own codec.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.fakeswitch import CallRefused, FakeSwitch, filter_passes
from zpctl.protocols import esl

GOODBYE = (b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
           b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")


def reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


class Raw:
    """A raw socket to the simulator, reading frames with the codec's framer only."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = esl.FrameParser()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_exact(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), 2)

    async def frame(self) -> esl.Frame:
        while True:
            f = self.parser.next_frame()
            if isinstance(f, esl.Frame):
                return f
            assert f is esl.NEED_DATA, "connection closed"
            self.parser.receive_data(await asyncio.wait_for(self.reader.read(65536), 2))

    async def closed(self) -> bool:
        rest = await asyncio.wait_for(self.reader.read(), 2)
        return rest == b""


def with_switch(body: Callable[[FakeSwitch, Raw], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with FakeSwitch("ClueCon", **kw) as sw:
            r, w = await asyncio.open_connection(sw.host, sw.port)
            try:
                await body(sw, Raw(r, w))
            finally:
                w.close()

    asyncio.run(main())


def test_greeting_auth_and_exit_byte_exact() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        assert await c.read_exact(28) == b"Content-Type: auth/request\n\n"
        await c.send(b"auth ClueCon\n\n")
        want = reply("+OK accepted")
        assert await c.read_exact(len(want)) == want
        await c.send(b"exit\n\n")
        want = reply("+OK bye") + GOODBYE
        assert await c.read_exact(len(want)) == want
        assert await c.closed()
        assert sw.commands == ["auth ***", "exit"]
    with_switch(body)


@pytest.mark.parametrize("password", ["wrong", "ClueCon ", "clueCon"])
def test_wrong_password_gets_err_invalid_then_goodbye_then_close(password: str) -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await c.read_exact(28)
        await c.send(f"auth {password}\n\n".encode())
        want = reply("-ERR invalid") + GOODBYE
        assert await c.read_exact(len(want)) == want
        assert await c.closed()
    with_switch(body)


def test_commands_before_auth_are_not_found_but_auth_may_follow() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await c.read_exact(28)
        await c.send(b"api status\n\n")
        want = reply("-ERR command not found")
        assert await c.read_exact(len(want)) == want
        await c.send(b"\r\n\r\nauth ClueCon\r\n\r\n")  # CRLF and leading blank lines
        want = reply("+OK accepted")
        assert await c.read_exact(len(want)) == want
    with_switch(body)


def test_rude_rejection_outside_the_acl() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        want = (b"Content-Type: text/rude-rejection\nContent-Length: 24\n\n"
                b"Access Denied, go away.\n" + GOODBYE)
        assert await c.read_exact(len(want)) == want
        assert await c.closed()
    with_switch(body, allow=("10.200.0.0/16",))


async def _authed(c: Raw) -> None:
    await c.read_exact(28)
    await c.send(b"auth ClueCon\n\n")
    await c.frame()


def test_api_responses_and_unknown_commands() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await _authed(c)
        await c.send(b"api nosuch arg\n\n")
        want = b"Content-Type: api/response\nContent-Length: 31\n\n-ERR nosuch Command not found!\n"
        assert await c.read_exact(len(want)) == want
        await c.send(b"api uuid_kill 5c0\n\n")
        f = await c.frame()
        assert f.body == b"-ERR No such channel!\n"
        await c.send(b"frobnicate\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR command not found"
        await c.send(b"linger\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR not controlling a session"
        await c.send(b"myevents\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR command not found"
        await c.send(b"nolog\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR not loging"
        await c.send(b"noevents\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR not listening for events"
    with_switch(body)


def test_bgapi_reply_precedes_its_background_job() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await _authed(c)
        await c.send(b"event plain BACKGROUND_JOB\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK event listener enabled plain"
        await c.send(b"bgapi originate {origination_uuid=5c0}user/1001 &park()\nJob-UUID: j-1\n\n")
        want = b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: j-1\nJob-UUID: j-1\n\n"
        assert await c.read_exact(len(want)) == want
        f = await c.frame()
        assert f.headers.items == (("Content-Length", f.headers["Content-Length"]),
                                   ("Content-Type", "text/event-plain"))
        ev = esl.decode_frame(f)
        assert isinstance(ev, esl.Event)
        assert ev.name == "BACKGROUND_JOB"
        assert ev.get("Job-Owner-UUID") == "_undef_"
        assert ev.get("Job-Command") == "originate"
        assert ev.get("Job-Command-Arg") == "{origination_uuid=5c0}user/1001 &park()"
        assert ev.body == "+OK 5c0\n"
        assert b"Job-Command-Arg: %7Borigination_uuid%3D5c0%7Duser/1001%20%26park()\n" in f.body
        assert [k for k, _ in ev.headers][:13] == list(esl.CANONICAL_EVENT_HEADERS)
        assert sw.channels["5c0"].parked
    with_switch(body)


def test_event_subscription_wording_and_custom_subclasses() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await _authed(c)
        await c.send(b"event json NOT_AN_EVENT\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR no keywords supplied"
        await c.send(b"event plain switch_event_heartbeat CUSTOM sofia::register\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK event listener enabled plain"
        sw.fire("CUSTOM", [("from-user", "1001")], subclass="sofia::expire")  # not subscribed
        sw.fire("CUSTOM", [("from-user", "1002")], subclass="sofia::register")
        sw.heartbeat()
        first = esl.decode_frame(await c.frame())
        second = esl.decode_frame(await c.frame())
        assert isinstance(first, esl.Event)
        assert isinstance(second, esl.Event)
        assert (first.subclass, first.get("from-user")) == ("sofia::register", "1002")
        assert second.name == "HEARTBEAT"
        assert second.get("Session-Count") == "0"
        await c.send(b"nixevent HEARTBEAT\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK events nixed"
        await c.send(b"noevents\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK no longer listening for events"
    with_switch(body)


def test_filter_wording() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await _authed(c)
        for cmd, text in [(b"filter Unique-ID 5c0", "+OK filter added. [Unique-ID]=[5c0]"),
                          (b"filter add Event-Name HEARTBEAT",
                           "+OK filter added. [Event-Name]=[HEARTBEAT]"),
                          (b"filter Unique-ID", "-ERR invalid syntax"),
                          (b"filter delete Unique-ID 5c0", "+OK filter deleted. [Unique-ID][5c0]"),
                          (b"filter delete all", "+OK filter deleted. [all][]")]:
            await c.send(cmd + b"\n\n")
            assert (await c.frame()).headers.get("Reply-Text") == text
    with_switch(body)


@pytest.mark.parametrize(("filters", "headers", "passes"), [
    ([], {"Event-Name": "X"}, True),
    ([("Unique-ID", "abc")], {"Event-Name": "HEARTBEAT"}, False),  # header absent: dropped
    ([("Unique-ID", "abc")], {"Unique-ID": "ABC"}, True),  # case-insensitive equality
    ([("Unique-ID", "abc"), ("Event-Name", "HEARTBEAT")], {"Event-Name": "HEARTBEAT"}, True),
    ([("Event-Name", "-HEARTBEAT")], {"Event-Name": "HEARTBEAT"}, False),
    ([("Event-Name", "-HEARTBEAT")], {"Event-Name": "CHANNEL_CREATE"}, False),  # no positive hit
    ([("Event-Name", "CHANNEL_CREATE"), ("Unique-ID", "-x")],
     {"Event-Name": "CHANNEL_CREATE", "Unique-ID": "x"}, False),  # negative wins
    ([("Unique-ID", "/^ab/")], {"Unique-ID": "abc"}, True),
    ([("Unique-ID", "/^ab/")], {"Unique-ID": "cab"}, False),
])
def test_filter_semantics(filters: list[tuple[str, str]], headers: dict[str, str],
                          passes: bool) -> None:
    assert filter_passes(filters, esl.Headers.of(headers)) is passes


def test_sendmsg_myevents_and_log() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        a, b = sw.inbound_call("1001", "1002", bridge_to="1002")
        assert b is not None
        await _authed(c)
        await c.send(b"sendmsg nope\ncall-command: hangup\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR invalid session id [nope]"
        await c.send(b"myevents nope json\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR invalid uuid"
        await c.send(f"myevents {a} json\n\n".encode())
        assert (await c.frame()).headers.get("Reply-Text") == "+OK Events Enabled"
        await c.send(f"myevents {a}\n\n".encode())
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR aready enabled."
        await c.send(b"log 4\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK log level warning [4]"
        await c.send(f"sendmsg {a}\ncall-command: execute\nexecute-app-name: playback\n"
                     f"execute-app-arg: /x.wav\nevent-lock: true\n\n".encode())
        assert (await c.frame()).headers.get("Reply-Text") == "+OK"
        names = []
        for _ in range(2):
            ev = esl.decode_frame(await c.frame())
            assert isinstance(ev, esl.Event)
            assert ev.format == "json"
            assert ev.unique_id == a
            names.append((ev.name, ev.get("Application")))
        assert names == [("CHANNEL_EXECUTE", "playback"), ("CHANNEL_EXECUTE_COMPLETE", "playback")]
        await c.send(f"sendmsg {b}\ncall-command: hangup\nhangup-cause: USER_BUSY\n\n".encode())
        assert (await c.frame()).headers.get("Reply-Text") == "+OK"
        await asyncio.sleep(0.05)
        assert sw.channels == {}  # both legs gone
    with_switch(body)


def test_pause_refuses_new_inbound_calls_until_resume() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await _authed(c)
        await c.send(b"api fsctl pause inbound\n\n")
        assert (await c.frame()).body == b"+OK\n"
        with pytest.raises(CallRefused):
            sw.inbound_call("1001", "1002")
        await c.send(b"api fsctl resume inbound\n\n")
        assert (await c.frame()).body == b"+OK\n"
        sw.inbound_call("1001", "1002")
        assert sw.session_count() == 1
    with_switch(body)


def test_sendevent_and_reload_rewrite() -> None:
    async def body(sw: FakeSwitch, c: Raw) -> None:
        await _authed(c)
        await c.send(b"event plain CUSTOM zpctl::note\n\n")
        await c.frame()
        await c.send(b"sendevent CUSTOM\nEvent-Subclass: zpctl::note\nContent-Length: 2\n\nhi")
        text = (await c.frame()).headers.get("Reply-Text") or ""
        assert text.startswith("+OK ")
        ev = esl.decode_frame(await c.frame())
        assert isinstance(ev, esl.Event)
        assert (ev.subclass, ev.body, ev.get("Event-UUID")) == ("zpctl::note", "hi", text[4:])
        await c.send(b"api reload mod_event_socket\n\n")
        assert (await c.frame()).body.startswith(b"+OK Job-UUID: ")
    with_switch(body)
