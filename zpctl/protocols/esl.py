"""FreeSWITCH Event Socket (mod_event_socket) as a sans-IO codec: bytes in, events out.

How it works: every message on the socket is a *header block* of ``Name: value`` lines
ended by an empty line, optionally followed by exactly ``Content-Length`` **bytes** of body
(nothing terminates the body).  :class:`FrameParser` cuts the byte stream into frames; the
header block is split into lines first and each value is percent-decoded afterwards (never
before: an encoded ``%0A`` inside a channel variable must stay inside that one value).
:func:`decode_frame` turns a frame into a small frozen event by its ``Content-Type``:
``auth/request``, ``command/reply``, ``api/response``, ``text/event-plain|json|xml``
(whose body is itself a serialized event, with an optional inner body), ``log/data``,
``text/disconnect-notice`` and ``text/rude-rejection``.

:class:`ClientConnection` is the client's state machine on top of that: it encodes
commands, remembers what it sent, and matches ``command/reply`` and ``api/response`` frames
to commands first-in first-out.  Events, log lines and disconnect notices can arrive
between a command and its reply (the reference's "race events"); they are returned as
they come and never consume a reply slot.  :class:`ServerConnection` is the other side (for
the in-process test switch): it parses commands and encodes replies and events exactly as
FreeSWITCH serializes them.

Errors are split as in h11: :class:`LocalProtocolError` when *we* try to send something the
protocol cannot carry (a newline inside a command, a reply nobody asked for);
:class:`RemoteProtocolError` when the *peer* sent something malformed (a negative or huge
Content-Length, a header line without a colon, a truncated frame at end of stream).
Facts come from ``shared/reference/freeswitch-esl-protocol.md``.
"""

from __future__ import annotations

import enum
import json
import re
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

# Limits (mod_event_socket.c): a header block up to 10 MiB; a command body up to 16 MiB.
MAX_HEADER_BLOCK = 10 * 1024 * 1024
MAX_COMMAND_BODY = 16 * 1024 * 1024
# What a client accepts as the body of one frame (api output of `show channels` on a busy
# switch can be large, but not this large).
MAX_CLIENT_BODY = 64 * 1024 * 1024

DISCONNECT_BODY = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
RUDE_REJECTION_BODY = "Access Denied, go away.\n"

CANONICAL_EVENT_HEADERS = (
    "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname",
    "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT",
    "Event-Date-Timestamp", "Event-Calling-File", "Event-Calling-Function",
    "Event-Calling-Line-Number", "Event-Sequence",
)


class ProtocolError(Exception):
    """Something broke the ESL protocol."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not valid ESL."""


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA = _Sentinel.NEED_DATA  # feed more bytes with receive_data()
CLOSED = _Sentinel.CLOSED  # the peer closed the stream and every frame has been returned


# --- headers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Headers:
    """Ordered header pairs with case-insensitive lookup (names are case-insensitive)."""

    items: tuple[tuple[str, str], ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        for k, v in self.items:
            if k.lower() == low:
                return v
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def as_dict(self) -> dict[str, str]:
        """First value of each name (FreeSWITCH event headers are unique by name)."""
        out: dict[str, str] = {}
        for k, v in self.items:
            out.setdefault(k, v)
        return out

    @classmethod
    def of(cls, pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        return cls(tuple((str(k), str(v)) for k, v in items))


# --- URL encoding as switch_url_encode / esl_url_decode do it ----------------------------

# Bytes switch_url_encode leaves alone: printable ASCII minus the unsafe set below.
_UNSAFE = set(b"\r\n #%&+:;<=>?@[\\]^`{|}\"")
_HEX = b"0123456789ABCDEF"


def url_encode(value: str) -> str:
    """Encode a header value as FreeSWITCH does for plain events (switch_url_encode).

    Quirk kept on purpose: a ``%`` already followed by two *uppercase* hex digits is not
    re-encoded, so "100%41" goes out unchanged and decodes as "100A" (reference 2.3).
    """
    raw = value.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and i + 2 < len(raw) and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out += raw[i:i + 3]
            i += 3
            continue
        if b < 0x20 or b > 0x7E or b in _UNSAFE:
            out += b"%" + bytes((_HEX[b >> 4], _HEX[b & 15]))
        else:
            out.append(b)
        i += 1
    return out.decode("ascii")


_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def url_decode(raw: bytes) -> str:
    """Percent-decode one header value (``%XX`` only; ``+`` stays ``+``), then UTF-8."""
    if b"%" in raw:
        raw = _PCT.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
    return raw.decode("utf-8", errors="replace")


# --- frames ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """One message off the wire: its decoded header block and its raw body."""

    headers: Headers
    body: bytes = b""
    line: str = ""  # the command line, for frames a server parses from a client

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "") or ""


_BLOCK_END = re.compile(rb"\n\r?\n")


def _parse_header_lines(block: bytes, *, decode: bool = True) -> Headers:
    """Split a header block into lines, then each line at its first ':'; decode the value."""
    pairs: list[tuple[str, str]] = []
    # FreeSWITCH percent-encodes every byte above 0x7E, so a block is ASCII in practice; a
    # stray byte is replaced rather than rejected.  Decoding happens per value, after the
    # split, so an encoded %0A never becomes a line break.
    for line in block.decode("utf-8", errors="replace").split("\n"):
        if line.endswith("\r"):
            line = line[:-1]  # noqa: PLW2901 - the same line without its CR
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise RemoteProtocolError(f"header line without a name and ':': {line[:60]!r}")
        value = value.lstrip(" ")
        if decode and "%" in value:
            value = unquote(value, errors="replace")
        pairs.append((name.strip(), value))
    return Headers(tuple(pairs))


def _content_length(headers: Headers, limit: int) -> int:
    raw = headers.get("Content-Length")
    if raw is None:
        return 0
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):  # rejects "-1", "+5", "1e3", "", "٤"
        raise RemoteProtocolError(f"Content-Length is not a non-negative integer: {raw!r}")
    n = int(text)
    if n > limit:
        raise RemoteProtocolError(f"Content-Length {n} is over the limit of {limit} bytes")
    return n


class FrameParser:
    """Cut a byte stream into frames: header block to the first empty line, then exactly
    Content-Length bytes.  LF or CRLF line ends; blank lines between frames are skipped."""

    def __init__(self, *, max_body: int = MAX_CLIENT_BODY, decode_values: bool = True,
                 command_line: bool = False) -> None:
        self._buf = bytearray()
        self.command_line = command_line  # the first line is a command, not a header
        self._eof = False
        self._pending: tuple[Headers, int, str] | None = None  # block read, body awaited
        self.max_body = max_body
        self.decode_values = decode_values

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the peer closed the stream."""
        if self._eof and data:
            raise LocalProtocolError("data received after end of stream")
        if not data:
            self._eof = True
            return
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> Frame | _Sentinel:
        """The next whole frame, NEED_DATA, or CLOSED at a clean end of stream."""
        if self._pending is None:
            # Skip blank lines before a header block (FreeSWITCH does for commands).
            start = 0
            while start < len(self._buf) and self._buf[start] in (0x0A, 0x0D):
                if self._buf[start] == 0x0D and start + 1 >= len(self._buf):
                    break  # a lone CR: wait for what follows
                start += 1
            if start:
                del self._buf[:start]
            m = _BLOCK_END.search(self._buf)
            if m is None:
                if len(self._buf) > MAX_HEADER_BLOCK:
                    raise RemoteProtocolError(
                        f"header block longer than {MAX_HEADER_BLOCK} bytes without an end")
                return self._at_end()
            block = bytes(self._buf[:m.start()])
            del self._buf[:m.end()]
            line = ""
            if self.command_line:
                first, _, block = block.partition(b"\n")
                line = first.rstrip(b"\r").decode("utf-8", errors="replace")
            headers = _parse_header_lines(block, decode=self.decode_values)
            self._pending = (headers, _content_length(headers, self.max_body), line)
        headers, length, line = self._pending
        if len(self._buf) < length:
            return self._at_end()
        body = bytes(self._buf[:length])
        del self._buf[:length]
        self._pending = None
        return Frame(headers, body, line)

    def _at_end(self) -> _Sentinel:
        if not self._eof:
            return NEED_DATA
        if self._buf.strip(b"\r\n") or self._pending is not None:
            raise RemoteProtocolError("connection closed in the middle of a frame "
                                      f"({len(self._buf)} bytes of it received)")
        return CLOSED


# --- events (server to client) -----------------------------------------------------------

@dataclass(frozen=True)
class AuthRequest:
    """The server's greeting on an inbound connection: send ``auth`` next."""


@dataclass(frozen=True)
class CommandReply:
    """``command/reply``: the answer to one command (``Reply-Text`` is ``+OK ...``/``-ERR ...``)."""

    reply_text: str
    headers: Headers = Headers()
    command: str = ""  # the command this answers, filled in by ClientConnection

    @property
    def ok(self) -> bool:
        return self.reply_text.startswith("+OK")

    @property
    def job_uuid(self) -> str | None:
        return self.headers.get("Job-UUID")


@dataclass(frozen=True)
class ApiResponse:
    """``api/response``: the output of an ``api`` command."""

    body: str
    headers: Headers = Headers()
    command: str = ""

    @property
    def ok(self) -> bool:
        return not self.body.startswith(("-ERR", "-USAGE"))


@dataclass(frozen=True)
class Event:
    """A FreeSWITCH event, from ``text/event-plain``, ``-json`` or ``-xml``."""

    name: str
    headers: Headers
    body: str = ""
    format: str = "plain"

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def subclass(self) -> str | None:
        return self.headers.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        return self.headers.get("Unique-ID")

    @property
    def job_uuid(self) -> str | None:
        return self.headers.get("Job-UUID")

    def array(self, name: str) -> list[str]:
        """An array header (``ARRAY::a|:b``) as a list; a plain value as a one-item list."""
        value = self.headers.get(name)
        if value is None:
            return []
        if value.startswith("ARRAY::"):
            return value[len("ARRAY::"):].split("|:")
        return [value]


@dataclass(frozen=True)
class LogData:
    """``log/data``: one log line (after ``log <level>``)."""

    level: int
    text: str
    headers: Headers = Headers()


@dataclass(frozen=True)
class DisconnectNotice:
    """``text/disconnect-notice``: the server is about to close (or linger)."""

    message: str
    headers: Headers = Headers()

    @property
    def linger(self) -> bool:
        return self.headers.get("Content-Disposition") == "linger"


@dataclass(frozen=True)
class RudeRejection:
    """``text/rude-rejection``: the server's ACL refused us; a disconnect notice follows."""

    message: str


@dataclass(frozen=True)
class UnknownFrame:
    """A frame with a Content-Type this codec does not know (passed on, not fatal)."""

    frame: Frame


ServerEvent = (AuthRequest | CommandReply | ApiResponse | Event | LogData | DisconnectNotice
               | RudeRejection | UnknownFrame)


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def parse_event_plain(body: bytes) -> Event:
    """A ``text/event-plain`` body: encoded header lines, blank line, optional inner body."""
    m = _BLOCK_END.search(body)
    block, rest = (body, b"") if m is None else (body[:m.start()], body[m.end():])
    headers = _parse_header_lines(block)
    inner = b""
    if "Content-Length" in headers:
        n = _content_length(headers, len(rest))
        inner, rest = rest[:n], rest[n:]
    if rest.strip(b"\r\n"):
        raise RemoteProtocolError(f"{len(rest)} stray bytes after the event")
    name = headers.get("Event-Name")
    if not name:
        raise RemoteProtocolError("event without Event-Name")
    return Event(name, headers, _text(inner), "plain")


def parse_event_json(body: bytes) -> Event:
    """A ``text/event-json`` body: one JSON object, values not URL-encoded."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"event-json body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RemoteProtocolError("event-json body is not a JSON object")
    pairs: list[tuple[str, str]] = []
    inner = ""
    for k, v in doc.items():
        if k == "_body":
            inner = str(v)
        elif isinstance(v, list):
            pairs.append((str(k), "ARRAY::" + "|:".join(str(x) for x in v)))
        elif isinstance(v, str | int | float):
            pairs.append((str(k), str(v)))
        else:
            raise RemoteProtocolError(f"event-json header {k!r} is not a string or an array")
    headers = Headers(tuple(pairs))
    name = headers.get("Event-Name")
    if not name:
        raise RemoteProtocolError("event without Event-Name")
    return Event(name, headers, inner, "json")


def parse_event_xml(body: bytes) -> Event:
    """A ``text/event-xml`` body: ``<event><headers><Name>urlenc</Name>...``."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - expat in 3.11 refuses entity expansion bombs
    except ET.ParseError as exc:
        raise RemoteProtocolError(f"event-xml body is not XML: {exc}") from None
    hdrs = root.find("headers")
    if root.tag != "event" or hdrs is None:
        raise RemoteProtocolError("event-xml body is not <event><headers>...")
    pairs = [(h.tag, url_decode((h.text or "").encode("utf-8"))) for h in hdrs]
    inner_el = root.find("body")
    headers = Headers(tuple(pairs))
    name = headers.get("Event-Name")
    if not name:
        raise RemoteProtocolError("event without Event-Name")
    return Event(name, headers, inner_el.text or "" if inner_el is not None else "", "xml")


def decode_frame(frame: Frame) -> ServerEvent:
    """Turn one frame from a server into its event."""
    ct = frame.content_type
    h = frame.headers
    if ct == "auth/request":
        return AuthRequest()
    if ct == "command/reply":
        return CommandReply(h.get("Reply-Text", "") or "", h)
    if ct == "api/response":
        return ApiResponse(_text(frame.body), h)
    if ct == "text/event-plain":
        return parse_event_plain(frame.body)
    if ct == "text/event-json":
        return parse_event_json(frame.body)
    if ct == "text/event-xml":
        return parse_event_xml(frame.body)
    if ct == "log/data":
        level = h.get("Log-Level", "0") or "0"
        return LogData(int(level) if level.isdigit() else 0, _text(frame.body), h)
    if ct == "text/disconnect-notice":
        return DisconnectNotice(_text(frame.body), h)
    if ct == "text/rude-rejection":
        return RudeRejection(_text(frame.body))
    return UnknownFrame(frame)


# --- commands (client to server) ---------------------------------------------------------

@dataclass(frozen=True)
class Command:
    """One command: its first line, extra header lines, and an optional body."""

    line: str
    headers: Headers = Headers()
    body: bytes = b""

    @property
    def verb(self) -> str:
        return self.line.split(" ", 1)[0].lower()

    @property
    def args(self) -> str:
        parts = self.line.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""


def _check_line(what: str, text: str) -> None:
    if "\n" in text or "\r" in text:
        raise LocalProtocolError(f"{what} must be one line (no CR or LF): {text!r}")


def encode_command(cmd: Command) -> bytes:
    """The bytes of ``cmd``: the line, its headers, a blank line, then the body if any.

    Values in commands are sent raw (FreeSWITCH does not URL-decode them), so a CR or LF
    in the line, a name or a value would inject a second command: refused.
    """
    _check_line("a command", cmd.line)
    if not cmd.line.strip():
        raise LocalProtocolError("empty command")
    out = [cmd.line.encode("utf-8")]
    for name, value in cmd.headers:
        _check_line("a header name", name)
        _check_line(f"header {name}", value)
        if ":" in name or not name.strip():
            raise LocalProtocolError(f"bad header name {name!r}")
        if name.lower() == "content-length":
            raise LocalProtocolError("Content-Length is set from the body")
        out.append(f"{name}: {value}".encode())
    if cmd.body:
        if len(cmd.body) > MAX_COMMAND_BODY:
            raise LocalProtocolError(f"command body over {MAX_COMMAND_BODY} bytes")
        out.append(f"Content-Length: {len(cmd.body)}".encode())
    return b"\n".join(out) + b"\n\n" + cmd.body


def auth(password: str) -> Command:
    return Command(f"auth {password}")


def api(command: str) -> Command:
    return Command(f"api {command}")


def bgapi(command: str, job_uuid: str | None = None) -> Command:
    headers = Headers((("Job-UUID", job_uuid),)) if job_uuid else Headers()
    return Command(f"bgapi {command}", headers)


def event(names: Sequence[str], fmt: str = "plain") -> Command:
    """Subscribe; put ``CUSTOM a::b`` last (every token after CUSTOM is a subclass)."""
    if fmt not in ("plain", "json", "xml"):
        raise LocalProtocolError(f"event format must be plain, json or xml, not {fmt!r}")
    return Command(f"event {fmt} {' '.join(names)}".rstrip())


def nixevent(names: Sequence[str]) -> Command:
    return Command(f"nixevent {' '.join(names)}")


def noevents() -> Command:
    return Command("noevents")


def filter_add(header: str, value: str) -> Command:
    return Command(f"filter {header} {value}")


def filter_delete(header: str, value: str | None = None) -> Command:
    return Command(f"filter delete {header}" + (f" {value}" if value else ""))


def myevents(uuid: str, fmt: str | None = None) -> Command:
    return Command(f"myevents {uuid}" + (f" {fmt}" if fmt else ""))


def sendmsg(uuid: str, headers: Mapping[str, str] | Iterable[tuple[str, str]],
            body: bytes = b"") -> Command:
    return Command(f"sendmsg {uuid}", Headers.of(headers), body)


def execute(uuid: str, app: str, arg: str = "", *, event_lock: bool = False,
            loops: int | None = None) -> Command:
    """``sendmsg`` running one dialplan application on a channel."""
    hdrs: list[tuple[str, str]] = [("call-command", "execute"), ("execute-app-name", app)]
    body = b""
    if "\n" in arg or "\r" in arg:
        # A multi-line argument goes as a text/plain body (reference 2.6).
        body = arg.encode("utf-8")
        hdrs.append(("Content-Type", "text/plain"))
    elif arg:
        hdrs.append(("execute-app-arg", arg))
    if loops is not None:
        hdrs.append(("loops", str(loops)))
    if event_lock:
        hdrs.append(("event-lock", "true"))
    return sendmsg(uuid, hdrs, body)


def log(level: str | int | None = None) -> Command:
    return Command("log" + (f" {level}" if level is not None else ""))


def exit_() -> Command:
    return Command("exit")


# --- the client's connection state machine ----------------------------------------------

class State(enum.Enum):
    GREETING = "greeting"  # waiting for auth/request
    AUTHENTICATING = "authenticating"  # auth sent, reply awaited
    READY = "ready"
    CLOSING = "closing"  # exit sent or disconnect notice seen
    CLOSED = "closed"


@dataclass
class ClientConnection:
    """The client side: encode commands, match replies FIFO, pass events apart.

    ``send(cmd)`` returns bytes to write; ``receive_data`` and ``next_event`` take what came
    back.  A ``command/reply`` or ``api/response`` answers the oldest command still
    unanswered and comes back with that command's line in ``.command``.
    """

    parser: FrameParser = field(default_factory=FrameParser)
    state: State = State.GREETING
    _pending: deque[str] = field(default_factory=deque)

    @property
    def pending(self) -> int:
        """Commands sent and not yet answered."""
        return len(self._pending)

    def send(self, cmd: Command) -> bytes:
        if self.state == State.CLOSED:
            raise LocalProtocolError("the connection is closed")
        data = encode_command(cmd)
        self._pending.append(cmd.line)
        if cmd.verb == "auth" and self.state == State.GREETING:
            self.state = State.AUTHENTICATING
        elif cmd.verb == "exit" or cmd.line.startswith("..."):
            self.state = State.CLOSING
        return data

    def receive_data(self, data: bytes) -> None:
        self.parser.receive_data(data)

    def next_event(self) -> ServerEvent | _Sentinel:
        frame = self.parser.next_frame()
        if frame is CLOSED:
            self.state = State.CLOSED
            return CLOSED
        if frame is NEED_DATA:
            return NEED_DATA
        assert isinstance(frame, Frame)
        ev = decode_frame(frame)
        if isinstance(ev, AuthRequest):
            if self.state not in (State.GREETING, State.AUTHENTICATING):
                raise RemoteProtocolError("auth/request in the middle of a session")
            return ev
        if isinstance(ev, CommandReply | ApiResponse):
            if not self._pending:
                raise RemoteProtocolError(
                    f"{frame.content_type} with no command waiting for it: "
                    f"{(ev.reply_text if isinstance(ev, CommandReply) else ev.body)[:60]!r}")
            line = self._pending.popleft()
            if self.state == State.AUTHENTICATING and line.lower().startswith("auth"):
                self.state = State.READY if isinstance(ev, CommandReply) and ev.ok \
                    else State.CLOSING
            return replace(ev, command=line)
        if (isinstance(ev, DisconnectNotice) and not ev.linger) or isinstance(ev, RudeRejection):
            self.state = State.CLOSING
        return ev

    def events(self) -> Iterator[ServerEvent]:
        """Every whole event buffered so far."""
        while True:
            ev = self.next_event()
            if ev is NEED_DATA or ev is CLOSED:
                return
            assert not isinstance(ev, _Sentinel)
            yield ev


# --- the server's side (used by the in-process test switch) -----------------------------

def encode_frame(headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    """A server frame: the headers as given (FreeSWITCH's order), blank line, body."""
    lines = "".join(f"{k}: {v}\n" for k, v in headers)
    return lines.encode("utf-8") + b"\n" + body


def auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def command_reply(text: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    _check_line("Reply-Text", text)
    return encode_frame([("Content-Type", "command/reply"), ("Reply-Text", text), *extra])


def api_response(output: str) -> bytes:
    body = output.encode("utf-8")
    return encode_frame([("Content-Type", "api/response"), ("Content-Length", str(len(body)))],
                        body)


def disconnect_notice(message: str = DISCONNECT_BODY,
                      extra: Sequence[tuple[str, str]] = ()) -> bytes:
    body = message.encode("utf-8")
    return encode_frame([("Content-Type", "text/disconnect-notice"), *extra,
                         ("Content-Length", str(len(body)))], body)


def rude_rejection() -> bytes:
    body = RUDE_REJECTION_BODY.encode()
    return encode_frame([("Content-Type", "text/rude-rejection"),
                         ("Content-Length", str(len(body)))], body)


def log_data(level: int, text: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    body = text.encode("utf-8")
    return encode_frame([("Content-Type", "log/data"), ("Content-Length", str(len(body))),
                         ("Log-Level", str(level)), *extra], body)


def serialize_event_plain(headers: Sequence[tuple[str, str]], body: str = "") -> bytes:
    """An event as ``switch_event_serialize(encode=TRUE)`` writes it: encoded values,
    ``_undef_`` for empty ones, an extra ``\\n``, and ``Content-Length`` plus body if any."""
    out = []
    for k, v in headers:
        out.append(f"{k}: {url_encode(v) if v != '' else '_undef_'}\n")
    raw = body.encode("utf-8")
    if raw:
        out.append(f"Content-Length: {len(raw)}\n\n")
        return "".join(out).encode("ascii") + raw
    out.append("\n")
    return "".join(out).encode("ascii")


def serialize_event_json(headers: Sequence[tuple[str, str]], body: str = "") -> bytes:
    doc: dict[str, object] = {}
    for k, v in headers:
        doc[k] = v[len("ARRAY::"):].split("|:") if v.startswith("ARRAY::") else v
    raw = body.encode("utf-8")
    if raw:
        doc["Content-Length"] = str(len(raw))
        doc["_body"] = body
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def serialize_event_xml(headers: Sequence[tuple[str, str]], body: str = "") -> bytes:
    root = ET.Element("event")
    hdrs = ET.SubElement(root, "headers")
    for k, v in headers:
        ET.SubElement(hdrs, k).text = url_encode(v)
    raw = body.encode("utf-8")
    if raw:
        ET.SubElement(root, "Content-Length").text = str(len(raw))
        ET.SubElement(root, "body").text = body
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=False))


def event_frame(headers: Sequence[tuple[str, str]], body: str = "", fmt: str = "plain") -> bytes:
    """A whole ``text/event-<fmt>`` frame (Content-Length first, then Content-Type)."""
    if fmt == "json":
        payload = serialize_event_json(headers, body)
    elif fmt == "xml":
        payload = serialize_event_xml(headers, body)
    else:
        payload = serialize_event_plain(headers, body)
    return encode_frame([("Content-Length", str(len(payload))),
                         ("Content-Type", f"text/event-{fmt}")], payload)


class ServerConnection:
    """The server side: parse client commands (LF or CRLF, blank lines skipped, body by
    Content-Length up to 16 MiB; header values taken raw, as mod_event_socket does)."""

    def __init__(self) -> None:
        self.parser = FrameParser(max_body=MAX_COMMAND_BODY, decode_values=False,
                                  command_line=True)

    def receive_data(self, data: bytes) -> None:
        self.parser.receive_data(data)

    def next_command(self) -> Command | _Sentinel:
        frame = self.parser.next_frame()
        if not isinstance(frame, Frame):
            return frame
        headers = Headers(tuple(i for i in frame.headers if i[0].lower() != "content-length"))
        return Command(frame.line, headers, frame.body)
