"""How inventory nodes map to SSH hosts: ``<inventory>/deploy.yml`` (optional).

The inventory schema describes the platform, not how an SRE reaches its machines, so the
mapping lives beside it::

    defaults:                       # for every node (all keys optional)
      user: root
      port: 22
      python: /usr/bin/python3
      key: ~/.ssh/zpctl_deploy      # private key file
      ssh_args: -o StrictHostKeyChecking=accept-new
    hosts:                          # per node; a node not listed is reached on its mgmt address
      us01-lb: {host: lb1.sjc.example.net}
    vars:                           # role variables for every host, e.g. on pre-built hosts
      kamailio_install_packages: false
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zpctl.errors import ExitCode, ZpctlError
from zpctl.model import LoadedInventory

DEPLOY_FILE = "deploy.yml"
_HOST_KEYS = {"host", "user", "port", "python", "key", "ssh_args"}


@dataclass(frozen=True)
class HostSpec:
    """How Ansible reaches one node."""

    node: str
    host: str
    user: str = "root"
    port: int = 22
    python: str = "/usr/bin/python3"
    key: str | None = None
    ssh_args: str | None = None

    def ansible_vars(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ansible_host": self.host, "ansible_user": self.user,
                               "ansible_port": self.port,
                               "ansible_python_interpreter": self.python}
        if self.key:
            out["ansible_ssh_private_key_file"] = self.key
        if self.ssh_args:
            out["ansible_ssh_common_args"] = self.ssh_args
        return out


@dataclass
class DeployHosts:
    """Every node's :class:`HostSpec` plus role variables shared by all hosts."""

    specs: dict[str, HostSpec] = field(default_factory=dict)
    role_vars: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, inv: LoadedInventory, path: Path | None = None) -> DeployHosts:
        """Read ``deploy.yml`` beside the inventory (missing file: mgmt addresses, root)."""
        path = path or inv.root / DEPLOY_FILE
        doc: dict[str, Any] = {}
        if path.exists():
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ZpctlError(f"{path}: not YAML: {exc}", ExitCode.INVALID_INVENTORY) from None
            if not isinstance(doc, dict) or set(doc) - {"defaults", "hosts", "vars"}:
                raise ZpctlError(f"{path}: expected the keys defaults, hosts, vars",
                                 ExitCode.INVALID_INVENTORY)
        defaults = _entry(path, "defaults", doc.get("defaults") or {})
        hosts = doc.get("hosts") or {}
        names = {p.name for p in inv.nodes()}
        unknown = sorted(set(hosts) - names)
        if unknown:
            raise ZpctlError(f"{path}: hosts: not nodes of the inventory: {', '.join(unknown)}",
                             ExitCode.INVALID_INVENTORY)
        specs = {}
        for p in inv.nodes():
            entry = {**defaults, **_entry(path, f"hosts.{p.name}", hosts.get(p.name) or {})}
            key = entry.get("key")
            specs[p.name] = HostSpec(
                node=p.name, host=str(entry.get("host", p.node.mgmt)),
                user=str(entry.get("user", "root")), port=int(entry.get("port", 22)),
                python=str(entry.get("python", "/usr/bin/python3")),
                key=str(Path(str(key)).expanduser()) if key else None,
                ssh_args=str(entry["ssh_args"]) if entry.get("ssh_args") else None)
        return cls(specs, dict(doc.get("vars") or {}))


def _entry(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - _HOST_KEYS:
        raise ZpctlError(f"{path}: {where}: expected a mapping with keys "
                         f"{', '.join(sorted(_HOST_KEYS))}", ExitCode.INVALID_INVENTORY)
    return dict(value)
