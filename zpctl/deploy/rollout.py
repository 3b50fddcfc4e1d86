"""The rollout: what is deployed in which order, and what happens when a zone fails.

Order, per data center (inventory order): first the DC-level hosts (the lb; at that moment
every zone serves, so the lb's in-memory dispatcher state has nothing to lose when it
restarts), then each zone in name order: drain (``Control.zone_drain``), Ansible on the
zone's hosts, health check, restore (``Control.zone_restore``), registrations check.
Before any of it, one check-mode Ansible run over every host in scope tells which hosts
would change; a zone none of whose hosts would change is neither drained nor touched.

When a zone fails (Ansible, health or registrations), the rollout stops: the zone's hosts
get their last good build again (``good.json``), are health-checked and the zone restored;
the error (exit 5) names the zone and the reason.  A fresh platform (nothing answers yet)
has nothing to drain: drain and restore then skip the nodes that do not answer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.accounts import sync as sync_accounts
from zpctl.control import Control
from zpctl.db import create_sqlite
from zpctl.deploy import health
from zpctl.deploy.hosts import DeployHosts
from zpctl.deploy.runner import GROUPS, AnsibleRun, RunResult
from zpctl.deploy.store import BuildStore, default_state_root
from zpctl.errors import ExitCode, RenderError, Unreachable, ZpctlError
from zpctl.freeswitch import scratch
from zpctl.model import LoadedInventory, load_inventory
from zpctl.model.schema import Node, Role
from zpctl.render import render
from zpctl.render.verify import verify_rendered, verify_written
from zpctl.secrets import Secrets, default_path

Progress = Callable[[str], None]
DEPLOYABLE = frozenset(GROUPS)


class DeployFailed(ZpctlError):
    """A rollout stopped; carries what was done (exit 5)."""

    exit_code = ExitCode.DEPLOY_FAILED

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


@dataclass
class DeployOptions:
    inventory: Path
    limit: str | None = None
    check: bool = False
    diff: bool = False
    dry_run: bool = False
    secrets_file: Path | None = None
    state_dir: Path | None = None
    health_timeout: float = 30.0
    drain_timeout: float = 60.0
    switch_check: bool = True  # start the switch configs in a scratch FreeSWITCH first


@dataclass
class Step:
    """One unit of the rollout: a data center's DC-level hosts, or one zone."""

    dc: str
    zone: str | None
    nodes: list[str]

    @property
    def scope(self) -> str:
        return f"{self.dc}/{self.zone}" if self.zone else self.dc

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "nodes": self.nodes}


def plan(inv: LoadedInventory, limit: str | None = None) -> list[Step]:
    """The rollout steps for ``limit`` (``DC``, ``DC/ZONE``, a node name, or everything)."""
    steps: list[Step] = []
    for dc in inv.model.datacenters:
        dc_nodes = [n.name for n in dc.nodes if n.role in DEPLOYABLE]
        if dc_nodes:
            steps.append(Step(dc.id, None, dc_nodes))
        for zone in sorted(dc.zones):
            nodes = [n.name for n in dc.zones[zone].nodes if n.role in DEPLOYABLE]
            if nodes:
                steps.append(Step(dc.id, zone, nodes))
    if not limit:
        return steps
    chosen = {p.name for p in inv.within(limit)}
    out = [Step(s.dc, s.zone, [n for n in s.nodes if n in chosen]) for s in steps]
    out = [s for s in out if s.nodes]
    if not out:
        raise ZpctlError(f"--limit {limit!r}: no node there to deploy", ExitCode.USAGE)
    return out


def _state(opts_state: Path | None, platform: str) -> BuildStore:
    return BuildStore(opts_state or default_state_root(), platform)


def _seed(store: BuildStore, inv: LoadedInventory, secrets: Secrets, build_id: str) -> Path | None:
    """The sqlite subscriber database a proxy gets on first install (engine sqlite)."""
    if inv.model.database.engine != "sqlite":
        return None
    seed = store.seed_dir(build_id)
    db = seed / "subscriber.sqlite"
    if not db.exists():
        create_sqlite(db)
        sync_accounts(inv, secrets, db)
    return seed


def _refuse_broken(build_dir: Path, nodes: list[str], progress: Progress,
                   switch_check: bool = True) -> None:
    """The checks of the written build on the controller (``kamailio -c`` on every Kamailio
    config in scope, promtool when installed): the same as ``zpctl render``."""
    failures = verify_written(build_dir, nodes)
    if failures:
        checks = " and ".join(sorted({f["check"] for f in failures}))
        where = [f"{Path(f['config']).relative_to(build_dir).parts[0]}: {f['output']}"
                 for f in failures]  # the node (or _monitoring) and what the check said
        raise RenderError(f"refused: {checks} rejects the new build; no host was touched\n"
                          + "\n".join(where))
    progress(f"  kamailio -c: {sum(1 for n in nodes if (build_dir / n / 'kamailio').exists())} "
             "config(s) in scope accepted")
    # Each switch config in scope in a scratch FreeSWITCH, as `zpctl render` does, where
    # FreeSWITCH is installed on the controller (--no-switch-check turns it off).
    switches = [n for n in scratch.switch_nodes(build_dir) if n in nodes]
    if not switches or not switch_check:
        return
    binary = scratch.freeswitch_binary()
    if binary is None:
        progress("  switch configs: not started in FreeSWITCH (not installed here)")
        return
    results = scratch.check_switch_configs(build_dir, switches, binary=binary)
    scratch.raise_for(results)
    progress(f"  FreeSWITCH: {len(switches)} switch config(s) in scope started and accepted")


@dataclass
class _Rollout:
    inv: LoadedInventory
    hosts: DeployHosts
    store: BuildStore
    opts: DeployOptions
    progress: Progress
    deploy_id: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    control: Control = field(init=False)

    def __post_init__(self) -> None:
        self.control = Control(self.inv, timeout=2.0)

    def ansible(self, nodes: list[str], build_dir: Path, label: str, check: bool = False,
                diff: bool = False) -> RunResult:
        data_dir = self.store.new_run_dir(label)
        self.progress(f"  ansible {'(check) ' if check else ''}{label}: {', '.join(nodes)} "
                      f"[build {build_dir.name}]")
        t0 = time.monotonic()
        res = AnsibleRun(self.inv, self.hosts, nodes, build_dir, data_dir,
                         seed_dir=self.store.seed_dir(build_dir.name), check=check, diff=diff,
                         progress=self.progress).run()
        self.runs.append({"label": label, "check": check, "seconds": round(time.monotonic() - t0, 1),
                          **res.as_dict()})
        return res

    # -- drain and restore, tolerant of nodes that do not run yet ----------------------------

    def _answers(self, node: Node) -> bool:
        try:
            self.control.call(node, "core.uptime")
            return True
        except ZpctlError:
            return False

    def drain(self, step: Step) -> dict[str, Any]:
        assert step.zone is not None
        dc = self.control.dc(step.dc)
        proxy = self.inv.zone_node(dc, step.zone, Role.PROXY)
        if proxy is None or not self._answers(proxy):
            self.progress(f"  {step.scope}: proxy not running, nothing to drain")
            return {"drained": False, "registrations": 0}
        regs = self.control.stat(proxy, "usrloc:location_contacts")
        try:
            self.control.zone_drain(step.scope, timeout=self.opts.drain_timeout,
                                    progress=self.progress)
        except Unreachable as exc:
            # An lb or sbc of the data center does not run yet (first deploy): drain on
            # those that do.
            self.progress(f"  {step.scope}: drain partly skipped ({exc.message})")
            self._set_state(step, "d")
        self.progress(f"  {step.scope}: drained ({regs} registration(s) on {proxy.name})")
        return {"drained": True, "registrations": regs}

    def _set_state(self, step: Step, state: str) -> None:
        dc = self.control.dc(step.dc)
        assert step.zone is not None
        proxy = self.control.node_of(dc, step.zone, Role.PROXY)
        uri = f"sip:{proxy.address}:{proxy.ports.sip}"
        for node in [*self.control.lbs(dc), *self.control.sbcs(dc)]:
            if node.name in self.hosts.specs and self._answers(node):
                self.control.change(node, "dispatcher.set_state", state, 1, uri)

    def restore(self, step: Step, regs_before: int) -> None:
        assert step.zone is not None
        dc = self.control.dc(step.dc)
        proxy = self.control.node_of(dc, step.zone, Role.PROXY)
        try:
            self.control.zone_restore(step.scope, progress=self.progress)
        except Unreachable as exc:
            self.progress(f"  {step.scope}: restore on the nodes that run ({exc.message})")
            self.control.change(proxy, "htable.seti", "gate", "open", 1)
            self._set_state(step, "a")
        if regs_before > 0:
            deadline = time.monotonic() + 10
            have = 0
            while time.monotonic() < deadline:
                have = self.control.stat(proxy, "usrloc:location_contacts")
                if have > 0:
                    break
                time.sleep(0.5)
            if have == 0:
                raise ZpctlError(f"{proxy.name} had {regs_before} registration(s) before the "
                                 "deploy and has none after restore", ExitCode.DEPLOY_FAILED)
        self.progress(f"  {step.scope}: restored")

    # -- steps ---------------------------------------------------------------------------------

    def deploy_step(self, step: Step, build_dir: Path) -> None:
        """Drain, deploy, check, restore; raises ZpctlError with the reason on failure."""
        before = self.drain(step) if step.zone else {"registrations": 0}
        res = self.ansible(step.nodes, build_dir, step.scope.replace("/", "-"))
        if not res.ok:
            raise ZpctlError("Ansible failed:\n  " + "\n  ".join(res.failures),
                             ExitCode.DEPLOY_FAILED)
        problems = health.check_nodes(build_dir, step.nodes, self.opts.health_timeout)
        if problems:
            raise ZpctlError("health check failed:\n  " + "\n  ".join(problems),
                             ExitCode.DEPLOY_FAILED)
        if step.zone:
            self.restore(step, int(before["registrations"]))

    def roll_back(self, step: Step, build_id: str) -> str:
        """Put the step's hosts back on their last good build; what happened, in words."""
        good = self.store.good().get(step.scope)
        if good is None or good == build_id:
            return f"{step.scope} has no earlier good build to go back to; left as it is"
        self.progress(f"  {step.scope}: rolling back to build {good}")
        try:
            good_dir = self.store.get(good)
            res = self.ansible(step.nodes, good_dir, f"{step.scope.replace('/', '-')}-rollback")
            if not res.ok:
                return f"rollback of {step.scope} failed too: " + "; ".join(res.failures)
            problems = health.check_nodes(good_dir, step.nodes, self.opts.health_timeout)
            if problems:
                return f"rollback of {step.scope} is not healthy: " + "; ".join(problems)
            if step.zone:
                self.restore(step, 0)
        except ZpctlError as exc:
            return f"rollback of {step.scope} failed: {exc.message}"
        return f"{step.scope} rolled back to build {good} and restored"

    def run(self, steps: list[Step], build_dir: Path) -> dict[str, Any]:
        build_id = build_dir.name
        nodes = [n for s in steps for n in s.nodes]
        preview = self.ansible(nodes, build_dir, "preview", check=True)
        if not preview.ok:
            raise DeployFailed("cannot reach or check every host; nothing was changed:\n  "
                               + "\n  ".join(preview.failures), self.result(build_id, steps, []))
        done: list[dict[str, Any]] = []
        for step in steps:
            would = sum(preview.changed.get(n, 0) for n in step.nodes)
            if would == 0:
                self.progress(f"{step.scope}: up to date")
                self.store.mark_good(step.scope, build_id)
                done.append({"scope": step.scope, "result": "unchanged"})
                continue
            self.progress(f"{step.scope}: {would} change(s) on {', '.join(step.nodes)}")
            t0 = time.monotonic()
            try:
                self.deploy_step(step, build_dir)
            except ZpctlError as exc:
                self.progress(f"{step.scope}: FAILED: {exc.message}")
                outcome = self.roll_back(step, build_id)
                self.progress(f"  {outcome}")
                done.append({"scope": step.scope, "result": "failed", "reason": exc.message,
                             "rollback": outcome})
                result = self.result(build_id, steps, done)
                raise DeployFailed(f"deploy of build {build_id} stopped at {step.scope}: "
                                   f"{exc.message}\n{outcome}", result) from None
            self.store.mark_good(step.scope, build_id)
            done.append({"scope": step.scope, "result": "deployed",
                         "seconds": round(time.monotonic() - t0, 1)})
            self.progress(f"{step.scope}: deployed and healthy ({time.monotonic() - t0:.1f} s)")
        return self.result(build_id, steps, done)

    def result(self, build_id: str, steps: list[Step], done: list[dict[str, Any]]) -> dict[str, Any]:
        changed = sum(r["total_changed"] if "total_changed" in r else sum(r["changed"].values())
                      for r in self.runs if not r["check"])
        return {"deploy": self.deploy_id, "build": build_id, "platform": self.store.platform,
                "steps": done, "changed": changed,
                "would_change": {h: n for r in self.runs if r["label"] == "preview"
                                 for h, n in r["changed"].items()},
                "runs": [{"label": r["label"], "check": r["check"], "seconds": r["seconds"],
                          "data_dir": r["data_dir"], "rc": r["rc"]} for r in self.runs]}


def _record(store: BuildStore, opts: DeployOptions, kind: str, result: dict[str, Any],
            ok: bool, reason: str | None = None) -> None:
    store.record({"deploy": result.get("deploy"), "kind": kind, "time": time.strftime(
        "%Y-%m-%dT%H:%M:%S%z"), "build": result.get("build"), "inventory": str(
        Path(opts.inventory).absolute()), "limit": opts.limit, "ok": ok,
        "changed": result.get("changed", 0), "steps": result.get("steps", []), "reason": reason})


def _execute(inv: LoadedInventory, opts: DeployOptions, build_dir: Path, store: BuildStore,
             steps: list[Step], kind: str, progress: Progress) -> dict[str, Any]:
    hosts = DeployHosts.load(inv)
    rollout = _Rollout(inv, hosts, store, opts, progress, uuid.uuid4().hex[:12])
    if opts.check:
        nodes = [n for s in steps for n in s.nodes]
        res = rollout.ansible(nodes, build_dir, "check", check=True, diff=opts.diff)
        if not res.ok:
            raise DeployFailed("check run failed:\n  " + "\n  ".join(res.failures))
        return {"build": build_dir.name, "check": True, "would_change": res.changed,
                "data_dir": str(res.data_dir)}
    try:
        result = rollout.run(steps, build_dir)
    except DeployFailed as exc:
        _record(store, opts, kind, exc.result or rollout.result(build_dir.name, steps, []), False,
                exc.message)
        raise
    _record(store, opts, kind, result, True)
    return result


def deploy(opts: DeployOptions, progress: Progress = lambda s: None) -> dict[str, Any]:
    """Render, refuse a broken build, keep it, and roll it out (see the module docstring)."""
    inv = load_inventory(opts.inventory)
    platform = inv.model.platform.name
    secrets = Secrets.load(opts.secrets_file or default_path(platform))
    build = render(inv, secrets)
    if secrets.dirty:
        secrets.save()
    verify_rendered(build)
    steps = plan(inv, opts.limit)
    build_id = build.digest()
    if opts.dry_run:
        return {"build": build_id, "dry_run": True, "steps": [s.as_dict() for s in steps]}
    store = _state(opts.state_dir, platform)
    build_dir = store.save(build)
    progress(f"build {build_id} kept in {build_dir}")
    _refuse_broken(build_dir, [n for s in steps for n in s.nodes], progress, opts.switch_check)
    _seed(store, inv, secrets, build_id)
    if secrets.dirty:  # SIP user passwords generated for the subscriber database
        secrets.save()
    return _execute(inv, opts, build_dir, store, steps, "deploy", progress)


def history(platform: str | None = None, state_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every deploy and rollback of the platform, oldest first (none yet: empty)."""
    if platform is None and not _platforms(state_dir or default_state_root()):
        return []
    return _platform_store(platform, state_dir).history()


def _platforms(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _platform_store(platform: str | None, state_dir: Path | None) -> BuildStore:
    root = state_dir or default_state_root()
    if platform is None:
        found = _platforms(root)
        if not found:
            raise ZpctlError(f"no deploy recorded yet (no deploy state in {root}); deploy "
                             "first: zpctl deploy INVENTORY", ExitCode.USAGE)
        if len(found) > 1:
            raise ZpctlError(f"give --platform: {root} holds the deploy state of "
                             f"{', '.join(found)}", ExitCode.USAGE)
        platform = found[0]
    return BuildStore(root, platform)


def rollback(build: str | None = None, platform: str | None = None,
             inventory: Path | None = None, state_dir: Path | None = None,
             limit: str | None = None, progress: Progress = lambda s: None) -> dict[str, Any]:
    """Roll a kept build out again (default: the last good build before the newest one)."""
    store = _platform_store(platform, state_dir)
    entries = [e for e in store.history() if e.get("ok")]
    if build is None:
        current = entries[-1]["build"] if entries else None
        earlier = [e["build"] for e in entries if e["build"] != current]
        if not earlier:
            raise ZpctlError("no earlier good build to roll back to", ExitCode.USAGE)
        build = earlier[-1]
    build_dir = store.get(build)
    if inventory is None:
        recorded = [e.get("inventory") for e in store.history() if e.get("inventory")]
        if not recorded:
            raise ZpctlError("give --inventory (no deploy recorded one)", ExitCode.USAGE)
        inventory = Path(str(recorded[-1]))
    inv = load_inventory(inventory)
    opts = DeployOptions(inventory=inventory, limit=limit, state_dir=state_dir)
    steps = plan(inv, limit)
    progress(f"rolling back {store.platform} to build {build}")
    return _execute(inv, opts, build_dir, store, steps, "rollback", progress)
