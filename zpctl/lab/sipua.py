"""A small SIP user agent over UDP, with RTP media, for the lab's flows and tests.

SIPp sends the SDP its scenario holds, cannot negotiate SRTP and cannot tell what it heard.
This client registers and calls with digest authentication (RFC 2617, qop=auth when
offered); answers, rejects busy or lets ring the calls it gets; offers chosen SRTP suites
(the SRTP policy tests read what each side received) or plain RTP with a media endpoint
that sends a tone or RFC 4733 digits and keeps what arrives (:mod:`zpctl.lab.audio` tells
what it was); and keeps the NOTIFYs it receives (message waiting).  It follows the route
set for ACK and BYE.  It is a client of the real lab; nothing of the platform is simulated.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from zpctl.lab.audio import (
    FRAME,
    RtpPacket,
    dtmf_event,
    dtmf_payload,
    tone_seconds,
    ulaw_decode,
    ulaw_encode,
)
from zpctl.protocols.rtcp import ReceptionStats, ntp_middle, receiver_report, sender_report_lsr

# A phone's RTCP report interval (RFC 3550 lets a small session go below 5 s; rtpengine
# counts a second report from a reporter within 1 s as the same sample).
RTCP_INTERVAL_S = 2.0
KEY_128 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0"  # 30 bytes, base64
KEY_256 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY3ODkwYWJjZGVmZ2hpams"  # 46 bytes


@dataclass
class Msg:
    first: str
    headers: list[tuple[str, str]]
    body: str

    @property
    def status(self) -> int:
        return int(self.first.split()[1]) if self.first.startswith("SIP/2.0") else 0

    @property
    def method(self) -> str:
        return "" if self.first.startswith("SIP/2.0") else self.first.split()[0]

    def get(self, name: str) -> str | None:
        vals = self.all(name)
        return vals[0] if vals else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse(data: bytes) -> Msg:
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Msg(lines[0], headers, body)


@dataclass
class Sdp:
    """What a test reads from an SDP: the audio transport and the crypto suites."""

    proto: str
    suites: list[str]
    cryptos: list[tuple[int, str]]
    dtls: list[str] = field(default_factory=list)  # a=setup / a=fingerprint lines
    streams: int = 1  # m=audio lines

    @classmethod
    def of(cls, body: str) -> Sdp:
        m = re.search(r"^m=audio \d+ (\S+)", body, re.M)
        cryptos = [(int(t), s) for t, s in re.findall(r"^a=crypto:(\d+) (\S+) ", body, re.M)]
        dtls = re.findall(r"^a=(?:setup|fingerprint|tls-id):[^\r\n]*", body, re.M)
        return cls(m[1] if m else "", [s for _, s in cryptos], cryptos, dtls,
                   len(re.findall(r"^m=audio ", body, re.M)))


def sdp_media(body: str) -> tuple[str, int, int] | None:
    """(address, port, telephone-event payload type) of an SDP's audio stream."""
    c = re.search(r"^c=IN IP4 (\S+)", body, re.M)
    m = re.search(r"^m=audio (\d+) ", body, re.M)
    te = re.search(r"^a=rtpmap:(\d+) telephone-event/8000", body, re.M)
    if not c or not m:
        return None
    return c[1], int(m[1]), int(te[1]) if te else 101


class RtpMedia:
    """One call's audio: PCMU out every 20 ms (queued samples, else silence; RFC 4733 digits
    when asked), and everything that arrives kept (samples, digits).  Plain RTP, with RTCP
    on the next port as a phone sends it: a receiver report every
    :data:`RTCP_INTERVAL_S` about what arrived (loss, jitter), from which the media relay
    computes the call's quality."""

    def __init__(self, ip: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.1)
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.rtcp.bind((ip, port + 1))
        self.rtcp.settimeout(0.1)
        self.ssrc = secrets.randbits(32)
        self.cname = f"{secrets.token_hex(4)}@{ip}"
        self.stats = ReceptionStats()
        self.reports_sent = 0
        self._last_sr: tuple[int, float] | None = None  # (LSR, when it arrived)
        self.remote: tuple[str, int] | None = None
        self.te_pt = 101
        self.received: list[int] = []  # linear samples, in arrival order
        self.digits: list[str] = []    # RFC 4733 events received, one per digit
        self.packets_in = self.packets_out = 0
        self._samples: deque[int] = deque()
        self._dtmf: deque[str] = deque()
        self._lock = threading.Lock()
        self._running = True
        self._seen_events: set[int] = set()
        self._threads = [threading.Thread(target=self._recv_loop, daemon=True)]
        self._threads[0].start()

    def start(self, remote: tuple[str, int], te_pt: int = 101) -> None:
        """Start sending to ``remote`` (the far end's SDP address; its RTCP on the next
        port)."""
        self.remote, self.te_pt = remote, te_pt
        for loop in (self._send_loop, self._rtcp_loop):
            t = threading.Thread(target=loop, daemon=True)
            self._threads.append(t)
            t.start()

    def play(self, samples: Sequence[int]) -> None:
        with self._lock:
            self._samples.extend(samples)

    def send_dtmf(self, digits: str) -> None:
        """Queue RFC 4733 digits (160 ms each, 100 ms apart), after any queued audio."""
        with self._lock:
            self._dtmf.extend(digits)

    def idle(self) -> bool:
        with self._lock:
            return not self._samples and not self._dtmf

    def mark(self) -> int:
        """A position in :attr:`received`: pass it to :meth:`heard` to look only at what
        arrived after it."""
        with self._lock:
            return len(self.received)

    def heard(self, since: int = 0) -> list[int]:
        with self._lock:
            return self.received[since:]

    def tone_heard(self, hz: float, since: int = 0) -> float:
        """Seconds of ``hz`` received (since ``mark``)."""
        return tone_seconds(self.heard(since), hz)

    def close(self) -> None:
        self._running = False
        for t in self._threads:
            t.join(1)
        self.sock.close()
        self.rtcp.close()

    def _rtcp_loop(self) -> None:
        """Read the far end's sender reports (their time is the LSR of ours); send a
        receiver report every RTCP_INTERVAL_S, the first one second in."""
        assert self.remote is not None
        far = (self.remote[0], self.remote[1] + 1)
        due = time.monotonic() + 1.0
        while self._running:
            try:
                lsr = sender_report_lsr(self.rtcp.recv(2048))
                if lsr is not None:
                    with self._lock:
                        self._last_sr = (lsr, time.monotonic())
            except (TimeoutError, OSError):
                pass
            if time.monotonic() < due:
                continue
            due += RTCP_INTERVAL_S
            with self._lock:
                block = None
                if self.stats.ssrc is not None:
                    # LSR/DLSR: the far end's last SR and our delay since (1/65536 s);
                    # before any SR, our own clock (rtpengine drops a report whose LSR or
                    # DLSR is 0, and its MOS mode LQ needs no round trip).
                    lsr, at = self._last_sr or (ntp_middle(time.time()), time.monotonic())
                    dlsr = max(1, int((time.monotonic() - at) * 65536))
                    block = self.stats.report_block(lsr, dlsr)
            try:
                self.rtcp.sendto(receiver_report(self.ssrc, block, self.cname), far)
                self.reports_sent += 1
            except OSError:
                pass

    def _recv_loop(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(2048)
            except (TimeoutError, OSError):
                continue
            pkt = RtpPacket.parse(data)
            if pkt is None:
                continue
            with self._lock:
                self.packets_in += 1
                self.stats.update(pkt.ssrc, pkt.seq, pkt.ts, time.monotonic())
                if pkt.pt == 0:
                    self.received.extend(ulaw_decode(pkt.payload))
                elif pkt.pt == self.te_pt:
                    ev = dtmf_event(pkt.payload)
                    if ev and ev[1] and pkt.ts not in self._seen_events:
                        self._seen_events.add(pkt.ts)
                        self.digits.append(ev[0])

    def _send_loop(self) -> None:
        ssrc = self.ssrc
        seq, ts = secrets.randbits(16), secrets.randbits(32)
        due = time.monotonic()

        def send(pt: int, payload: bytes, marker: bool = False, at_ts: int | None = None) -> None:
            nonlocal seq, due
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due += 0.02
            pkt = RtpPacket(pt, seq & 0xFFFF, (ts if at_ts is None else at_ts) & 0xFFFFFFFF,
                            ssrc, marker, payload)
            seq += 1
            if self.remote is not None:
                try:
                    self.sock.sendto(pkt.pack(), self.remote)
                    self.packets_out += 1
                except OSError:
                    pass

        while self._running:
            with self._lock:
                digit = self._dtmf.popleft() if self._dtmf and not self._samples else None
                frame = [self._samples.popleft() for _ in range(min(FRAME, len(self._samples)))]
            if digit is not None:
                start = ts
                for i in range(1, 9):  # 8 updates: 160 ms
                    send(self.te_pt, dtmf_payload(digit, False, FRAME * i), i == 1, start)
                for _ in range(3):     # the end packet, sent three times (RFC 4733 2.5.1.4)
                    send(self.te_pt, dtmf_payload(digit, True, FRAME * 8), False, start)
                ts += FRAME * 11
                for _ in range(5):     # 100 ms of silence between digits
                    send(0, ulaw_encode([0] * FRAME))
                    ts += FRAME
                continue
            frame += [0] * (FRAME - len(frame))
            send(0, ulaw_encode(frame))
            ts += FRAME


def reply_text(req: Msg, status: str, contact: str, body: str = "", to_tag: str = "") -> str:
    """A response to ``req``: its Via, Record-Route, From, To (with ``to_tag`` when it has
    none), Call-ID and CSeq, this Contact, and an SDP ``body`` if any."""
    to = req.get("To") or ""
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status}", *(f"Via: {v}" for v in req.all("Via")),
             *(f"Record-Route: {r}" for r in req.all("Record-Route")),
             f"From: {req.get('From')}", f"To: {to}", f"Call-ID: {req.get('Call-ID')}",
             f"CSeq: {req.get('CSeq')}", f"Contact: {contact}"]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def offer_sdp(ip: str, port: int, suites: list[str]) -> str:
    """An audio offer: plain RTP when ``suites`` is empty, else SRTP with those suites."""
    proto = "RTP/SAVP" if suites else "RTP/AVP"
    lines = ["v=0", f"o=- {secrets.randbelow(10**9)} 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}",
             "t=0 0", f"m=audio {port} {proto} 0 101", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", "a=sendrecv"]
    for tag, suite in enumerate(suites, 1):
        key = KEY_256 if "256" in suite else KEY_128
        lines.append(f"a=crypto:{tag} {suite} inline:{key}")
    return "\r\n".join(lines) + "\r\n"


def answer_sdp(ip: str, port: int, offer: str) -> str:
    """Answer with the first suite offered (same tag), or plain RTP to a plain offer."""
    got = Sdp.of(offer)
    proto = got.proto or "RTP/AVP"
    lines = ["v=0", f"o=- {secrets.randbelow(10**9)} 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}",
             "t=0 0", f"m=audio {port} {proto} 0 101", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", "a=sendrecv"]
    if got.cryptos:
        tag, suite = got.cryptos[0]
        key = KEY_256 if "256" in suite else KEY_128
        lines.append(f"a=crypto:{tag} {suite} inline:{key}")
    return "\r\n".join(lines) + "\r\n"


def _digest(method: str, uri: str, user: str, password: str, challenge: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode(), usedforsecurity=False).hexdigest()
    out = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode(),
                           usedforsecurity=False).hexdigest()
        out += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        resp = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode(), usedforsecurity=False).hexdigest()
    return out + f', response="{resp}", algorithm=MD5'


def _final_for(branch: str) -> Callable[[Msg], bool]:
    """A final reply to the request sent with ``branch``."""
    return lambda m: m.status >= 200 and branch in (m.get("Via") or "")


@dataclass
class Call:
    status: int
    reason: str
    answer: Sdp | None = None
    final: Msg | None = None


@dataclass
class Dialog:
    """A call this client placed: its final answer and, once answered, its media (plain
    RTP offers only) and what ends it."""

    ua: Ua
    call: Call
    call_id: str = ""
    uri: str = ""
    target: str = ""
    from_tag: str = ""
    to_tag: str = ""
    route: list[str] = field(default_factory=list)
    cseq: int = 1
    media: RtpMedia | None = None

    @property
    def established(self) -> bool:
        return 200 <= self.call.status < 300

    @property
    def ended_by_far_end(self) -> bool:
        return self.call_id in self.ua.ended_calls

    def _in_dialog(self, method: str, extra: list[str], body: str = "",
                   timeout: float = 8.0) -> Msg | None:
        self.cseq += 1
        text, branch = self.ua._request(method, self.target, self.uri, self.call_id, self.cseq,
                                        self.from_tag, [*self.route, *extra], body,
                                        to_tag=self.to_tag)
        self.ua._send(text)
        return self.ua._next(timeout, _final_for(branch))

    def hold(self, on: bool = True) -> int:
        """Put the far end on hold (re-INVITE with ``a=sendonly``, RFC 3264 8.4) or take it
        off (``a=sendrecv``); the final status (0: none).  The ACK follows a 2xx."""
        assert self.media is not None, "hold needs a call with media"
        body = offer_sdp(self.ua.ip, self.ua.media_port, []).replace(
            "a=sendrecv", "a=sendonly" if on else "a=sendrecv")
        reply = self._in_dialog("INVITE", [], body)
        if reply is not None and 200 <= reply.status < 300:
            ack, _ = self.ua._request("ACK", self.target, self.uri, self.call_id, self.cseq,
                                      self.from_tag, self.route, to_tag=self.to_tag)
            self.ua._send(ack)
        return reply.status if reply else 0

    def refer(self, extension: str) -> int:
        """Blind transfer: ask the far end to call ``extension`` in our place (REFER, RFC
        3515); the REFER's final status (202: accepted).  Progress arrives as NOTIFYs."""
        target = f"sip:{extension}@{self.ua.domain}"
        reply = self._in_dialog("REFER", [f"Refer-To: <{target}>",
                                          f"Referred-By: <sip:{self.ua.aor}@{self.ua.domain}>"])
        return reply.status if reply else 0

    def refer_replacing(self, other: Dialog) -> int:
        """Attended transfer: ask the far end of this call to call the far end of ``other``
        (a call this client placed) in its place, replacing ``other`` (REFER with a
        Refer-To of ``other``'s remote target carrying Replaces, RFC 3515 and 3891).  The
        tags are as the far end of ``other`` knows them: its own (our To tag) first.  The
        REFER's final status (202: accepted); the outcome arrives as a NOTIFY."""
        replaces = urllib.parse.quote(
            f"{other.call_id};to-tag={other.to_tag};from-tag={other.from_tag}", safe="")
        reply = self._in_dialog("REFER", [f"Refer-To: <{other.target}?Replaces={replaces}>",
                                          f"Referred-By: <sip:{self.ua.aor}@{self.ua.domain}>"])
        return reply.status if reply else 0

    def bye(self) -> int:
        """Hang up (unless the far end did); the BYE's final status (0: none)."""
        status = 0
        if self.established and not self.ended_by_far_end:
            reply = self._in_dialog("BYE", [], timeout=4.0)
            status = reply.status if reply else 0
        if self.media is not None:
            self.media.close()
            self.media = None
        return status


@dataclass
class Ua:
    """One client: ``auth`` credentials acting as extension ``aor`` of ``domain``."""

    ip: str
    port: int
    aor: str
    auth: str
    domain: str
    password: str
    proxy: tuple[str, int]
    media_port: int = 30000
    # what to do with an INVITE: answer (200, plain offers get media), busy (486) or ring
    # (180 and nothing more, until the caller cancels)
    answer_mode: str = "answer"
    received_offers: list[Sdp] = field(default_factory=list)
    received_invites: list[Msg] = field(default_factory=list)
    notifies: list[Msg] = field(default_factory=list)       # NOTIFYs received (e.g. MWI)
    answered: list[RtpMedia] = field(default_factory=list)  # media of the calls answered
    ended_calls: set[str] = field(default_factory=set)      # Call-IDs the far end hung up
    reinvites: list[Msg] = field(default_factory=list)      # INVITEs within a known dialog

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, self.port))
        self.sock.settimeout(0.2)
        self._answering = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queue: list[Msg] = []
        self._ringing: dict[str, tuple[Msg, str]] = {}
        self._in_calls: list[tuple[Msg, str]] = []  # INVITEs answered, with our To tag
        # The dialogs this client is in (placed or answered), by Call-ID: the local RTP
        # port of the call and its media (None: no media here), for re-INVITEs.
        self._dialogs: dict[str, tuple[int, RtpMedia | None]] = {}

    # -- transport ------------------------------------------------------------------------
    def _send(self, text: str, to: tuple[str, int] | None = None) -> None:
        self.sock.sendto(text.encode(), to or self.proxy)

    def _next(self, timeout: float, want: Callable[[Msg], bool]) -> Msg | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for i, m in enumerate(self._queue):
                    if want(m):
                        return self._queue.pop(i)
            if self._answering:
                time.sleep(0.02)
                continue
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            msg = parse(data)
            if msg.method:
                self._on_request(msg)
            elif want(msg):
                return msg
        return None

    # -- requests -------------------------------------------------------------------------
    def _request(self, method: str, uri: str, to: str, call_id: str, cseq: int,
                 from_tag: str, extra: list[str] | None = None, body: str = "",
                 to_tag: str = "", contact: str = "") -> tuple[str, str]:
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport",
                 "Max-Forwards: 70",
                 f"From: <sip:{self.aor}@{self.domain}>;tag={from_tag}",
                 f"To: <{to}>" + (f";tag={to_tag}" if to_tag else ""),
                 f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: {contact or f'<sip:{self.aor}@{self.ip}:{self.port}>'}",
                 "User-Agent: zpctl-test-ua", *(extra or [])]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body, branch

    def _transact(self, method: str, uri: str, to: str, body: str = "",
                  timeout: float = 8.0, headers: tuple[str, ...] = (), contact: str = ""
                  ) -> tuple[Msg | None, str, str, int]:
        """Send a request, answer a digest challenge once; the final reply."""
        call_id = f"{secrets.token_hex(8)}@{self.ip}"
        from_tag = secrets.token_hex(4)
        extra: list[str] = []
        for cseq in (1, 2):
            text, branch = self._request(method, uri, to, call_id, cseq, from_tag,
                                         [*headers, *extra], body, contact=contact)
            self._send(text)
            reply = self._next(timeout, _final_for(branch))
            if reply is None or reply.status not in (401, 407):
                return reply, call_id, from_tag, cseq
            if method == "INVITE":
                self._ack_error(reply, uri, cseq, branch)
            name = "WWW-Authenticate" if reply.status == 401 else "Proxy-Authenticate"
            challenge = reply.get(name) or ""
            hdr = "Authorization" if reply.status == 401 else "Proxy-Authorization"
            extra = [f"{hdr}: {_digest(method, uri, self.auth, self.password, challenge)}"]
        return reply, call_id, from_tag, 2

    def _ack_error(self, reply: Msg, uri: str, cseq: int, branch: str) -> None:
        lines = [f"ACK {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport",
                 "Max-Forwards: 70", f"From: {reply.get('From')}", f"To: {reply.get('To')}",
                 f"Call-ID: {reply.get('Call-ID')}", f"CSeq: {cseq} ACK", "Content-Length: 0"]
        self._send("\r\n".join(lines) + "\r\n\r\n")

    def register(self, expires: int = 600) -> int:
        """REGISTER this client's contact (0: remove it); the final status (0: no answer)."""
        reply, *_ = self._transact("REGISTER", f"sip:{self.domain}",
                                   f"sip:{self.aor}@{self.domain}", timeout=5.0,
                                   headers=(f"Expires: {expires}",))
        return reply.status if reply else 0

    def options(self, to: tuple[str, int], timeout: float = 1.0) -> int:
        """Ask ``to`` (a registrar: is it there?) with an OPTIONS, as a phone's keepalive
        does; the final status (0: no answer within ``timeout``, or no route to it)."""
        text, branch = self._request("OPTIONS", f"sip:{to[0]}:{to[1]}", f"sip:{to[0]}:{to[1]}",
                                     f"{secrets.token_hex(8)}@{self.ip}", 1,
                                     secrets.token_hex(4))
        try:
            self._send(text, to)
        except OSError:
            return 0
        reply = self._next(timeout, _final_for(branch))
        return reply.status if reply else 0

    def unregister_all(self) -> int:
        """Remove every contact of this client's user (``Contact: *``, RFC 3261 10.2.2),
        e.g. one a phone that went away left behind; the final status."""
        reply, *_ = self._transact("REGISTER", f"sip:{self.domain}",
                                   f"sip:{self.aor}@{self.domain}", timeout=5.0,
                                   headers=("Expires: 0",), contact="*")
        return reply.status if reply else 0

    def call(self, ext: str, suites: list[str], hold_s: float = 0.2) -> Call:
        """Call ``ext`` offering ``suites`` (none: plain RTP); ACK, then BYE after hold_s."""
        dialog = self.dial(ext, suites, media=False)
        if dialog.established:
            time.sleep(hold_s)
            dialog.bye()
        return dialog.call

    def dial(self, ext: str, suites: Sequence[str] = (), media: bool = True,
             timeout: float = 15.0) -> Dialog:
        """Call ``ext`` and ACK the answer; the call stays up until :meth:`Dialog.bye`.  With
        ``media`` and a plain RTP offer, RTP flows both ways from the answer on."""
        if self._thread is None:  # requests in the call (BYE, NOTIFY) are answered at once
            self.answer_calls()
        uri = f"sip:{ext}@{self.domain}"
        rtp = RtpMedia(self.ip, self.media_port) if media and not suites else None
        body = offer_sdp(self.ip, self.media_port, list(suites))
        reply, call_id, from_tag, cseq = self._transact("INVITE", uri, uri, body, timeout)
        if reply is None or reply.status >= 300:
            if rtp is not None:
                rtp.close()
            if reply is None:
                return Dialog(self, Call(0, "no answer"))
        assert reply is not None
        reason = reply.first.split(" ", 2)[2] if reply.first.count(" ") >= 2 else ""
        if reply.status >= 300:
            return Dialog(self, Call(reply.status, reason, final=reply))
        to_tag = re.search(r";tag=([^;>\s]+)", reply.get("To") or "")
        contact = re.search(r"<([^>]+)>", reply.get("Contact") or "")
        routes = list(reversed([r for h in reply.all("Record-Route") for r in h.split(",")]))
        dialog = Dialog(self, Call(reply.status, reason, Sdp.of(reply.body), reply), call_id,
                        uri, contact[1] if contact else uri, from_tag,
                        to_tag[1] if to_tag else "",
                        [f"Route: {', '.join(r.strip() for r in routes)}"] if routes else [],
                        cseq)
        ack, _ = self._request("ACK", dialog.target, uri, call_id, cseq, from_tag,
                               dialog.route, to_tag=dialog.to_tag)
        self._send(ack)
        far = sdp_media(reply.body)
        if rtp is not None and far is not None:
            rtp.start(far[:2], far[2])
            dialog.media = rtp
        elif rtp is not None:
            rtp.close()
        self._dialogs[call_id] = (self.media_port, dialog.media)
        return dialog

    # -- answering ------------------------------------------------------------------------
    def answer_calls(self) -> None:
        """Answer every INVITE (in a thread) until close(); offers go to received_offers."""
        self._answering = True

        def loop() -> None:
            while self._answering:
                try:
                    data = self.sock.recv(65535)
                except (TimeoutError, OSError):
                    continue
                msg = parse(data)
                if msg.method:
                    self._on_request(msg)
                else:
                    with self._lock:
                        self._queue.append(msg)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def _reply(self, req: Msg, status: str, body: str = "", to_tag: str = "") -> None:
        text = reply_text(req, status, f"<sip:{self.aor}@{self.ip}:{self.port}>", body, to_tag)
        via = (req.get("Via") or "").split(",")[0]
        m = re.search(r"SIP/2.0/UDP ([\d.]+):?(\d*)", via)
        rport = re.search(r"rport=(\d+)", via)
        received = re.search(r"received=([\d.]+)", via)
        host = received[1] if received else (m[1] if m else self.proxy[0])
        port = int(rport[1]) if rport else int(m[2]) if m and m[2] else 5060
        self._send(text, (host, port))

    def _on_request(self, req: Msg) -> None:
        call_id = req.get("Call-ID") or ""
        if req.method == "INVITE" and ";tag=" in (req.get("To") or "") \
                and call_id in self._dialogs:
            self._reinvite(req, call_id)
        elif req.method == "INVITE":
            self.received_invites.append(req)
            self.received_offers.append(Sdp.of(req.body))
            tag = secrets.token_hex(4)
            if self.answer_mode == "busy":
                self._reply(req, "486 Busy Here", to_tag=tag)
            elif self.answer_mode == "ring":
                self._ringing[call_id] = (req, tag)
                self._reply(req, "180 Ringing", to_tag=tag)
            else:
                port = self.media_port + 2 * (len(self.answered) + 1)
                far = sdp_media(req.body)
                rtp = None
                if far is not None and not Sdp.of(req.body).suites:
                    rtp = RtpMedia(self.ip, port)
                    rtp.start(far[:2], far[2])
                    self.answered.append(rtp)
                if not any(m.get("Call-ID") == call_id for m, _ in self._in_calls):
                    self._in_calls.append((req, tag))
                self._dialogs[call_id] = (port, rtp)
                self._reply(req, "200 OK", answer_sdp(self.ip, port, req.body), tag)
        elif req.method == "CANCEL":
            self._reply(req, "200 OK")
            ringing = self._ringing.pop(call_id, None)
            if ringing is not None:
                self._reply(ringing[0], "487 Request Terminated", to_tag=ringing[1])
        elif req.method == "NOTIFY":
            self.notifies.append(req)
            self._reply(req, "200 OK")
        elif req.method == "BYE":
            self.ended_calls.add(call_id)
            self._reply(req, "200 OK")
        elif req.method == "OPTIONS":
            self._reply(req, "200 OK")

    def _reinvite(self, req: Msg, call_id: str) -> None:
        """An INVITE within a dialog (RFC 3261 14.2): the same call, its media now sent
        where the new offer says (a switch that recovered the call offers its address
        again, a relay may offer new ports); answered from the call's own port, and no new
        media is started."""
        self.reinvites.append(req)
        port, rtp = self._dialogs[call_id]
        far = sdp_media(req.body)
        if rtp is not None and far is not None:
            rtp.remote, rtp.te_pt = far[:2], far[2]
        self._reply(req, "200 OK", answer_sdp(self.ip, port, req.body) if req.body else "")

    def ringing(self) -> bool:
        """Some call rings here unanswered (answer mode ``ring``)."""
        return bool(self._ringing)

    def hang_up_answered(self) -> None:
        """BYE every call this client answered that the far end has not ended (as the
        callee: to the caller's Contact, along the Record-Route as received)."""
        for req, tag in self._in_calls:
            call_id = req.get("Call-ID") or ""
            if call_id in self.ended_calls:
                continue
            contact = re.search(r"<([^>]+)>", req.get("Contact") or "")
            caller = re.search(r"<([^>]+)>", req.get("From") or "")
            their_tag = re.search(r";tag=([^;>\s]+)", req.get("From") or "")
            if not contact or not caller:
                continue
            routes = [r.strip() for h in req.all("Record-Route") for r in h.split(",")]
            extra = [f"Route: {', '.join(routes)}"] if routes else []
            bye, branch = self._request("BYE", contact[1], caller[1], call_id, 100, tag, extra,
                                        to_tag=their_tag[1] if their_tag else "")
            self._send(bye)
            self._next(2.0, _final_for(branch))
            self.ended_calls.add(call_id)

    def close(self) -> None:
        self.hang_up_answered()
        self._answering = False
        if self._thread is not None:
            self._thread.join(2)
        for rtp in self.answered:
            rtp.close()
        self.sock.close()
