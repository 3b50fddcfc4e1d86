"""JSON-RPC 2.0 as Kamailio's jsonrpcs speaks it: sans-IO requests and replies."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

_ids = itertools.count(1)


class JsonRpcProtocolError(ValueError):
    """The peer's reply is not valid JSON-RPC 2.0."""


@dataclass(frozen=True)
class RemoteError(Exception):
    """The node answered with a JSON-RPC error object."""

    code: int
    message: str
    method: str = ""

    def __str__(self) -> str:
        return f"{self.method}: remote error {self.code}: {self.message}"


def request(method: str, params: list[Any] | None = None) -> tuple[bytes, int]:
    """A request document and its id."""
    rid = next(_ids)
    doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params:
        doc["params"] = params
    return json.dumps(doc, separators=(",", ":")).encode(), rid


def parse_reply(data: bytes, rid: int | None = None, method: str = "") -> Any:
    """The ``result`` of a reply, or raise RemoteError / JsonRpcProtocolError."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRpcProtocolError(f"reply is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
        raise JsonRpcProtocolError("reply is not a JSON-RPC 2.0 object")
    if rid is not None and doc.get("id") != rid:
        raise JsonRpcProtocolError(f"reply id {doc.get('id')!r} does not match request {rid}")
    if "error" in doc:
        err = doc["error"] or {}
        raise RemoteError(int(err.get("code", 0)), str(err.get("message", "")), method)
    if "result" not in doc:
        raise JsonRpcProtocolError("reply has neither result nor error")
    return doc["result"]
