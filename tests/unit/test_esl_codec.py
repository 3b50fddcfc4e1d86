"""The ESL codec: every frame whole, one byte at a time and followed by trailing data;
hostile values; the client's FIFO reply matching; the server's command parsing.

Frames are written out byte for byte from the reference (shared/reference/
freeswitch-esl-protocol.md, 2.2-2.7), not produced by the encoder under test, except
where a test says it round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from zpctl.protocols import esl

DISCONNECT = (b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
              b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")

BGJOB_BODY = (b"Event-Name: BACKGROUND_JOB\nCore-UUID: 8b1c\nEvent-Date-Local: 2026-01-01%2010%3A00%3A00\n"
              b"Job-UUID: 7f4e2b3c-1\nJob-Owner-UUID: _undef_\nJob-Command: originate\n"
              b"Job-Command-Arg: %7Borigination_uuid%3D5c0%7Dsofia/gateway/gw1/15551234%20%26park()\n"
              b"Content-Length: 8\n\n+OK 5c0\n")
HANGUP_BODY = (b"Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: 5c0\nHangup-Cause: NORMAL_CLEARING\n"
               b"variable_sip_h_X-Note: a%0AContent-Length%3A%2099%0A%0Ainjected\n"
               b"variable_pct: 100%41\nvariable_list: ARRAY::a|:b\n\n")
JSON_BODY = json.dumps({"Event-Name": "CUSTOM", "Event-Subclass": "sofia::register",
                        "from-user": "1001", "contact": "<sip:1001@10.0.0.1:5060>",
                        "variable_codecs": ["OPUS", "PCMU"], "Content-Length": "5",
                        "_body": "hello"}, separators=(",", ":")).encode()
XML_BODY = (b"<event><headers><Event-Name>HEARTBEAT</Event-Name><Session-Count>3</Session-Count>"
            b"<Up-Time>0%20years</Up-Time></headers></event>")


def _event_frame(body: bytes, fmt: str = "plain") -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(body), fmt.encode()) + body


Check = Callable[[esl.ServerEvent], None]


def _is_auth(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.AuthRequest)


def _is_accepted(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.CommandReply)
    assert ev.reply_text == "+OK accepted"
    assert ev.ok


def _is_bgapi_reply(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.CommandReply)
    assert ev.reply_text == "+OK Job-UUID: 7f4e2b3c-1"
    assert ev.job_uuid == "7f4e2b3c-1"


def _is_api(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.ApiResponse)
    assert ev.body == "+OK\n"
    assert ev.ok


def _is_api_error(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.ApiResponse)
    assert ev.body == "-ERR nosuch Command not found!\n"
    assert not ev.ok


def _is_bgjob(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.Event)
    assert ev.name == "BACKGROUND_JOB"
    assert ev.job_uuid == "7f4e2b3c-1"
    assert ev.body == "+OK 5c0\n"
    assert ev.get("Job-Command-Arg") == "{origination_uuid=5c0}sofia/gateway/gw1/15551234 &park()"
    assert ev.get("Event-Date-Local") == "2026-01-01 10:00:00"
    assert ev.get("Job-Owner-UUID") == "_undef_"


def _is_hangup(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.Event)
    assert ev.name == "CHANNEL_HANGUP_COMPLETE"
    # The encoded newlines stay inside the one value: no header was injected.
    assert ev.get("variable_sip_h_X-Note") == "a\nContent-Length: 99\n\ninjected"
    assert [k for k, _ in ev.headers].count("Content-Length") == 0
    assert ev.body == ""
    assert ev.get("variable_pct") == "100A"  # the double_encode=false quirk, decoded
    assert ev.array("variable_list") == ["a", "b"]
    assert ev.unique_id == "5c0"


def _is_json(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.Event)
    assert (ev.name, ev.subclass, ev.format) == ("CUSTOM", "sofia::register", "json")
    assert ev.get("contact") == "<sip:1001@10.0.0.1:5060>"
    assert ev.array("variable_codecs") == ["OPUS", "PCMU"]
    assert ev.body == "hello"


def _is_xml(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.Event)
    assert (ev.name, ev.format) == ("HEARTBEAT", "xml")
    assert ev.get("Session-Count") == "3"
    assert ev.get("Up-Time") == "0 years"


def _is_log(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.LogData)
    assert ev.level == 4
    assert ev.text == "[WARNING] x.c:1 trouble\n"
    assert ev.headers.get("Log-File") == "x.c"


def _is_disconnect(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.DisconnectNotice)
    assert len(ev.message.encode()) == 67
    assert not ev.linger


def _is_linger(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.DisconnectNotice)
    assert ev.linger
    assert ev.headers.get("Controlled-Session-UUID") == "5c0"
    assert ev.message == ""


def _is_rude(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.RudeRejection)
    assert ev.message == "Access Denied, go away.\n"


def _is_connect(ev: esl.ServerEvent) -> None:
    # Outbound `connect`: a CHANNEL_DATA event as one header block; values decoded.
    assert isinstance(ev, esl.CommandReply)
    assert ev.reply_text == "+OK\n"
    assert ev.headers.get("Event-Name") == "CHANNEL_DATA"
    assert ev.headers.get("Caller-Caller-ID-Name") == "Nancy D"


def _is_unknown(ev: esl.ServerEvent) -> None:
    assert isinstance(ev, esl.UnknownFrame)
    assert ev.frame.content_type == "text/something-new"
    assert ev.frame.body == b"xy"


FRAMES: dict[str, tuple[bytes, Check]] = {
    "auth-request": (b"Content-Type: auth/request\n\n", _is_auth),
    "auth-accepted": (b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n", _is_accepted),
    "bgapi-reply": (b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: 7f4e2b3c-1\n"
                    b"Job-UUID: 7f4e2b3c-1\n\n", _is_bgapi_reply),
    "api-response": (b"Content-Type: api/response\nContent-Length: 4\n\n+OK\n", _is_api),
    "api-error": (b"Content-Type: api/response\nContent-Length: 31\n\n"
                  b"-ERR nosuch Command not found!\n", _is_api_error),
    "background-job": (_event_frame(BGJOB_BODY), _is_bgjob),
    "hangup-hostile": (_event_frame(HANGUP_BODY), _is_hangup),
    "event-json": (_event_frame(JSON_BODY, "json"), _is_json),
    "event-xml": (_event_frame(XML_BODY, "xml"), _is_xml),
    "log-data": (b"Content-Type: log/data\nContent-Length: 24\nLog-Level: 4\nText-Channel: 3\n"
                 b"Log-File: x.c\nLog-Func: f\nLog-Line: 1\nUser-Data: \n\n"
                 b"[WARNING] x.c:1 trouble\n", _is_log),
    "disconnect": (DISCONNECT, _is_disconnect),
    "linger": (b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: 5c0\n"
               b"Content-Disposition: linger\nChannel-Name: sofia/x\nLinger-Time: -1\n"
               b"Content-Length: 0\n\n", _is_linger),
    "rude-rejection": (b"Content-Type: text/rude-rejection\nContent-Length: 24\n\n"
                       b"Access Denied, go away.\n", _is_rude),
    "outbound-connect": (b"Event-Name: CHANNEL_DATA\nCore-UUID: 1\nCaller-Caller-ID-Name: Nancy%20D\n"
                         b"Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\n"
                         b"Control: full\n\n", _is_connect),
    "unknown": (b"Content-Type: text/something-new\nContent-Length: 2\n\nxy", _is_unknown),
}

TRAILER = b"Content-Type: api/response\nContent-Length: 4\n\n+OK\n"


def _parse_all(chunks: list[bytes]) -> list[esl.ServerEvent]:
    parser = esl.FrameParser()
    out: list[esl.ServerEvent] = []
    for chunk in [*chunks, b""]:
        parser.receive_data(chunk)
        while True:
            frame = parser.next_frame()
            if frame is esl.NEED_DATA:
                break
            if frame is esl.CLOSED:
                return out
            assert isinstance(frame, esl.Frame)
            out.append(esl.decode_frame(frame))
    raise AssertionError("no CLOSED after end of stream")


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_frame_whole(name: str) -> None:
    data, check = FRAMES[name]
    [ev] = _parse_all([data])
    check(ev)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_frame_one_byte_at_a_time(name: str) -> None:
    data, check = FRAMES[name]
    [ev] = _parse_all([data[i:i + 1] for i in range(len(data))])
    check(ev)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_frame_with_trailing_data(name: str) -> None:
    data, check = FRAMES[name]
    first, second = _parse_all([data + TRAILER[:10], TRAILER[10:]])
    check(first)
    _is_api(second)


def test_every_frame_back_to_back_byte_at_a_time() -> None:
    stream = b"".join(FRAMES[n][0] for n in sorted(FRAMES))
    events = _parse_all([stream[i:i + 1] for i in range(len(stream))])
    assert len(events) == len(FRAMES)
    for ev, name in zip(events, sorted(FRAMES), strict=True):
        FRAMES[name][1](ev)


def test_crlf_and_blank_lines_between_frames_are_accepted() -> None:
    data = b"\r\n\nContent-Type: api/response\r\nContent-Length: 4\r\n\r\n+OK\n"
    [ev] = _parse_all([data])
    _is_api(ev)


def test_content_length_counts_bytes_not_characters() -> None:
    body = "Zoë ☎\n".encode()
    assert len(body) != len(body.decode())
    data = b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body + TRAILER
    first, second = _parse_all([data[i:i + 1] for i in range(len(data))])
    assert isinstance(first, esl.ApiResponse)
    assert first.body == "Zoë ☎\n"
    _is_api(second)


@pytest.mark.parametrize("value", [b"-1", b"+4", b"abc", b"", b"4x", b"1e3", b"\xd9\xa4"])
def test_bad_content_length_is_the_peers_fault(value: bytes) -> None:
    parser = esl.FrameParser()
    parser.receive_data(b"Content-Type: api/response\nContent-Length: " + value + b"\n\n+OK\n")
    with pytest.raises(esl.RemoteProtocolError, match="Content-Length"):
        parser.next_frame()


def test_huge_content_length_is_refused_before_buffering() -> None:
    parser = esl.FrameParser(max_body=1024)
    parser.receive_data(b"Content-Type: api/response\nContent-Length: 99999999999999999999\n\n")
    with pytest.raises(esl.RemoteProtocolError, match="over the limit"):
        parser.next_frame()


def test_endless_header_block_is_refused() -> None:
    parser = esl.FrameParser()
    parser.receive_data(b"X: " + b"a" * (esl.MAX_HEADER_BLOCK + 1))
    with pytest.raises(esl.RemoteProtocolError, match="header block"):
        parser.next_frame()


@pytest.mark.parametrize("cut", [5, 27, 44, 47])
def test_truncated_frame_at_end_of_stream(cut: int) -> None:
    data = FRAMES["api-response"][0] + FRAMES["background-job"][0][:cut]
    parser = esl.FrameParser()
    parser.receive_data(data)
    assert isinstance(parser.next_frame(), esl.Frame)
    assert parser.next_frame() is esl.NEED_DATA  # not an error while the stream is open
    parser.receive_data(b"")
    with pytest.raises(esl.RemoteProtocolError, match="closed in the middle"):
        parser.next_frame()


def test_header_line_without_colon() -> None:
    parser = esl.FrameParser()
    parser.receive_data(b"Content-Type: command/reply\nthis is not a header\n\n")
    with pytest.raises(esl.RemoteProtocolError, match="without a name"):
        parser.next_frame()


@pytest.mark.parametrize(("body", "why"), [
    (b"Core-UUID: 1\n\n", "Event-Name"),
    (b"Event-Name: X\nContent-Length: 10\n\nshort", "Content-Length"),
    (b"Event-Name: X\n\ntrailing junk", "stray"),
])
def test_malformed_plain_event_bodies(body: bytes, why: str) -> None:
    with pytest.raises(esl.RemoteProtocolError, match=why):
        _parse_all([_event_frame(body)])


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'{"Event-Name": {"x": 1}}', b"{}"])
def test_malformed_json_events(body: bytes) -> None:
    with pytest.raises(esl.RemoteProtocolError):
        _parse_all([_event_frame(body, "json")])


def test_header_names_are_case_insensitive_and_values_lose_leading_spaces() -> None:
    [ev] = _parse_all([b"content-type: command/reply\nREPLY-TEXT:    +OK  x \n\n"])
    assert isinstance(ev, esl.CommandReply)
    assert ev.reply_text == "+OK  x "


# --- encoding ---------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "encoded"), [
    ("command/reply", "command/reply"),
    ("+OK", "%2BOK"),
    ("sofia::register", "sofia%3A%3Aregister"),
    ("2026-01-01 10:00:00", "2026-01-01%2010%3A00%3A00"),
    ("100%41", "100%41"),  # already-encoded-looking: kept (double_encode=false)
    ("100%4a", "100%254a"),  # lowercase hex is not "already encoded"
    ("a\nb", "a%0Ab"),
    ("/,'()*!$-._~", "/,'()*!$-._~"),
    ("Zoë", "Zo%C3%AB"),
])
def test_url_encode_as_freeswitch(raw: str, encoded: str) -> None:
    assert esl.url_encode(raw) == encoded


@pytest.mark.parametrize("value", ["x", "a\nContent-Length: 5\n\nbody", "Zoë ☎ 100%", "",
                                   "ARRAY::a|:b"])
@pytest.mark.parametrize("fmt", ["plain", "json", "xml"])
def test_serialized_events_round_trip(value: str, fmt: str) -> None:
    headers = [("Event-Name", "CUSTOM"), ("Event-Subclass", "zpctl::test"), ("X-Value", value)]
    frame = esl.event_frame(headers, "body\n", fmt)
    [ev] = _parse_all([frame[i:i + 1] for i in range(len(frame))])
    assert isinstance(ev, esl.Event)
    expected = "_undef_" if value == "" and fmt == "plain" else value
    assert ev.get("X-Value") == expected
    assert ev.body == "body\n"


def test_commands_encode_exactly() -> None:
    assert esl.encode_command(esl.auth("ClueCon")) == b"auth ClueCon\n\n"
    assert esl.encode_command(esl.api("status")) == b"api status\n\n"
    assert esl.encode_command(esl.bgapi("originate x &park()", "j-1")) == \
        b"bgapi originate x &park()\nJob-UUID: j-1\n\n"
    assert esl.encode_command(esl.event(["CHANNEL_CREATE", "CUSTOM", "sofia::register"])) == \
        b"event plain CHANNEL_CREATE CUSTOM sofia::register\n\n"
    assert esl.encode_command(esl.filter_add("Unique-ID", "5c0")) == b"filter Unique-ID 5c0\n\n"
    assert esl.encode_command(esl.execute("5c0", "playback", "/x.wav", event_lock=True)) == (
        b"sendmsg 5c0\ncall-command: execute\nexecute-app-name: playback\n"
        b"execute-app-arg: /x.wav\nevent-lock: true\n\n")
    multi = esl.encode_command(esl.execute("5c0", "speak", "line1\nline2"))
    assert multi.endswith(b"Content-Type: text/plain\nContent-Length: 11\n\nline1\nline2")


@pytest.mark.parametrize("cmd", [
    esl.Command("api status\nexit"),
    esl.Command("auth pw\r"),
    esl.Command(""),
    esl.Command("sendmsg x", esl.Headers((("execute-app-arg", "a\nhangup-cause: X"),))),
    esl.Command("sendmsg x", esl.Headers((("bad:name", "v"),))),
    esl.Command("sendevent X", esl.Headers((("Content-Length", "3"),))),
])
def test_we_refuse_to_send_what_would_break_framing(cmd: esl.Command) -> None:
    with pytest.raises(esl.LocalProtocolError):
        esl.encode_command(cmd)


# --- the client state machine -----------------------------------------------------------

def test_client_matches_replies_fifo_and_routes_race_events_apart() -> None:
    conn = esl.ClientConnection()
    conn.receive_data(b"Content-Type: auth/request\n\n")
    assert isinstance(conn.next_event(), esl.AuthRequest)
    assert conn.next_event() is esl.NEED_DATA
    conn.send(esl.auth("pw"))
    assert conn.state == esl.State.AUTHENTICATING
    conn.receive_data(FRAMES["auth-accepted"][0])
    reply = conn.next_event()
    assert isinstance(reply, esl.CommandReply)
    assert reply.command == "auth pw"
    assert conn.state == esl.State.READY
    conn.send(esl.bgapi("originate x &park()", "7f4e2b3c-1"))
    conn.send(esl.api("uuid_kill 5c0"))
    # An event arrives between the bgapi command and its reply: it takes no reply slot.
    stream = (FRAMES["hangup-hostile"][0] + FRAMES["bgapi-reply"][0] + FRAMES["background-job"][0]
              + FRAMES["api-response"][0])
    for i in range(len(stream)):
        conn.receive_data(stream[i:i + 1])
    got = list(conn.events())
    assert [type(e).__name__ for e in got] == ["Event", "CommandReply", "Event", "ApiResponse"]
    assert isinstance(got[1], esl.CommandReply)
    assert got[1].command.startswith("bgapi originate")
    assert isinstance(got[3], esl.ApiResponse)
    assert got[3].command == "api uuid_kill 5c0"
    assert conn.pending == 0


def test_reply_with_nothing_pending_is_the_peers_fault() -> None:
    conn = esl.ClientConnection()
    conn.receive_data(FRAMES["api-response"][0])
    with pytest.raises(esl.RemoteProtocolError, match="no command waiting"):
        conn.next_event()


def test_wrong_password_then_disconnect() -> None:
    conn = esl.ClientConnection()
    conn.receive_data(b"Content-Type: auth/request\n\n")
    conn.next_event()
    conn.send(esl.auth("nope"))
    conn.receive_data(b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n" + DISCONNECT)
    reply = conn.next_event()
    assert isinstance(reply, esl.CommandReply)
    assert not reply.ok
    assert conn.state == esl.State.CLOSING
    _is_disconnect(conn.next_event())  # type: ignore[arg-type]
    conn.receive_data(b"")
    assert conn.next_event() is esl.CLOSED
    with pytest.raises(esl.LocalProtocolError):
        conn.send(esl.api("status"))


def test_rude_rejection_before_any_greeting() -> None:
    conn = esl.ClientConnection()
    conn.receive_data(FRAMES["rude-rejection"][0] + DISCONNECT)
    assert isinstance(conn.next_event(), esl.RudeRejection)
    assert conn.state == esl.State.CLOSING
    assert isinstance(conn.next_event(), esl.DisconnectNotice)


# --- the server side ---------------------------------------------------------------------

def _commands(data: bytes) -> list[esl.Command]:
    srv = esl.ServerConnection()
    out = []
    for i in range(len(data)):
        srv.receive_data(data[i:i + 1])
        while isinstance(cmd := srv.next_command(), esl.Command):
            out.append(cmd)
    return out


def test_server_parses_commands_with_headers_and_bodies_byte_at_a_time() -> None:
    data = (b"\n\nauth ClueCon\r\n\r\n"
            b"api sofia status profile x:y\n\n"
            b"sendevent CUSTOM\nEvent-Subclass: zpctl::x\nContent-Length: 5\n\nhello"
            b"bgapi status\nJob-UUID:   j-2\n\n")
    cmds = _commands(data)
    assert [c.line for c in cmds] == ["auth ClueCon", "api sofia status profile x:y",
                                      "sendevent CUSTOM", "bgapi status"]
    assert cmds[2].headers.get("event-subclass") == "zpctl::x"
    assert cmds[2].body == b"hello"
    assert cmds[3].headers.get("Job-UUID") == "j-2"
    assert cmds[1].verb == "api"


def test_server_values_are_not_decoded() -> None:
    [cmd] = _commands(b"sendmsg u\nexecute-app-arg: 100%41\n\n")
    assert cmd.headers.get("execute-app-arg") == "100%41"


def test_server_refuses_command_bodies_over_16_mib() -> None:
    srv = esl.ServerConnection()
    srv.receive_data(b"sendevent X\nContent-Length: %d\n\n" % (esl.MAX_COMMAND_BODY + 1))
    with pytest.raises(esl.RemoteProtocolError):
        srv.next_command()
