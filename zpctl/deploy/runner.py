"""One Ansible run through ansible-runner: its private data dir, its events, its result.

``AnsibleRun(...).run()`` lays out the private data dir (``env/`` settings, ``inventory/``
hosts with their role variables, ``project/deploy.yml`` the playbook applying roles/ by
node role), runs ansible-playbook through ``ansible_runner.run`` with an event handler
that feeds a progress callback, and returns the per-host counts and failures.  Artifacts
stay in ``artifacts/<ident>/`` of the data dir.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zpctl.deploy.hosts import DeployHosts
from zpctl.errors import EnvironmentProblem, ExitCode, ZpctlError
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.roles import FIREWALL_ANSIBLE_ROLE, MONITOR_ANSIBLE_ROLES, ROLES
from zpctl.model.schema import Role
from zpctl.native import build_fork_guard
from zpctl.paths import data_dir
from zpctl.render.sizing import shm_mb

ROLES_DIR = data_dir("roles")
Progress = Callable[[str], None]

# Which Ansible roles a node of each inventory role gets, and the play's host group: from
# the role table (zpctl.model.roles), one Ansible role per service.
GROUPS: dict[Role, tuple[str, list[str]]] = {
    role: (s.ansible_group, s.ansible_roles if role != Role.MONITOR else MONITOR_ANSIBLE_ROLES)
    for role, s in ROLES.items() if (s.services or role == Role.MONITOR) and s.deployed
}
# One play, so that every host of a run works in parallel (plays run one after another);
# each Ansible role runs on the hosts of its group, in the role table's order.
# Last, on every host: its firewall (the rules let in what the services above need).
_ROLE_GROUPS = list(dict.fromkeys((r, g) for g, rs in GROUPS.values() for r in rs))
PLAYBOOK: list[dict[str, Any]] = [{
    "name": "zpctl hosts: install rendered bytes, validate, run",
    "hosts": "all", "gather_facts": False, "strategy": "free",
    "roles": [{"role": r, "when": f"'{g}' in group_names"} for r, g in _ROLE_GROUPS]
    + [{"role": FIREWALL_ANSIBLE_ROLE}],
}]

# What each role ships from the node's rendered tree.
BUNDLES: dict[str, list[str]] = {
    "kamailio": ["kamailio", "kamcli", "node.json"],
    "redis": ["redis"],
    "rtpengine": ["rtpengine", "node.json"],
    "freeswitch": ["freeswitch", "node.json"],
    "prometheus": ["prometheus"],
    "zpctl_exporter": ["node.json"],
    "keepalived": ["keepalived"],
    FIREWALL_ANSIBLE_ROLE: ["nftables"],
}


def write_bundle(src: Path, members: list[str], out: Path) -> None:
    """A tar of ``members`` of ``src``: sorted, owner root, mtime 0, modes kept, so the same
    build always gives the same bytes (Ansible's copy then reports no change)."""
    files: list[Path] = []
    for m in members:
        p = src / m
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file())
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(p) for f in files for p in f.relative_to(src).parents if str(p) != "."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for f in sorted(files):
            info = tarfile.TarInfo(str(f.relative_to(src)))
            data = f.read_bytes()
            info.size, info.mode, info.mtime = len(data), f.stat().st_mode & 0o7777, 0
            tar.addfile(info, io.BytesIO(data))
    os.chmod(out, 0o600)


def host_vars(inv: LoadedInventory, node: str, build_dir: Path, seed_dir: Path | None,
              bundles: Path) -> dict[str, Any]:
    """The role variables of one node, from the build's node.json: role-prefixed."""
    placed = inv.node(node)
    src = build_dir / node
    doc = json.loads((src / "node.json").read_text()) if (src / "node.json").exists() else {}
    paths = doc.get("paths") or {"config": inv.model.paths.config_dir,
                                 "run": inv.model.paths.run_dir, "log": inv.model.paths.log_dir,
                                 "state": inv.model.paths.state_dir}
    out: dict[str, Any] = {"zpctl_node": node, "zpctl_build": build_dir.name}
    _, group_roles = GROUPS[placed.role]
    roles = [*group_roles, FIREWALL_ANSIBLE_ROLE]
    for role in roles:
        bundle = bundles / node / f"{role}.tar"
        monitoring = placed.role == Role.MONITOR and role != FIREWALL_ANSIBLE_ROLE
        write_bundle(build_dir / "_monitoring" if monitoring else src, BUNDLES[role], bundle)
        out.update({f"{role}_source_dir": str(src), f"{role}_bundle": str(bundle),
                    f"{role}_config_dir": paths["config"],
                    f"{role}_run_dir": paths["run"], f"{role}_log_dir": paths["log"],
                    f"{role}_state_dir": paths["state"]})
    if placed.role == Role.MONITOR:
        for role in group_roles:
            out[f"{role}_source_dir"] = str(build_dir / "_monitoring")
    # How each service runs, as render wrote it into node.json: the role starts
    # <role>_binary with these arguments (and never works them out itself).
    for svc in doc.get("services", []):
        args = svc.get("args")
        if args is None:  # a kept build rendered before node.json carried command lines
            args = _table_args(placed, svc, paths)
        out[f"{svc['name']}_args"] = list(args)
    if placed.role == Role.PROXY and seed_dir is not None and (seed_dir / "subscriber.sqlite").exists():
        out["kamailio_subscriber_db"] = str(seed_dir / "subscriber.sqlite")
    return out


def _table_args(placed: PlacedNode, svc: dict[str, Any], paths: dict[str, str]) -> list[str]:
    """A service's command line from the role table, for a build whose node.json predates
    it (a rollback to such a build must still start its processes)."""
    spec = next((s for s in ROLES[placed.role].services if s.name == svc.get("name")), None)
    if spec is None:
        raise ZpctlError(f"{placed.name}: node.json names a service {svc.get('name')!r} "
                          f"that a {placed.role.value} node does not run", ExitCode.DEPLOY_FAILED)
    return spec.args({**paths,
                      "shm_mb": svc.get("shm_mb") or shm_mb(placed.node.capacity, placed.role),
                      "pkg_mb": svc.get("pkg_mb") or placed.node.kamailio.pkg_mb})


def ansible_playbook() -> str:
    """ansible-playbook beside this Python (the venv) first, then on PATH."""
    here = str(Path(sys.executable).parent)
    found = shutil.which("ansible-playbook", path=here + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        raise EnvironmentProblem("ansible-playbook is not installed (pip install ansible-core, "
                                 "or `make install`)")
    return found


@dataclass
class RunResult:
    """What one Ansible run did."""

    data_dir: Path
    rc: int
    status: str
    changed: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())

    def as_dict(self) -> dict[str, Any]:
        return {"data_dir": str(self.data_dir), "rc": self.rc, "status": self.status,
                "changed": self.changed, "failures": self.failures}


@dataclass
class EventLog:
    """ansible-runner's event handler: progress lines while the run goes, and what failed,
    each host once.  An unreachable host is named only in :meth:`failures` (one line per
    reason, its hosts sorted): Ansible reports it for every task it could not start, and a
    progress line as well would repeat the same long SSH message for every host."""

    progress: Progress
    failed: dict[str, list[str]] = field(default_factory=dict)  # host -> its failed tasks
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> the first reason

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = str(data.get("host", ""))
        task = data.get("task", "")
        res = data.get("res") or {}
        if kind == "runner_on_ok" and res.get("changed"):
            self.progress(f"    {host:<16} changed  {task}")
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            msg = str(res.get("msg") or "").strip()
            detail = (str(res.get("stderr") or res.get("stdout") or "")).strip()
            line = f"{task}: {msg}" + (f"\n{detail[-1500:]}" if detail else "")
            lines = self.failed.setdefault(host, [])
            if line not in lines:
                lines.append(line)
                self.progress(f"    {host:<16} FAILED   {task}: {msg}")
        elif kind == "runner_on_unreachable":
            self.unreachable.setdefault(host, str(res.get("msg") or "no reason given").strip())
        return True

    def failures(self) -> list[str]:
        """One entry per failed host and one per unreachable reason (naming its hosts)."""
        out = [f"{host}: {line}" for host in sorted(self.failed) for line in self.failed[host]]
        by_reason: dict[str, list[str]] = {}
        for host, reason in self.unreachable.items():
            by_reason.setdefault(reason, []).append(host)
        for reason, hosts in sorted(by_reason.items(), key=lambda kv: sorted(kv[1])):
            out.append(f"unreachable: {', '.join(sorted(hosts))}: {reason}")
        return out


@dataclass
class AnsibleRun:
    inv: LoadedInventory
    hosts: DeployHosts
    nodes: list[str]
    build_dir: Path
    data_dir: Path
    seed_dir: Path | None = None
    check: bool = False
    diff: bool = False
    progress: Progress = field(default=lambda s: None)

    def fork_guard(self) -> Path | None:
        """The OpenSSL fork guard for the Kamailio hosts (the role installs it where the
        host's Kamailio predates 5.7.5: zpctl/native), built here; None, said in the
        progress, when this machine cannot build it (the role then warns on such hosts)."""
        if not any("kamailio" in GROUPS[self.inv.node(n).role][1] for n in self.nodes):
            return None
        try:
            return build_fork_guard(self.data_dir / "native")
        except EnvironmentProblem as exc:
            self.progress(f"  warning: {exc.message}")
            return None

    def prepare(self) -> None:
        """Lay out the private data dir: env/, inventory/, project/."""
        for sub in ("env", "inventory", "project"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        groups: dict[str, dict[str, Any]] = {}
        guard = self.fork_guard()
        for node in self.nodes:
            group, roles_ = GROUPS[self.inv.node(node).role]
            hv = {**self.hosts.role_vars, **self.hosts.specs[node].ansible_vars(),
                  **host_vars(self.inv, node, self.build_dir, self.seed_dir,
                            self.data_dir / "bundles")}
            if guard is not None and "kamailio" in roles_:
                hv["kamailio_fork_guard"] = str(guard)
            groups.setdefault(group, {"hosts": {}})["hosts"][node] = hv
        for group in {g for g, _ in GROUPS.values()}:
            groups.setdefault(group, {"hosts": {}})
        (self.data_dir / "inventory" / "hosts.yml").write_text(
            yaml.safe_dump({"all": {"children": groups}}, sort_keys=True))
        used = {g for g, spec in groups.items() if spec["hosts"]}
        group_of = {r: g for g, rs in GROUPS.values() for r in rs}
        play = {**PLAYBOOK[0], "roles": [r for r in PLAYBOOK[0]["roles"]
                                          if r["role"] == FIREWALL_ANSIBLE_ROLE
                                          or group_of[r["role"]] in used]}
        (self.data_dir / "project" / "deploy.yml").write_text(
            "---\n" + yaml.safe_dump([play], sort_keys=False))
        envvars = {"ANSIBLE_ROLES_PATH": str(ROLES_DIR), "ANSIBLE_HOST_KEY_CHECKING": "False",
                   "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_FORKS": "10",
                   "ANSIBLE_PIPELINING": "True", "ANSIBLE_NOCOLOR": "True",
                   # A busy host can be slow to greet: wait, and retry a dropped connection.
                   "ANSIBLE_TIMEOUT": "30", "ANSIBLE_SSH_RETRIES": "3",
                   "ANSIBLE_LOCAL_TEMP": str(self.data_dir / "tmp"),
                   "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.data_dir.parent / ".cp"),
                   # ansible-runner starts ansible-playbook by name: the venv's comes first.
                   "PATH": str(Path(ansible_playbook()).parent) + os.pathsep
                   + os.environ.get("PATH", "")}
        (self.data_dir / "env" / "envvars").write_text(yaml.safe_dump(envvars, sort_keys=True))

    def run(self) -> RunResult:
        import ansible_runner  # type: ignore[import-untyped]  # noqa: PLC0415 - heavy, deploy only

        self.prepare()
        events = EventLog(self.progress)
        cmdline = " ".join(a for a, on in (("--check", self.check), ("--diff", self.diff)) if on)
        r = ansible_runner.run(
            private_data_dir=str(self.data_dir), playbook="deploy.yml", ident="run",
            limit=",".join(self.nodes), cmdline=cmdline or None, quiet=True,
            event_handler=events)
        stats = r.stats or {}
        changed = {h: int(n) for h, n in (stats.get("changed") or {}).items()}
        for h in self.nodes:
            changed.setdefault(h, 0)
        failures = events.failures()
        if r.rc != 0 and not failures:
            failures.append(f"ansible-playbook exited {r.rc} ({r.status}); see "
                            f"{self.data_dir / 'artifacts' / 'run' / 'stdout'}")
        return RunResult(self.data_dir, int(r.rc), str(r.status), changed, failures)
