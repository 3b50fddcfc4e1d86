"""Health probes: SIP OPTIONS, rtpengine ng ping, Redis PING."""

from __future__ import annotations

import socket
import time

from zpctl.errors import Unreachable
from zpctl.protocols import ng, sip


def sip_options(address: str, port: int = 5060, timeout: float = 2.0,
                source: str = "127.0.0.1") -> sip.Response:
    """Send one OPTIONS over UDP and return the final response (100s are skipped).
    ``source`` "0.0.0.0": from the address the kernel routes towards ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))  # OSError: not an address of this machine (the caller's)
        try:
            if source == "0.0.0.0":  # noqa: S104 - bound, then narrowed by the route
                s.connect((address, port))
            local, local_port = s.getsockname()
            data, call_id = sip.options_request(address, port, local, local_port)
            s.sendto(data, (address, port))
        except OSError as exc:  # no route, an address not ours, a firewall's EPERM
            raise Unreachable(f"cannot send SIP to {address}:{port}: {exc.strerror or exc}"
                              ) from None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unreachable(f"no SIP answer from {address}:{port} within {timeout:g} s")
            s.settimeout(remaining)
            try:
                reply = s.recv(65535)
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                raise Unreachable(f"{address}:{port}/udp refused (nothing listening)") from None
            try:
                resp = sip.parse_response(reply)
            except sip.SipParseError:
                continue
            if resp.call_id == call_id and resp.status >= 200:
                return resp


def ng_command(address: str, port: int, command: str, timeout: float = 2.0,
               **params: object) -> dict[str, object]:
    """One rtpengine ng command; the reply dictionary."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        data, cookie = ng.encode_command(command, **params)
        s.settimeout(timeout)
        try:
            s.sendto(data, (address, port))
            while True:
                got_cookie, reply = ng.decode_reply(s.recv(65535))
                if got_cookie == cookie:
                    return reply
        except (TimeoutError, ConnectionRefusedError):
            raise Unreachable(f"no rtpengine answer from {address}:{port}") from None


def redis_ping(address: str, port: int = 6379, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        raise Unreachable(f"no Redis answer from {address}:{port}") from None
