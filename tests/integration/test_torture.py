"""Malformed SIP and SDP thrown at the lb, a zone proxy and an sbc: torture messages in the
spirit of RFC 4475 (written here, not copied) and hypothesis-generated mutations of valid
messages.  Every process must stay up and answer with a 4xx or not at all, and a
legitimate call must still succeed afterwards."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zpctl.clients.probes import sip_options
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

SOURCE = "127.0.58.1"  # not exempt from the lb's flood limit, which these tests stay under
TARGETS = {"lab1-lb": ("127.0.1.1", 5060), "lab1-a-proxy": ("127.0.1.11", 5060),
           "lab1-a-sbc": ("127.0.1.113", 5060)}

VALID = ("INVITE sip:1002@acme.lab.zpctl.test SIP/2.0\r\n"
         "Via: SIP/2.0/UDP 127.0.58.1:5099;branch=z9hG4bKtorture1;rport\r\n"
         "Max-Forwards: 70\r\nFrom: <sip:1001@acme.lab.zpctl.test>;tag=t1\r\n"
         "To: <sip:1002@acme.lab.zpctl.test>\r\nCall-ID: torture-1\r\nCSeq: 1 INVITE\r\n"
         "Contact: <sip:1001@127.0.58.1:5099>\r\nContent-Type: application/sdp\r\n"
         "Content-Length: 129\r\n\r\n"
         "v=0\r\no=- 1 1 IN IP4 127.0.58.1\r\ns=-\r\nc=IN IP4 127.0.58.1\r\nt=0 0\r\n"
         "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")

TORTURE = [
    b"",                                                       # empty datagram
    b"\r\n\r\n",                                               # keepalive-like
    b"INVITE\r\n\r\n",                                         # no URI, no version
    b"INVITE sip:x SIP/7.0\r\n\r\n",                           # unknown version
    b"XYZZY sip:1002@acme.lab.zpctl.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.58.1;branch=z9hG4bKa\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: u1\r\nCSeq: 1 XYZZY\r\n"
    b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",          # unknown method
    VALID.replace("Content-Length: 129", "Content-Length: 9999").encode(),   # too long
    VALID.replace("Content-Length: 129", "Content-Length: -5").encode(),     # negative
    VALID.replace("CSeq: 1 INVITE", "CSeq: 1 BYE").encode(),                 # method mismatch
    VALID.replace("CSeq: 1 INVITE", "CSeq: 99999999999 INVITE").encode(),    # CSeq overflow
    VALID.replace("Max-Forwards: 70", "Max-Forwards: 0").encode(),
    VALID.replace("From: <sip:1001@acme.lab.zpctl.test>;tag=t1\r\n", "").encode(),  # no From
    VALID.replace("Via: SIP/2.0/UDP", "Via: SIP/2.0/UDP ;;;;").encode(),
    VALID.replace("sip:1002@", "sip:%00%ff\\u0000@").encode(),
    VALID.replace("To: <sip:1002@acme.lab.zpctl.test>",
                  "To: " + "<sip:" + "a" * 5000 + "@x>").encode(),      # huge header
    ("INVITE sip:1002@acme.lab.zpctl.test SIP/2.0\r\n" + "Via: SIP/2.0/UDP h;branch=z9hG4bKv\r\n"
     * 200 + "\r\n").encode(),                                           # 200 Vias
    VALID.replace("m=audio 30000 RTP/AVP 0 101", "m=audio 99999999 RTP/AVP").encode(),  # bad SDP
    VALID.replace("c=IN IP4 127.0.58.1", "c=IN IP4 999.1.1.1").encode(),
    VALID.replace("v=0", "v=0\r\n" + "a=" + "x" * 3000).encode(),
    bytes(range(256)) * 4,                                               # binary noise
]


def _send_all(messages: list[bytes]) -> list[bytes]:
    """Send every message to every target; the first line of whatever came back."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((SOURCE, 0))
        s.settimeout(0.1)
        for msg in messages:
            for addr in TARGETS.values():
                s.sendto(msg[:65000], addr)
                try:
                    while True:
                        replies.append(s.recv(65535).split(b"\r\n", 1)[0])
                except (TimeoutError, ConnectionRefusedError):
                    pass
    return replies


def _alive(zpctl_lab: Lab) -> None:
    for name, (_addr, _port) in TARGETS.items():
        node = zpctl_lab.inventory().node(name).node
        assert sip_options(node.address, node.ports.sip).status == 200, name
    assert all(r.alive() for r in zpctl_lab.records()), "a process died"


def test_torture_messages(zpctl_lab: Lab) -> None:
    replies = _send_all(TORTURE)
    for first in replies:
        assert first.startswith((b"SIP/2.0 4", b"SIP/2.0 100")), first
    _alive(zpctl_lab)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_mutations(zpctl_lab: Lab, data: st.DataObject) -> None:
    msg = bytearray(VALID.encode())
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        i = data.draw(st.integers(0, len(msg) - 1))
        if op == "flip":
            msg[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            msg[i:i] = data.draw(st.binary(min_size=1, max_size=40))
        elif op == "delete":
            del msg[i:i + data.draw(st.integers(1, 30))]
        else:
            msg[i:i] = msg[i:i + data.draw(st.integers(1, 200))]
    for first in _send_all([bytes(msg)]):
        # A mutation may still be a valid request: then 1xx/4xx/5xx from routing is fine;
        # what must never come back is a crash (checked below) or a 2xx to garbage.
        assert not first.startswith(b"SIP/2.0 2"), first


def test_still_alive_and_calling(zpctl_lab: Lab, tmp_path: Path) -> None:
    _alive(zpctl_lab)
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path, subnet="127.0.59")
    try:
        phones.answer("1002@acme")
        assert phones.call("1001@acme", "1002", hold_ms=300).returncode == 0
    finally:
        phones.stop_all()
