"""The scripted ESL peer (tests/esl_peer.py) speaks the reference's wire protocol byte for
byte.

Raw TCP on 127.0.0.1 (ephemeral port): the expected bytes are written out from
shared/reference/freeswitch-esl-protocol.md (2.4, 2.7), so a drift in the peer - the thing
the client's fault tests rely on - is caught here, not hidden by our own codec.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.esl_peer import EslPeer, filter_passes, recorded, recorded_events
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


def with_switch(body: Callable[[EslPeer, Raw], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with EslPeer("ClueCon", answers={"uuid_kill": recorded("uuid-kill-unknown"),
                                               "originate": "+OK 5c0\n"}, **kw) as sw:
            r, w = await asyncio.open_connection(sw.host, sw.port)
            try:
                await body(sw, Raw(r, w))
            finally:
                w.close()

    asyncio.run(main())


def test_greeting_auth_and_exit_byte_exact() -> None:
    async def body(sw: EslPeer, c: Raw) -> None:
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
    async def body(sw: EslPeer, c: Raw) -> None:
        await c.read_exact(28)
        await c.send(f"auth {password}\n\n".encode())
        want = reply("-ERR invalid") + GOODBYE
        assert await c.read_exact(len(want)) == want
        assert await c.closed()
    with_switch(body)


def test_commands_before_auth_are_not_found_but_auth_may_follow() -> None:
    async def body(sw: EslPeer, c: Raw) -> None:
        await c.read_exact(28)
        await c.send(b"api status\n\n")
        want = reply("-ERR command not found")
        assert await c.read_exact(len(want)) == want
        await c.send(b"\r\n\r\nauth ClueCon\r\n\r\n")  # CRLF and leading blank lines
        want = reply("+OK accepted")
        assert await c.read_exact(len(want)) == want
    with_switch(body)


def test_rude_rejection_outside_the_acl() -> None:
    async def body(sw: EslPeer, c: Raw) -> None:
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
    async def body(sw: EslPeer, c: Raw) -> None:
        await _authed(c)
        await c.send(b"api nosuch arg\n\n")
        want = b"Content-Type: api/response\nContent-Length: 31\n\n-ERR nosuch Command not found!\n"
        assert await c.read_exact(len(want)) == want
        await c.send(b"api uuid_kill 5c0\n\n")
        f = await c.frame()
        assert f.body == b"-ERR No such channel!\n"
        await c.send(b"frobnicate\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR command not found"
        await c.send(b"noevents\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR not listening for events"
    with_switch(body)


def test_bgapi_reply_precedes_its_background_job() -> None:
    async def body(sw: EslPeer, c: Raw) -> None:
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
    with_switch(body)


def test_event_subscription_wording_and_custom_subclasses() -> None:
    async def body(sw: EslPeer, c: Raw) -> None:
        await _authed(c)
        await c.send(b"event json NOT_AN_EVENT\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "-ERR no keywords supplied"
        await c.send(b"event plain switch_event_heartbeat CUSTOM sofia::register\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK event listener enabled plain"
        sw.fire("CUSTOM", [("from-user", "1001")], subclass="sofia::expire")  # not subscribed
        sw.fire("CUSTOM", [("from-user", "1002")], subclass="sofia::register")
        heartbeat = next(e for e in recorded_events() if e.name == "HEARTBEAT")
        sw.replay(heartbeat)
        first = esl.decode_frame(await c.frame())
        second = esl.decode_frame(await c.frame())
        assert isinstance(first, esl.Event)
        assert isinstance(second, esl.Event)
        assert (first.subclass, first.get("from-user")) == ("sofia::register", "1002")
        assert second.name == "HEARTBEAT"
        assert second.get("Session-Count") == heartbeat.get("Session-Count")
        await c.send(b"nixevent HEARTBEAT\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK events nixed"
        await c.send(b"noevents\n\n")
        assert (await c.frame()).headers.get("Reply-Text") == "+OK no longer listening for events"
    with_switch(body)


def test_filter_wording() -> None:
    async def body(sw: EslPeer, c: Raw) -> None:
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
