"""The lab's platform processes: how each node runs on this machine and how to tell that
it answers (a SIP OPTIONS, an rtpengine ping, a Redis PING, a bound port)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zpctl.clients.probes import ng_command, redis_ping, sip_options
from zpctl.errors import EnvironmentProblem, Unreachable
from zpctl.model import LoadedInventory
from zpctl.model.schema import Role
from zpctl.render.sizing import shm_mb


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


def which(binary: str, search: str | None = None) -> str:
    """The binary's path; ``search`` (a PATH string) replaces the default search."""
    if search is not None:
        path = shutil.which(binary, path=search)
    else:
        path = shutil.which(binary) or next(
            (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if Path(p).exists()), None)
    if path is None:
        raise EnvironmentProblem(f"{binary} is not installed; run `make install` "
                                 "(Debian: kamailio, rtpengine-daemon, redis-server)")
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


def node_services(inv: LoadedInventory, lab_dir: Path, bin_path: str | None = None
                  ) -> list[Service]:
    """Every platform process of ``inv`` in a lab at ``lab_dir``, in start order: Redis,
    rtpengine, proxies, sbcs, lbs (``bin_path``: a PATH to find the binaries in)."""
    kam, rtpe, redis = None, None, None
    out: list[Service] = []
    order = {Role.MEDIA: 0, Role.PROXY: 1, Role.SBC: 2, Role.LB: 3}
    for p in sorted(inv.nodes(), key=lambda p: (order.get(p.role, 9), p.name)):
        n = p.node
        build = lab_dir / "build" / p.name
        run = lab_dir / "nodes" / p.name / "run"
        if p.role == Role.MEDIA:
            redis = redis or which("redis-server", bin_path)
            rtpe = rtpe or which("rtpengine", bin_path)
            out.append(Service(
                f"{p.name}/redis", "redis", p.name, [redis, str(build / "redis" / "redis.conf")],
                [(n.mgmt, n.ports.redis, "tcp")],
                redis_health(n.mgmt, n.ports.redis), cwd=run))
            out.append(Service(
                f"{p.name}/rtpengine", "rtpengine", p.name,
                [rtpe, f"--config-file={build / 'rtpengine' / 'rtpengine.conf'}",
                 "--foreground", "--log-stderr", "--no-log-timestamps"],
                [(n.mgmt, n.ports.rtpengine_ng, "udp")],
                ng_health(n.mgmt, n.ports.rtpengine_ng), cwd=run))
        elif p.role in (Role.LB, Role.PROXY, Role.SBC):
            kam = kam or which("kamailio", bin_path)
            listeners = [(n.address, n.ports.sip, "udp"), (n.address, n.ports.sip, "tcp"),
                         (n.mgmt, n.ports.mgmt_http, "tcp")]
            if p.role == Role.LB:
                listeners.append((n.address, n.ports.sips, "tcp"))
            if p.role == Role.PROXY:
                listeners.append((n.address, n.ports.dmq, "udp"))
            if p.role == Role.SBC:
                listeners += [(n.public, n.ports.sip, "udp"), (n.public, n.ports.sip, "tcp")]
            out.append(Service(
                f"{p.name}/kamailio", "kamailio", p.name,
                [kam, "-DD", "-E", "-f", str(build / "kamailio" / "kamailio.cfg"),
                 "-Y", str(run), "-m", str(shm_mb(n.capacity.cps, p.role.value)),
                 "-M", str(n.kamailio.pkg_mb)],
                listeners, sip_health(n.address, n.ports.sip), cwd=run))
    return out


def bound_health(addr: str, port: int) -> Callable[[], None]:
    """SIPp as a UAS answers only INVITEs: it is up once its UDP port is bound."""
    def check() -> None:
        if port_free(addr, port, "udp"):
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
