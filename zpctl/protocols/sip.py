"""Just enough SIP to probe a node: build an OPTIONS request, parse a response's status.

Sans-IO: functions take and return bytes; the transport lives in :mod:`zpctl.clients.sip`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    call_id: str | None
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)


class SipParseError(ValueError):
    """The peer sent something that is not a SIP response."""


def options_request(target: str, port: int, local: str, local_port: int,
                    transport: str = "UDP") -> tuple[bytes, str]:
    """An OPTIONS request to ``target:port``; returns (bytes, call_id)."""
    call_id = secrets.token_hex(12)
    branch = "z9hG4bK" + secrets.token_hex(8)
    tag = secrets.token_hex(4)
    lines = [
        f"OPTIONS sip:{target}:{port} SIP/2.0",
        f"Via: SIP/2.0/{transport} {local}:{local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:zpctl@{local}>;tag={tag}",
        f"To: <sip:{target}:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        "User-Agent: zpctl-probe",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii"), call_id


def parse_response(data: bytes) -> Response:
    """Parse the start line and headers of a SIP response (the body is ignored)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"not UTF-8: {exc}") from None
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        raise SipParseError(f"not a SIP response: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    resp = Response(int(parts[1]), parts[2] if len(parts) > 2 else "", None, tuple(headers))
    call_id = resp.header("Call-ID") or resp.header("i")
    return Response(resp.status, resp.reason, call_id, resp.headers)
