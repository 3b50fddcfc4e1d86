"""Test hosts for the deploy tests: one network namespace per node, each with its own sshd.

``NsHosts(tmp).up(nodes)`` creates, for every node, a namespace ``zpd-<n>`` joined to a
bridge in the root namespace by a veth pair, gives it the node's addresses (inside
10.199.0.0/16, used only here), and starts ``sshd`` in it under a private mount namespace in
which the host's own directory is bind-mounted over ``/run/zpctl-testhost`` (so seven hosts
sharing one file system each see their own /etc-like tree).  The controller keeps an
address on the bridge.  ``down()`` kills every process in the namespaces, then removes
namespaces, links and the mount point; it runs even when a test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from zpctl.clients.probes import sip_options
from zpctl.lab import Service

T = TypeVar("T")

BRIDGE = "zpd-br0"
MOUNT_POINT = Path("/run/zpctl-testhost")
LOCK = Path("/run/zpctl-deploy-test.lock")
PREFIX = 24


def why_not() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if os.geteuid() != 0:
        return "the deploy tests create network namespaces: run them as root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
        return "sshd is not installed (Debian: openssh-server; `make install`)"
    probe = "zpd-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return f"`ip netns add` fails here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")


def add_namespace(ns: str, veth: str, bridge: str, addrs: list[str], prefix: int = PREFIX
                  ) -> None:
    """A namespace ``ns`` whose ``eth0`` is one end of a veth pair, the other end
    (``veth``) on ``bridge`` in the root namespace; ``addrs`` on its eth0, lo up."""
    _ip("netns", "add", ns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", veth, "master", bridge)
    _ip("link", "set", veth, "up")
    _ip("link", "set", "lo", "up", ns=ns)
    for a in addrs:
        _ip("addr", "add", f"{a}/{prefix}", "dev", "eth0", ns=ns)
    _ip("link", "set", "eth0", "up", ns=ns)


def namespace_pids(ns: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    return [int(p) for p in r.stdout.split()]


def kill_namespace(ns: str) -> None:
    """SIGKILL every process in ``ns`` (a few rounds: a dying parent may fork)."""
    for _ in range(3):
        pids = namespace_pids(ns)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


@dataclass
class Namespaces:
    """Bare network namespaces on a bridge of their own, no sshd: ``up({ns: addresses})``;
    ``down()`` kills their processes and removes them and the bridge."""

    bridge: str
    controller: list[str]
    names: list[str] = field(default_factory=list)
    etc: list[Path] = field(default_factory=list)

    def up(self, hosts: dict[str, list[str]], resolvers: dict[str, str] | None = None
           ) -> Namespaces:
        """``resolvers``: namespace -> the name server its processes use (``ip netns
        exec`` mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf)."""
        self._lock = open(LOCK, "w")  # noqa: SIM115 - held until down()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        for ns, server in (resolvers or {}).items():
            folder = Path("/etc/netns") / ns
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "resolv.conf").write_text(f"nameserver {server}\n")
            self.etc.append(folder)
        _ip("link", "add", self.bridge, "type", "bridge")
        for a in self.controller:
            _ip("addr", "add", f"{a}/{PREFIX}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, (ns, addrs) in enumerate(sorted(hosts.items())):
            self.names.append(ns)
            add_namespace(ns, f"{self.bridge[:8]}-v{i}", self.bridge, addrs)
        return self

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def run(self, ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.exec_argv(ns, list(argv)), capture_output=True, text=True,
                              check=False)

    def down(self) -> None:
        for ns in self.names:
            kill_namespace(ns)
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        for folder in self.etc:
            shutil.rmtree(folder, ignore_errors=True)
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()


@dataclass
class Host:
    node: str
    ns: str
    addresses: list[str]
    ssh_address: str
    root: Path
    sshd: subprocess.Popen[bytes] | None = None


@dataclass
class NsHosts:
    tmp: Path
    controller: list[str]
    hosts: dict[str, Host] = field(default_factory=dict)
    key: Path = field(init=False)
    ssh_config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.tmp / "ssh" / "id_ed25519"
        self.ssh_config = self.tmp / "ssh" / "config"

    def _keys(self) -> None:
        (self.tmp / "ssh").mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)],
                       check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(self.tmp / "ssh" / "host_ed25519")], check=True)
        (self.tmp / "ssh" / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        self.ssh_config.write_text(
            "Host *\n  User root\n  IdentityFile " + str(self.key) + "\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            "  IdentitiesOnly yes\n  ConnectTimeout 30\n  ServerAliveInterval 10\n"
            # testinfra opens one connection per command: share one per host.
            f"  ControlMaster auto\n  ControlPath {self.tmp / 'ssh'}/cm-%C\n  ControlPersist 30\n")

    def up(self, nodes: dict[str, tuple[list[str], str]]) -> NsHosts:
        """``nodes``: node name -> (its addresses, the address sshd listens on)."""
        # Names, bridge, addresses and mount point are fixed: one run per machine at a time.
        self._lock = open(LOCK, "w")  # noqa: SIM115 - held until down()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._keys()
        Path("/run/sshd").mkdir(exist_ok=True)
        MOUNT_POINT.mkdir(exist_ok=True)
        _ip("link", "add", BRIDGE, "type", "bridge")
        for a in self.controller:
            _ip("addr", "add", f"{a}/{PREFIX}", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for i, (node, (addrs, ssh_addr)) in enumerate(sorted(nodes.items())):
            ns = f"zpd-{i}"
            root = self.tmp / "hosts" / node
            root.mkdir(parents=True)
            host = Host(node, ns, addrs, ssh_addr, root)
            self.hosts[node] = host
            add_namespace(ns, f"zpd-v{i}", BRIDGE, addrs)
            self._sshd(host)
        for host in self.hosts.values():
            self._wait_ssh(host)
        return self

    def _sshd(self, host: Host) -> None:
        conf = host.root.parent / f"{host.node}.sshd_config"
        conf.write_text(
            f"ListenAddress {host.ssh_address}\nPort 22\n"
            f"HostKey {self.tmp / 'ssh' / 'host_ed25519'}\n"
            f"AuthorizedKeysFile {self.tmp / 'ssh' / 'authorized_keys'}\n"
            f"PidFile {host.root.parent / (host.node + '.sshd.pid')}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
            "StrictModes no\nSubsystem sftp internal-sftp\nMaxStartups 50\nMaxSessions 50\n")
        script = (f"mount --bind {host.root} {MOUNT_POINT} && "
                  f"exec /usr/sbin/sshd -D -e -f {conf}")
        log = open(host.root.parent / f"{host.node}.sshd.log", "ab")  # noqa: SIM115
        host.sshd = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, "unshare", "-m", "--propagation", "private",
             "sh", "-c", script], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def _wait_ssh(self, host: Host, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host.ssh_address, 22), 1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd of {host.node} does not answer on {host.ssh_address}:22")

    def exec(self, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's network namespace (not its mount namespace)."""
        return subprocess.run(["ip", "netns", "exec", self.hosts[node].ns, *argv],
                              capture_output=True, text=True, check=False)

    def down(self) -> None:
        """Kill everything in the namespaces, remove them, the bridge and the mount point."""
        for host in self.hosts.values():
            kill_namespace(host.ns)
            if host.sshd is not None:
                with contextlib.suppress(Exception):
                    host.sshd.wait(2)
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            MOUNT_POINT.rmdir()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()  # releases the flock


_CLONE_NEWNET = 0x40000000


def _enter_netns(ns: str) -> None:
    """Move the calling thread into network namespace ``ns`` (setns(2): per thread)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


class InNamespace:
    """Run Python in network namespace ``ns``: ``inside(fn, *args)`` calls ``fn`` on a
    thread that lives there and returns its result (its exception is raised here).
    Sockets opened there, and threads started from there, stay in ``ns``: the test's phones
    sit on the site's LAN this way, in the test's own process."""

    def __init__(self, ns: str, workers: int = 4) -> None:
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix=f"in-{ns}",
                                       initializer=_enter_netns, initargs=(ns,))

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return self.pool.submit(fn, *args).result()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    """Call ``check`` every 0.1 s until it stops raising; AssertionError naming ``what`` and
    the last failure when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout:g} s: {last}")


def bridge_health(s: Service) -> Callable[[], object]:
    """A lab service's health check, but for a Kamailio a SIP OPTIONS from the bridge (the
    lab's comes from 127.0.0.1, which cannot reach a namespace)."""
    if s.kind != "kamailio":
        return s.health
    address, port = next((a, p) for a, p, proto in s.listeners if proto == "udp")
    return lambda: sip_options(address, port, 0.5, source="0.0.0.0")
