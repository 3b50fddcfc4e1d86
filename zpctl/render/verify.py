"""Checks of rendered files by the real binaries (``kamailio -c``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from zpctl.errors import EnvironmentProblem
from zpctl.render import iter_kamailio_configs


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


def check_kamailio_build(build_root: Path) -> list[dict[str, str]]:
    """``kamailio -c`` on every Kamailio config of a written build; the failures."""
    binary = kamailio_binary()
    failures = []
    for cfg in iter_kamailio_configs(build_root):
        ok, output = check_kamailio_config(cfg, binary)
        if not ok:
            errors = [ln for ln in output.splitlines() if "ERROR" in ln or "CRITICAL" in ln]
            failures.append({"config": str(cfg), "output": "\n".join(errors[-8:] or [output])})
    return failures
