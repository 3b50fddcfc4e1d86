"""The lab's platform processes: how each node runs on this machine and how to tell that
it answers (a SIP OPTIONS, an rtpengine ping, a Redis PING, a bound port)."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.clients.probes import ng_command, redis_ping, sip_options
from zpctl.errors import EnvironmentProblem, Unreachable
from zpctl.model import LoadedInventory, roles
from zpctl.paths import find_binary
from zpctl.render.freeswitch import PGPASS_FILE


@dataclass
class Service:
    """One process of the lab and how to tell that it answers."""

    name: str
    kind: str  # kamailio | rtpengine | redis | carrier | pbx | premises
    home: str  # its folder under nodes/: the node name, or the peer's name
    argv: list[str]
    listeners: list[tuple[str, int, str]]
    health: Callable[[], None]
    cwd: Path = field(default_factory=Path)
    stop_signal: str = "TERM"  # from node.json: what `lab down` sends first
    user: str | None = None  # run as this user (PostgreSQL refuses root); None: as zpctl


def which(binary: str, search: str | None = None) -> str:
    """The binary's path; ``search`` (a PATH string) replaces the default search."""
    path = find_binary(binary, search)
    if path is None:
        raise EnvironmentProblem(f"{binary} is not installed; run `make install` "
                                 "(Debian: kamailio, rtpengine-daemon, redis-server; "
                                 "FreeSWITCH: see scripts/install-deps.sh)")
    return path


def port_free(addr: str, port: int, proto: str) -> bool:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


def node_services(inv: LoadedInventory, manifests: dict[str, dict[str, Any]],
                  bin_path: str | None = None) -> list[Service]:
    """Every platform process the lab runs for ``inv``, in start order (media, proxies,
    sbcs, lbs), as each node's rendered ``node.json`` (``manifests``: node -> its
    node.json) describes it: program, command line, listeners, health check.  The programs
    are looked up on ``bin_path`` (a PATH string) or the default search."""
    found: dict[str, str] = {}
    out: list[Service] = []
    for p in sorted(inv.nodes(), key=lambda p: (roles.spec(p.role).lab_order, p.name)):
        if not roles.spec(p.role).in_lab:
            continue
        for svc in manifests[p.name]["services"]:
            if svc["binary"] not in found:
                found[svc["binary"]] = which(svc["binary"], bin_path)
            binary = found[svc["binary"]]
            health = svc["health"]
            out.append(Service(
                f"{p.name}/{svc['name']}", svc["name"], p.name, [binary, *svc["args"]],
                [(str(a), int(port), str(proto)) for a, port, proto in svc["listeners"]],
                HEALTH[health["kind"]](health["address"], int(health["port"])),
                cwd=Path(manifests[p.name]["paths"]["run"]), stop_signal=svc["stop_signal"]))
    return out


def udp_bound(addr: str, port: int) -> bool:
    """Whether a socket is bound to ``addr:port``/udp (or the wildcard address on that
    port), read from /proc/net/udp: unlike a test bind, looking never takes the port from a
    process that is just starting."""
    want = {f"{socket.htonl(int(ipaddress.IPv4Address(a))):08X}:{port:04X}"
            for a in (addr, "0.0.0.0")}  # noqa: S104 - the wildcard as /proc lists it
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return not port_free(addr, port, "udp")
    return any(line.split()[1] in want for line in lines if len(line.split()) > 1)


def bound_health(addr: str, port: int) -> Callable[[], None]:
    """SIPp as a UAS answers only INVITEs: it is up once its UDP port is bound."""
    def check() -> None:
        if not udp_bound(addr, port):
            raise Unreachable(f"nothing bound on {addr}:{port}/udp yet")
    return check


def sip_health(addr: str, port: int) -> Callable[[], None]:
    def check() -> None:
        resp = sip_options(addr, port, timeout=0.5)
        # A restarted proxy answers, but says it is warming up (its gate is closed).
        if resp.status != 200 and (resp.status, resp.reason) != (503, "Warming Up"):
            raise Unreachable(f"OPTIONS answered {resp.status} {resp.reason}")
    return check


def ng_health(addr: str, port: int) -> Callable[[], None]:
    def check() -> None:
        reply = ng_command(addr, port, "ping", 0.5)
        if reply.get("result") != "pong":
            raise Unreachable(f"rtpengine ping answered {reply}")
    return check


def redis_health(addr: str, port: int) -> Callable[[], None]:
    def check() -> None:
        if not redis_ping(addr, port, 0.5):
            raise Unreachable("Redis did not answer PONG")
    return check


def esl_health(addr: str, port: int) -> Callable[[], None]:
    def check() -> None:
        try:
            with socket.create_connection((addr, port), timeout=0.5) as s:
                s.settimeout(0.5)
                greeting = s.recv(64)
        except OSError as exc:
            raise Unreachable(f"ESL {addr}:{port}: {exc}") from None
        if b"auth/request" not in greeting:
            raise Unreachable(f"ESL {addr}:{port} greeted {greeting!r}")
    return check


def process_health(addr: str, port: int) -> Callable[[], None]:
    """A process with nothing to ask: that it runs is checked by its record."""
    return lambda: None


# The health check of each kind the role table names (zpctl.model.roles.HEALTH_*).
HEALTH: dict[str, Callable[[str, int], Callable[[], None]]] = {
    roles.HEALTH_PROCESS: process_health,
    roles.HEALTH_SIP_OPTIONS: sip_health,
    roles.HEALTH_RTPENGINE_PING: ng_health,
    roles.HEALTH_REDIS_PING: redis_health,
    roles.HEALTH_ESL: esl_health,
}


def switch_env(argv: list[str]) -> dict[str, str] | None:
    """A FreeSWITCH's environment: its PostgreSQL passwords from the password file beside
    its config (``-conf DIR``: the rendered ``pgpass``), never in a DSN its log would
    print.  None: zpctl's own environment (no password file)."""
    if "-conf" not in argv[:-1]:
        return None
    passfile = Path(argv[argv.index("-conf") + 1]) / PGPASS_FILE
    return {**os.environ, "PGPASSFILE": str(passfile)} if passfile.is_file() else None
