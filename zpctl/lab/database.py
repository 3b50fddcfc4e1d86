"""The lab's PostgreSQL: the server the inventory's ``switch_recovery`` names, run from
Debian's PostgreSQL 15 with its data under the lab folder.

Production points ``switch_recovery`` at a PostgreSQL of its own; the lab runs one on that
(loopback) address so that its switches keep their core databases there and a standby
switch can recover a dead one's calls.  The server runs as the ``postgres`` user (it
refuses root), which cannot enter the lab folder (0700, and under pytest's 0700 temporary
folder): its data and socket live in ``/tmp/zpctl-lab-pg-<id of the lab folder>``, owned by
``postgres``, and ``lab down`` removes them (what they hold, the calls the switches carry,
lasts no longer than the lab's processes).  Its log is the lab's ``nodes/db/log``.

:func:`prepare_database` creates the cluster once (``initdb``) and writes its access rules;
:func:`db_service` is the process and its health check (the server answers an SSL request);
:func:`bootstrap_database` creates the switches' role and one database per switch, and is
run every time the server (re)starts: a second run changes nothing but the password, which
follows the secrets file.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import re
import shutil
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from zpctl.errors import EnvironmentProblem, Unreachable
from zpctl.lab.procs import as_user_kwargs
from zpctl.lab.services import Service
from zpctl.model import LoadedInventory
from zpctl.model.schema import Role
from zpctl.paths import find_binary
from zpctl.render.freeswitch import SWITCH_DB_PASSWORD_KEY, core_db_name
from zpctl.secrets import Secrets

HOME = "db"  # its folder under nodes/ and the prefix of its service name
# What the switches' password may hold: it goes into SQL and a libpq conninfo unquoted.
_SAFE_PASSWORD = re.compile(r"[A-Za-z0-9_.~-]+")
SERVICE = f"{HOME}/postgres"
PG_USER = "postgres"
_SSL_REQUEST = struct.pack("!II", 8, 80877103)


def _version(path: str) -> tuple[int, ...]:
    """The version folder of a Debian PostgreSQL program, as numbers (``15`` > ``9.6``)."""
    part = Path(path).parent.parent.name
    return tuple(int(x) for x in part.split(".") if x.isdigit())


def pg_binary(name: str) -> str:
    """A PostgreSQL program: on PATH, else in Debian's newest versioned folder."""
    found = find_binary(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version, reverse=True)), None)
    if found is None:
        raise EnvironmentProblem(f"{name} is not installed; run `make install` "
                                 "(Debian: postgresql-15)")
    return found


def pg_root(lab_dir: Path) -> Path:
    """The server's own folder for the lab in ``lab_dir`` (one per lab folder)."""
    digest = hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"zpctl-lab-pg-{digest}"  # noqa: S108 - postgres must reach it


def _folders(lab_dir: Path) -> tuple[Path, Path, Path, Path]:
    root = pg_root(lab_dir)
    return root, root / "data", root / "run", lab_dir / "nodes" / HOME / "log"


def remove_database(lab_dir: Path) -> None:
    """Remove the server's folder (the server stopped): ``lab down``."""
    shutil.rmtree(pg_root(lab_dir), ignore_errors=True)


def pg_health(addr: str, port: int) -> Callable[[], None]:
    """The postmaster accepts connections: it answers an SSL request with S or N."""
    def check() -> None:
        try:
            with socket.create_connection((addr, port), timeout=0.5) as s:
                s.settimeout(0.5)
                s.sendall(_SSL_REQUEST)
                answer = s.recv(1)
        except OSError as exc:
            raise Unreachable(f"PostgreSQL {addr}:{port}: {exc}") from None
        if answer not in (b"S", b"N"):
            raise Unreachable(f"PostgreSQL {addr}:{port} answered {answer!r}")
    return check


def db_service(inv: LoadedInventory, lab_dir: Path) -> Service | None:
    """The lab's PostgreSQL, when the inventory names a switch_recovery server."""
    rec = inv.model.switch_recovery
    if rec is None:
        return None
    _home, data, run, _log = _folders(lab_dir)
    argv = [pg_binary("postgres"), "-D", str(data),
            "-c", f"listen_addresses={rec.db_host}", "-c", f"port={rec.db_port}",
            "-c", f"unix_socket_directories={run}", "-c", "max_connections=300",
            "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning",
            # A lab: its data is rebuilt by `lab up`; commit latency is the switches'.
            "-c", "synchronous_commit=off"]
    return Service(SERVICE, "postgres", HOME, argv, [(rec.db_host, rec.db_port, "tcp")],
                   pg_health(rec.db_host, rec.db_port), cwd=run, stop_signal="INT",
                   user=PG_USER)


def _owned_by_postgres(path: Path) -> None:
    """``path``, a folder of the server's (created if missing; never through a link)."""
    pw = pwd.getpwnam(PG_USER)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, pw.pw_uid):
        raise EnvironmentProblem(f"{path} exists and is not the lab's (a link, a file or "
                                 "owned by another user): remove it")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, pw.pw_uid, pw.pw_gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _write_as_postgres(path: Path, text: str) -> None:
    """Write a file in the server's folder, owned by it, mode 0600: opened without following
    a link (the folder is the postgres user's)."""
    pw = pwd.getpwnam(PG_USER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchown(fh.fileno(), pw.pw_uid, pw.pw_gid)
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def prepare_database(inv: LoadedInventory, lab_dir: Path) -> None:
    """The cluster's folders (``postgres``'s own), ``initdb`` once, and its access rules:
    the switches' role by password from loopback, ``postgres`` over the socket only."""
    if inv.model.switch_recovery is None:
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        raise EnvironmentProblem("no postgres user: install PostgreSQL (`make install`, "
                                 "Debian: postgresql-15)") from None
    root, data, run, log = _folders(lab_dir)
    for d in (root, data, run):  # in /tmp: created here, or the lab's from before
        _owned_by_postgres(d)
    log.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (data / "PG_VERSION").exists():
        res = subprocess.run(
            [pg_binary("initdb"), "-D", str(data), "-U", PG_USER, "-E", "UTF8",
             "--locale=C", "--auth-local=peer", "--auth-host=scram-sha-256", "--no-instructions"],
            cwd=str(data), capture_output=True, text=True, check=False,
            **as_user_kwargs(PG_USER))
        if res.returncode != 0:
            raise EnvironmentProblem(f"initdb {data} failed: {res.stderr.strip()[-400:]}")
    rec = inv.model.switch_recovery
    _write_as_postgres(
        data / "pg_hba.conf",
        "# managed by zpctl lab: the switches' role from loopback, postgres over the socket\n"
        f"local all {PG_USER} peer\n"
        f"host  all {rec.db_user} 127.0.0.0/8 scram-sha-256\n")


def switch_databases(inv: LoadedInventory) -> list[str]:
    """One database per switch (recovery takes every call of the database it reads)."""
    return [core_db_name(p.name) for p in inv.nodes() if p.role == Role.SWITCH]


def bootstrap_database(inv: LoadedInventory, lab_dir: Path, secrets: Secrets) -> None:
    """The switches' role (its password from the secrets file) and their databases."""
    rec = inv.model.switch_recovery
    if rec is None:
        return
    _home, _data, run, _log = _folders(lab_dir)
    password = secrets.get(SWITCH_DB_PASSWORD_KEY)
    if not _SAFE_PASSWORD.fullmatch(password):
        raise EnvironmentProblem(f"secret {SWITCH_DB_PASSWORD_KEY}: use letters, digits and "
                                 "-_.~ only (it goes into SQL and FreeSWITCH's DSN as is)")
    role = rec.db_user
    psql = [pg_binary("psql"), "-h", str(run), "-p", str(rec.db_port), "-U", PG_USER,
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]

    def sql(statement: str) -> str:
        # on stdin: the password is never on a command line
        for _ in range(50):  # its socket answers before it takes logins ("starting up")
            res: subprocess.CompletedProcess[str] = subprocess.run(
                psql, input=statement, cwd=str(run), capture_output=True, text=True,
                check=False, **as_user_kwargs(PG_USER))
            if res.returncode == 0 or "starting up" not in res.stderr:
                break
            time.sleep(0.2)
        if res.returncode != 0:
            said = res.stderr.strip().replace(password, "...")[-300:]
            raise EnvironmentProblem(f"lab PostgreSQL: {statement.partition(' PASSWORD')[0]}: "
                                     f"{said}")
        return res.stdout

    # role: an inventory Ident ([a-z0-9-]); password: checked above
    if not sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").strip():  # noqa: S608
        sql(f'CREATE ROLE "{role}" LOGIN')
    sql(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
    have = set(sql("SELECT datname FROM pg_database").split())
    for name in switch_databases(inv):
        if name not in have:
            sql(f'CREATE DATABASE "{name}" OWNER "{role}"')
