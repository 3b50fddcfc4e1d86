"""Native code zpctl builds on the machine that runs it: the OpenSSL fork guard Kamailio 5.6
needs (``ossl_fork_guard.c``, which says why).

:func:`kamailio_version` reads what a Kamailio binary says of itself; :func:`needs_fork_guard`
tells whether that version lacks ``tls_threads_mode`` (added in 5.7.5), and
:func:`build_fork_guard` compiles the guard (a C compiler and libc headers: Debian's gcc)
into a folder, once per source version.  :func:`preload_env` is the environment a process
runs with the guard.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from zpctl.errors import EnvironmentProblem

GUARD_SOURCE = Path(__file__).with_name("ossl_fork_guard.c")
# The first Kamailio whose tls module keeps workers off the parent's OpenSSL thread state.
FIXED_IN = (5, 7, 5)


@cache
def kamailio_version(binary: str) -> tuple[int, int, int] | None:
    """``(5, 6, 3)`` from ``kamailio -v`` ("version: kamailio 5.6.3 (x86_64/linux)");
    None when the binary cannot say."""
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version: kamailio (\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def needs_fork_guard(binary: str) -> bool:
    """Whether the Kamailio at ``binary`` shares OpenSSL state between its workers (before
    5.7.5).  A version it will not tell is taken as needing the guard: the guard is harmless
    where it is not needed."""
    version = kamailio_version(binary)
    return version is None or version < FIXED_IN


def build_fork_guard(folder: Path) -> Path:
    """The guard compiled into ``folder`` (``ossl_fork_guard-<source hash>.so``), built when
    missing.  EnvironmentProblem (exit 9) when there is no C compiler or it fails."""
    source = GUARD_SOURCE.read_bytes()
    target = folder / f"ossl_fork_guard-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.is_file():
        return target
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise EnvironmentProblem(
            "no C compiler to build the OpenSSL fork guard Kamailio 5.6 needs (a worker "
            "crash under TLS otherwise): run `make install` (Debian: gcc, libc6-dev)")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    res = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(partial),
                          str(GUARD_SOURCE), "-ldl"],
                         capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        partial.unlink(missing_ok=True)
        raise EnvironmentProblem(f"building {GUARD_SOURCE.name} with {cc} failed: "
                                 f"{res.stderr.strip()[-400:]}")
    partial.chmod(0o644)
    partial.replace(target)  # atomic: a concurrent build finds a whole library or none
    return target


def preload_env(library: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``library`` first on LD_PRELOAD."""
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(x for x in (str(library), env.get("LD_PRELOAD", "")) if x)
    return env
