"""Where collectors get their data: three small callables, live or recorded.

A collector never opens a socket itself.  It is handed a :class:`Clients` whose members
answer one question each (a Kamailio JSON-RPC client for a node, one rtpengine ng command,
one SIP OPTIONS probe).  :meth:`Clients.live` builds them on the real transports of
:mod:`zpctl.clients`; tests build them over recorded replies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import ng_command, sip_options
from zpctl.model.schema import Node


class Rpc(Protocol):
    """What collectors need of a Kamailio JSON-RPC client (:class:`KamailioRpc` is one)."""

    def call(self, method: str, *params: Any) -> Any: ...


RpcFor = Callable[[Node], Rpc]
NgCall = Callable[[Node, str, dict[str, object]], dict[str, object]]
SipPing = Callable[[Node], int]


def host(address: str) -> str:
    """An address as the host part of a URL or a ``host:port`` target."""
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


@dataclass(frozen=True)
class Clients:
    """The data sources of the Kamailio and rtpengine collectors.

    ``rpc(node)``: a JSON-RPC client for the node's management listener;
    ``ng(node, command, params)``: one rtpengine ng command, the reply dictionary;
    ``sip_ping(node)``: the final status of one SIP OPTIONS to the node's SIP address.
    Each raises :class:`zpctl.errors.ZpctlError` (or ``OSError``) when the node does not answer.
    """

    rpc: RpcFor
    ng: NgCall
    sip_ping: SipPing

    @classmethod
    def live(cls, timeout: float = 1.0) -> Clients:
        """Clients over the real transports, each call bounded by ``timeout`` seconds."""

        def rpc(node: Node) -> Rpc:
            return KamailioRpc(f"http://{host(node.mgmt)}:{node.ports.mgmt_http}/RPC", timeout)

        def ng(node: Node, command: str, params: dict[str, object]) -> dict[str, object]:
            return ng_command(node.mgmt, node.ports.rtpengine_ng, command, timeout, **params)

        def sip_ping(node: Node) -> int:
            # Probe from loopback in a lab; elsewhere let the kernel pick the source.
            loop = ipaddress.ip_address(node.address).is_loopback
            return sip_options(node.address, node.ports.sip, timeout,
                               source="127.0.0.1" if loop else "0.0.0.0").status  # noqa: S104

        return cls(rpc, ng, sip_ping)


T = TypeVar("T")
R = TypeVar("R")


def fan_out(fn: Callable[[T], R], items: Iterable[T],
            workers: int = 16) -> list[tuple[T, R | None, str | None]]:
    """``fn`` over ``items`` in parallel: (item, result, None) or (item, None, error text).

    One slow or dead node must not make a whole scrape wait for every other node in turn.
    """
    todo: Sequence[T] = list(items)
    if not todo:
        return []

    def one(item: T) -> tuple[T, R | None, str | None]:
        try:
            return item, fn(item), None
        except Exception as exc:  # a collector reports a failing source; it never raises
            return item, None, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"

    if len(todo) == 1:
        return [one(todo[0])]
    with ThreadPoolExecutor(max_workers=min(workers, len(todo)),
                            thread_name_prefix="zpctl-collect") as pool:
        return list(pool.map(one, todo))
