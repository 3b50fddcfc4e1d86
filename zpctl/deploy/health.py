"""Health of freshly deployed hosts, seen from the controller.

A Kamailio node is healthy when it answers SIP OPTIONS (200, or a restarted proxy's
``503 Warming Up`` while its gate waits for `zone restore`) and its JSON-RPC answers
``core.uptime``; a media node when rtpengine answers an ng ``ping`` and Redis ``PING``.
Answering implies the process is up.  Checks poll until a deadline: a restart takes a moment.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import ng_command, redis_ping, sip_options
from zpctl.errors import ExitCode, ZpctlError
from zpctl.model.schema import Role


def source_for(address: str) -> str:
    """The local address this machine uses to reach ``address`` (SIP replies come back there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((address, 9))
        return str(s.getsockname()[0])


@dataclass(frozen=True)
class Target:
    """Where a node of one build answers, read from that build's ``<node>/node.json``: a
    rollback is checked against the build it returns to, not the one that failed."""

    role: str
    address: str
    sip: int
    mgmt: str
    mgmt_http: int
    ng: int
    redis: int

    @classmethod
    def of(cls, build_dir: Path, node: str) -> Target | None:
        path = build_dir / node / "node.json"
        if not path.exists():  # not a platform node (the monitoring host): nothing to probe
            return None
        doc = json.loads(path.read_text())
        ports = doc["ports"]
        return cls(doc["role"], doc["address"], ports["sip"], doc["mgmt_address"],
                   ports["mgmt_http"], ports["rtpengine_ng"], ports["redis"])


def _kamailio(t: Target) -> None:
    resp = sip_options(t.address, t.sip, timeout=1.0, source=source_for(t.address))
    if resp.status != 200 and (resp.status, resp.reason) != (503, "Warming Up"):
        raise ZpctlError(f"OPTIONS answered {resp.status} {resp.reason}", ExitCode.REMOTE_ERROR)
    KamailioRpc(f"http://{t.mgmt}:{t.mgmt_http}/RPC", 2.0).call("core.uptime")


def _media(t: Target) -> None:
    reply = ng_command(t.mgmt, t.ng, "ping", 1.0)
    if reply.get("result") != "pong":
        raise ZpctlError(f"rtpengine ping answered {reply}", ExitCode.REMOTE_ERROR)
    if not redis_ping(t.mgmt, t.redis, 1.0):
        raise ZpctlError(f"{t.mgmt}:{t.redis} answers, but not as Redis",
                         ExitCode.REMOTE_ERROR)


def check_nodes(build_dir: Path, nodes: list[str], timeout: float = 30.0) -> list[str]:
    """Poll every node of the build until it is healthy or ``timeout`` passes; the problems
    left."""
    where = {name: t for name in nodes if (t := Target.of(build_dir, name)) is not None}
    deadline = time.monotonic() + timeout
    pending = list(where)
    last: dict[str, str] = {}
    while pending:
        for name in list(pending):
            t = where[name]
            try:
                if t.role in (Role.LB.value, Role.PROXY.value, Role.SBC.value):
                    _kamailio(t)
                elif t.role == Role.MEDIA.value:
                    _media(t)
                pending.remove(name)
            except (ZpctlError, OSError) as exc:
                last[name] = exc.message if isinstance(exc, ZpctlError) else str(exc)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [f"{n}: not healthy after {timeout:g} s ({last.get(n, 'no answer')})" for n in pending]
