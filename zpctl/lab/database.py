"""The lab's PostgreSQL: the server the inventory's ``database`` (engine postgres) and
``switch_recovery`` name, run from Debian's PostgreSQL 15 with its data under the lab folder.

Production points both at PostgreSQL servers of its own; the lab runs one on that
(loopback) address: the platform database (subscribers, DID aliases, call records) lives
there, migrated by zpctl, and the switches keep their core databases there so that a
standby switch can recover a dead one's calls.  When both are named, they must name the
same address: the lab runs one server.  The server runs as the ``postgres`` user (it
refuses root), which cannot enter the lab folder (0700, and under pytest's 0700 temporary
folder): its data and socket live in ``/tmp/zpctl-lab-pg-<id of the lab folder>``, owned by
``postgres``, and ``lab down`` removes them (what they hold, the calls the switches carry,
lasts no longer than the lab's processes).  Its log is the lab's ``nodes/db/log``.

:func:`prepare_database` creates the cluster once (``initdb``) and writes its access rules;
:func:`db_service` is the process and its health check (the server answers an SSL request);
:func:`bootstrap_database` creates the roles (the switches', the platform's), one
database per switch and the platform's database, and is run every time the server
(re)starts: a second run changes nothing but the passwords, which follow the secrets file.
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
from zpctl.secrets import DB_PASSWORD_KEY, Secrets

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


def server_address(inv: LoadedInventory) -> tuple[str, int] | None:
    """Where the lab's PostgreSQL listens: the platform database's server (engine
    postgres), else the switches' (switch_recovery); None: the lab runs none."""
    db, rec = inv.model.database, inv.model.switch_recovery
    platform = (db.host, db.port) if db.engine == "postgres" and db.host else None
    switches = (rec.db_host, rec.db_port) if rec is not None else None
    if platform and switches and platform != switches:
        raise EnvironmentProblem(
            f"database {platform[0]}:{platform[1]} and switch_recovery {switches[0]}:"
            f"{switches[1]} differ: the lab runs one PostgreSQL, name the same address")
    return platform or switches


def db_service(inv: LoadedInventory, lab_dir: Path) -> Service | None:
    """The lab's PostgreSQL, when the inventory names a PostgreSQL server."""
    where = server_address(inv)
    if where is None:
        return None
    host, port = where
    _home, data, run, _log = _folders(lab_dir)
    argv = [pg_binary("postgres"), "-D", str(data),
            "-c", f"listen_addresses={host}", "-c", f"port={port}",
            "-c", f"unix_socket_directories={run}", "-c", "max_connections=300",
            "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning",
            # A lab: its data is rebuilt by `lab up`; commit latency is the switches'.
            "-c", "synchronous_commit=off"]
    return Service(SERVICE, "postgres", HOME, argv, [(host, port, "tcp")],
                   pg_health(host, port), cwd=run, stop_signal="INT",
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
    the switches' and the platform's roles by password from loopback, ``postgres`` over
    the socket only."""
    if server_address(inv) is None:
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
    _write_as_postgres(
        data / "pg_hba.conf",
        "# managed by zpctl lab: its roles from loopback, postgres over the socket\n"
        f"local all {PG_USER} peer\n"
        + "".join(f"host  all {role} 127.0.0.0/8 scram-sha-256\n" for role in _roles(inv)))


def _roles(inv: LoadedInventory) -> list[str]:
    """The lab's login roles: the switches' and the platform database's."""
    rec, db = inv.model.switch_recovery, inv.model.database
    roles = [rec.db_user] if rec is not None else []
    if db.engine == "postgres" and db.user not in roles:
        roles.append(db.user)
    return roles


def switch_databases(inv: LoadedInventory) -> list[str]:
    """One database per switch (recovery takes every call of the database it reads)."""
    return [core_db_name(p.name) for p in inv.nodes() if p.role == Role.SWITCH]


def bootstrap_database(inv: LoadedInventory, lab_dir: Path, secrets: Secrets) -> None:
    """The roles (their passwords from the secrets file) and databases: one per switch,
    owned by the switches' role, and the platform's, owned by its role."""
    where = server_address(inv)
    if where is None:
        return
    _home, _data, run, _log = _folders(lab_dir)
    rec, db = inv.model.switch_recovery, inv.model.database
    owners: dict[str, str] = {}  # role -> password
    wanted: list[tuple[str, str]] = []  # (database, owner)
    if rec is not None:
        owners[rec.db_user] = _password(secrets, SWITCH_DB_PASSWORD_KEY)
        wanted += [(name, rec.db_user) for name in switch_databases(inv)]
    if db.engine == "postgres":
        owners.setdefault(db.user, _password(secrets, DB_PASSWORD_KEY))
        wanted.append((db.name, db.user))
    psql = [pg_binary("psql"), "-h", str(run), "-p", str(where[1]), "-U", PG_USER,
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
            said = res.stderr.strip()
            for pw in owners.values():
                said = said.replace(pw, "...")
            raise EnvironmentProblem(f"lab PostgreSQL: {statement.partition(' PASSWORD')[0]}: "
                                     f"{said[-300:]}")
        return res.stdout

    # roles: inventory Idents ([a-z0-9-]); passwords: checked by _password
    for role, password in owners.items():
        if not sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").strip():  # noqa: S608
            sql(f'CREATE ROLE "{role}" LOGIN')
        sql(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
    have = set(sql("SELECT datname FROM pg_database").split())
    for name, owner in wanted:
        if name not in have:
            sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')


def _password(secrets: Secrets, key: str) -> str:
    password = secrets.get(key)
    if not _SAFE_PASSWORD.fullmatch(password):
        raise EnvironmentProblem(f"secret {key}: use letters, digits and -_.~ only (it goes "
                                 "into SQL, a libpq conninfo and Kamailio's db_url as is)")
    return password
