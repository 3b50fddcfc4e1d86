"""The platform database's versioned schema, on sqlite (PostgreSQL: the integration
tests, against the lab's server): versions, adoption of a file from before versions,
refusal of another version, and transactions that leave nothing half done."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.accounts import sync
from zpctl.db import LATEST, DbTarget, SchemaMismatch, connect, create_sqlite, migrate
from zpctl.db import schema as schema_mod
from zpctl.errors import EnvironmentProblem, ExitCode
from zpctl.model import load_inventory
from zpctl.secrets import Secrets


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT max(version) FROM zpctl_schema").fetchone()[0])


def test_a_new_file_is_migrated_to_the_latest_version_with_kamailios_table_versions(
        tmp_path: Path) -> None:
    db = tmp_path / "p.sqlite"
    create_sqlite(db)
    assert _version(db) == LATEST
    with sqlite3.connect(db) as conn:
        versions = dict(conn.execute("SELECT table_name, table_version FROM version"))
    assert versions == {"version": 1, "subscriber": 7, "dbaliases": 1, "acc": 5}
    create_sqlite(db)  # idempotent
    assert _version(db) == LATEST


def test_a_file_from_before_versions_is_adopted_with_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # the first schema: no aor, srtp, platform columns
        conn.executescript(
            "CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER);"
            "CREATE TABLE subscriber (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64),"
            " domain VARCHAR(64), password VARCHAR(64), ha1 VARCHAR(128), ha1b VARCHAR(128),"
            " account VARCHAR(64), offering VARCHAR(16), region_lock VARCHAR(32),"
            " calling_plan VARCHAR(32), country VARCHAR(2));"
            "CREATE TABLE dbaliases (id INTEGER PRIMARY KEY NOT NULL, alias_username VARCHAR(64),"
            " alias_domain VARCHAR(64), username VARCHAR(64), domain VARCHAR(64));"
            "INSERT INTO subscriber (username, domain, ha1) VALUES ('1001', 'a.test', 'h');")
    create_sqlite(db)
    with connect(DbTarget.sqlite(db)) as conn2:
        assert {"aor", "srtp", "platform", "caller_id"} <= conn2.columns("subscriber")
        assert conn2.execute("SELECT username, ha1 FROM subscriber") == [("1001", "h")]
    assert _version(db) == LATEST


@pytest.mark.parametrize(("version", "says"), [(0, "zpctl needs"), (LATEST + 1, "newer")])
def test_another_schema_version_is_refused_with_exit_6(tmp_path: Path, version: int,
                                                       says: str) -> None:
    db = tmp_path / "p.sqlite"
    create_sqlite(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM zpctl_schema")
        if version:
            conn.execute("INSERT INTO zpctl_schema VALUES (?, 'future', 'x')", (version,))
    inv = load_inventory(INVENTORIES / "lab")
    secrets = Secrets.load(tmp_path / "secrets.yml")
    with connect(DbTarget.sqlite(db)) as conn3, pytest.raises(SchemaMismatch) as err:
        schema_mod.require_current(conn3)
    assert err.value.exit_code == ExitCode.REMOTE_ERROR
    assert says in err.value.message and str(db) in err.value.message
    if version > LATEST:  # a newer database is never migrated "down", nor synced
        with connect(DbTarget.sqlite(db)) as conn4, pytest.raises(SchemaMismatch):
            migrate(conn4)
        with pytest.raises(SchemaMismatch):
            sync(inv, secrets, db)


def test_a_failing_migration_leaves_the_database_at_the_version_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "p.sqlite"
    create_sqlite(db)
    broken = schema_mod.Migration(LATEST + 1, "broken",
                                  "CREATE TABLE half_done (id {id});\nSELECT * FROM no_such_table")
    monkeypatch.setattr(schema_mod, "MIGRATIONS", (*schema_mod.MIGRATIONS, broken))
    monkeypatch.setattr(schema_mod, "LATEST", LATEST + 1)
    with pytest.raises(EnvironmentProblem) as err, connect(DbTarget.sqlite(db)) as conn:
        migrate(conn)
    assert "no_such_table" in err.value.message
    assert _version(db) == LATEST
    with connect(DbTarget.sqlite(db)) as conn2:
        assert "half_done" not in conn2.tables()


def test_a_sync_that_fails_half_way_changes_nothing(tmp_path: Path) -> None:
    inv = load_inventory(INVENTORIES / "lab")
    secrets = Secrets.load(tmp_path / "secrets.yml")
    db = tmp_path / "p.sqlite"
    sync(inv, secrets, db)
    with sqlite3.connect(db) as conn:  # the last user's row now belongs to another platform
        key = conn.execute("SELECT username, domain FROM subscriber ORDER BY username DESC, "
                           "domain DESC LIMIT 1").fetchone()
        conn.execute("UPDATE subscriber SET platform = 'other' WHERE username = ? AND domain = ?",
                     key)
        conn.execute("DELETE FROM subscriber WHERE username = '1001'")  # the sync would add it
        before = conn.execute("SELECT * FROM subscriber ORDER BY id").fetchall()
    conn.close()
    with pytest.raises(EnvironmentProblem, match="another platform"):
        sync(inv, secrets, db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT * FROM subscriber ORDER BY id").fetchall() == before
    conn.close()


def test_an_unreachable_postgres_is_named_with_exit_9_and_no_password() -> None:
    target = DbTarget.postgres("127.0.0.1", 1, "zpctl", "kamailio", "s3cret-pw")
    with pytest.raises(EnvironmentProblem) as err, connect(target):
        pass
    assert err.value.exit_code == ExitCode.ENVIRONMENT
    assert "postgres://kamailio@127.0.0.1:1/zpctl is unreachable" in err.value.message
    assert "s3cret-pw" not in err.value.message
    assert "s3cret-pw" not in repr(target)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from zpctl.cli.main import main  # noqa: PLC0415

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_cli_migrates_a_file_and_says_where_it_stands(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json  # noqa: PLC0415

    db, inv = str(tmp_path / "p.sqlite"), str(INVENTORIES / "lab")
    code, out, err = _cli(capsys, "-o", "json", "db", "migrate", inv, "--db", db, "--dry-run")
    assert code == 0, err
    assert json.loads(out)["would_apply"] == [f"{m.version:03d}_{m.name}"
                                              for m in schema_mod.MIGRATIONS]
    assert not Path(db).exists()  # a dry run creates nothing
    code, out, err = _cli(capsys, "db", "migrate", inv, "--db", db)
    assert code == 0, err
    assert "applying 001_subscriber" in err and f"applied {LATEST} migration(s)" in out
    code, out, err = _cli(capsys, "-o", "json", "db", "status", inv, "--db", db)
    assert code == 0, err
    assert json.loads(out)["state"] == "current"
    code, out, err = _cli(capsys, "db", "status", inv, "--db", str(tmp_path / "none.sqlite"))
    assert code == ExitCode.ENVIRONMENT and "no such file" in err


def test_a_database_at_version_4_migrates_to_5_keeping_its_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 5 (emergency): subscriber.site and .callback, acc.emergency, all NULL on the
    rows from before; a sync then fills in the subscriber columns."""
    db = tmp_path / "p.sqlite"
    four = tuple(m for m in schema_mod.MIGRATIONS if m.version <= 4)
    monkeypatch.setattr(schema_mod, "MIGRATIONS", four)
    monkeypatch.setattr(schema_mod, "LATEST", 4)
    create_sqlite(db)
    assert _version(db) == 4
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO subscriber (username, domain, ha1) VALUES ('1001', 'a.test', 'h')")
        conn.execute("INSERT INTO acc (method, callid, sip_code, time) "
                     "VALUES ('INVITE', 'c-1', '200', '2026-12-05 10:00:00')")
    conn.close()
    monkeypatch.undo()
    with connect(DbTarget.sqlite(db)) as conn2:
        assert [m.name for m in migrate(conn2, dry_run=True)] == ["emergency"]
        assert [m.version for m in migrate(conn2)] == [5]
        assert {"site", "callback"} <= conn2.columns("subscriber")
        assert "emergency" in conn2.columns("acc")
        assert conn2.execute("SELECT username, site, callback FROM subscriber") == [
            ("1001", None, None)]
        assert conn2.execute("SELECT callid, emergency FROM acc") == [("c-1", None)]
        conn2.execute("INSERT INTO acc (method, callid, sip_code, time, emergency) "
                      "VALUES ('INVITE', 'c-2', '200', '2026-12-05 10:00:00', 'US')")
        assert conn2.execute("SELECT callid FROM acc WHERE emergency IS NOT NULL") == [("c-2",)]
    assert _version(db) == 5 == LATEST
    with sqlite3.connect(db) as conn3:
        assert conn3.execute("SELECT name FROM zpctl_schema WHERE version = 5").fetchone() == (
            "emergency",)
        assert conn3.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                             "name = 'acc_emergency_idx'").fetchone() is not None
    conn3.close()
