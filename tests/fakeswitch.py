"""SIMULATOR — an in-process ESL server for tests.  It is NOT FreeSWITCH.

A test double, so it lives in ``tests/`` and is not part of the zpctl package (nor its
wheel); tests and ``benchmarks/bench_esl.py`` import it as ``tests.fakeswitch``.  Its
purpose is a scripted peer for the faults a real switch cannot produce on demand (auth
rejection, ACL rejection, connections dropped mid-session, an event racing a reply,
background jobs finishing out of order; truncated frames and hung sockets are scripted
beside it, with plain sockets, in test_esl_client.py and test_calls_faults.py), plus the
CLI tests of ``zpctl switch`` / ``zpctl calls`` until the real-FreeSWITCH tests
(tests/integration/test_freeswitch_real.py) cover them.

It speaks mod_event_socket's inbound wire protocol as written down in
``shared/reference/freeswitch-esl-protocol.md`` (greeting, auth and its failure with a
disconnect notice, ``-ERR command not found`` before auth and for unknown commands,
``api``/``bgapi`` with BACKGROUND_JOB, ``event plain|json|xml`` with CUSTOM subclasses,
filters with their exact semantics, ``nixevent``/``noevents``, ``myevents``, ``sendmsg``,
``sendevent``, ``log``/``nolog``, ``exit``, and the rude rejection of an address outside
its ACL), and keeps a small model of channels so that call-control commands have effects
a test can observe: ``uuid_kill``, ``uuid_transfer``, ``uuid_hold``, ``uuid_park``,
``uuid_record``, ``uuid_bridge``, ``originate`` (including ``&eavesdrop(uuid)`` with the
whisper variables, used for call monitoring), ``fsctl pause|resume``, ``hupall``,
``status`` and ``show calls|channels [count] [as json]``, and HEARTBEAT events with
``Session-Count``.

The answers to ``status``, ``show calls|channels [count] as json`` and ``fsctl
pause_check`` have the layout a real switch gave (FreeSWITCH 1.11 in the lab, recorded by
tests/esl_capture.py into tests/unit/fixtures/esl/): the same lines, the same row columns
(the modelled ones filled in, the rest empty).  ``show ... count as json`` was never
recorded and stays marked SIMULATOR below.  Nothing passing against this server says
anything about a real switch: tests/integration/test_call_control.py runs every command
against the lab's switches.

Where it knowingly differs from a real switch (simplifications, not reference facts):
calls appear fully formed (CHANNEL_CREATE then CHANNEL_ANSWER at once, no state/callstate/
progress events, no media, no dialplan) and ``originate`` answers at once with
``+OK <uuid>`` instead of waiting for the far end; eavesdrop and record carry no audio and
write no files; header values of HEARTBEAT, ``show`` rows and event dates are synthetic
(fixed rates and idle CPU, a subset of the columns, ``Event-Calling-File: fakeswitch.py``);
``fsctl shutdown|hupall|sps|verbose_events`` are accepted and do nothing; hanging up one
leg hangs up its partner with the same cause, ``uuid_park`` unbridges without hanging up
the partner, and transferring one leg of a bridge hangs up the other with BLIND_TRANSFER.

Not exercised by any zpctl test (only by test_fakeswitch.py, or by nothing at all) and kept
only for completeness: ``userauth`` with its event/API restrictions, ``divert_events``,
log/data frames (``log`` without a level, ``nolog`` after ``log``), ``sendevent`` to a
session, the ``heartbeat_interval`` timer (tests call ``heartbeat()``), ``api_handlers``,
``max_sessions`` refusals, the plain-text ``show`` table, ``uuid_getvar``/``uuid_setvar``/
``uuid_exists``, ``hupall``, ``fsctl`` other than ``pause|resume|pause_check inbound``,
``uuid_transfer`` of a bridged leg (with or without ``-bleg|-both``), and the
``originate`` refusals other than ``error/`` URLs (paused, congestion, duplicate uuid).
Candidates for removal once the real-FreeSWITCH tests run somewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from zpctl.protocols import esl

CORE_UUID = "00000000-5a9c-4f5e-8c11-fa4e5e117c00"
VERSION = "0.0.0-zpctl-simulator"

# The columns of a real switch's `show channels|calls as json` rows, from what FreeSWITCH
# 1.11 said in the lab (recorded by tests/esl_capture.py).
_REAL = Path(__file__).resolve().parent / "unit" / "fixtures" / "esl"
CHANNEL_COLUMNS = tuple(json.loads((_REAL / "api-show-channels-call.txt").read_text())["rows"][0])
CALL_COLUMNS = tuple(json.loads((_REAL / "api-show-calls-call.txt").read_text())["rows"][0])

# Event names the simulator knows (a subset of switch_event.c's EVENT_NAMES).
EVENT_NAMES = frozenset({
    "CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_APPLICATION", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "API", "LOG", "DTMF", "BACKGROUND_JOB", "HEARTBEAT", "CHANNEL_DATA", "SESSION_HEARTBEAT",
    "CALL_SECURE", "RECORD_START", "RECORD_STOP", "PLAYBACK_START", "PLAYBACK_STOP",
    "CALL_UPDATE", "MESSAGE_WAITING", "SHUTDOWN_REQUESTED", "DEVICE_STATE", "TEXT",
})
HANGUP_CAUSES = frozenset({
    "NONE", "UNALLOCATED_NUMBER", "NO_ROUTE_DESTINATION", "NORMAL_CLEARING", "USER_BUSY",
    "NO_USER_RESPONSE", "NO_ANSWER", "CALL_REJECTED", "NORMAL_UNSPECIFIED",
    "NORMAL_TEMPORARY_FAILURE", "SWITCH_CONGESTION", "ORIGINATOR_CANCEL", "SYSTEM_SHUTDOWN",
    "MANAGER_REQUEST", "BLIND_TRANSFER", "ATTENDED_TRANSFER", "ALLOTTED_TIMEOUT",
    "USER_NOT_REGISTERED", "PICKED_OFF", "LOSE_RACE", "UNWANTED", "DECLINE",
})
LOG_LEVELS = {"console": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5,
              "info": 6, "debug": 7}


class CallRefused(Exception):
    """The simulated switch refused a new inbound session (paused or at max sessions)."""


@dataclass
class Channel:
    uuid: str
    name: str
    direction: str  # inbound | outbound
    cid_num: str
    cid_name: str
    dest: str
    context: str = "default"
    state: str = "CS_EXECUTE"
    callstate: str = "ACTIVE"
    answer_state: str = "answered"
    other: str | None = None  # the bridged leg
    held: bool = False
    parked: bool = False
    recordings: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    application: str = ""
    application_data: str = ""
    eavesdrop_target: str | None = None
    created: float = field(default_factory=time.time)


@dataclass
class _Listener:
    peer: str
    writer: asyncio.StreamWriter
    authed: bool = False
    fmt: str = "plain"
    all_events: bool = False
    names: set[str] = field(default_factory=set)
    subclasses: set[str] = field(default_factory=set)
    custom_plain: bool = False  # CUSTOM with no subclass: only subclass-less custom events
    filters: list[tuple[str, str]] = field(default_factory=list)
    myevents: str | None = None
    log_level: int | None = None
    allowed_api: set[str] | None = None  # userauth restriction; None = all
    allowed_events: set[str] | None = None
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


class FakeSwitch:
    """SIMULATOR of one FreeSWITCH's event socket and a handful of channels (for tests)."""

    def __init__(self, password: str = "ClueCon", *, hostname: str = "fakeswitch",
                 allow: Sequence[str] = ("127.0.0.0/8", "::1/128"),
                 users: dict[str, tuple[str, str, str, bool]] | None = None,
                 heartbeat_interval: float | None = None, max_sessions: int = 1000,
                 job_delay: float = 0.0) -> None:
        self.password = password
        self.hostname = hostname
        self.allow = [ipaddress.ip_network(n) for n in allow]
        # userauth: "user@domain" -> (password, allowed events, allowed api, allowed log)
        self.users = users or {}
        self.heartbeat_interval = heartbeat_interval
        self.max_sessions = max_sessions
        self.job_delay = job_delay
        self.channels: dict[str, Channel] = {}
        self.paused_inbound = False
        self.paused_outbound = False
        self.commands: list[str] = []  # every command line received (auth masked)
        self.sessions_since_startup = 0
        self.started = time.time()
        self.host = "127.0.0.1"
        self.port = 0
        self._listeners: list[_Listener] = []
        self._server: asyncio.Server | None = None
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.api_handlers: dict[str, Callable[[str], str]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeSwitch:
        self._server = await asyncio.start_server(self._handle, host, port)
        sock = self._server.sockets[0].getsockname()
        self.host, self.port = str(sock[0]), int(sock[1])
        if self.heartbeat_interval:
            self._heartbeat_task = asyncio.create_task(self._heartbeats())
        return self

    async def stop(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
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

    async def __aenter__(self) -> FakeSwitch:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- simulated calls (test helpers) -----------------------------------------------------

    def inbound_call(self, caller: str, dest: str, *, caller_name: str = "",
                     bridge_to: str | None = None, context: str = "default",
                     variables: dict[str, str] | None = None) -> tuple[str, str | None]:
        """An answered inbound call, bridged to ``bridge_to`` when given: (a_uuid, b_uuid)."""
        if self.paused_inbound:
            raise CallRefused("inbound sessions are paused (fsctl pause inbound)")
        if len(self.channels) + (2 if bridge_to else 1) > self.max_sessions:
            raise CallRefused("max sessions reached")
        a = self._new_channel("inbound", f"sofia/zpctl/{caller}@proxy", caller, caller_name or caller,
                              dest, context, variables or {})
        b_uuid = None
        if bridge_to:
            b = self._new_channel("outbound", f"sofia/zpctl/{bridge_to}", caller,
                                  caller_name or caller, bridge_to, context, {})
            self._bridge(a, b)
            b_uuid = b.uuid
        return a.uuid, b_uuid

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """Hang up a channel (and its bridged leg, as a two-party call ends)."""
        ch = self.channels.pop(uuid, None)
        if ch is None:
            return False
        ch.state, ch.callstate, ch.answer_state = "CS_HANGUP", "HANGUP", "hangup"
        self._channel_event("CHANNEL_HANGUP", ch, [("Hangup-Cause", cause)])
        self._channel_event("CHANNEL_HANGUP_COMPLETE", ch, [("Hangup-Cause", cause),
                                                            ("variable_hangup_cause", cause)])
        self._channel_event("CHANNEL_DESTROY", ch)
        if ch.other and ch.other in self.channels:
            other = self.channels[ch.other]
            other.other = None
            self._channel_event("CHANNEL_UNBRIDGE", other)
            self.hangup(other.uuid, cause)
        for spy in [c for c in self.channels.values() if c.eavesdrop_target == uuid]:
            spy.eavesdrop_target = None
        return True

    def session_count(self) -> int:
        return len(self.channels)

    def heartbeat(self) -> None:
        """Fire one HEARTBEAT event now."""
        up = int(time.time() - self.started)
        self.fire("HEARTBEAT", [
            ("Event-Info", "System Ready"), ("Up-Time", _uptime_text(up)),
            ("FreeSWITCH-Version", VERSION), ("Uptime-msec", str(up * 1000)),
            ("Session-Count", str(self.session_count())), ("Max-Sessions", str(self.max_sessions)),
            ("Session-Per-Sec", "30"), ("Session-Per-Sec-Last", "0"),
            ("Session-Per-Sec-Max", "0"), ("Session-Per-Sec-FiveMin", "0"),
            ("Session-Since-Startup", str(self.sessions_since_startup)),
            ("Session-Peak-Max", "0"), ("Session-Peak-FiveMin", "0"), ("Idle-CPU", "99.0")])

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
        std = [("Event-Name", name), ("Core-UUID", CORE_UUID),
               ("FreeSWITCH-Hostname", self.hostname), ("FreeSWITCH-Switchname", self.hostname),
               ("FreeSWITCH-IPv4", self.host), ("FreeSWITCH-IPv6", "::1"),
               ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
               ("Event-Date-GMT", formatdate(now, usegmt=True)),
               ("Event-Date-Timestamp", str(int(now * 1_000_000))),
               ("Event-Calling-File", "fakeswitch.py"), ("Event-Calling-Function", "simulate"),
               ("Event-Calling-Line-Number", "1"), ("Event-Sequence", str(next(self._seq)))]
        if subclass:
            std.append(("Event-Subclass", subclass))
        return std + list(extra)

    def fire(self, name: str, extra: Sequence[tuple[str, str]] = (), body: str = "",
             subclass: str | None = None, *, headers: list[tuple[str, str]] | None = None) -> None:
        """Deliver an event to every listener that subscribed to it and whose filters pass."""
        hdrs = headers if headers is not None else self._event_headers(name, extra, subclass)
        h = esl.Headers(tuple(hdrs))
        for lst in list(self._listeners):
            if lst.authed and not lst.closing and self._wants(lst, name, h):
                self._write(lst, esl.event_frame(hdrs, body, lst.fmt))

    def _wants(self, lst: _Listener, name: str, h: esl.Headers) -> bool:
        if lst.myevents is not None:
            mine = h.get("Unique-ID") == lst.myevents or (
                name == "BACKGROUND_JOB" and h.get("Job-Owner-UUID") == lst.myevents)
            if not mine:
                return False
        elif not lst.subscribed():
            return False
        if lst.myevents is None:
            if name == "CUSTOM":
                sub = h.get("Event-Subclass")
                ok = lst.all_events or (sub in lst.subclasses if sub else lst.custom_plain)
            else:
                ok = lst.all_events or name in lst.names
            if not ok:
                return False
        if lst.allowed_events is not None and name not in lst.allowed_events:
            return False
        return filter_passes(lst.filters, h)

    def _channel_headers(self, ch: Channel) -> list[tuple[str, str]]:
        out = [("Channel-State", ch.state), ("Channel-Call-State", ch.callstate),
               ("Channel-Name", ch.name), ("Unique-ID", ch.uuid), ("Call-Direction", ch.direction),
               ("Answer-State", ch.answer_state), ("Caller-Direction", ch.direction),
               ("Caller-Caller-ID-Name", ch.cid_name), ("Caller-Caller-ID-Number", ch.cid_num),
               ("Caller-Destination-Number", ch.dest), ("Caller-Context", ch.context),
               ("Caller-Unique-ID", ch.uuid), ("Channel-Call-UUID", ch.uuid)]
        if ch.other:
            out.append(("Other-Leg-Unique-ID", ch.other))
        out += [(f"variable_{k}", v) for k, v in sorted(ch.variables.items())]
        return out

    def _channel_event(self, name: str, ch: Channel, extra: Sequence[tuple[str, str]] = ()) -> None:
        self.fire(name, [*self._channel_headers(ch), *extra])

    def _write(self, lst: _Listener, data: bytes) -> None:
        if not lst.writer.is_closing():
            lst.writer.write(data)

    async def _heartbeats(self) -> None:
        assert self.heartbeat_interval
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.heartbeat()

    # -- channels ---------------------------------------------------------------------------

    def _new_channel(self, direction: str, name: str, cid_num: str, cid_name: str, dest: str,
                     context: str, variables: dict[str, str], uuid: str | None = None) -> Channel:
        ch = Channel(uuid or str(uuidlib.uuid4()), name, direction, cid_num, cid_name, dest,
                     context, variables=dict(variables))
        self.channels[ch.uuid] = ch
        self.sessions_since_startup += 1
        self._channel_event("CHANNEL_CREATE", ch)
        self._channel_event("CHANNEL_ANSWER", ch)
        return ch

    def _bridge(self, a: Channel, b: Channel) -> None:
        for x in (a, b):
            if x.other and x.other in self.channels and x.other not in (a.uuid, b.uuid):
                old = self.channels[x.other]
                old.other = None
                self._channel_event("CHANNEL_UNBRIDGE", old)
            x.parked = False
        a.other, b.other = b.uuid, a.uuid
        self._channel_event("CHANNEL_BRIDGE", a, [("Bridge-A-Unique-ID", a.uuid),
                                                  ("Bridge-B-Unique-ID", b.uuid)])

    # -- connections ----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else "0.0.0.0"
        lst = _Listener(ip, writer)
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
        line = cmd.line
        verb = cmd.verb
        self.commands.append("auth ***" if verb == "auth" else line)
        if ("unload" in line or "reload" in line) and "mod_event_socket" in line:
            which = "unload" if "unload" in line else "reload"
            line, verb = f"api bgapi {which} mod_event_socket", "api"
        if verb == "exit" or line.startswith("..."):
            self._ok(lst, "+OK bye")
            self._write(lst, esl.disconnect_notice())
            lst.closing = True
            return
        if not lst.authed:
            if verb == "auth":
                self._auth(lst, line[5:])
            elif verb == "userauth":
                self._userauth(lst, line[9:])
            else:
                self._ok(lst, "-ERR command not found")
            return
        handler = {
            "api": self._api, "bgapi": self._bgapi, "event": self._event, "events": self._event,
            "nixevent": self._nixevent, "noevents": self._noevents, "filter": self._filter,
            "divert_events": self._divert, "sendmsg": self._sendmsg, "sendevent": self._sendevent,
            "myevents": self._myevents, "log": self._log, "nolog": self._nolog,
            "linger": self._not_session, "nolinger": self._not_session,
        }.get(verb)
        if handler is None:
            self._ok(lst, "-ERR command not found")
            return
        await handler(lst, cmd, line)

    def _auth(self, lst: _Listener, password: str) -> None:
        if password == self.password:
            lst.authed = True
            self._ok(lst, "+OK accepted")
            return
        self._ok(lst, "-ERR invalid")
        self._write(lst, esl.disconnect_notice())
        lst.closing = True

    def _userauth(self, lst: _Listener, arg: str) -> None:
        who, _, password = arg.partition(":")
        entry = self.users.get(who)
        if entry is None or entry[0] != password:
            self._ok(lst, "-ERR invalid")
            self._write(lst, esl.disconnect_notice())
            lst.closing = True
            return
        _, events, apis, logs = entry
        lst.authed = True
        if events != "all":
            lst.allowed_events = set(re.split(r"[, ]+", events.strip()))
        if apis != "all":
            lst.allowed_api = set(re.split(r"[, ]+", apis.strip()))
        self._ok(lst, "+OK accepted", [("Allowed-Events", events), ("Allowed-API", apis),
                                       ("Allowed-LOG", "true" if logs else "false")])

    async def _not_session(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        self._ok(lst, "-ERR not controlling a session")

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

    async def _event(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        parts = line.split()[1:]
        fmt = "plain"
        if parts and parts[0].lower() in ("plain", "json", "xml"):
            fmt = parts.pop(0).lower()
        if lst.allowed_events is not None and "ALL" in (p.upper() for p in parts):
            self._ok(lst, "-ERR permission denied")
            return
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

    async def _nixevent(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
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

    async def _noevents(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        if not lst.subscribed():
            self._ok(lst, "-ERR not listening for events")
            return
        lst.all_events, lst.names, lst.subclasses, lst.custom_plain = False, set(), set(), False
        self._ok(lst, "+OK no longer listening for events")

    async def _filter(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
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

    async def _divert(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        self._ok(lst, "-ERR not controlling a session.")

    async def _myevents(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        parts = line.split()
        if len(parts) < 2:
            self._ok(lst, "-ERR command not found")  # a bare myevents on inbound
            return
        uuid = parts[1]
        fmt = parts[2].lower() if len(parts) > 2 else None
        if lst.myevents is not None:
            self._ok(lst, "-ERR aready enabled.")
            return
        if uuid not in self.channels and fmt is not None:
            self._ok(lst, "-ERR invalid uuid")
            return
        lst.myevents = uuid
        if fmt in ("plain", "json", "xml"):
            lst.fmt = fmt
        self._ok(lst, "+OK Events Enabled")

    async def _log(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        parts = line.split()
        if len(parts) == 1:
            lst.log_level = 7
            self._ok(lst, "+OK log level  [7]")
            return
        arg = parts[1].lower()
        level = int(arg) if arg.isdigit() else LOG_LEVELS.get(arg)
        if level is None or not 0 <= level <= 7:
            self._ok(lst, "-ERR invalid log level")
            return
        lst.log_level = level
        name = next(k for k, v in LOG_LEVELS.items() if v == level)
        self._ok(lst, f"+OK log level {name} [{level}]")

    async def _nolog(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        if lst.log_level is None:
            self._ok(lst, "-ERR not loging")
            return
        lst.log_level = None
        self._ok(lst, "+OK no longer logging")

    def log(self, level: int, text: str) -> None:
        """Write a log/data frame to every listener logging at ``level`` or above."""
        for lst in self._listeners:
            if lst.authed and lst.log_level is not None and level <= lst.log_level:
                self._write(lst, esl.log_data(level, text, [
                    ("Text-Channel", "3"), ("Log-File", "fakeswitch.py"), ("Log-Func", "log"),
                    ("Log-Line", "1"), ("User-Data", "")]))

    async def _sendevent(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        name = (line.split()[1] if len(line.split()) > 1 else "CUSTOM").upper()
        event_uuid = str(uuidlib.uuid4())
        extra = [(k, v) for k, v in cmd.headers if k.lower() not in ("event-subclass",)]
        sub = cmd.headers.get("Event-Subclass")
        hdrs = self._event_headers(name, [("Event-UUID", event_uuid), *extra],
                                   sub if name == "CUSTOM" else None)
        self._ok(lst, f"+OK {event_uuid}")
        target = cmd.headers.get("Unique-ID")
        if target and target in self.channels:
            return  # queued to that session, not fired
        self.fire(name, headers=hdrs, body=cmd.body.decode("utf-8", errors="replace"))

    async def _sendmsg(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        parts = line.split()
        uuid = parts[1] if len(parts) > 1 else (cmd.headers.get("session-id") or "")
        ch = self.channels.get(uuid)
        if ch is None:
            self._ok(lst, f"-ERR invalid session id [{uuid}]")
            return
        self._ok(lst, "+OK")
        what = (cmd.headers.get("call-command") or "").lower()
        if what == "hangup":
            self.hangup(uuid, cmd.headers.get("hangup-cause") or "NORMAL_CLEARING")
        elif what == "execute":
            app = cmd.headers.get("execute-app-name") or ""
            arg = cmd.headers.get("execute-app-arg") or cmd.body.decode("utf-8", errors="replace")
            self._execute(ch, app, arg, cmd.headers.get("event-uuid") or str(uuidlib.uuid4()))

    def _execute(self, ch: Channel, app: str, arg: str, app_uuid: str) -> None:
        ch.application, ch.application_data = app, arg
        info = [("Application", app), ("Application-Data", arg), ("Application-UUID", app_uuid)]
        self._channel_event("CHANNEL_EXECUTE", ch, info)
        response = "_none_"
        if app == "hangup":
            self._channel_event("CHANNEL_EXECUTE_COMPLETE", ch, [*info, ("Application-Response",
                                                                        response)])
            self.hangup(ch.uuid, arg or "NORMAL_CLEARING")
            return
        if app == "park":
            ch.parked = True
            self._channel_event("CHANNEL_PARK", ch)
        elif app == "set" and "=" in arg:
            k, _, v = arg.partition("=")
            ch.variables[k] = v
        elif app == "eavesdrop":
            target = self.channels.get(arg)
            ch.eavesdrop_target = arg if target else None
            response = "+OK" if target else "-ERR no such channel"
        self._channel_event("CHANNEL_EXECUTE_COMPLETE", ch, [*info, ("Application-Response",
                                                                    response)])

    # -- api ------------------------------------------------------------------------------

    async def _api(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        text = line[4:].strip()
        name = text.split(" ", 1)[0]
        if lst.allowed_api is not None and name not in lst.allowed_api:
            self._ok(lst, "-ERR permission denied")
            return
        out = self.run_api(text)
        self._reply(lst, esl.api_response(out))
        self.log(7, f"api {text}\n")

    async def _bgapi(self, lst: _Listener, cmd: esl.Command, line: str) -> None:
        text = line[6:].strip()
        name, _, args = text.partition(" ")
        if lst.allowed_api is not None and name not in lst.allowed_api:
            self._ok(lst, "-ERR permission denied")
            return
        job = cmd.headers.get("Job-UUID") or str(uuidlib.uuid4())
        self._ok(lst, f"+OK Job-UUID: {job}", [("Job-UUID", job)])

        async def run() -> None:
            if self.job_delay:
                await asyncio.sleep(self.job_delay)
            out = self.run_api(text)
            extra = [("Job-UUID", job), ("Job-Owner-UUID", ""), ("Job-Command", name)]
            if args:
                extra.append(("Job-Command-Arg", args))
            self.fire("BACKGROUND_JOB", extra, out)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def run_api(self, text: str) -> str:
        """Run one API command against the simulated switch; its output."""
        name, _, args = text.partition(" ")
        fn: Callable[[str], str] | None = self.api_handlers.get(name) or {
            "status": self._api_status, "version": lambda a: f"FreeSWITCH Version {VERSION}\n",
            "uptime": lambda a: f"{int(time.time() - self.started)}\n",
            "show": self._api_show, "uuid_kill": self._api_kill,
            "uuid_transfer": self._api_transfer, "uuid_hold": self._api_hold,
            "uuid_park": self._api_park, "uuid_record": self._api_record,
            "uuid_bridge": self._api_bridge, "uuid_getvar": self._api_getvar,
            "uuid_setvar": self._api_setvar, "uuid_exists": self._api_exists,
            "originate": self._api_originate, "fsctl": self._api_fsctl,
            "hupall": self._api_hupall, "bgapi": lambda a: f"+OK Job-UUID: {uuidlib.uuid4()}\n",
            "echo": lambda a: a,
        }.get(name)
        if fn is None:
            return f"-ERR {name} Command not found!\n"
        out = fn(args.strip())
        return out or "-ERR no reply\n"

    def _api_status(self, args: str) -> str:
        # The layout of a real switch's `status` (tests/unit/fixtures/esl/api-status-*.txt).
        up = int(time.time() - self.started)
        state = "paused" if self.paused_inbound else "ready"
        return (f"UP {_uptime_text(up)}\n"
                f"FreeSWITCH (Version {VERSION}  64bit) is {state}\n"
                f"{self.sessions_since_startup} session(s) since startup\n"
                f"{self.session_count()} session(s) - peak 0, last 5min 0 \n"
                f"0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n"
                f"{self.max_sessions} session(s) max\nmin idle cpu 0.00/99.00\n"
                "Current Stack Size/Max 240K/8192K\n")

    def _rows(self, calls: bool) -> list[dict[str, str]]:
        """``show channels|calls as json`` rows with every column a real switch gives (the
        recorded rows' keys, tests/unit/fixtures/esl/api-show-*-call.txt), the modelled
        ones filled in and the rest empty."""
        rows = []
        seen: set[str] = set()
        for ch in sorted(self.channels.values(), key=lambda c: (c.created, c.uuid)):
            if calls and ch.uuid in seen:
                continue
            row = dict.fromkeys(CALL_COLUMNS if calls else CHANNEL_COLUMNS, "")
            row.update({"uuid": ch.uuid, "direction": ch.direction,
                        "created_epoch": str(int(ch.created)), "name": ch.name,
                        "state": ch.state, "cid_name": ch.cid_name, "cid_num": ch.cid_num,
                        "dest": ch.dest, "callstate": "HELD" if ch.held else ch.callstate,
                        "hostname": self.hostname, "call_uuid": ch.uuid})
            if not calls:
                row.update({"application": ch.application,
                            "application_data": ch.application_data, "context": ch.context})
            else:
                other = self.channels.get(ch.other or "")
                seen.add(ch.uuid)
                if other:
                    seen.add(other.uuid)
                    row.update({"b_uuid": other.uuid, "b_name": other.name,
                                "b_cid_num": other.cid_num, "b_dest": other.dest,
                                "b_direction": other.direction, "b_state": other.state,
                                "b_callstate": "HELD" if other.held else other.callstate})
            rows.append(row)
        return rows

    def _api_show(self, args: str) -> str:
        words = args.split()
        if not words or words[0] not in ("calls", "channels"):
            return "-USAGE: show <calls|channels> [count] [as json]\n"
        rows = self._rows(words[0] == "calls")
        as_json = words[-2:] == ["as", "json"]
        if "count" in words[1:]:
            # As a real switch (api-show-channels-count.txt); `count as json` was never
            # recorded: SIMULATOR format.
            return json.dumps({"row_count": len(rows)}) + "\n" if as_json else \
                f"\n{len(rows)} total.\n"
        if as_json:
            doc: dict[str, object] = {"row_count": len(rows)}
            if rows:
                doc["rows"] = rows
            return json.dumps(doc) + "\n"
        if not rows:
            return "\n0 total.\n\n"
        cols = list(rows[0])
        lines = [",".join(cols)] + [",".join(r[c] for c in cols) for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n\n"

    def _api_kill(self, args: str) -> str:
        parts = args.split()
        if not parts:
            return "-USAGE: <uuid> [cause]\n"
        cause = parts[1] if len(parts) > 1 else "NORMAL_CLEARING"
        return "+OK\n" if self.hangup(parts[0], cause) else "-ERR No such channel!\n"

    def _api_transfer(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        ch = self.channels.get(parts[0])
        if ch is None:
            return "-ERR No such channel!\n"
        rest = parts[1:]
        leg = rest.pop(0) if rest[0] in ("-bleg", "-both") else ""
        if not rest:
            return "-ERR\n"
        dest = rest[0]
        context = rest[2] if len(rest) > 2 else ch.context
        targets = [ch]
        if leg and ch.other in self.channels:
            other = self.channels[ch.other]
            targets = [other] if leg == "-bleg" else [ch, other]
        for t in targets:
            if t.other and t.other in self.channels and leg != "-both":
                partner = self.channels[t.other]
                partner.other = None
                t.other = None
                self._channel_event("CHANNEL_UNBRIDGE", partner)
                self.hangup(partner.uuid, "BLIND_TRANSFER")
            t.dest, t.context, t.parked = dest, context, False
            t.application, t.application_data = "transfer", dest
            self._channel_event("CHANNEL_EXECUTE", t, [("Application", "transfer"),
                                                       ("Application-Data", dest)])
        return "+OK\n"

    def _api_hold(self, args: str) -> str:
        parts = args.split()
        mode = parts.pop(0) if parts and parts[0] in ("off", "toggle") else "on"
        ch = self.channels.get(parts[0]) if parts else None
        if ch is None:
            return "-ERR Operation failed\n"
        ch.held = {"on": True, "off": False, "toggle": not ch.held}[mode]
        self._channel_event("CHANNEL_HOLD" if ch.held else "CHANNEL_UNHOLD", ch)
        return "+OK Success\n"

    def _api_park(self, args: str) -> str:
        ch = self.channels.get(args.split(maxsplit=1)[0]) if args else None
        if ch is None:
            return "-ERR No such channel!\n"
        if ch.other and ch.other in self.channels:
            other = self.channels[ch.other]
            other.other = ch.other = None
            self._channel_event("CHANNEL_UNBRIDGE", other)
        ch.parked = True
        ch.application, ch.application_data = "park", ""
        self._channel_event("CHANNEL_PARK", ch)
        return "+OK\n"

    def _api_record(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 3 or parts[1] not in ("start", "stop", "mask", "unmask", "pause", "resume"):
            return "-USAGE: <uuid> [start|stop|mask|unmask|pause|resume] <path> [<limit>]\n"
        ch = self.channels.get(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        action, path = parts[1], parts[2]
        if action == "start":
            ch.recordings.append(path)
            self._channel_event("RECORD_START", ch, [("Record-File-Path", path)])
        elif action == "stop":
            if path not in ch.recordings and path != "all":
                return "-ERR Cannot stop recording session!\n"
            stopped = list(ch.recordings) if path == "all" else [path]
            for p in stopped:
                ch.recordings.remove(p)
                self._channel_event("RECORD_STOP", ch, [("Record-File-Path", p)])
        return "+OK Success\n"

    def _api_bridge(self, args: str) -> str:
        parts = args.split()
        if len(parts) != 2 or parts[0] not in self.channels or parts[1] not in self.channels:
            return "-ERR Invalid uuid\n"
        self._bridge(self.channels[parts[0]], self.channels[parts[1]])
        return f"+OK {parts[1]}\n"

    def _api_getvar(self, args: str) -> str:
        parts = args.split()
        ch = self.channels.get(parts[0]) if parts else None
        if ch is None or len(parts) < 2:
            return "-ERR No such channel!\n"
        return ch.variables.get(parts[1], "_undef_")

    def _api_setvar(self, args: str) -> str:
        parts = args.split(" ", 2)
        ch = self.channels.get(parts[0]) if parts else None
        if ch is None or len(parts) < 2:
            return "-ERR No such channel!\n"
        ch.variables[parts[1]] = parts[2] if len(parts) > 2 else ""
        return "+OK\n"

    def _api_exists(self, args: str) -> str:
        return "true" if args.strip() in self.channels else "false"

    def _api_originate(self, args: str) -> str:
        m = re.match(r"^(?:\{(?P<vars>[^}]*)\})?(?P<url>\S+)\s+(?P<target>\S+)"
                     r"(?:\s+(?P<dialplan>\S+))?(?:\s+(?P<context>\S+))?"
                     r"(?:\s+(?P<cidname>\S+))?(?:\s+(?P<cidnum>\S+))?", args)
        if not m:
            return "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] " \
                   "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"
        if self.paused_outbound:
            return "-ERR NORMAL_TEMPORARY_FAILURE\n"  # SIMULATOR choice of cause
        variables = dict(kv.split("=", 1) for kv in (m["vars"] or "").split(",") if "=" in kv)
        url = m["url"]
        if url.startswith("error/"):
            return f"-ERR {url[6:]}\n"
        if len(self.channels) + 1 > self.max_sessions:
            return "-ERR SWITCH_CONGESTION\n"
        ch_uuid = variables.get("origination_uuid")
        if ch_uuid and ch_uuid in self.channels:
            return "-ERR DESTINATION_OUT_OF_ORDER\n"
        who = url.split("/", 1)[-1].split("@", 1)[0]
        ch = self._new_channel("outbound", url, variables.get("origination_caller_id_number", who),
                               variables.get("origination_caller_id_name", who), who,
                               m["context"] or "default", variables, ch_uuid)
        target = m["target"]
        app = re.fullmatch(r"&(?P<app>[a-z_0-9]+)\((?P<arg>.*)\)", target)
        if app:
            self._execute(ch, app["app"], app["arg"], str(uuidlib.uuid4()))
        else:
            ch.dest, ch.application, ch.application_data = target, "transfer", target
        return f"+OK {ch.uuid}\n"

    def _api_fsctl(self, args: str) -> str:
        parts = args.split()
        if not parts:
            return "-USAGE: fsctl [pause|resume|shutdown|...]\n"
        what = parts[0]
        direction = parts[1] if len(parts) > 1 else ""
        if what in ("pause", "resume"):
            flag = what == "pause"
            if direction in ("", "inbound"):
                self.paused_inbound = flag
            if direction in ("", "outbound"):
                self.paused_outbound = flag
            return "+OK\n"
        if what == "pause_check":  # as a real switch: api-pause-check-{true,false}.txt
            if direction == "outbound":
                return "true" if self.paused_outbound else "false"
            if direction == "inbound":
                return "true" if self.paused_inbound else "false"
            return "true" if self.paused_inbound and self.paused_outbound else "false"
        if what in ("shutdown", "hupall", "max_sessions", "sps", "verbose_events"):
            if what == "max_sessions" and direction.isdigit():
                self.max_sessions = int(direction)
            return "+OK\n"
        return "-ERR INVALID COMMAND\n"  # SIMULATOR choice

    def _api_hupall(self, args: str) -> str:
        cause = args.split(maxsplit=1)[0] if args else "MANAGER_REQUEST"
        for uuid in list(self.channels):
            self.hangup(uuid, cause)
        return "+OK hangup all channels with cause " + cause + "\n"


def _uptime_text(seconds: int) -> str:
    parts = [(0, "year"), (seconds // 86400, "day"), (seconds % 86400 // 3600, "hour"),
             (seconds % 3600 // 60, "minute"), (seconds % 60, "second"), (0, "millisecond"),
             (0, "microsecond")]
    return ", ".join(f"{n} {w}{'' if n == 1 else 's'}" for n, w in parts)


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


class ThreadedFakeSwitch:
    """SIMULATOR on its own event loop in a background thread, for code under test that
    runs its own ``asyncio.run`` (the CLI, zone drain).  ``call(fn, *args)`` runs a
    simulation helper (e.g. ``sw.inbound_call``) on the simulator's loop and returns its
    result."""

    def __init__(self, password: str = "ClueCon", **kw: object) -> None:
        self._kw = kw
        self.password = password
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fakeswitch",
                                        daemon=True)
        self.switch: FakeSwitch | None = None

    def __enter__(self) -> ThreadedFakeSwitch:
        self._thread.start()
        sw = FakeSwitch(self.password, **self._kw)  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(sw.start(), self.loop).result(10)
        self.switch = sw
        return self

    def __exit__(self, *exc: object) -> None:
        if self.switch is not None:
            asyncio.run_coroutine_threadsafe(self.switch.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def address(self) -> str:
        assert self.switch is not None
        return self.switch.address

    def call(self, fn: Callable[..., object], *args: object, **kw: object) -> object:
        async def run() -> object:
            return fn(*args, **kw)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def later(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the simulator's loop after ``delay`` seconds."""
        self.loop.call_soon_threadsafe(lambda: self.loop.call_later(delay, lambda: fn(*args)))
