"""rtpengine's control protocol ("ng"): a cookie, a space, and a bencoded dictionary.

Sans-IO: :func:`encode_command` gives the datagram to send, :func:`decode_reply` parses
one.  Bencode: integers ``i42e``, byte strings ``4:spam``, lists ``l...e``, dictionaries
``d...e`` with keys sorted.
"""

from __future__ import annotations

import secrets
from typing import Any


class BencodeError(ValueError):
    """The bytes are not valid bencode."""


def bencode(value: Any) -> bytes:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value that spans all of ``data``."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def _decode(data: bytes, i: int) -> tuple[Any, int]:
    if i >= len(data):
        raise BencodeError("unexpected end of data")
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        try:
            return int(data[i + 1:end]), end + 1
        except ValueError:
            raise BencodeError(f"bad integer at offset {i}") from None
    if c == b"l":
        out, i = [], i + 1
        while data[i:i + 1] != b"e":
            v, i = _decode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        d, i = {}, i + 1
        while data[i:i + 1] != b"e":
            k, i = _decode(data, i)
            if not isinstance(k, str):
                raise BencodeError("dictionary key is not a string")
            d[k], i = _decode(data, i)
        return d, i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        raw = data[colon + 1:colon + 1 + n]
        if len(raw) != n:
            raise BencodeError("string runs past the end")
        try:
            return raw.decode("utf-8"), colon + 1 + n
        except UnicodeDecodeError:
            return raw, colon + 1 + n
    raise BencodeError(f"unexpected byte {c!r} at offset {i}")


def encode_command(command: str, **params: Any) -> tuple[bytes, str]:
    """A command datagram and its cookie."""
    cookie = secrets.token_hex(6)
    return cookie.encode() + b" " + bencode({"command": command, **params}), cookie


def decode_reply(data: bytes) -> tuple[str, dict[str, Any]]:
    """(cookie, reply dictionary) of a reply datagram."""
    cookie, sep, body = data.partition(b" ")
    if not sep:
        raise BencodeError("no cookie separator")
    reply = bdecode(body)
    if not isinstance(reply, dict):
        raise BencodeError("reply is not a dictionary")
    return cookie.decode("ascii", "replace"), reply
