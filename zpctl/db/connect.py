"""Where the platform's database is, and one connection to it, sqlite or PostgreSQL.

A :class:`DbTarget` names the database (a sqlite file, or a PostgreSQL server, database
and role with the password from the secrets file); :func:`connect` opens it and gives a
:class:`Db`, whose statements are written once with ``?`` placeholders for both engines and
whose :meth:`Db.transaction` is all or nothing on both (sqlite's DDL included).

A database that cannot be reached is an :class:`~zpctl.errors.EnvironmentProblem` (exit
9) naming it, never a driver traceback; the password never appears in a message.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zpctl.errors import EnvironmentProblem, ExitCode, ZpctlError
from zpctl.model import LoadedInventory
from zpctl.secrets import DB_PASSWORD_KEY, Secrets

CONNECT_TIMEOUT_S = 3

Engine = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class DbTarget:
    """A database zpctl reads and writes: a sqlite file, or a PostgreSQL database."""

    engine: Engine
    path: Path | None = None  # sqlite
    host: str = ""
    port: int = 5432
    name: str = ""
    user: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def sqlite(cls, path: Path) -> DbTarget:
        return cls("sqlite", path=path)

    @classmethod
    def postgres(cls, host: str, port: int, name: str, user: str, password: str) -> DbTarget:
        return cls("postgres", host=host, port=port, name=name, user=user, password=password)

    @classmethod
    def of_inventory(cls, inv: LoadedInventory, secrets: Secrets,
                     sqlite_path: Path | None = None) -> DbTarget:
        """The database the inventory names (a sqlite engine needs the file's path)."""
        db = inv.model.database
        if db.engine == "sqlite":
            if sqlite_path is None:
                raise ZpctlError("the inventory's database is sqlite: give --db PATH",
                                 ExitCode.USAGE)
            return cls.sqlite(sqlite_path)
        assert db.host is not None  # the schema requires it for postgres
        return cls.postgres(db.host, db.port, db.name, db.user, secrets.get(DB_PASSWORD_KEY))

    @property
    def label(self) -> str:
        """How messages name it (never with the password)."""
        if self.engine == "sqlite":
            return f"sqlite:{self.path}"
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.name}"


class Db:
    """One open connection; statements use ``?`` placeholders on either engine."""

    def __init__(self, target: DbTarget, conn: Any) -> None:
        self.target = target
        self.conn = conn
        self._pg = target.engine == "postgres"

    def _sql(self, statement: str) -> str:
        return statement.replace("%", "%%").replace("?", "%s") if self._pg else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (none for a statement without)."""
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(statement), tuple(params))
            return list(cur.fetchall()) if cur.description is not None else []
        finally:
            cur.close()

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cur = self.conn.cursor()
        try:
            cur.executemany(self._sql(statement), [tuple(r) for r in rows])
        finally:
            cur.close()

    def tables(self) -> set[str]:
        if self._pg:
            rows = self.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        else:
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows}

    def columns(self, table: str) -> set[str]:
        if self._pg:
            rows = self.execute("SELECT column_name FROM information_schema.columns "
                                "WHERE table_schema = 'public' AND table_name = ?", (table,))
            return {r[0] for r in rows}
        return {r[1] for r in self.execute(f"PRAGMA table_info({table})")}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Db]:
        """All of the block's statements, or none of them (on any exception)."""
        if not self._pg:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def _open_sqlite(target: DbTarget, create: bool) -> Any:
    assert target.path is not None
    path = target.path
    if not path.exists():
        if not create:
            raise EnvironmentProblem(f"database {target.label}: no such file")
        # mode 0600 in a new 0700 folder: its HA1 hashes are as good as passwords
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    try:
        # autocommit: Db.transaction says BEGIN (sqlite's own would not cover DDL)
        return sqlite3.connect(path, isolation_level=None, timeout=10)
    except sqlite3.Error as exc:
        raise EnvironmentProblem(f"database {target.label}: {exc}") from None


def _open_postgres(target: DbTarget) -> Any:
    try:
        import psycopg  # noqa: PLC0415 - only the postgres engine needs the driver
    except ImportError:  # pragma: no cover - a dependency of the package
        raise EnvironmentProblem("the PostgreSQL driver (psycopg) is not installed: "
                                 "run `make install`") from None
    try:
        return psycopg.connect(host=target.host, port=target.port, dbname=target.name,
                               user=target.user, password=target.password,
                               connect_timeout=CONNECT_TIMEOUT_S, application_name="zpctl")
    except psycopg.Error as exc:
        raise EnvironmentProblem(f"database {target.label} is unreachable: "
                                 f"{_reason(exc, target)}") from None


def _reason(exc: Exception, target: DbTarget) -> str:
    """The driver's message on one line, without the password."""
    said = str(exc).replace(target.password, "...") if target.password else str(exc)
    return " ".join(said.split())[:300] or type(exc).__name__


@contextlib.contextmanager
def connect(target: DbTarget, create: bool = False) -> Iterator[Db]:
    """An open connection to ``target``, closed after the block.  ``create``: a missing
    sqlite file is created (a PostgreSQL database must exist: ``zpctl db migrate`` runs
    against what the DBA or the lab created)."""
    conn = _open_sqlite(target, create) if target.engine == "sqlite" else _open_postgres(target)
    db = Db(target, conn)
    try:
        yield db
    except ZpctlError:
        raise
    except Exception as exc:
        if not type(exc).__module__.startswith(("psycopg", "sqlite3")):
            raise
        raise EnvironmentProblem(f"database {target.label}: {_reason(exc, target)}") from None
    finally:
        db.close()
