"""Phones for the lab: SIPp instances that register, answer and call, each on its own
loopback address, as real SIP endpoints do.

A phone that answers is registered with ``register.xml`` from ``ip:port`` and then a
``uas.xml`` SIPp listens on that same ``ip:port`` (RTP echo on), so calls routed to its
registered contact reach it.  Every run keeps its message trace in the work directory:
what the endpoint saw is what tests assert on.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from zpctl import sipp
from zpctl.accounts import SipUser
from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import ng_command
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError
from zpctl.lab.services import udp_bound
from zpctl.lab.sipua import Ua
from zpctl.model import LoadedInventory
from zpctl.model.schema import DataCenter, Role


def wait_reachable(inv: LoadedInventory, dc: DataCenter, user: SipUser, ip: str,
                   port: int = 5060, timeout: float = 10.0) -> None:
    """Return once a call to ``user`` can reach the phone at ``ip:port``: every zone proxy
    of ``dc`` holds its contact (the zone that did not take the REGISTER gets its copy over
    DMQ a moment later, and the lb may send the call to either) and the phone's UDP port is
    bound.  Unreachable after ``timeout`` seconds."""
    aor = f"{user.username}@{user.domain}"
    proxies = [p for z in sorted(dc.zones) if (p := inv.zone_node(dc, z, Role.PROXY))]
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    while True:
        missing = [p.name for p in proxies if f"@{ip}:{port}" not in _lookup(p.mgmt,
                                                                              p.ports.mgmt_http, aor)]
        if udp_bound(ip, port):  # the phone listens
            if not missing:
                return
        else:
            missing.append(f"the phone's port {ip}:{port}")
        if time.monotonic() >= deadline:
            raise Unreachable(f"{aor} at {ip}:{port} not reachable after {timeout:g} s: "
                              f"missing on {', '.join(missing)}")
        time.sleep(0.05)


def _lookup(mgmt: str, port: int, aor: str) -> str:
    try:
        return str(KamailioRpc(f"http://{mgmt}:{port}/RPC").call("ul.lookup", "location", aor))
    except (RemoteFailure, Unreachable):  # not (yet) registered there, or not answering
        return ""


class Phones:
    """Register, answer and place calls through a data center's lb."""

    def __init__(self, inv: LoadedInventory, users: list[SipUser], workdir: Path,
                 dc: str | None = None, subnet: str = "127.0.8") -> None:
        self.inv = inv
        self.users = {f"{u.username}@{u.account}": u for u in users}
        self.workdir = workdir
        dc_ = inv.dc(dc) if dc else inv.model.datacenters[0]
        lb = next(n for n in dc_.nodes if n.role == Role.LB)
        self.lb = f"{lb.address}:{lb.ports.sip}"
        self.dc = dc_
        self.subnet = subnet
        self._ips = itertools.count(10)
        self._names = itertools.count(1)
        self.running: list[sipp.SippRun] = []

    def user(self, key: str) -> SipUser:
        """A user by ``extension@account``, e.g. ``1001@acme``."""
        try:
            return self.users[key]
        except KeyError:
            raise ZpctlError(f"no user {key}; known: {', '.join(sorted(self.users))}",
                             ExitCode.USAGE) from None

    def ip(self) -> str:
        return f"{self.subnet}.{next(self._ips)}"

    def _csv(self, u: SipUser) -> Path:
        return sipp.users_csv(self.workdir / f"{u.username}@{u.domain}.csv",
                              [(u.username, u.domain, u.password)])

    def _name(self, what: str) -> str:
        return f"{next(self._names):03d}-{what}"

    def register(self, key: str, ip: str | None = None, port: int = 5060,
                 target: str | None = None, expires: int = 600) -> sipp.SippRun:
        u = self.user(key)
        return sipp.run("register", target or self.lb, workdir=self.workdir,
                        name=self._name(f"register-{u.username}"), local_ip=ip or self.ip(),
                        local_port=port, users=self._csv(u), keys={"expires": str(expires)},
                        wait_s=15)

    def unregister_all(self, key: str, ip: str) -> None:
        """Remove every contact ``key`` has (``Contact: *``): a contact an earlier test left
        on an address since reused would ring too, and might answer."""
        u = self.user(key)
        host, _, port = self.lb.partition(":")
        ua = Ua(ip, 5060, u.username, u.username, u.domain, u.password, (host, int(port)))
        try:
            ua.unregister_all()
        finally:
            ua.close()

    def answer(self, key: str, ip: str | None = None, media_port: int = 21000) -> sipp.SippRun:
        """Register ``key`` and keep answering its calls until :meth:`stop_all`."""
        ip = ip or self.ip()
        self.unregister_all(key, ip)
        reg = self.register(key, ip)
        if reg.returncode != 0:
            raise RemoteFailure(f"{key} did not register: {reg.errors.read_text()[-600:]}")
        run = sipp.start("uas", None, workdir=self.workdir, name=self._name(f"answer-{key}"),
                         local_ip=ip, local_port=5060, calls=None, media_port=media_port,
                         rtp_echo=True)
        self.running.append(run)
        wait_reachable(self.inv, self.dc, self.user(key), ip)
        return run

    def call(self, key: str, number: str, hold_ms: int = 2000, calls: int = 1,
             rate: float | None = None, scenario: str = "call", media_port: int = 22000,
             wait_s: float = 60, target: str | None = None, ip: str | None = None,
             concurrency: int | None = None) -> sipp.SippRun:
        u = self.user(key)
        return sipp.run(scenario, target or self.lb, workdir=self.workdir,
                        name=self._name(f"{scenario}-{u.username}-{number}"),
                        local_ip=ip or self.ip(), concurrency=concurrency,
                        local_port=5060, users=self._csv(u), service=number, calls=calls,
                        rate=rate, hold_ms=hold_ms, media_port=media_port, wait_s=wait_s)

    def call_in_background(self, key: str, number: str, hold_ms: int = 4000,
                           scenario: str = "call", media_port: int = 22000,
                           ip: str | None = None) -> sipp.SippRun:
        u = self.user(key)
        run = sipp.start(scenario, self.lb, workdir=self.workdir,
                         name=self._name(f"{scenario}-{u.username}-{number}"),
                         local_ip=ip or self.ip(),
                         local_port=5060, users=self._csv(u), service=number, calls=1,
                         hold_ms=hold_ms, media_port=media_port)
        self.running.append(run)
        return run

    def attempt(self, key: str, number: str) -> int:
        """Place a call and return its final SIP status (the call_attempt scenario)."""
        u = self.user(key)
        run = sipp.run("call_attempt", self.lb, workdir=self.workdir,
                       name=self._name(f"attempt-{u.username}-{number}"), local_ip=self.ip(),
                       local_port=5060, users=self._csv(u), service=number, wait_s=20)
        finals = run.finals()
        if not finals:
            raise Unreachable(f"call attempt {key} -> {number} got no final response:\n"
                             f"{run.errors.read_text()[-800:] if run.errors.exists() else ''}")
        return finals[-1]

    def stop_all(self) -> None:
        for run in self.running:
            run.stop()
        self.running.clear()

    def media_calls(self) -> dict[str, dict[str, object]]:
        """Calls anchored on this data center's media nodes: call-id -> rtpengine query."""
        out: dict[str, dict[str, object]] = {}
        for zname in sorted(self.dc.zones):
            media = self.inv.zone_node(self.dc, zname, Role.MEDIA)
            if media is None:
                continue
            # ng `list` returns 32 calls unless given a limit.
            listing = ng_command(media.mgmt, media.ports.rtpengine_ng, "list", 1.0, limit=10000)
            calls = listing.get("calls")
            for cid in calls if isinstance(calls, list) else []:
                q = ng_command(media.mgmt, media.ports.rtpengine_ng, "query", 1.0,
                               **{"call-id": cid})
                q["media_node"] = media.name
                out[str(cid)] = q
        return out


def packets_by_tag(query: dict[str, object]) -> dict[str, tuple[str, int]]:
    """From an rtpengine query: tag -> (codec, RTP packets received from that party)."""
    out = {}
    tags = query.get("tags")
    for tag, info in (tags.items() if isinstance(tags, dict) else []):
        total, codec = 0, ""
        for media in info.get("medias", []):
            codec = media.get("codec", codec)
            for stream in media.get("streams", []):
                if "RTP" in stream.get("flags", []):
                    total += int(stream.get("stats", {}).get("packets", 0))
        out[str(tag)] = (str(codec), total)
    return out
