"""The lab runner: an inventory's whole platform running on this machine, on loopback.

``Lab(dir).up(inventory)`` renders the inventory with every path pointing into the lab
directory, prepares the subscriber database, the lab CA and certificates, then starts one
real process per service (Kamailio for lb/proxy/sbc, Redis and rtpengine for media) on the
node's own loopback address, and waits until each answers.  ``down()`` stops exactly the
processes ``up()`` recorded, by pid and start time.  Everything lives in the lab directory
(its folders 0700; logs, pid files and the database 0600)::

    lab.json            which inventory and build this lab runs
    secrets.yml         generated secrets (0600)
    build/<node>/       the rendered tree of each node (its config dir)
    nodes/<node>/       run/ (sockets), log/, state/ of each node
    state/              the sqlite subscriber database
    pki/                the lab CA, node and peer certificates
    pids/<service>.json one record per started process
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zpctl import pki
from zpctl.accounts import SipUser, SyncResult, sip_users
from zpctl.clients.esl import EslConnection
from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import ng_command
from zpctl.control import Control, address_holder, parallel, sync_accounts, unanswered
from zpctl.db import DbTarget, connect, create_sqlite, migrate
from zpctl.errors import EnvironmentProblem, ExitCode, Unreachable, ZpctlError
from zpctl.freeswitch.control import SwitchResult, astatus, targets_for
from zpctl.freeswitch.emergency import spool_path, spool_ready, watch_argv
from zpctl.freeswitch.provision import SwitchFiles, provision
from zpctl.lab.database import (
    SERVICE as DB_SERVICE,
)
from zpctl.lab.database import (
    bootstrap_database,
    db_service,
    prepare_database,
    remove_database,
)
from zpctl.lab.dns import KIND as DNS_KIND
from zpctl.lab.dns import dns_services
from zpctl.lab.peers import (
    LOOPBACK,
    Peer,
    peer_services,
    peers,
    prepare_peers,
    private_dir,
)
from zpctl.lab.procs import ProcessError, ProcRecord, await_reaped, launch, stop_all
from zpctl.lab.services import Service, node_services, port_free, switch_env
from zpctl.lab.standby import standing_in, stands_in_for
from zpctl.model import LoadedInventory, PlacedNode, load_inventory, roles
from zpctl.model.schema import Role
from zpctl.model.survivable import site_of_node
from zpctl.native import build_fork_guard, needs_fork_guard, preload_env
from zpctl.paths import default_inventory, state_dir
from zpctl.render import render
from zpctl.render.dns import DNS
from zpctl.render.paths import node_paths
from zpctl.secrets import ESL_PASSWORD_KEY, Secrets
from zpctl.survivability import create_node_db, prepare_announcer

NOTIFIER = "emergency-notifier"  # the lab's `zpctl emergency watch` (its folder under nodes/)
DEFAULT_INVENTORY = "inventories/lab"  # as help texts name it; see paths.default_inventory

Progress = Callable[[str], None]


# Services that must answer before the rest start: media (Kamailio uses it), the switches'
# database (a switch whose core database is missing does not start), and the DNS servers
# (an sbc that reaches a carrier by SRV resolves it when it loads its dispatcher list).
FIRST_KINDS = ("redis", "rtpengine", "postgres", DNS_KIND)


# Kamailio's words for a memory fault (its allocator's BUG reports) and for a worker that
# died of a signal other than the ones `lab down`, `lab kill` and the chaos tests send.
_KAMAILIO_FAULT = re.compile(r"\bBUG: |exited by a signal (?!9\b|15\b)\d+")


def default_lab_dir() -> Path:
    """The lab directory: ``$ZPCTL_LAB_DIR``, else ``<XDG state home>/zpctl/lab``."""
    return state_dir("lab", "ZPCTL_LAB_DIR")


def _rank(rec: ProcRecord) -> int:
    """Stop order, reversed, of a process kind: the switches and peers (SIPp) first, then
    Kamailio, rtpengine, Redis and the switches' database last (a switch whose database is
    gone does not stop on SIGTERM)."""
    return {"postgres": -1, "redis": 0, "rtpengine": 1, "kamailio": 2}.get(
        rec.name.split("/")[-1], 3)


@dataclass
class DownReport:
    """What `lab down` stopped, which needed SIGKILL, and what it checked afterwards."""

    stopped: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    unreaped: list[int] = field(default_factory=list)
    ports_free: int | None = None  # listeners checked free; None: inventory unreadable
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        text = f"lab: stopped {len(self.stopped)} processes in {self.seconds:.1f} s"
        if self.killed:
            text += f" ({len(self.killed)} needed SIGKILL: {', '.join(self.killed)})"
        text += "; every one has exited"
        if self.ports_free is not None:
            text += f", and all {self.ports_free} of their listening addresses are free"
        else:
            text += " (ports not checked: the lab's inventory cannot be read)"
        if self.unreaped:
            text += (f"; {len(self.unreaped)} exited processes still await reaping by pid 1 "
                     "(they hold no port)")
        return text


class Lab:
    def __init__(self, directory: Path | None = None, bin_path: str | None = None) -> None:
        self.dir = Path(directory or default_lab_dir()).absolute()
        self.bin_path = bin_path  # PATH to find kamailio, rtpengine, redis-server (default: $PATH)

    # -- state ------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    def state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
            return data
        except (OSError, ValueError):
            return None

    def pid_path(self, service: str) -> Path:
        return self.dir / "pids" / f"{service.replace('/', '--')}.json"

    def records(self) -> list[ProcRecord]:
        out = []
        for p in sorted((self.dir / "pids").glob("*.json")):
            rec = ProcRecord.load(p)
            if rec is not None:
                out.append(rec)
        return out

    def require(self) -> None:
        """Raise Unreachable (exit 7) unless a lab was started in this directory."""
        if self.state() is None:
            raise Unreachable(f"no lab in {self.dir}: start one with `zpctl lab up` (or give "
                              "--lab-dir)")

    def inventory_label(self) -> str:
        st = self.state()
        return str(st["inventory"]) if st else str(default_inventory())

    def inventory(self, inventory: Path | None = None) -> LoadedInventory:
        if inventory is None:
            st = self.state()
            inventory = Path(st["inventory"]) if st else default_inventory()
        return load_inventory(inventory)

    # -- preparing --------------------------------------------------------------------------

    def check_loopback(self, inv: LoadedInventory) -> None:
        bad = []
        for p in inv.nodes():
            for a in {p.node.address, p.node.public, p.node.mgmt}:
                if ipaddress.ip_address(a) not in LOOPBACK:
                    bad.append(f"{p.name}: {a}")
        for s in inv.model.dns.servers if inv.model.dns else []:
            if ipaddress.ip_address(s.address) not in LOOPBACK:
                bad.append(f"name server {s.name}: {s.address}")
        pairs = [dc.id for dc in inv.model.datacenters if dc.edge is not None]
        if pairs:
            raise ZpctlError(
                f"the lab runs every node on loopback, and an lb pair needs an interface per lb "
                f"for VRRP: data center(s) {', '.join(pairs)} have edge: (network-namespace "
                "hosts run pairs: tests/integration/test_edge.py, docs/EDGE.md)", ExitCode.USAGE)
        if bad:
            raise ZpctlError("the lab runs only inventories whose addresses are all on loopback "
                             "(127.0.0.0/8); not: " + ", ".join(bad[:5]), ExitCode.USAGE)

    def prepare(self, inv: LoadedInventory) -> str:
        """Render into the lab, create the database and certificates; the build id.

        The lab's folders are 0700 and its database 0600, a lab made before this included:
        the database's HA1 hashes are as good as passwords, and logs can hold what peers sent.
        """
        private_dir(self.dir)
        private_dir(self.dir / "state")
        private_dir(self.dir / "pids")
        private_dir(self.dir / "nodes")
        secrets = Secrets.load(self.dir / "secrets.yml")
        build = render(inv, secrets, lab_root=self.dir)
        secrets.save()
        build.write(self.dir / "build")
        if inv.model.database.engine == "sqlite":
            create_sqlite(self.db_path)
            self.db_path.chmod(0o600)
        pki_dir = self.dir / "pki"
        pki.make_ca(pki_dir)
        for p in inv.nodes():
            if p.role in roles.KAMAILIO_ROLES:
                pki.issue(pki_dir, pki_dir, p.name, f"{p.name}.{inv.model.platform.sip_domain}",
                          sorted({p.node.address, p.node.public}))
        # BYOC-P peers in the lab are issued by the lab CA ("platform").
        (pki_dir / "peer-cas.pem").write_bytes((pki_dir / "ca.crt").read_bytes())
        for p in inv.nodes():
            for sub in ("run", "log", "state"):
                private_dir(self.dir / "nodes" / p.name / sub)
        for sub in ("run", "log"):
            private_dir(self.dir / "nodes" / NOTIFIER / sub)
        private_dir(self.dir / "state")
        for s in inv.model.dns.servers if inv.model.dns else []:
            private_dir(self.dir / "nodes" / DNS)
            private_dir(self.dir / "nodes" / DNS / s.name)
        for p in inv.nodes():
            if p.role == Role.SURVIVABILITY:  # users arrive by `zpctl survivability sync`
                paths = node_paths(inv.model, p.name, self.dir)
                state = Path(paths.state)
                create_node_db(Path(paths.survivability_db))
                site = site_of_node(inv.model, p.name)
                prepare_announcer(state, site.site.language if site else "en-US")
        self.prepare_switches(inv)
        self.prepare_peers(inv)
        prepare_database(inv, self.dir)
        if inv.model.database.engine == "sqlite":  # PostgreSQL's: once its server answers
            self.sync_accounts(inv, secrets)
        return build.digest()

    def prepare_switches(self, inv: LoadedInventory) -> None:
        """TLS files, sounds and folders of every switch.  The lab's switches share one
        TLS folder (their profiles name ``<pki>/freeswitch``, as a host's does): one
        certificate from the lab CA carries every switch's address."""
        switches = [p for p in inv.nodes() if p.role == Role.SWITCH]
        if not switches:
            return
        pki_dir = self.dir / "pki"
        crt, key = pki.issue(pki_dir, pki_dir, "switches",
                             f"switches.{inv.model.platform.sip_domain}",
                             sorted({a for p in switches for a in (p.node.address, p.node.mgmt)}))
        agent = crt.read_bytes() + key.read_bytes()
        ca = (pki_dir / "ca.crt").read_bytes()
        # The storage the data center's switches share (voicemail): one folder in the lab.
        (self.dir / "shared").mkdir(mode=0o700, exist_ok=True)
        for p in switches:
            provision(SwitchFiles(self.dir / "build" / p.name / "freeswitch",
                                  self.dir / "nodes" / p.name / "state", pki_dir / "freeswitch"),
                      agent, ca)

    def secrets(self) -> Secrets:
        return Secrets.load(self.dir / "secrets.yml")

    def sync_accounts(self, inv: LoadedInventory, secrets: Secrets | None = None,
                      dry_run: bool = False) -> SyncResult:
        """Provision ``inv``'s accounts into the lab's platform database (the one the
        lab's own inventory names: another inventory's accounts go in beside them)."""
        secrets = secrets or self.secrets()
        own = self.inventory() if self.state() is not None else inv
        proxies = Control(own) if self.state() is not None else None
        result, forgotten = sync_accounts(inv, secrets, self.db_target(own, secrets), proxies,
                                          dry_run)
        failed = unanswered(forgotten)
        if failed is not None:
            raise failed
        return result

    @property
    def db_path(self) -> Path:
        """The platform database's file when the lab's inventory says engine sqlite."""
        return self.dir / "state" / "subscriber.sqlite"

    def db_target(self, inv: LoadedInventory | None = None,
                  secrets: Secrets | None = None) -> DbTarget:
        """The lab's platform database: its PostgreSQL's (engine postgres) or a file."""
        inv = inv or self.inventory()
        return DbTarget.of_inventory(inv, secrets or self.secrets(), self.db_path)

    def users(self, inv: LoadedInventory | None = None) -> list[SipUser]:
        """The lab's SIP users with their passwords (for phones and SIPp)."""
        return sip_users(inv or self.inventory(), self.secrets())

    def services(self, inv: LoadedInventory) -> list[Service]:
        """Every process of the lab, in start order: the switches' database (when the
        inventory names one), the DNS servers (``dns:``), the platform's, as each node's node.json says (see
        :meth:`manifests`), then the simulated peers'."""
        db = db_service(inv, self.dir)
        return ([db] if db is not None else []) \
            + dns_services(inv, self.dir, self.bin_path) \
            + node_services(inv, self.manifests(inv), self.bin_path) \
            + peer_services(inv, self.dir, self.bin_path) \
            + self.notifier_services(inv)

    def notifier_services(self, inv: LoadedInventory) -> list[Service]:
        """The emergency notifier (``zpctl emergency watch``: the switches' notices of
        emergency calls to the accounts' security desks), when an account has a desk and
        the platform has switches to relay the notices."""
        if not any(a.security_desk for a in inv.model.accounts) or \
                not any(p.role == Role.SWITCH for p in inv.nodes()):
            return []
        spool = spool_path(self.dir / "state")
        home = self.dir / "nodes" / NOTIFIER
        argv = watch_argv(inv.root.absolute(), spool, secrets=self.dir / "secrets.yml",
                          lab_dir=self.dir)
        return [Service(NOTIFIER, "notifier", NOTIFIER, argv, [],
                        lambda: spool_ready(spool), cwd=home / "run")]

    def launch_env(self, s: Service) -> dict[str, str] | None:
        """The environment ``s`` starts with; None: zpctl's own.  A switch reads its
        PostgreSQL passwords from its password file (:func:`switch_env`).  A Kamailio older than
        5.7.5 runs with the OpenSSL fork guard preloaded (zpctl/native/ossl_fork_guard.c:
        without it its TLS workers share OpenSSL's state and crash now and then), built
        into the lab's ``native`` folder the first time it is needed."""
        if s.kind == "freeswitch":
            return switch_env(s.argv)
        if s.kind != "kamailio" or not needs_fork_guard(s.argv[0]):
            return None
        return preload_env(build_fork_guard(self.dir / "native"))

    def manifests(self, inv: LoadedInventory) -> dict[str, dict[str, Any]]:
        """Each node's node.json: from the lab's build when the lab runs this inventory
        (what its processes were started from), else rendered now and not written (a dry
        run, or the checks `up` makes before it writes anything)."""
        st = self.state()
        build = self.dir / "build"
        if st and st.get("inventory") == str(inv.root.absolute()):
            try:
                docs = {p.name: json.loads((build / p.name / "node.json").read_text())
                        for p in inv.nodes()}
                if all("binary" in s and "args" in s
                       for d in docs.values() for s in d.get("services", [])):
                    return docs
            except (OSError, ValueError):
                pass  # an incomplete build, or one from an older zpctl: render it
        files = render(inv, self.secrets(), lab_root=self.dir).files
        return {p.name: json.loads(files[f"{p.name}/node.json"].data) for p in inv.nodes()}

    def peers(self, inv: LoadedInventory) -> list[Peer]:
        """The carriers and customer equipment the lab simulates (loopback addresses only)."""
        return peers(inv)

    def prepare_peers(self, inv: LoadedInventory) -> None:
        """Configs, certificates and test audio for the simulated peers."""
        prepare_peers(inv, self.dir)

    # -- up / down / status -----------------------------------------------------------------

    def up(self, inventory: Path | None = None, progress: Progress = lambda s: None,
           timeout: float = 30.0) -> list[dict[str, Any]]:
        """Start every service that is not running; wait until each answers."""
        inv = self.inventory(inventory)
        self.check_loopback(inv)
        st = self.state()
        inv_path = str(inv.root.absolute())
        if st and st.get("inventory") != inv_path and any(r.alive() for r in self.records()):
            raise EnvironmentProblem(
                f"the lab in {self.dir} runs {st.get('inventory')}; `zpctl lab down` first")
        services = self.services(inv)  # checks the binaries before anything is written
        running = {r.name for r in self.records() if r.alive()}
        busy = [f"{a}:{port}/{proto} ({s.name})" for s in services if s.name not in running
                for a, port, proto in s.listeners if not port_free(a, port, proto)]
        if busy:
            raise EnvironmentProblem("address already in use: " + ", ".join(busy[:6])
                                     + (" …" if len(busy) > 6 else "")
                                     + "; stop what holds it (ss -lunpt) and retry")
        build_id = self.prepare(inv)
        self.state_file.write_text(json.dumps(
            {"inventory": inv_path, "platform": inv.model.platform.name, "build": build_id},
            indent=2) + "\n")
        services = self.services(inv)  # as the build just written describes them
        started = []
        for s in services:
            if s.name in running:
                progress(f"  {s.name:<28} already running")
                if s.name == DB_SERVICE:  # a switch added since has its database too
                    self._after_start(s, inv)
                continue
            log = self.console_log(s)
            # A first start has no registrations to wait for: no warm-up gate.
            argv = s.argv + (["-A", "WARMUP_S=0"] if s.name.endswith("proxy/kamailio") else [])
            rec = launch(s.name, argv, log, s.cwd, stop_signal=s.stop_signal, user=s.user,
                         env=self.launch_env(s))
            self.save_record(rec)
            started.append(s)
            # Media must answer before the Kamailio nodes that use it start, the switches'
            # database before the switches, and DNS before the sbcs (FIRST_KINDS).
            if s.kind in FIRST_KINDS:
                self.wait_up(s, rec, progress, timeout)
                self._after_start(s, inv)
        for s in started:
            if s.kind not in FIRST_KINDS:
                rec2 = ProcRecord.load(self.pid_path(s.name))
                assert rec2 is not None
                self.wait_up(s, rec2, progress, timeout)
                self._after_start(s, inv)
        return self.status(inventory)

    def kamailio_log_sizes(self) -> dict[str, int]:
        """Each node's Kamailio log size now: where :meth:`kamailio_faults` starts later."""
        return {log.parent.parent.name: log.stat().st_size
                for log in (self.dir / "nodes").glob("*/log/kamailio.log")}

    def kamailio_faults(self, since: dict[str, int]) -> list[str]:
        """The lines the lab's Kamailio logs wrote, past the ``since`` sizes (from
        :meth:`kamailio_log_sizes`; a log not named there is read whole), of a memory fault
        or a crashed worker, each prefixed with its node.  A worker that dies of SIGSEGV or
        SIGABRT takes its Kamailio down; its log says why."""
        faults: list[str] = []
        for log in sorted((self.dir / "nodes").glob("*/log/kamailio.log")):
            node = log.parent.parent.name
            try:
                with log.open("rb") as fh:
                    fh.seek(since.get(node, 0))
                    text = fh.read().decode(errors="replace")
            except OSError:
                continue
            faults += [f"{node}: {line.strip()}" for line in text.splitlines()
                       if _KAMAILIO_FAULT.search(line)]
        return faults

    def console_log(self, s: Service) -> Path:
        """Where a service's stdout and stderr go: ``<kind>.log`` in its node's log folder;
        FreeSWITCH writes its own ``freeswitch.log`` there, so its console is
        ``freeswitch.console.log``."""
        name = f"{s.kind}.console.log" if s.kind == "freeswitch" else f"{s.kind}.log"
        return self.dir / "nodes" / s.home / "log" / name

    def save_record(self, rec: ProcRecord) -> None:
        """Record a started process: pid file 0600 in the 0700 pids folder."""
        path = self.pid_path(rec.name)
        private_dir(path.parent)
        rec.save(path)
        path.chmod(0o600)

    def service(self, name: str, inventory: Path | None = None) -> Service:
        """One service by name (``lab1-a-proxy/kamailio``, ``lab1-a-media/rtpengine``, a peer),
        or by node name when the node runs one service."""
        services = self.services(self.inventory(inventory))
        for s in services:
            if s.name == name:
                return s
        matches = [s for s in services if s.home == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(s.name for s in services)
        raise ZpctlError(f"no lab service {name!r} (or it is ambiguous); services: {known}",
                         ExitCode.USAGE)

    def kill(self, name: str, sig: int = 9) -> ProcRecord:
        """Send ``sig`` to a running service's whole process group (chaos tests, demos)."""
        s = self.service(name)
        rec = ProcRecord.load(self.pid_path(s.name))
        if rec is None or not rec.alive():
            raise ZpctlError(f"{s.name} is not running", ExitCode.USAGE)
        os.killpg(rec.pid, sig)
        for _ in range(100):
            if not rec.alive():
                break
            time.sleep(0.02)
        return rec

    def start(self, name: str, progress: Progress = lambda s: None, timeout: float = 30.0,
              wait: bool = True) -> ProcRecord:
        """(Re)start one service that is not running.  A restarted proxy keeps its warm-up
        gate closed: the lbs send it nothing until `zpctl zone restore` opens it.  The
        switches' database and the switches are always waited for (``wait`` aside): each
        needs a step once it answers (see :meth:`_after_start`).  A switch a standby stands
        in for is refused (exit 2)."""
        s = self.service(name)
        old = ProcRecord.load(self.pid_path(s.name))
        if old is not None and old.alive():
            raise ZpctlError(f"{s.name} is already running (pid {old.pid})", ExitCode.USAGE)
        standby = standing_in(self, self.inventory(), s.home) if s.kind == "freeswitch" else None
        if standby is not None:  # it holds the switch's addresses (and its calls)
            raise ZpctlError(f"{standby} stands in for {s.home}: `zpctl lab giveback {s.home}`",
                             ExitCode.USAGE)
        log = self.console_log(s)
        rec = launch(s.name, s.argv, log, s.cwd, stop_signal=s.stop_signal, user=s.user,
                     env=self.launch_env(s))
        self.save_record(rec)
        if wait or s.name == DB_SERVICE or s.kind == "freeswitch":
            self.wait_up(s, rec, progress, timeout)
            self._after_start(s, self.inventory())
        return rec

    def _after_start(self, s: Service, inv: LoadedInventory) -> None:
        """What a service needs once it answers: the switches' role and databases each time
        their server starts; a switch started again (not taken over) forgets the calls it
        carried before (``sofia recover flush``): their parties are gone, and the standby's
        ``sofia recover`` must not find them later."""
        if s.name == DB_SERVICE:
            bootstrap_database(inv, self.dir, self.secrets())
            if inv.model.database.engine == "postgres":
                with connect(self.db_target(inv)) as db:
                    migrate(db)
                self.sync_accounts(inv)
        elif s.kind == "freeswitch" and inv.model.switch_recovery is not None:
            target = targets_for(inv, switch=s.home)[0]
            password = self.secrets().get(ESL_PASSWORD_KEY)

            async def flush() -> None:
                async with EslConnection(target.host, target.port, password, name=s.home,
                                         timeout=5) as conn:
                    await conn.api("sofia recover flush")
            asyncio.run(flush())

    def wait_up(self, s: Service, rec: ProcRecord, progress: Progress, timeout: float) -> None:
        t0 = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - t0 < timeout:
            if not rec.alive():
                raise EnvironmentProblem(f"{s.name} exited at start; last log lines:\n"
                                         + _tail(Path(rec.log), 15))
            try:
                s.health()
                progress(f"  {s.name:<28} up ({time.monotonic() - t0:.1f} s)")
                return
            except (Unreachable, OSError) as exc:
                last = exc
                time.sleep(0.1)
        raise Unreachable(f"{s.name} did not answer within {timeout:g} s ({last}); "
                          f"last log lines:\n" + _tail(Path(rec.log), 15))

    def down(self, progress: Progress = lambda s: None, timeout: float = 10.0) -> DownReport:
        """Stop every process this lab started and return once all have exited (SIGKILL
        after a grace period) and every address they listened on is free again.

        Switches and peers go first, then Kamailio, rtpengine, Redis and the switches'
        database.  Raises EnvironmentProblem when a
        process survives SIGKILL or a port is still taken ``timeout`` seconds later.
        """
        t0 = time.monotonic()
        report = DownReport()
        records = self._ordered_records()
        listeners = self._listeners_of({r.name for r in records})
        for rank in sorted({_rank(r) for r in records}, reverse=True):
            group = [r for r in records if _rank(r) == rank]
            try:
                res = stop_all(group, reap_wait=0)
            except ProcessError as exc:
                raise EnvironmentProblem(f"lab down: {exc}") from exc
            for name in res.stopped:
                progress(f"  {name:<28} {'killed' if name in res.killed else 'stopped'}")
            report.stopped += res.stopped
            report.killed += res.killed
            for rec in group:
                self.pid_path(rec.name).unlink(missing_ok=True)
        # Exited processes whose parent is gone linger as zombies until pid 1 reaps them
        # (about a second here): wait, so that `ps` after `lab down` shows none of them.
        report.unreaped = await_reaped(records, 3.0)
        if not any(r.alive() for r in records):
            remove_database(self.dir)  # its data lasts no longer than the switches' calls
        if listeners is not None:
            deadline = time.monotonic() + timeout
            busy = [x for x in listeners if not port_free(*x)]
            while busy and time.monotonic() < deadline:
                time.sleep(0.1)
                busy = [x for x in busy if not port_free(*x)]
            if busy:
                raise EnvironmentProblem(
                    "lab down: every process exited but these are still taken after "
                    f"{timeout:g} s: " + ", ".join(f"{a}:{port}/{proto}" for a, port, proto in busy))
            report.ports_free = len(listeners)
        report.seconds = round(time.monotonic() - t0, 2)
        return report

    def _listeners_of(self, names: set[str]) -> list[tuple[str, int, str]] | None:
        """The addresses the named services listen on, or None when the lab's inventory can
        no longer be read (then `down` cannot check its ports)."""
        if not names:
            return []
        try:
            services = self.services(self.inventory())
        except Exception:  # stopping must never depend on the build or the inventory
            return None
        return sorted({x for s in services if s.name in names for x in s.listeners})

    def _ordered_records(self) -> list[ProcRecord]:
        return sorted(self.records(), key=lambda r: (_rank(r), r.name))

    def peer_status(self, inv: LoadedInventory) -> list[dict[str, Any]]:
        """Rows of what the lab runs besides the nodes: the database, the peers."""
        recs = {r.name: r for r in self.records()}

        def row(service: str, node: str, role: str, address: str) -> dict[str, Any]:
            rec = recs.get(service)
            alive = rec is not None and rec.alive()
            return {"node": node, "role": role, "dc": "-", "zone": "-", "address": address,
                    "state": "up" if alive else "down",
                    "pid": str(rec.pid) if rec is not None and alive else None,
                    "registrations": None, "dialogs": None, "sessions": None}

        db = db_service(inv, self.dir)
        rows = [row(db.name, db.home, "postgres", db.listeners[0][0])] if db is not None else []
        rows += [row(s.name, s.home, "dns", s.listeners[0][0])
                 for s in dns_services(inv, self.dir, self.bin_path)]
        rows += [row(p.name, p.name, p.kind, p.address) for p in self.peers(inv)]
        rows += [row(s.name, s.home, s.kind, "-") for s in self.notifier_services(inv)]
        return rows

    def status(self, inventory: Path | None = None) -> list[dict[str, Any]]:
        """One row per node: role, zone, address, state, registrations, dialogs.

        ``state``: ``up``; ``down`` (its process is gone); ``not answering (...)`` (the
        process is there but does not answer: frozen, overloaded).  Switch rows add
        ``sessions`` (now) and ``sessions_since_startup`` from FreeSWITCH's ``status``.
        Nodes are asked at once, so a frozen one costs one timeout.
        """

        if self.state() is None and inventory is None:
            self.require()
        inv = self.inventory(inventory)
        recs = {r.name: r for r in self.records()}
        return parallel(lambda p: self._node_status(inv, p, recs), list(inv.nodes())) \
            + self.peer_status(inv)

    def _node_status(self, inv: LoadedInventory, p: PlacedNode,
                     recs: dict[str, ProcRecord]) -> dict[str, Any]:
        spec = roles.spec(p.role)
        if p.role == Role.SWITCH_STANDBY:
            rec = recs.get(f"{p.name}/freeswitch")
            up = rec is not None and rec.alive()
            state = f"standing in for {stands_in_for(rec)}" if rec is not None and up \
                else "standby (idle)"
            return {"node": p.name, "role": p.role.value, "dc": p.dc.id,
                    "zone": p.zone or "-", "address": p.node.address, "state": state,
                    "pid": str(rec.pid) if rec is not None and up else None,
                    "registrations": None, "dialogs": None, "sessions": None}
        if not spec.in_lab or not spec.services:
            what = ", ".join(s.binary for s in spec.services) or "nothing rendered yet"
            return {"node": p.name, "role": p.role.value, "dc": p.dc.id,
                    "zone": p.zone or "-", "address": p.node.address,
                    "state": f"not run by the lab ({what})", "pid": None,
                    "registrations": None, "dialogs": None, "sessions": None}
        names = [f"{p.name}/{s.name}" for s in spec.services_in(p.dc)]
        procs = [recs.get(n) for n in names]
        alive = all(r is not None and r.alive() for r in procs)
        row: dict[str, Any] = {
            "node": p.name, "role": p.role.value, "dc": p.dc.id, "zone": p.zone or "-",
            "address": p.node.address, "state": "up" if alive else "down",
            "pid": ",".join(str(r.pid) for r in procs if r is not None and r.alive()) or None,
            "registrations": None, "dialogs": None, "sessions": None,
        }
        if alive and p.role in roles.KAMAILIO_ROLES:
            rpc = KamailioRpc(f"http://{p.node.mgmt}:{p.node.ports.mgmt_http}/RPC", 2.0)
            try:
                if p.role == Role.PROXY:
                    row["registrations"] = _stat(rpc, "usrloc:location_contacts")
                    row["dialogs"] = _stat(rpc, "dialog:active_dialogs")
                else:
                    rpc.call("core.uptime")
                if p.role == Role.LB and address_holder(p.dc, 1.0) == p.name:
                    row["state"] = f"up (holds {p.dc.service_address})"
            except ZpctlError as exc:
                row["state"] = f"not answering (rpc: {exc.message})"
        elif alive and p.role == Role.SWITCH:
            row.update(self._switch_status(inv, p))
        elif alive and p.role == Role.MEDIA:
            try:
                reply = ng_command(p.node.mgmt, p.node.ports.rtpengine_ng, "list", 1.0,
                                   limit=100000)  # else 32 at most
                calls = reply.get("calls")
                row["dialogs"] = len(calls) if isinstance(calls, list) else None
            except Unreachable:
                row["state"] = "not answering (rtpengine ng)"
        return row

    def switch_status(self, inv: LoadedInventory, switch: str | None = None
                      ) -> list[SwitchResult]:
        """ESL ``status`` of the lab's switches (or of one), with the lab's ESL password;
        a switch that does not answer within 2 s has its ``error`` set."""
        password = self.secrets().get(ESL_PASSWORD_KEY)
        return asyncio.run(astatus(targets_for(inv, switch=switch), password, timeout=2.0))

    def _switch_status(self, inv: LoadedInventory, p: PlacedNode) -> dict[str, Any]:
        """A running switch's sessions now and since it started, over ESL."""
        res = self.switch_status(inv, p.name)[0]
        if res.error is not None:
            return {"state": f"not answering (esl: {res.error.message})"}
        return {"sessions": res.sessions,
                "sessions_since_startup": res.extra.get("sessions_since_startup"),
                "state": "up (paused)" if res.state == "paused" else "up"}

    def logs(self, node: str | None = None, lines: int = 40) -> str:
        """The last ``lines`` lines of every node's logs (or of ``node``'s).

        Read backwards from the end of each file, so a log of millions of lines costs no
        more than its tail.  Unknown node: usage error naming the known ones; no lab: 7.
        """

        def tail(path: Path) -> str:
            if lines < 1:
                return ""
            chunks: list[bytes] = []
            try:
                with open(path, "rb") as fh:
                    pos = fh.seek(0, os.SEEK_END)
                    newlines = 0
                    while pos > 0 and newlines <= lines:
                        step = min(1 << 16, pos)
                        pos -= step
                        fh.seek(pos)
                        chunks.insert(0, fh.read(step))
                        newlines += chunks[0].count(b"\n")
            except OSError:
                return "(no log)"
            return "\n".join(b"".join(chunks).decode(errors="replace").splitlines()[-lines:])

        logs = sorted((self.dir / "nodes").glob("*/log/*.log"))
        if not logs and self.state() is None:
            raise Unreachable(f"no lab in {self.dir}: start it with `zpctl lab up` (or give "
                              "--lab-dir)")
        known = sorted({log.parts[-3] for log in logs})
        if node and node not in known:
            raise ZpctlError(f"no node {node!r} in the lab in {self.dir}; known: "
                             f"{', '.join(known) or 'none yet'}", ExitCode.USAGE)
        return "\n\n".join(f"==> {log.parts[-3]}/{log.name} <==\n{tail(log)}" for log in logs
                           if not node or log.parts[-3] == node)


def _stat(rpc: KamailioRpc, name: str) -> int | None:
    result = rpc.call("stats.get_statistics", name.split(":", 1)[1] if ":" in name else name)
    for item in result if isinstance(result, list) else []:
        key, _, value = str(item).partition("=")
        if key.strip() == name:
            return int(value.strip())
    return None


def _tail(path: Path, lines: int) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(data[-lines:])


