"""The sans-IO codecs: bencode/ng, JSON-RPC, SIP probe parsing."""

from __future__ import annotations

import json

import pytest

from zpctl.protocols import jsonrpc, ng, sip


@pytest.mark.parametrize("value", [0, -7, 42, "", "pong", b"\xff\x00", [], [1, "a", [2]],
                                   {}, {"result": "pong", "calls": ["a", "b"], "n": 3}])
def test_bencode_round_trip(value: object) -> None:
    assert ng.bdecode(ng.bencode(value)) == value


def test_bencode_sorts_keys() -> None:
    assert ng.bencode({"b": 1, "a": 2}) == b"d1:ai2e1:bi1ee"


@pytest.mark.parametrize("bad", [b"", b"i12", b"l", b"5:abc", b"d1:ai1e", b"x", b"i1ei2e",
                                 b"di1ei2ee", b"iabce"])
def test_bdecode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises((ng.BencodeError, ValueError)):
        ng.bdecode(bad)


def test_ng_command_and_reply() -> None:
    data, cookie = ng.encode_command("ping")
    assert data == cookie.encode() + b" d7:command4:pinge"
    got_cookie, reply = ng.decode_reply(cookie.encode() + b" d6:result4:ponge")
    assert (got_cookie, reply) == (cookie, {"result": "pong"})
    with pytest.raises(ng.BencodeError):
        ng.decode_reply(b"nocookie")


def test_jsonrpc_request_and_result() -> None:
    body, rid = jsonrpc.request("core.uptime")
    doc = json.loads(body)
    assert doc == {"jsonrpc": "2.0", "method": "core.uptime", "id": rid}
    reply = json.dumps({"jsonrpc": "2.0", "result": {"uptime": 5}, "id": rid}).encode()
    assert jsonrpc.parse_reply(reply, rid) == {"uptime": 5}


def test_jsonrpc_error_and_protocol_errors() -> None:
    body, rid = jsonrpc.request("nope.nope", ["x"])
    assert json.loads(body)["params"] == ["x"]
    err = json.dumps({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method Not Found"},
                      "id": rid}).encode()
    with pytest.raises(jsonrpc.RemoteError) as exc:
        jsonrpc.parse_reply(err, rid, "nope.nope")
    assert exc.value.code == -32601
    assert "Method Not Found" in str(exc.value)
    for bad in (b"not json", b"[]", b'{"jsonrpc":"1.0","result":1,"id":1}',
                b'{"jsonrpc":"2.0","id":%d}' % rid):
        with pytest.raises(jsonrpc.JsonRpcProtocolError):
            jsonrpc.parse_reply(bad, rid)
    with pytest.raises(jsonrpc.JsonRpcProtocolError):
        jsonrpc.parse_reply(b'{"jsonrpc":"2.0","result":1,"id":999999}', rid)


def test_sip_options_request_is_well_formed() -> None:
    data, call_id = sip.options_request("127.0.1.1", 5060, "127.0.0.1", 40000)
    text = data.decode()
    assert text.startswith("OPTIONS sip:127.0.1.1:5060 SIP/2.0\r\n")
    assert f"Call-ID: {call_id}\r\n" in text
    assert text.endswith("Content-Length: 0\r\n\r\n")


def test_sip_parse_response() -> None:
    raw = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bKx\r\n"
           b"Call-ID: abc\r\nServer: zpctl\r\nContent-Length: 0\r\n\r\n")
    resp = sip.parse_response(raw)
    assert (resp.status, resp.reason, resp.call_id) == (200, "OK", "abc")
    assert resp.header("server") == "zpctl"
    for bad in (b"OPTIONS sip:x SIP/2.0\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", b"\xff\xfe"):
        with pytest.raises(sip.SipParseError):
            sip.parse_response(bad)
