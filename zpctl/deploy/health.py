"""Health of freshly deployed hosts, seen from the controller.

A Kamailio node is healthy when it answers SIP OPTIONS (200, or a restarted proxy's
``503 Warming Up`` while its gate waits for `zone restore`) and its JSON-RPC answers
``core.uptime``; a media node when rtpengine answers an ng ``ping`` and Redis ``PING``.
Answering implies the process is up.  Checks poll until a deadline: a restart takes a moment.
"""

from __future__ import annotations

import socket
import time

from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import ng_command, redis_ping, sip_options
from zpctl.errors import ZpctlError
from zpctl.model import LoadedInventory
from zpctl.model.schema import Node, Role


def source_for(address: str) -> str:
    """The local address this machine uses to reach ``address`` (SIP replies come back there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((address, 9))
        return str(s.getsockname()[0])


def _kamailio(node: Node) -> None:
    resp = sip_options(node.address, node.ports.sip, timeout=1.0, source=source_for(node.address))
    if resp.status != 200 and (resp.status, resp.reason) != (503, "Warming Up"):
        raise ZpctlError(f"OPTIONS answered {resp.status} {resp.reason}")
    KamailioRpc(f"http://{node.mgmt}:{node.ports.mgmt_http}/RPC", 2.0).call("core.uptime")


def _media(node: Node) -> None:
    reply = ng_command(node.mgmt, node.ports.rtpengine_ng, "ping", 1.0)
    if reply.get("result") != "pong":
        raise ZpctlError(f"rtpengine ping answered {reply}")
    redis_ping(node.mgmt, node.ports.redis, 1.0)


def check_nodes(inv: LoadedInventory, nodes: list[str], timeout: float = 30.0) -> list[str]:
    """Poll every node until it is healthy or ``timeout`` passes; the problems left."""
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    last: dict[str, str] = {}
    while pending:
        for name in list(pending):
            placed = inv.node(name)
            try:
                if placed.role in (Role.LB, Role.PROXY, Role.SBC):
                    _kamailio(placed.node)
                elif placed.role == Role.MEDIA:
                    _media(placed.node)
                pending.remove(name)
            except (ZpctlError, OSError) as exc:
                last[name] = exc.message if isinstance(exc, ZpctlError) else str(exc)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [f"{n}: not healthy after {timeout:g} s ({last.get(n, 'no answer')})" for n in pending]
