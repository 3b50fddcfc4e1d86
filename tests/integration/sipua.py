"""A small SIP user agent over UDP for tests that must see and shape the exact SDP.

SIPp sends the SDP its scenario holds and cannot negotiate SRTP; the SRTP policy tests need
a client that offers chosen crypto suites and records what each side received.  This one
registers and calls with digest authentication (RFC 2617, qop=auth when offered), answers
calls from a thread with an SDP computed from the offer, and follows the route set for ACK
and BYE.  It is a client of the real lab; nothing of the platform is simulated.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    out = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        out += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        resp = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    return out + f', response="{resp}", algorithm=MD5'


@dataclass
class Call:
    status: int
    reason: str
    answer: Sdp | None = None
    final: Msg | None = None


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
    received_offers: list[Sdp] = field(default_factory=list)
    received_invites: list[Msg] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, self.port))
        self.sock.settimeout(0.2)
        self._answering = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queue: list[Msg] = []

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
                 to_tag: str = "") -> tuple[str, str]:
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport",
                 "Max-Forwards: 70",
                 f"From: <sip:{self.aor}@{self.domain}>;tag={from_tag}",
                 f"To: <{to}>" + (f";tag={to_tag}" if to_tag else ""),
                 f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:{self.aor}@{self.ip}:{self.port}>",
                 "User-Agent: zpctl-test-ua", *(extra or [])]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body, branch

    def _transact(self, method: str, uri: str, to: str, body: str = "",
                  timeout: float = 8.0, headers: tuple[str, ...] = ()
                  ) -> tuple[Msg | None, str, str, int]:
        """Send a request, answer a digest challenge once; the final reply."""
        call_id = f"{secrets.token_hex(8)}@{self.ip}"
        from_tag = secrets.token_hex(4)
        extra: list[str] = []
        for cseq in (1, 2):
            text, branch = self._request(method, uri, to, call_id, cseq, from_tag,
                                         [*headers, *extra], body)
            self._send(text)
            reply = self._next(timeout, lambda m, b=branch: m.status >= 200 and
                               b in (m.get("Via") or ""))
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

    def call(self, ext: str, suites: list[str], hold_s: float = 0.2) -> Call:
        """Call ``ext`` offering ``suites`` (none: plain RTP); ACK, then BYE after hold_s."""
        uri = f"sip:{ext}@{self.domain}"
        body = offer_sdp(self.ip, self.media_port, suites)
        reply, call_id, from_tag, cseq = self._transact("INVITE", uri, uri, body, 15.0)
        if reply is None:
            return Call(0, "no answer")
        reason = reply.first.split(" ", 2)[2] if reply.first.count(" ") >= 2 else ""
        if reply.status >= 300:
            return Call(reply.status, reason, final=reply)
        to_tag = re.search(r";tag=([^;>\s]+)", reply.get("To") or "")
        contact = re.search(r"<([^>]+)>", reply.get("Contact") or "")
        routes = list(reversed([r for h in reply.all("Record-Route") for r in h.split(",")]))
        target = contact[1] if contact else uri
        extra = [f"Route: {', '.join(r.strip() for r in routes)}"] if routes else []
        tt = to_tag[1] if to_tag else ""
        ack, _ = self._request("ACK", target, uri, call_id, cseq, from_tag, extra, to_tag=tt)
        self._send(ack)
        time.sleep(hold_s)
        bye, branch = self._request("BYE", target, uri, call_id, cseq + 1, from_tag, extra,
                                    to_tag=tt)
        self._send(bye)
        self._next(4.0, lambda m: m.status >= 200 and branch in (m.get("Via") or ""))
        return Call(reply.status, reason, Sdp.of(reply.body), reply)

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
        to = req.get("To") or ""
        if to_tag and ";tag=" not in to:
            to += f";tag={to_tag}"
        lines = [f"SIP/2.0 {status}", *(f"Via: {v}" for v in req.all("Via")),
                 *(f"Record-Route: {r}" for r in req.all("Record-Route")),
                 f"From: {req.get('From')}", f"To: {to}", f"Call-ID: {req.get('Call-ID')}",
                 f"CSeq: {req.get('CSeq')}",
                 f"Contact: <sip:{self.aor}@{self.ip}:{self.port}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        via = (req.get("Via") or "").split(",")[0]
        m = re.search(r"SIP/2.0/UDP ([\d.]+):?(\d*)", via)
        rport = re.search(r"rport=(\d+)", via)
        received = re.search(r"received=([\d.]+)", via)
        host = received[1] if received else (m[1] if m else self.proxy[0])
        port = int(rport[1]) if rport else int(m[2]) if m and m[2] else 5060
        self._send("\r\n".join(lines) + "\r\n\r\n" + body, (host, port))

    def _on_request(self, req: Msg) -> None:
        if req.method == "INVITE":
            self.received_invites.append(req)
            self.received_offers.append(Sdp.of(req.body))
            self._reply(req, "200 OK", answer_sdp(self.ip, self.media_port, req.body),
                        secrets.token_hex(4))
        elif req.method in ("BYE", "OPTIONS", "CANCEL"):
            self._reply(req, "200 OK")

    def close(self) -> None:
        self._answering = False
        if self._thread is not None:
            self._thread.join(2)
        self.sock.close()
