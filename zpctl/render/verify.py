"""Every check of a build, for ``zpctl render`` and ``zpctl deploy`` alike.

Two steps, because the first needs only the rendered bytes and the others need files on
disk: :func:`verify_rendered` runs the FreeSWITCH validator before anything is written (a
violation is a RenderError, exit 4, and nothing is written); :func:`verify_written` runs the
real binaries on the written tree: ``kamailio -c`` on every Kamailio config (or those of the
nodes in scope), and ``promtool check config`` (which loads the rule files too) on the
monitoring files when promtool is installed (Prometheus is optional on a controller),
``nsd-checkzone`` and ``nsd-checkconf`` on the DNS files when NSD is installed, and
``nft -c`` on each node's firewall when nft is installed and zpctl runs as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path

from zpctl.errors import EnvironmentProblem
from zpctl.render import iter_kamailio_configs
from zpctl.render.build import Build
from zpctl.render.dns import DNS
from zpctl.render.freeswitch_validate import check_build as check_freeswitch_build
from zpctl.render.monitoring import MONITORING

PROMETHEUS_CONFIG = f"{MONITORING}/prometheus/prometheus.yml"


def verify_rendered(build: Build) -> None:
    """The checks of the rendered bytes (the FreeSWITCH validator); RenderError (exit 4)
    naming file, element and reason."""
    check_freeswitch_build(build)


def verify_written(build_root: Path, nodes: Collection[str] | None = None
                   ) -> list[dict[str, str]]:
    """The checks of a written build by the real binaries: ``kamailio -c`` on the Kamailio
    configs (of ``nodes`` when given) and ``promtool check config`` when promtool is
    installed; the failures, each ``{"check", "config", "output"}``."""
    failures = check_kamailio_build(build_root, nodes)
    promtool = shutil.which("promtool")
    config = Path(build_root) / PROMETHEUS_CONFIG
    if promtool is not None and config.is_file():
        failures += _run_check("promtool check config",
                               [promtool, "check", "config", str(config)], config)
    return failures + check_dns_build(Path(build_root)) + check_firewall_build(
        Path(build_root), nodes)


def _run_check(name: str, argv: list[str], config: Path) -> list[dict[str, str]]:
    """Run one checker on one file: [] when it passes, else its failure
    ``{"check", "config", "output"}``."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode == 0:
        return []
    return [{"check": name, "config": str(config), "output": (proc.stdout + proc.stderr).strip()}]


def check_firewall_build(build_root: Path, nodes: Collection[str] | None = None
                         ) -> list[dict[str, str]]:
    """``nft -c`` (parse and check against the kernel, apply nothing) on each node's
    firewall, when nft is installed and zpctl runs as root (nft needs it); the failures."""
    nft = shutil.which("nft") or ("/usr/sbin/nft" if Path("/usr/sbin/nft").exists() else None)
    if nft is None or os.geteuid() != 0:
        return []
    return [f for rules in sorted(Path(build_root).glob("*/nftables/zpctl.nft"))
            if nodes is None or rules.parent.parent.name in nodes
            for f in _run_check("nft -c", [nft, "-c", "-f", str(rules)], rules)]


def check_dns_build(build_root: Path) -> list[dict[str, str]]:
    """``nsd-checkzone`` on the rendered zone and ``nsd-checkconf`` on each server's
    config, when NSD is installed (a controller need not have it); the failures."""
    out: list[dict[str, str]] = []
    checkzone, checkconf = shutil.which("nsd-checkzone"), shutil.which("nsd-checkconf")
    if checkzone is not None:
        for zonefile in sorted((build_root / DNS).glob("*.zone")):
            out += _run_check("nsd-checkzone", [checkzone, zonefile.name.removesuffix(".zone"),
                                                str(zonefile)], zonefile)
    if checkconf is not None:
        for conf in sorted((build_root / DNS).glob("*/nsd.conf")):
            out += _run_check("nsd-checkconf", [checkconf, str(conf)], conf)
    return out


def kamailio_binary() -> str:
    path = shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if Path(p).exists()), None)
    if path is None:
        raise EnvironmentProblem(
            "kamailio is not installed (Debian: apt-get install kamailio; or `make install`); "
            "use --no-check to skip the config check")
    return path


def check_kamailio_config(config: Path, binary: str | None = None) -> tuple[bool, str]:
    """Run ``kamailio -c`` on one config; (ok, output)."""
    binary = binary or kamailio_binary()
    with tempfile.TemporaryDirectory(prefix="zpctl-kc-") as rundir:
        proc = subprocess.run([binary, "-c", "-Y", rundir, "-f", str(config)],
                              capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def check_kamailio_build(build_root: Path, nodes: Collection[str] | None = None
                         ) -> list[dict[str, str]]:
    """``kamailio -c`` on every Kamailio config of a written build (of ``nodes`` when
    given); the failures."""
    configs = [c for c in iter_kamailio_configs(build_root)
               if nodes is None or c.parent.parent.name in nodes]
    if not configs:
        return []
    binary = kamailio_binary()
    failures = []
    for cfg in configs:
        ok, output = check_kamailio_config(cfg, binary)
        if not ok:
            errors = [ln for ln in output.splitlines() if "ERROR" in ln or "CRITICAL" in ln]
            failures.append({"check": "kamailio -c", "config": str(cfg),
                             "output": "\n".join(errors[-8:] or [output])})
    return failures
