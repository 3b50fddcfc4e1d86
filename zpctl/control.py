"""Live control of a running platform over Kamailio's JSON-RPC.

Zone drain and restore, data-center failover, node status, registrations and dialogs.  Every
change goes through :meth:`Control.change`, so ``--dry-run`` prints the exact requests (the
endpoint and the JSON-RPC document) instead of sending them.

Drain: every lb of the data center and every sbc set 1 entry for the zone's proxy is set
to *disabled* (dispatcher state ``d``: no new requests, no probing, so the prober cannot
re-enable it); calls in progress keep their record-routed path and finish; the command waits
until the zone proxy has no dialogs.  Restore: the zone proxy first gets back every
registration its sister zone has (DMQ sync on start-up has gaps: missing contacts are copied
over with ``ul.add``), then its warm-up gate opens and the dispatcher entries go active.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from zpctl.accounts import SyncResult, sync
from zpctl.clients.guard import AddressGuard
from zpctl.clients.kamailio import KamailioRpc, NoAnswer
from zpctl.clients.probes import sip_options
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError
from zpctl.freeswitch import control as fs
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.roles import KAMAILIO_ROLES
from zpctl.model.schema import DataCenter, Node, Role
from zpctl.protocols import jsonrpc
from zpctl.render import CREDENTIAL_FIELDS
from zpctl.secrets import Secrets

Progress = Callable[[str], None]


def inventory_line(inv: LoadedInventory, lab_dir: Path | None = None) -> str:
    """What live commands say on stderr first: which inventory they act on."""
    where = f"; the lab in {lab_dir}" if lab_dir is not None else ""
    return f"using inventory {inv.root} (platform {inv.model.platform.name}{where})"


@dataclass
class Request:
    """A JSON-RPC request zpctl sends (or, in a dry run, would send)."""

    node: str
    endpoint: str
    method: str
    params: list[Any]

    def as_dict(self) -> dict[str, Any]:
        body, _ = jsonrpc.request(self.method, self.params)
        return {"node": self.node, "endpoint": self.endpoint, "request": json.loads(body)}


@dataclass
class Control:
    inv: LoadedInventory
    timeout: float = 3.0
    dry_run: bool = False
    sent: list[Request] = field(default_factory=list)
    # Local transport: node name -> its run directory (jsonrpcs datagram socket there);
    # None: HTTP on the management address.
    run_dirs: dict[str, str] | None = None
    # Set by the CLI: every address is checked before it is contacted (see AddressGuard).
    guard: AddressGuard | None = None
    # Where the switches' ESL password is (a lab's secrets.yml); None: $ZPCTL_SECRETS or
    # the platform's default secrets file (see zpctl.freeswitch.control.esl_password).
    secrets_file: Path | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def endpoint(self, node: Node) -> str:
        if self.run_dirs is not None and node.name in self.run_dirs:
            return f"{self.run_dirs[node.name]}/kamailio_rpc.sock"
        return f"http://{node.mgmt}:{node.ports.mgmt_http}/RPC"

    def _check(self, node: Node) -> None:
        if self.guard is not None and not (self.run_dirs is not None
                                           and node.name in self.run_dirs):
            self.guard.check(node.mgmt, node.name)

    def call(self, node: Node, method: str, *params: Any) -> Any:
        """A read-only call (made even in a dry run)."""
        self._check(node)
        return KamailioRpc(self.endpoint(node), self.timeout).call(method, *params)

    def change(self, node: Node, method: str, *params: Any) -> Any:
        """A call that changes something: recorded, and sent unless this is a dry run."""
        req = Request(node.name, self.endpoint(node), method, list(params))
        self.sent.append(req)
        if self.dry_run:
            return None
        self._check(node)
        return KamailioRpc(req.endpoint, self.timeout).call(method, *params)

    def dc(self, dc_id: str) -> DataCenter:
        for dc in self.inv.model.datacenters:
            if dc.id == dc_id:
                return dc
        known = ", ".join(d.id for d in self.inv.model.datacenters)
        raise ZpctlError(f"no data center {dc_id!r}; known: {known}", ExitCode.USAGE)

    def zone(self, spec: str) -> tuple[DataCenter, str]:
        """``DC/ZONE`` as a data center and a zone name."""
        dc_id, _, zone = spec.partition("/")
        dc = self.dc(dc_id)
        if zone not in dc.zones:
            raise ZpctlError(f"{spec}: {dc.id} has zones {', '.join(sorted(dc.zones))}",
                             ExitCode.USAGE)
        return dc, zone

    def node_of(self, dc: DataCenter, zone: str, role: Role) -> Node:
        node = self.inv.zone_node(dc, zone, role)
        if node is None:
            raise ZpctlError(f"{dc.id}/{zone} has no {role.value} node", ExitCode.USAGE)
        return node

    def lbs(self, dc: DataCenter) -> list[Node]:
        return [n for n in dc.nodes if n.role == Role.LB]

    def sbcs(self, dc: DataCenter) -> list[Node]:
        return [n for z in sorted(dc.zones) for n in dc.zones[z].nodes if n.role == Role.SBC]

    def stat(self, node: Node, name: str) -> int:
        group, _, key = name.partition(":")
        result = self.call(node, "stats.get_statistics", key or group)
        for item in result if isinstance(result, list) else []:
            k, _, v = str(item).partition("=")
            if k.strip() == name:
                return int(v.strip())
        return 0

    # -- status ---------------------------------------------------------------------------------

    def node_status(self, name: str | None = None) -> list[dict[str, Any]]:
        """One row per Kamailio node, all asked at once: ``state`` is ``up``, ``down (...)``
        (refused: nothing listens), ``not answering (...)`` (no answer in time: frozen or
        overloaded) or ``error (...)`` (it answered with an error)."""
        placed = [p for p in self.inv.nodes() if p.role in KAMAILIO_ROLES
                  and not (name and p.name != name)]
        if name and not placed:
            raise ZpctlError(f"no Kamailio node {name!r}", ExitCode.USAGE)
        for p in placed:
            self._check(p.node)  # refuse before contacting any, not half-way through
        return list(parallel(self._node_row, placed))

    def _node_row(self, p: PlacedNode) -> dict[str, Any]:
        row: dict[str, Any] = {"node": p.name, "role": p.role.value, "dc": p.dc.id,
                               "zone": p.zone or "-", "endpoint": self.endpoint(p.node)}
        try:
            row["uptime_s"] = self.call(p.node, "core.uptime")["uptime"]
            shm = self.call(p.node, "core.shmmem", "m")
            row["shm_used_mb"] = shm.get("used") if isinstance(shm, dict) else None
            row["shm_free_mb"] = shm.get("free") if isinstance(shm, dict) else None
            row["transactions"] = self.call(p.node, "tm.stats").get("current")
            if p.role == Role.PROXY:
                row["registrations"] = self.stat(p.node, "usrloc:location_contacts")
                row["dialogs"] = self.stat(p.node, "dialog:active_dialogs")
            row["state"] = "up"
        except ZpctlError as exc:
            row["state"] = failure_state(exc)
        return row

    def contacts(self, proxy: Node) -> dict[str, list[dict[str, Any]]]:
        """Every AoR the proxy holds, with its contacts (``ul.dump``)."""
        dump = self.call(proxy, "ul.dump")
        out: dict[str, list[dict[str, Any]]] = {}
        for dom in dump.get("Domains", []) if isinstance(dump, dict) else []:
            for aor in dom.get("Domain", {}).get("AoRs", []):
                info = aor.get("Info", {})
                out[info.get("AoR", "")] = [c.get("Contact", {}) for c in info.get("Contacts", [])]
        return out

    def proxies(self, scope: str | None = None) -> list[tuple[str, Node]]:
        """Zone proxies: all, one data center's (``DC``) or one zone's (``DC/ZONE``)."""
        out = []
        for p in self.inv.nodes():
            if p.role != Role.PROXY:
                continue
            where = f"{p.dc.id}/{p.zone}"
            if scope and scope not in (p.dc.id, where, p.name):
                continue
            out.append((where, p.node))
        if scope and not out:
            raise ZpctlError(f"no zone proxy in {scope!r}", ExitCode.USAGE)
        return out

    def forget_credentials(self, users: Sequence[str]) -> list[dict[str, Any]]:
        """Delete what every zone proxy remembers of ``users`` (``user@domain``): their next
        request is checked against the database (route AUTH_FRESH of the proxy's config).
        ``accounts sync`` calls it for the users it changed or removed.  For more than
        :data:`FORGET_ALL_OVER` users a proxy's whole cache is flushed instead (one request
        rather than ten per user).  One row per proxy; ``error`` when it answered with an
        error or not at all (a proxy that is not running remembers nothing)."""
        def one(item: tuple[str, Node]) -> dict[str, Any]:
            where, proxy = item
            try:
                if len(users) > FORGET_ALL_OVER:
                    self.change(proxy, "htable.flush", "authcache")
                else:
                    for user in users:
                        for f in reversed(CREDENTIAL_FIELDS):  # `at` first: no longer fresh
                            self._forget(proxy, f"{user}::{f}")
            except ZpctlError as exc:
                if failure_state(exc).startswith("down"):
                    # not running: it remembers nothing, and starts with an empty cache
                    return {"zone": where, "proxy": proxy.name, "forgotten": "not running"}
                return _error_row(where, proxy, exc, ("forgotten",))
            return {"zone": where, "proxy": proxy.name,
                    "forgotten": "all" if len(users) > FORGET_ALL_OVER else len(users)}
        return parallel(one, self.proxies()) if users else []

    def _forget(self, proxy: Node, key: str) -> None:
        try:
            self.change(proxy, "htable.delete", "authcache", key)
        except RemoteFailure as exc:
            if exc.code != KEY_NOT_FOUND:  # not remembered: nothing to forget
                raise

    def switch_dispatch(self, switches: Sequence[str], state: str) -> list[dict[str, Any]]:
        """Set ``state`` on every dispatcher entry of the ``switches`` (their zone's set, the
        sister zone's, the rendezvous list) in every zone proxy of their data centers: ``d``,
        the proxies select them no more (a probe does not bring a disabled entry back);
        ``a``, they select them again.  Each proxy's list is read once.  Returns the entries
        changed; a proxy that does not answer raises (exit 7), those before it keep the new
        state."""
        by_dc: dict[str, set[str]] = {}
        for name in switches:
            try:
                placed = self.inv.node(name)
            except KeyError:
                raise ZpctlError(f"no node {name!r} in the inventory", ExitCode.USAGE) from None
            if placed.role != Role.SWITCH:
                raise ZpctlError(f"{name} is a {placed.role.value}, not a switch", ExitCode.USAGE)
            by_dc.setdefault(placed.dc.id, set()).add(placed.node.address)
        out = []
        for dc_id, addresses in sorted(by_dc.items()):
            for _, proxy in self.proxies(dc_id):
                for setid, uri in dispatcher_entries(self.call(proxy, "dispatcher.list")):
                    if uri_host(uri) in addresses:
                        self.change(proxy, "dispatcher.set_state", state, setid, uri)
                        out.append({"proxy": proxy.name, "set": setid, "uri": uri,
                                    "state": state})
        return out

    def registrations(self, scope: str | None = None) -> list[dict[str, Any]]:
        """Every contact of the proxies in ``scope``; a proxy that did not answer gives one
        row with ``error`` set (see :func:`unanswered`)."""
        def one(item: tuple[str, Node]) -> list[dict[str, Any]]:
            where, proxy = item
            try:
                held = self.contacts(proxy)
            except ZpctlError as exc:
                return [_error_row(where, proxy, exc, REGISTRATION_KEYS)]
            return [{"zone": where, "proxy": proxy.name, "aor": aor,
                     "contact": c.get("Address"), "expires_s": c.get("Expires"),
                     "user_agent": c.get("User-Agent"), "path": c.get("Path")}
                    for aor, contacts in sorted(held.items()) for c in contacts]

        return [r for rows in parallel(one, self._checked_proxies(scope)) for r in rows]

    def registration(self, user: str) -> list[dict[str, Any]]:
        def one(item: tuple[str, Node]) -> dict[str, Any]:
            where, proxy = item
            row: dict[str, Any] = {"zone": where, "proxy": proxy.name, "aor": user,
                                   "contacts": []}
            try:
                found = self.call(proxy, "ul.lookup", "location", user)
            except RemoteFailure:
                found = None  # 404: not registered on this proxy
            except ZpctlError as exc:
                return {**row, "error": failure_state(exc)}
            if isinstance(found, dict):
                row["contacts"] = [c.get("Contact", {}).get("Address")
                                   for c in found.get("Contacts", [])]
            return row

        return list(parallel(one, self._checked_proxies()))

    def dialogs(self, scope: str | None = None) -> list[dict[str, Any]]:
        """Every dialog on the proxies in ``scope``; a proxy that did not answer gives one
        row with ``error`` set."""
        def one(item: tuple[str, Node]) -> list[dict[str, Any]]:
            where, proxy = item
            try:
                found = self.call(proxy, "dlg.list") or []
            except ZpctlError as exc:
                return [_error_row(where, proxy, exc, DIALOG_KEYS)]
            return [{"zone": where, "proxy": proxy.name, "call_id": d.get("call-id"),
                     "from_tag": d.get("from_tag"), "to_tag": d.get("to_tag"),
                     "from": d.get("from_uri"), "to": d.get("to_uri"),
                     "state": d.get("state"), "start_ts": d.get("start_ts"),
                     "h_entry": d.get("h_entry"), "h_id": d.get("h_id")} for d in found]

        return [r for rows in parallel(one, self._checked_proxies(scope)) for r in rows]

    def _checked_proxies(self, scope: str | None = None) -> list[tuple[str, Node]]:
        found = self.proxies(scope)
        for _, proxy in found:
            self._check(proxy)
        return found

    def end_dialog(self, call_id: str) -> list[Request]:
        """Hang up a call (BYE both ways) on the proxy that holds it."""
        rows = self.dialogs()
        matches = [d for d in rows if d["call_id"] == call_id and "error" not in d]
        if not matches:
            dead = unanswered(rows)
            if dead is not None:
                raise Unreachable(f"no dialog with Call-ID {call_id!r} on the zone proxies "
                                  f"that answered; {dead.message}")
            raise ZpctlError(f"no dialog with Call-ID {call_id!r} on any zone proxy",
                             ExitCode.REMOTE_ERROR)
        for d in matches:
            proxy = self.inv.node(d["proxy"]).node
            self.change(proxy, "dlg.end_dlg", d["h_entry"], d["h_id"])
        return self.sent

    # -- zones ----------------------------------------------------------------------------------

    def dispatcher_state(self, node: Node, uri: str) -> str | None:
        try:
            result = self.call(node, "dispatcher.list")
        except Unreachable as exc:
            return failure_state(exc).split(" (")[0]
        for rec in result.get("RECORDS", []) if isinstance(result, dict) else []:
            for t in rec.get("SET", {}).get("TARGETS", []):
                if t.get("DEST", {}).get("URI") == uri:
                    return str(t["DEST"].get("FLAGS"))
        return None

    def zone_status(self, spec: str) -> dict[str, Any]:
        dc, zone = self.zone(spec)
        proxy = self.node_of(dc, zone, Role.PROXY)
        uri = f"sip:{proxy.address}:{proxy.ports.sip}"
        out: dict[str, Any] = {"zone": spec, "proxy": proxy.name, "uri": uri}
        out["lb_state"] = {lb.name: _state_word(self.dispatcher_state(lb, uri)) for lb in self.lbs(dc)}
        out["sbc_state"] = {s.name: _state_word(self.dispatcher_state(s, uri)) for s in self.sbcs(dc)}
        try:
            out["registrations"] = self.stat(proxy, "usrloc:location_contacts")
            out["dialogs"] = self.stat(proxy, "dialog:active_dialogs") + \
                self.stat(proxy, "dialog:early_dialogs")
            out["proxy"] = proxy.name
            out["proxy_state"] = "up"
        except Unreachable:
            out["proxy_state"] = "down"
        out["replication"] = self.replication(spec)
        states = set(out["lb_state"].values())
        out["serving"] = "active" in states and out["proxy_state"] == "up"
        return out

    def replication(self, spec: str) -> str:
        """How the sister zone's proxy sees this zone's proxy as a DMQ peer: ``active`` (it
        replicates every registration to it), ``pending`` (it has stopped: the proxy did not
        answer, a heartbeat every 2 s will notice its return), ``unknown`` (not in its list)
        or ``sister down``."""
        dc, zone = self.zone(spec)
        proxy = self.node_of(dc, zone, Role.PROXY)
        sister = self.node_of(dc, next(z for z in sorted(dc.zones) if z != zone), Role.PROXY)
        try:
            nodes = self.call(sister, "dmq.list_nodes")
        except Unreachable:
            return "sister down"
        for n in nodes if isinstance(nodes, list) else []:
            if n.get("host") == proxy.address and str(n.get("port")) == str(proxy.ports.dmq):
                return str(n.get("status", "unknown"))
        return "unknown"

    def _set_zone(self, dc: DataCenter, zone: str, state: str) -> None:
        proxy = self.node_of(dc, zone, Role.PROXY)
        uri = f"sip:{proxy.address}:{proxy.ports.sip}"
        for lb in self.lbs(dc):
            self.change(lb, "dispatcher.set_state", state, 1, uri)
        for sbc in self.sbcs(dc):
            self.change(sbc, "dispatcher.set_state", state, 1, uri)

    def zone_drain(self, spec: str, wait: bool = True, timeout: float = 120.0,
                   progress: Progress = lambda s: None) -> dict[str, Any]:
        """Stop new calls to the zone; wait until its calls in progress have ended."""
        dc, zone = self.zone(spec)
        proxy = self.node_of(dc, zone, Role.PROXY)
        self._set_zone(dc, zone, "d")
        switches = self._switches(spec, pause=True, progress=progress)
        result: dict[str, Any] = {"zone": spec, "drained": False, "switches": switches,
                                  "requests": [r.as_dict() for r in self.sent]}
        if self.dry_run or not wait:
            return result
        t0 = time.monotonic()
        left = -1
        while time.monotonic() - t0 < timeout:
            try:
                left = self.stat(proxy, "dialog:active_dialogs") + \
                    self.stat(proxy, "dialog:early_dialogs")
            except Unreachable:
                left = 0  # a dead proxy holds no calls that could still finish
            progress(f"  {spec}: {left} call(s) in progress ({time.monotonic() - t0:.0f} s)")
            if left == 0:
                result.update(drained=True, waited_s=round(time.monotonic() - t0, 1))
                return result
            time.sleep(1.0)
        raise ZpctlError(f"{spec}: {left} call(s) still in progress after {timeout:g} s; the zone "
                         "takes no new calls (restore it with `zpctl zone restore`)",
                         ExitCode.UNREACHABLE)

    def sync_registrations(self, spec: str, progress: Progress = lambda s: None
                           ) -> dict[str, int]:
        """Give the zone proxy every registration its sister zone holds (after a restart)."""
        dc, zone = self.zone(spec)
        proxy = self.node_of(dc, zone, Role.PROXY)
        sister_zone = next(z for z in sorted(dc.zones) if z != zone)
        sister = self.node_of(dc, sister_zone, Role.PROXY)
        have = self.contacts(proxy)
        want = self.contacts(sister)
        copied = 0
        for aor, contacts in sorted(want.items()):
            known = {c.get("Address") for c in have.get(aor, [])}
            for c in contacts:
                if c.get("Address") in known:
                    continue
                expires = _seconds_left(c.get("Expires"))
                if expires is None:
                    continue  # "expired", "deleted" or "permanent": nothing to copy
                self.change(proxy, "ul.add", "location", aor, c.get("Address"), expires,
                            float(c.get("Q", -1)) / 1000 if int(c.get("Q", -1)) >= 0 else -1,
                            c.get("Path") or ".", int(c.get("Flags", 0)),
                            int(c.get("CFlags", 0)), int(c.get("Methods", 4294967295)),
                            c.get("Received") or ".")
                copied += 1
        total = sum(len(v) for v in want.values())
        progress(f"  {spec}: {total} registration(s) at {sister.name}, "
                 f"{copied} copied to {proxy.name}")
        return {"sister_contacts": total, "copied": copied}

    def zone_restore(self, spec: str, progress: Progress = lambda s: None) -> dict[str, Any]:
        """Registrations back, warm-up gate open, then new calls again."""
        dc, zone = self.zone(spec)
        proxy = self.node_of(dc, zone, Role.PROXY)
        # Replication first, then the copy: a registration made in between reaches it either way.
        replication = "not checked (dry run)" if self.dry_run else self._await_replication(spec)
        try:
            sync = self.sync_registrations(spec, progress)
        except Unreachable as exc:
            raise Unreachable(f"{spec}: cannot restore, {exc.message}") from None
        self.change(proxy, "htable.seti", "gate", "open", 1)
        self._set_zone(dc, zone, "a")
        switches = self._switches(spec, pause=False, progress=progress)
        return {"zone": spec, "restored": not self.dry_run, "registrations": sync,
                "replication": replication, "switches": switches,
                "requests": [r.as_dict() for r in self.sent]}

    def _await_replication(self, spec: str, timeout: float = 6.0) -> str:
        """Wait (three DMQ heartbeats) until the sister replicates to the zone's proxy again:
        opened without it, the zone would miss every registration made from now on."""
        deadline = time.monotonic() + timeout
        while (state := self.replication(spec)) != "active":
            if state == "sister down":
                raise Unreachable(f"{spec}: cannot restore, the sister zone's proxy does not "
                                  "answer (registrations cannot be copied or replicated)")
            if time.monotonic() >= deadline:
                raise RemoteFailure(
                    f"{spec}: the sister zone's proxy does not replicate registrations to it "
                    f"(DMQ peer {state} after {timeout:g} s); its gate stays closed. "
                    "Check that both proxies reach each other on their DMQ port.")
            time.sleep(0.2)
        return state

    def _switches(self, spec: str, pause: bool, progress: Progress) -> list[str]:
        """Pause (drain) or resume the zone's FreeSWITCH switches, when it has any."""
        dc, zone = self.zone(spec)
        names = [n.name for n in dc.zones[zone].nodes if n.role == Role.SWITCH]
        if not names or self.dry_run:
            return names
        results = (fs.pause_switches(self.inv, zone=spec, progress=progress,
                                     secrets_file=self.secrets_file) if pause
                   else fs.resume_switches(self.inv, zone=spec, secrets_file=self.secrets_file))
        fs.raise_for_errors(results)
        return names

    # -- data centers ---------------------------------------------------------------------------

    def dc_status(self, dc_id: str) -> dict[str, Any]:
        dc = self.dc(dc_id)
        zones = {z: self.zone_status(f"{dc.id}/{z}") for z in sorted(dc.zones)}
        lbs = {}
        for lb in self.lbs(dc):
            try:
                self.call(lb, "core.uptime")
                lbs[lb.name] = "up"
            except Unreachable:
                lbs[lb.name] = "down"
        serving = any(z["serving"] for z in zones.values()) and "up" in lbs.values()
        return {"datacenter": dc.id, "role": dc.role, "pair": dc.pair, "lbs": lbs,
                "service_address": dc.service_address,
                "address_held_by": address_holder(dc, min(self.timeout, 2.0)),
                "zones": zones, "serving": serving}

    def dc_failover(self, from_dc: str, to_dc: str, progress: Progress = lambda s: None,
                    ) -> dict[str, Any]:
        """Move new traffic from a data center to its pair: the secondary must be serving,
        then both zones of the first stop taking new requests (its lbs answer 503, so phones
        that know both data centers re-register on the other at once)."""
        src, dst = self.dc(from_dc), self.dc(to_dc)
        if src.pair != dst.id:
            raise ZpctlError(f"{dst.id} is not the pair of {src.id} (its pair is {src.pair})",
                             ExitCode.USAGE)
        if not self.dry_run:
            status = self.dc_status(dst.id)
            if not status["serving"]:
                raise ZpctlError(f"{dst.id} is not serving; refusing to fail over to it",
                                 ExitCode.UNREACHABLE)
        for zone in sorted(src.zones):
            self._set_zone(src, zone, "d")
            progress(f"  {src.id}/{zone}: no new requests")
        return {"from": src.id, "to": dst.id, "done": not self.dry_run,
                "requests": [r.as_dict() for r in self.sent]}


    def admission(self, dc_id: str, cps: int | None = None,
                  registrations: int | None = None) -> list[dict[str, Any]]:
        """Each lb's admission rates (new calls and registrations per second, beyond which
        it answers 503 with Retry-After), the inventory's figures, and what it has shed since
        it started; with ``cps`` or ``registrations``, set them first (until a restart: the
        inventory's ``capacity`` is what a deploy puts back)."""
        rows = []
        for lb in self.lbs(self.dc(dc_id)):
            for var, value in (("admit_cps", cps), ("admit_rps", registrations)):
                if value is not None:
                    self.change(lb, "pv.shvSet", var, "int", value)
            if self.dry_run:
                continue
            now = {}
            for var in ("admit_cps", "admit_rps"):
                got = self.call(lb, "pv.shvGet", var)
                got = got[0] if isinstance(got, list) and got else got
                now[var] = int(got["value"]) if isinstance(got, dict) else None
            rows.append({"lb": lb.name, "cps": now["admit_cps"], "registrations": now["admit_rps"],
                         "inventory_cps": lb.capacity.cps,
                         "inventory_registrations": lb.capacity.rps,
                         "shed_rate": self.stat(lb, "script:zp_shed_rate"),
                         "shed_memory": self.stat(lb, "script:zp_shed_memory")})
        return rows


REGISTRATION_KEYS = ("aor", "contact", "expires_s", "user_agent", "path")
DIALOG_KEYS = ("call_id", "from_tag", "to_tag", "from", "to", "state", "start_ts", "h_entry",
               "h_id")


def sync_accounts(inv: LoadedInventory, secrets: Secrets, target: Any,
                  proxies: Control | None, dry_run: bool = False,
                  ) -> tuple[SyncResult, list[dict[str, Any]]]:
    """:func:`zpctl.accounts.sync`, then (unless ``dry_run``) the secrets saved and every
    zone proxy of ``proxies`` told to forget the changed and removed users, so that none
    goes on trusting what it remembers of them (:meth:`Control.forget_credentials`'s rows;
    none when ``proxies`` is None: no platform is running)."""
    result = sync(inv, secrets, target, dry_run=dry_run)
    if dry_run:
        return result, []
    secrets.save()
    if proxies is None:
        return result, []
    return result, proxies.forget_credentials(result.updated + result.removed)


def failure_state(exc: ZpctlError) -> str:
    """How a node that failed us is shown: down (refused), not answering (no answer in
    time: frozen or overloaded) or error (it answered with an error)."""
    if isinstance(exc, NoAnswer):
        return f"not answering ({exc.message})"
    if exc.exit_code == ExitCode.UNREACHABLE:
        return f"down ({exc.message})"
    return f"error ({exc.message})"


def _error_row(where: str, proxy: Node, exc: ZpctlError, keys: tuple[str, ...]
               ) -> dict[str, Any]:
    return {"zone": where, "proxy": proxy.name, **dict.fromkeys(keys),
            "error": failure_state(exc)}


def _failed(states: list[str], message: str) -> ZpctlError:
    """Exit 7 when a node was down or did not answer; exit 6 when every failed node
    answered, with an error."""
    if all(s.startswith("error") for s in states):
        return RemoteFailure(message)
    return Unreachable(message)


def unanswered(rows: list[dict[str, Any]], key: str = "proxy") -> ZpctlError | None:
    """The error naming the nodes of ``rows`` that carry an ``error`` (exit 7, or 6 when
    each of them answered with an error), or None."""
    failed = [r for r in rows if r.get("error")]
    if not failed:
        return None
    dead = sorted({str(r[key]) for r in failed})
    return _failed([str(r["error"]) for r in failed],
                   f"{len(dead)} node(s) failed: {', '.join(dead)} "
                   "(what is shown comes from the others)")


def address_holder(dc: DataCenter, timeout: float = 2.0) -> str | None:
    """The lb that answers at the data center's service address: of an lb pair, the one
    that holds it now.  Asked by SIP OPTIONS from the management network, which the lb
    answers with its name (X-ZP-Node); None when nothing answers there."""
    address, lbs = dc.service_address, dc.lbs
    if address is None or not lbs:
        return None
    try:
        reply = sip_options(address, lbs[0].ports.sip, timeout, source="0.0.0.0")  # noqa: S104
    except Unreachable:
        return None
    return reply.header("X-ZP-Node")


def not_up(rows: list[dict[str, Any]], key: str = "node") -> ZpctlError | None:
    """The error naming the nodes of a status table that are not ``up`` (exit 7, or 6 when
    each of them answered with an error), or None."""
    failed = [r for r in rows if not str(r.get("state", "")).startswith("up")]
    if not failed:
        return None
    bad = [f"{r[key]} {str(r['state']).split(' (')[0]}" for r in failed]
    return _failed([str(r.get("state", "")) for r in failed],
                   f"{len(bad)} of {len(rows)} node(s) not up: {', '.join(bad)}")


T = TypeVar("T")
R = TypeVar("R")
# Past this many users, forget_credentials flushes a proxy's cache instead.
FORGET_ALL_OVER = 100
# htable.delete's answer for a key the table does not hold.
KEY_NOT_FOUND = 404


def parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    """``fn`` over ``items`` at once (one thread each, up to 32), results in order: a
    node that does not answer costs one timeout, not one per node."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(32, len(items))) as pool:
        return list(pool.map(fn, items))


def _seconds_left(expires: Any) -> int | None:
    """A contact's seconds to live from ``ul.dump``, or None when it has none to copy.

    usrloc writes a word instead of the number for a contact that is ``expired`` (not yet
    purged by the timer), ``deleted`` or ``permanent``."""
    try:
        seconds = int(expires)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def _state_word(flags: str | None) -> str:
    if flags is None:
        return "unknown"
    if flags.startswith("D"):
        return "drained"
    if flags.startswith("A"):
        return "active"
    if flags.startswith(("I", "T")):
        return "inactive"
    return flags


def dispatcher_entries(listing: Any) -> list[tuple[int, str]]:
    """(set id, URI) of every destination in a ``dispatcher.list`` answer (Kamailio 5.x:
    ``{"NRSETS": n, "RECORDS": [{"SET": {"ID": 3, "TARGETS": [{"DEST": {"URI": ...}}]}}]}``)."""
    out = []
    records = listing.get("RECORDS", []) if isinstance(listing, dict) else []
    for rec in records if isinstance(records, list) else []:
        st = rec.get("SET", {}) if isinstance(rec, dict) else {}
        targets = st.get("TARGETS", []) if isinstance(st, dict) else []
        for t in targets if isinstance(targets, list) else []:
            dest = t.get("DEST", {}) if isinstance(t, dict) else {}
            if isinstance(dest, dict) and "URI" in dest and "ID" in st:
                out.append((int(st["ID"]), str(dest["URI"])))
    return out


def uri_host(uri: str) -> str:
    """The host of a SIP URI (``sip:127.0.1.14:5061;transport=tls`` -> ``127.0.1.14``)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split("@", 1)[-1]
    if rest.startswith("["):
        return rest[1:rest.index("]")]
    return rest.split(";", 1)[0].split(":", 1)[0]
