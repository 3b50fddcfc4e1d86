"""JSON-RPC to Kamailio: over HTTP (management listener) or the local datagram socket."""

from __future__ import annotations

import os
import socket
import tempfile
import urllib.error
import urllib.request
from typing import Any

from zpctl.errors import RemoteFailure, Unreachable
from zpctl.protocols import jsonrpc


class NoAnswer(Unreachable):
    """The node did not answer in time (it may be frozen or overloaded: its socket is
    there), as opposed to refusing the connection (nothing listens: it is down)."""


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


class KamailioRpc:
    """Call Kamailio RPC methods.  ``endpoint`` is ``http://host:port/RPC`` or a unix
    datagram socket path (jsonrpcs ``dgram_socket``)."""

    def __init__(self, endpoint: str, timeout: float = 3.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def call(self, method: str, *params: Any) -> Any:
        body, rid = jsonrpc.request(method, list(params))
        raw = self._http(body) if self.endpoint.startswith("http") else self._dgram(body)
        try:
            return jsonrpc.parse_reply(raw, rid, method)
        except jsonrpc.RemoteError as exc:
            err = RemoteFailure(f"{self.endpoint}: {exc}")
            err.code = exc.code
            raise err from None
        except jsonrpc.JsonRpcProtocolError as exc:
            raise RemoteFailure(f"{self.endpoint}: {method}: {exc}") from None

    def _http(self, body: bytes) -> bytes:
        req = urllib.request.Request(self.endpoint, data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            data = exc.read()
            if data.startswith(b"{"):
                return bytes(data)
            raise RemoteFailure(f"{self.endpoint}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            kind = NoAnswer if _timed_out(exc) else Unreachable
            raise kind(f"{self.endpoint}: {getattr(exc, 'reason', exc)}") from None

    def _dgram(self, body: bytes) -> bytes:
        with tempfile.TemporaryDirectory(prefix="zpctl-rpc-") as tmp:
            reply_path = os.path.join(tmp, "reply.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.bind(reply_path)
                s.settimeout(self.timeout)
                try:
                    s.sendto(body, self.endpoint)
                    return s.recv(1 << 20)
                except TimeoutError as exc:
                    raise NoAnswer(f"{self.endpoint}: {exc}") from None
                except (FileNotFoundError, ConnectionRefusedError) as exc:
                    raise Unreachable(f"{self.endpoint}: {exc}") from None
