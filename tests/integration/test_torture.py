"""Malformed SIP and SDP thrown at the lb, a zone proxy and an sbc: every message of RFC 4475
section 3 (``fixtures/rfc4475``, the RFC's bytes) and hypothesis-generated mutations of a
valid INVITE.  Every process must stay up and answer with a 4xx or not at all (never a 2xx to
an invalid message, nothing at all to a response, and a forged response is relayed nowhere),
and a legitimate call must still succeed afterwards."""

from __future__ import annotations

import csv
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zpctl.clients.probes import sip_options
from zpctl.lab import Lab
from zpctl.lab.capture import Datagram, LoopbackCapture
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


# -- RFC 4475 ------------------------------------------------------------------------------

RFC4475 = Path(__file__).parent / "fixtures" / "rfc4475"
# The sbc's public side answers only the carriers and customer SBCs it knows (silent to
# anyone else): the RFC set reaches it from the lab carrier's address.
RFC_TARGETS = {"lb": ("127.0.1.1", SOURCE), "proxy": ("127.0.1.11", SOURCE),
               "sbc": ("127.0.1.113", "127.0.9.1")}  # target -> (address, source)
NO_REPLY_S = 1.0  # nothing within this: dropped
PROVISIONAL_S = 12.0  # a 1xx came: wait this long for the final (sbc fr_timer is 4 s, lb 2 x)
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
_STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ")


@dataclass(frozen=True)
class Case:
    section: str
    name: str
    kind: str  # valid | invalid (3.1.2) | transaction | application | compat
    title: str
    data: bytes

    @property
    def is_response(self) -> bool:
        return self.data.startswith(b"SIP/2.0 ")

    @property
    def call_ids(self) -> frozenset[bytes]:
        return frozenset(_CALL_ID.findall(self.data))


def rfc4475_cases() -> list[Case]:
    with open(RFC4475 / "index.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [Case(r["section"], r["name"], r["kind"], r["title"],
                 (RFC4475 / f"{r['name']}.sip").read_bytes()) for r in rows]


def _statuses(case: Case, replies: list[Datagram], window: tuple[float, float]) -> list[int]:
    """The status codes of the replies that belong to ``case``: same Call-ID, or (a message
    without one) no Call-ID and sent while the case was the one under test."""
    out = []
    for d in replies:
        status = _STATUS.match(d.payload)
        if status is None:
            continue
        cid = _CALL_ID.findall(d.payload)
        mine = (bool(case.call_ids & set(cid)) if cid
                else not case.call_ids and window[0] <= d.at < window[1])
        if mine:
            out.append(int(status.group(1)))
    return out


def summarise(codes: list[int]) -> str:
    """The final status(es), ``100 (no final)`` or ``dropped``."""
    finals = sorted({c for c in codes if c >= 200})
    prov = sorted({c for c in codes if c < 200})
    if not codes:
        return "dropped"
    if not finals:
        return f"{'/'.join(map(str, prov))} (no final)"
    return "/".join(map(str, finals))


def _run_set(cases: list[Case], capture: LoopbackCapture) -> dict[str, dict[str, list[int]]]:
    """Each case to each target in turn, waiting for its answer: name -> target -> codes.
    The targets are tried at once (a thread each; replies are told apart by their source
    address and Call-ID), the cases of one target one after the other."""
    windows: dict[tuple[str, str], tuple[float, float]] = {}

    def one_target(target: str, addr: str, source: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            for case in cases:
                start = time.monotonic()
                s.sendto(case.data, (addr, 5060))
                while True:
                    time.sleep(0.05)
                    replies = [d for d in capture.snapshot() if d.src == addr]
                    codes = _statuses(case, replies, (start, float("inf")))
                    waited = time.monotonic() - start
                    if any(c >= 200 for c in codes) or (not codes and waited > NO_REPLY_S) \
                            or waited > PROVISIONAL_S:
                        break
                time.sleep(0.05)  # a late duplicate still lands in this window
                windows[(target, case.name)] = (start, time.monotonic())

    with ThreadPoolExecutor(len(RFC_TARGETS)) as pool:
        for f in [pool.submit(one_target, t, addr, source)
                  for t, (addr, source) in RFC_TARGETS.items()]:
            f.result()
    time.sleep(0.5)
    every = capture.snapshot()
    return {case.name: {t: _statuses(case, [d for d in every if d.src == addr],
                                     windows[(t, case.name)])
                        for t, (addr, _source) in RFC_TARGETS.items()}
            for case in cases}


def _table(cases: list[Case], seen: dict[str, dict[str, list[int]]]) -> str:
    lines = [f"{'section':9} {'message':11} {'kind':11} " + " ".join(f"{t:18}" for t in RFC_TARGETS)]
    for c in cases:
        lines.append(f"{c.section:9} {c.name:11} {c.kind:11} "
                     + " ".join(f"{summarise(seen[c.name][t]):18}" for t in RFC_TARGETS))
    return "\n".join(lines)


def test_rfc4475_fixtures_are_the_whole_set() -> None:
    cases = rfc4475_cases()
    assert len(cases) == 49
    assert {p.stem for p in RFC4475.glob("*.sip")} == {c.name for c in cases}
    for c in cases:
        assert c.data.endswith(b"\r\n"), c.name
        assert re.search(rb"(?<!\r)\n", c.data) is None or c.name == "mpart01", c.name
    byname = {c.name: c for c in cases}
    assert b"\x00" in byname["intmeth"].data  # the one literal NUL (escnull's are %00)
    assert len(byname["longreq"].data) > 3000
    assert sum(c.kind == "invalid" for c in cases) == 19


def test_rfc4475_messages(zpctl_lab: Lab, tmp_path: Path) -> None:
    cases = rfc4475_cases()
    with LoopbackCapture({source for _addr, source in RFC_TARGETS.values()}) as capture:
        seen = _run_set(cases, capture)
    print("\nRFC 4475 section 3, reply per target (UDP):\n" + _table(cases, seen))
    problems = []
    for c in cases:
        for target, codes in seen[c.name].items():
            if c.is_response and codes:
                problems.append(f"{c.name} -> {target}: a response was answered: {codes}")
            if any(200 <= code < 300 for code in codes):
                problems.append(f"{c.name} ({c.kind}) -> {target}: 2xx {codes}")
            if c.kind == "invalid" and any(code >= 200 and not 400 <= code < 500
                                           for code in codes):
                problems.append(f"{c.name} (invalid) -> {target}: not 4xx: {codes}")
    assert not problems, "\n".join(problems)
    _alive(zpctl_lab)
    _call(zpctl_lab, tmp_path)


def test_stray_responses_are_not_reflected(zpctl_lab: Lab) -> None:
    """A response that matches no transaction goes nowhere.  Kamailio's default is to forward
    it statelessly to its second Via (RFC 4475 3.3.10 "bcast" makes that the broadcast
    address): whoever writes the Vias could use every node, the sbc's otherwise silent
    public side included, as a reflector towards any address, past the lb's flood limit
    (pike counts requests only)."""
    victim = "127.0.58.9"
    with LoopbackCapture({victim}) as capture, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((SOURCE, 0))
        for name, addr in (("lb", "127.0.1.1"), ("proxy", "127.0.1.11"),
                           ("sbc-public", "127.0.1.113"), ("sbc-internal", "127.0.1.13")):
            s.sendto((f"SIP/2.0 200 OK\r\n"
                      f"Via: SIP/2.0/UDP {addr}:5060;branch=z9hG4bKstray{name}\r\n"
                      f"Via: SIP/2.0/UDP {victim}:5060;branch=z9hG4bKvictim{name}\r\n"
                      f"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n"
                      f"Call-ID: stray-{name}\r\nCSeq: 1 INVITE\r\n"
                      "Content-Length: 0\r\n\r\n").encode(), (addr, 5060))
        time.sleep(1.0)
        reflected = [(d.src, d.payload.split(b"\r\n", 1)[0]) for d in capture.snapshot()]
    assert not reflected, reflected
    _alive(zpctl_lab)


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


def _call(zpctl_lab: Lab, tmp_path: Path) -> None:
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path, subnet="127.0.59")
    try:
        phones.answer("1002@acme")
        assert phones.call("1001@acme", "1002", hold_ms=300).returncode == 0
    finally:
        phones.stop_all()


def test_still_alive_and_calling(zpctl_lab: Lab, tmp_path: Path) -> None:
    _alive(zpctl_lab)
    _call(zpctl_lab, tmp_path)
