"""A scripted ESL peer for tests.  It is NOT FreeSWITCH.

It speaks mod_event_socket's inbound wire protocol as written down in
``shared/reference/freeswitch-esl-protocol.md``: the greeting, ``auth`` and its refusal
with a disconnect notice, ``-ERR command not found`` before auth and for commands it does
not take, the rude rejection of an address outside its ACL, ``api`` and ``bgapi`` with
their BACKGROUND_JOB, and event subscriptions (``event plain|json|xml``, ``nixevent``,
``noevents``, ``filter`` with mod_event_socket's filter semantics).

It has no calls, no channels and no dialplan.  Each ``api`` command is answered from
:attr:`EslPeer.answers`, the test's script: in most tests a reply a real switch gave,
recorded in the lab by ``tests/esl_capture.py`` (:func:`recorded`), and an unknown command
gets FreeSWITCH's ``-ERR <name> Command not found!``.  Events are what a test fires,
usually a real switch's recorded ones (:func:`recorded_events`).  What FreeSWITCH does
with a command is tested against the lab's real switches
(``tests/integration/test_call_control.py`` and the feature flows).

It exists for what a real switch will not do on demand: refuse the password, reject an
address, drop every connection at once, finish background jobs late or out of order, let
an event race a reply.  Truncated frames and hung sockets are scripted with plain sockets
in ``test_esl_client.py`` and ``test_calls_faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from zpctl.protocols import esl

RECORDED = Path(__file__).resolve().parent / "unit" / "fixtures" / "esl"
CORE_UUID = "00000000-5a9c-4f5e-8c11-fa4e5e117c00"

# Event names a subscription may name (switch_event.c's EVENT_NAMES, those tests use).
EVENT_NAMES = frozenset({
    "CUSTOM", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_ORIGINATE", "API", "DTMF", "BACKGROUND_JOB",
    "HEARTBEAT", "RECORD_START", "RECORD_STOP", "MESSAGE_WAITING", "SHUTDOWN",
})

Answer = str | Callable[[str], str]


def recorded(name: str) -> str:
    """A real switch's reply to an api command, as recorded (``api-<name>.txt``)."""
    return (RECORDED / f"api-{name}.txt").read_text()


def recorded_events(name: str = "events-call") -> list[esl.Event]:
    """The events a real switch sent, as recorded (``<name>.esl``), in order."""
    parser = esl.FrameParser()
    parser.receive_data((RECORDED / f"{name}.esl").read_bytes())
    out = []
    while isinstance(frame := parser.next_frame(), esl.Frame):
        ev = esl.decode_frame(frame)
        if isinstance(ev, esl.Event):
            out.append(ev)
    return out


@dataclass
class _Listener:
    writer: asyncio.StreamWriter
    authed: bool = False
    fmt: str = "plain"
    all_events: bool = False
    names: set[str] = field(default_factory=set)
    subclasses: set[str] = field(default_factory=set)
    custom_plain: bool = False  # CUSTOM with no subclass: only subclass-less custom events
    filters: list[tuple[str, str]] = field(default_factory=list)
    race: list[bytes] = field(default_factory=list)  # frames to write before the next reply
    closing: bool = False

    def subscribed(self) -> bool:
        return self.all_events or bool(self.names or self.subclasses or self.custom_plain)


def filter_passes(filters: Sequence[tuple[str, str]], headers: esl.Headers) -> bool:
    """mod_event_socket's filter check (reference 2.4, "Filter semantics")."""
    if not filters:
        return True
    send = False
    for name, raw in filters:
        hval = headers.get(name)
        if hval is None:
            continue
        comp = raw
        pos = True
        while comp and comp[0] in "+- ":
            if comp[0] != " ":
                pos = comp[0] == "+"
            comp = comp[1:]
        if send and pos:
            continue
        if raw.startswith("/"):
            pattern = comp[1:] if comp.startswith("/") else comp
            pattern = pattern[:-1] if pattern.endswith("/") else pattern
            try:
                hit = re.search(pattern, hval) is not None
            except re.error:
                hit = False
        else:
            hit = hval.lower() == comp.lower()
        if hit:
            if pos:
                send = True
            else:
                return False
    return send


class EslPeer:
    """A scripted event socket: the protocol, no switch behind it."""

    def __init__(self, password: str = "ClueCon", *, hostname: str = "eslpeer",
                 allow: Sequence[str] = ("127.0.0.0/8", "::1/128"),
                 answers: dict[str, Answer] | None = None, job_delay: float = 0.0) -> None:
        self.password = password
        self.hostname = hostname
        self.allow = [ipaddress.ip_network(n) for n in allow]
        # api commands: the whole command text first, else its first word (then the
        # callable gets the arguments)
        self.answers: dict[str, Answer] = dict(answers or {})
        self.job_delay = job_delay
        self.commands: list[str] = []  # every command line received (auth masked)
        self.frames: list[esl.Command] = []  # every command after auth, with its headers
        self.host = "127.0.0.1"
        self.port = 0
        self._listeners: list[_Listener] = []
        self._server: asyncio.Server | None = None
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> EslPeer:
        self._server = await asyncio.start_server(self._handle, host, port)
        sock = self._server.sockets[0].getsockname()
        self.host, self.port = str(sock[0]), int(sock[1])
        return self

    async def stop(self) -> None:
        for lst in list(self._listeners):
            lst.writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()

    async def drop_connections(self) -> None:
        """Close every client socket abruptly (to test reconnects)."""
        for lst in list(self._listeners):
            lst.writer.close()
        self._listeners.clear()
        await asyncio.sleep(0)

    async def __aenter__(self) -> EslPeer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- what the test scripts -----------------------------------------------------------

    def answer(self, text: str) -> str:
        """The scripted output of ``api <text>``."""
        name, _, args = text.partition(" ")
        got = self.answers.get(text)
        if got is None:
            got = self.answers.get(name)
            if got is None:
                return f"-ERR {name} Command not found!\n"
        out = got(args.strip()) if callable(got) else got
        return out or "-ERR no reply\n"  # mod_event_socket's words for an api with no output

    def fire(self, name: str, extra: Sequence[tuple[str, str]] = (), body: str = "",
             subclass: str | None = None, *, headers: Sequence[tuple[str, str]] | None = None
             ) -> None:
        """Send an event to every listener that subscribed to it and whose filters pass:
        ``headers`` as they are (a recorded event's), else the standard event headers
        followed by ``extra``."""
        hdrs = list(headers) if headers is not None else self._event_headers(name, extra, subclass)
        h = esl.Headers(tuple(hdrs))
        for lst in list(self._listeners):
            if lst.authed and not lst.closing and self._wants(lst, name, h):
                self._write(lst, esl.event_frame(hdrs, body, lst.fmt))

    def replay(self, event: esl.Event, **replace: str) -> None:
        """Send a recorded event, with the headers named in ``replace`` (``-`` written as
        ``_``: ``Unique_ID="u1"``) given new values."""
        swap = {k.replace("_", "-").lower(): v for k, v in replace.items()}
        hdrs = [(k, swap.get(k.lower(), v)) for k, v in event.headers]
        self.fire(event.name, headers=hdrs, body=event.body)

    def race_next_reply(self, event_name: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Write this event to every listener right before its next reply (a race event)."""
        for lst in self._listeners:
            if lst.authed:
                lst.race.append(esl.event_frame(self._event_headers(event_name, headers), "",
                                                lst.fmt))

    # -- events ---------------------------------------------------------------------------

    def _event_headers(self, name: str, extra: Sequence[tuple[str, str]],
                       subclass: str | None = None) -> list[tuple[str, str]]:
        now = time.time()
        # The 13 headers every FreeSWITCH event starts with (esl.CANONICAL_EVENT_HEADERS).
        std = [("Event-Name", name), ("Core-UUID", CORE_UUID),
               ("FreeSWITCH-Hostname", self.hostname), ("FreeSWITCH-Switchname", self.hostname),
               ("FreeSWITCH-IPv4", self.host), ("FreeSWITCH-IPv6", "::1"),
               ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
               ("Event-Date-GMT", formatdate(now, usegmt=True)),
               ("Event-Date-Timestamp", str(int(now * 1_000_000))),
               ("Event-Calling-File", "esl_peer.py"), ("Event-Calling-Function", "fire"),
               ("Event-Calling-Line-Number", "1"), ("Event-Sequence", str(next(self._seq)))]
        if subclass:
            std.append(("Event-Subclass", subclass))
        return std + list(extra)

    def _wants(self, lst: _Listener, name: str, h: esl.Headers) -> bool:
        if not lst.subscribed():
            return False
        if name == "CUSTOM":
            sub = h.get("Event-Subclass")
            ok = lst.all_events or (sub in lst.subclasses if sub else lst.custom_plain)
        else:
            ok = lst.all_events or name in lst.names
        return ok and filter_passes(lst.filters, h)

    def _write(self, lst: _Listener, data: bytes) -> None:
        if not lst.writer.is_closing():
            lst.writer.write(data)

    # -- connections ----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else "0.0.0.0"
        lst = _Listener(writer)
        if not any(ipaddress.ip_address(ip) in net for net in self.allow):
            writer.write(esl.rude_rejection())
            writer.write(esl.disconnect_notice())
            await _close(writer)
            return
        self._listeners.append(lst)
        writer.write(esl.auth_request())
        conn = esl.ServerConnection()
        try:
            while not lst.closing:
                data = await reader.read(65536)
                conn.receive_data(data)
                while isinstance(cmd := conn.next_command(), esl.Command):
                    await self._command(lst, cmd)
                    if lst.closing:
                        break
                if not data:
                    break
                await writer.drain()
        except (esl.RemoteProtocolError, ConnectionError):
            pass  # FreeSWITCH drops such a connection
        finally:
            if lst in self._listeners:
                self._listeners.remove(lst)
            await _close(writer)

    def _reply(self, lst: _Listener, data: bytes) -> None:
        for frame in lst.race:
            self._write(lst, frame)
        lst.race.clear()
        self._write(lst, data)

    def _ok(self, lst: _Listener, text: str, extra: Sequence[tuple[str, str]] = ()) -> None:
        self._reply(lst, esl.command_reply(text, extra))

    async def _command(self, lst: _Listener, cmd: esl.Command) -> None:
        line, verb = cmd.line, cmd.verb
        self.commands.append("auth ***" if verb == "auth" else line)
        if verb == "exit":
            self._ok(lst, "+OK bye")
            self._write(lst, esl.disconnect_notice())
            lst.closing = True
            return
        if lst.authed:
            self.frames.append(cmd)
        if not lst.authed:
            if verb == "auth":
                self._auth(lst, line[5:])
            else:
                self._ok(lst, "-ERR command not found")
            return
        if verb == "api":
            self._reply(lst, esl.api_response(self.answer(line[4:].strip())))
        elif verb == "bgapi":
            self._bgapi(lst, cmd, line[6:].strip())
        elif verb in ("event", "events"):
            self._event(lst, line)
        elif verb == "nixevent":
            self._nixevent(lst, line)
        elif verb == "noevents":
            self._noevents(lst)
        elif verb == "filter":
            self._filter(lst, line)
        elif verb == "sendmsg":
            self._ok(lst, "+OK")  # what the session would do is not modelled
        else:
            self._ok(lst, "-ERR command not found")

    def _auth(self, lst: _Listener, password: str) -> None:
        if password == self.password:
            lst.authed = True
            self._ok(lst, "+OK accepted")
            return
        self._ok(lst, "-ERR invalid")
        self._write(lst, esl.disconnect_notice())
        lst.closing = True

    def _bgapi(self, lst: _Listener, cmd: esl.Command, text: str) -> None:
        name, _, args = text.partition(" ")
        job = cmd.headers.get("Job-UUID") or str(uuidlib.uuid4())
        self._ok(lst, f"+OK Job-UUID: {job}", [("Job-UUID", job)])

        async def run() -> None:
            if self.job_delay:
                await asyncio.sleep(self.job_delay)
            extra = [("Job-UUID", job), ("Job-Owner-UUID", ""), ("Job-Command", name)]
            if args:
                extra.append(("Job-Command-Arg", args))
            self.fire("BACKGROUND_JOB", extra, self.answer(text))

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- event commands ------------------------------------------------------------------

    @staticmethod
    def _event_tokens(tokens: list[str]) -> tuple[set[str], set[str], bool, bool]:
        names: set[str] = set()
        subs: set[str] = set()
        custom = custom_plain = False
        for tok in tokens:
            if custom:
                subs.add(tok)
                continue
            up = tok.upper().removeprefix("SWITCH_EVENT_")
            if up == "CUSTOM":
                custom = custom_plain = True
            elif up == "ALL" or up in EVENT_NAMES:
                names.add(up)
        return names, subs, custom_plain and not subs, bool(names or subs or custom_plain)

    def _event(self, lst: _Listener, line: str) -> None:
        parts = line.split()[1:]
        fmt = "plain"
        if parts and parts[0].lower() in ("plain", "json", "xml"):
            fmt = parts.pop(0).lower()
        lst.fmt = fmt  # changed even when no keyword is valid
        names, subs, custom_plain, any_valid = self._event_tokens(parts)
        if not any_valid:
            self._ok(lst, "-ERR no keywords supplied")
            return
        if "ALL" in names:
            lst.all_events = True
        lst.names |= names - {"ALL"}
        lst.subclasses |= subs
        lst.custom_plain = lst.custom_plain or custom_plain
        self._ok(lst, f"+OK event listener enabled {fmt}")

    def _nixevent(self, lst: _Listener, line: str) -> None:
        names, subs, _, any_valid = self._event_tokens(line.split()[1:])
        if not any_valid:
            self._ok(lst, "-ERR no keywords supplied")
            return
        if lst.all_events and names:
            lst.all_events = False
            lst.names = set(EVENT_NAMES) - names
        else:
            lst.names -= names
        lst.subclasses -= subs
        self._ok(lst, "+OK events nixed")

    def _noevents(self, lst: _Listener) -> None:
        if not lst.subscribed():
            self._ok(lst, "-ERR not listening for events")
            return
        lst.all_events, lst.names, lst.subclasses, lst.custom_plain = False, set(), set(), False
        self._ok(lst, "+OK no longer listening for events")

    def _filter(self, lst: _Listener, line: str) -> None:
        args = line.split(" ", 1)[1] if " " in line else ""
        parts = args.split(" ", 1)
        if parts[0].lower() == "delete":
            rest = parts[1].split(" ", 1) if len(parts) > 1 else [""]
            header = rest[0]
            value = rest[1] if len(rest) > 1 else ""
            if header.lower() == "all":
                lst.filters.clear()
                self._ok(lst, "+OK filter deleted. [all][]")
                return
            lst.filters = [f for f in lst.filters
                           if not (f[0].lower() == header.lower() and (not value or f[1] == value))]
            self._ok(lst, f"+OK filter deleted. [{header}][{value}]")
            return
        if parts[0].lower() == "add":
            args = parts[1] if len(parts) > 1 else ""
        header, _, value = args.partition(" ")
        if not header or not value:
            self._ok(lst, "-ERR invalid syntax")
            return
        lst.filters.append((header, value))
        self._ok(lst, f"+OK filter added. [{header}]=[{value}]")


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


class ThreadedEslPeer:
    """An :class:`EslPeer` on its own event loop in a background thread, for code under
    test that runs its own ``asyncio.run`` (the CLI, zone drain).  ``call(fn, *args)`` runs
    one of the peer's methods (``fire``, ``replay``, ...) on the peer's loop."""

    def __init__(self, password: str = "ClueCon", **kw: object) -> None:
        self._kw = kw
        self.password = password
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="eslpeer",
                                        daemon=True)
        self.peer: EslPeer | None = None

    def __enter__(self) -> ThreadedEslPeer:
        self._thread.start()
        peer = EslPeer(self.password, **self._kw)  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(peer.start(), self.loop).result(10)
        self.peer = peer
        return self

    def __exit__(self, *exc: object) -> None:
        if self.peer is not None:
            asyncio.run_coroutine_threadsafe(self.peer.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def address(self) -> str:
        assert self.peer is not None
        return self.peer.address

    @property
    def answers(self) -> dict[str, Answer]:
        """The peer's script (a dict: set entries from the test's thread before the command
        that reads them)."""
        assert self.peer is not None
        return self.peer.answers

    @property
    def commands(self) -> list[str]:
        assert self.peer is not None
        return self.peer.commands

    def call(self, fn: Callable[..., object], *args: object, **kw: object) -> object:
        async def run() -> object:
            return fn(*args, **kw)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)
