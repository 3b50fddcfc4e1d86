"""The platform database's schema as numbered migrations, and the code that applies them.

Each :class:`Migration` is one step from version N-1 to N, written once for both engines
(``{id}`` is the engine's auto-numbered key).  ``zpctl db migrate`` applies the missing
steps in order, each in one transaction with its row in ``zpctl_schema`` (sqlite and
PostgreSQL both roll DDL back), so a database is always at exactly one version.  Code that
reads or writes the database checks the version first (:func:`require_current`): a
database behind zpctl, or ahead of it (a newer zpctl migrated it), is refused with a clear
error rather than half-used.

Version 1 is the subscriber database the zone proxies authenticate against: Kamailio's
own tables (``subscriber`` at table version 7, ``dbaliases`` at 1, and the ``version``
table that modules check at start-up) with the account attributes the proxy loads at
authentication (auth_db ``load_credentials``) as extra subscriber columns: among them
``aor``, the extension a credential may register and call as, and ``srtp``, the media
policy of that client.  Passwords are never stored: only the HA1 hashes.  A sqlite file
made before versions existed (its tables, no ``zpctl_schema``) is adopted by version 1,
which adds the columns it lacks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.db.connect import Db, DbTarget, connect
from zpctl.errors import ExitCode, ZpctlError

VERSION_TABLE = "zpctl_schema"
ID = {"sqlite": "INTEGER PRIMARY KEY NOT NULL", "postgres": "SERIAL PRIMARY KEY NOT NULL"}


class SchemaMismatch(ZpctlError):
    """The database answered, at a schema version this zpctl cannot use (exit 6)."""

    exit_code = ExitCode.REMOTE_ERROR


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # statements separated by ";\n"; {id} is the engine's serial key
    # Work done after the statements, in the same transaction (engine-aware steps).
    after: Callable[[Db], None] | None = field(default=None, compare=False)

    def statements(self, engine: str) -> list[str]:
        text = self.sql.replace("{id}", ID[engine])
        return [s.strip() for s in text.split(";\n") if s.strip()]


# Kamailio's table versions, which its modules check against the ``version`` table.
KAMAILIO_TABLE_VERSIONS = {"version": 1, "subscriber": 7, "dbaliases": 1}

# Columns sqlite files gained before versions existed: a file from then lacks some.
_LEGACY_COLUMNS = (
    ("subscriber", "caller_id", "VARCHAR(32) DEFAULT '' NOT NULL"),
    ("subscriber", "platform", "VARCHAR(32) DEFAULT '' NOT NULL"),
    ("dbaliases", "platform", "VARCHAR(32) DEFAULT '' NOT NULL"),
    ("subscriber", "aor", "VARCHAR(64) DEFAULT '' NOT NULL"),
    ("subscriber", "srtp", "VARCHAR(32) DEFAULT '' NOT NULL"),
)


def set_table_versions(db: Db, versions: dict[str, int]) -> None:
    for table, version in sorted(versions.items()):
        db.execute("DELETE FROM version WHERE table_name = ?", (table,))
        db.execute("INSERT INTO version (table_name, table_version) VALUES (?, ?)", (table, version))


def _subscriber_after(db: Db) -> None:
    for table, column, definition in _LEGACY_COLUMNS:
        if column not in db.columns(table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    set_table_versions(db, KAMAILIO_TABLE_VERSIONS)


SUBSCRIBER = Migration(1, "subscriber", """
CREATE TABLE IF NOT EXISTS version (
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);
CREATE TABLE IF NOT EXISTS subscriber (
    id {id},
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    account VARCHAR(64) DEFAULT '' NOT NULL,
    offering VARCHAR(16) DEFAULT '' NOT NULL,
    region_lock VARCHAR(32) DEFAULT '' NOT NULL,
    calling_plan VARCHAR(32) DEFAULT 'none' NOT NULL,
    country VARCHAR(2) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
);
CREATE INDEX IF NOT EXISTS subscriber_username_idx ON subscriber (username);
CREATE TABLE IF NOT EXISTS dbaliases (
    id {id},
    alias_username VARCHAR(64) DEFAULT '' NOT NULL,
    alias_domain VARCHAR(64) DEFAULT '' NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL
);
CREATE INDEX IF NOT EXISTS dbaliases_alias_idx ON dbaliases (alias_username, alias_domain);
CREATE INDEX IF NOT EXISTS dbaliases_target_idx ON dbaliases (username, domain)
""", after=_subscriber_after)

def _records_after(db: Db) -> None:
    set_table_versions(db, {"acc": 5})


# Version 2: the call records.  ``acc`` is Kamailio's accounting table (table version 5:
# method, tags, Call-ID, SIP code and reason, time) with the columns the lb, the proxies
# and the SBCs add (db_extra, time_mode 2): the hop's node name, when the request arrived
# there (setup_ts) and when its final reply left (time_attr), in seconds since the epoch
# to the microsecond, its source address, users and next hop.  One row per hop and
# transaction: an INVITE's final reply (answered or failed), a BYE's.  ``switch_cdr`` is
# one row per FreeSWITCH channel (mod_cdr_pg_csv, both legs), with the leg it was bridged
# to or originated from, times in microseconds, causes, codecs, SRTP and the media
# quality the switch measured.
RECORDS = Migration(2, "call_records", """
CREATE TABLE IF NOT EXISTS acc (
    id {id},
    method VARCHAR(16) DEFAULT '' NOT NULL,
    from_tag VARCHAR(128) DEFAULT '' NOT NULL,
    to_tag VARCHAR(128) DEFAULT '' NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
    time TIMESTAMP NOT NULL,
    time_attr DOUBLE PRECISION,
    node VARCHAR(64),
    setup_ts DOUBLE PRECISION,
    src_ip VARCHAR(64),
    from_user VARCHAR(64),
    from_domain VARCHAR(128),
    to_user VARCHAR(64),
    ruri_user VARCHAR(64),
    dst VARCHAR(255)
);
CREATE INDEX IF NOT EXISTS acc_callid_idx ON acc (callid);
CREATE INDEX IF NOT EXISTS acc_time_attr_idx ON acc (time_attr);
CREATE TABLE IF NOT EXISTS switch_cdr (
    id {id},
    uuid VARCHAR(64) NOT NULL,
    originator_uuid VARCHAR(64),
    bridged_to VARCHAR(64),
    call_id VARCHAR(255),
    direction VARCHAR(16),
    node VARCHAR(64),
    account VARCHAR(64),
    caller VARCHAR(64),
    destination VARCHAR(64),
    start_us BIGINT,
    answer_us BIGINT,
    end_us BIGINT,
    hangup_cause VARCHAR(64),
    disposition VARCHAR(32),
    sip_status VARCHAR(8),
    read_codec VARCHAR(32),
    write_codec VARCHAR(32),
    srtp VARCHAR(64),
    mos DOUBLE PRECISION,
    jitter DOUBLE PRECISION,
    packets_in BIGINT,
    packets_lost BIGINT,
    packets_out BIGINT,
    recording VARCHAR(255),
    recovered VARCHAR(8)
);
CREATE INDEX IF NOT EXISTS switch_cdr_call_id_idx ON switch_cdr (call_id);
CREATE INDEX IF NOT EXISTS switch_cdr_uuid_idx ON switch_cdr (uuid);
CREATE INDEX IF NOT EXISTS switch_cdr_originator_idx ON switch_cdr (originator_uuid);
CREATE INDEX IF NOT EXISTS switch_cdr_start_idx ON switch_cdr (start_us)
""", after=_records_after)

# Version 3: what the switches know of each account's users (their directory entries and
# the account's dialplan context), one XML document per switch node, section and name
# (the domain, or the context).  ``accounts sync`` writes it; the switches' Lua XML handler
# reads it at each lookup (docs/CDR.md, "The switches' view of a user").
SWITCH_XML = Migration(3, "switch_xml", """
CREATE TABLE IF NOT EXISTS switch_xml (
    node VARCHAR(64) NOT NULL,
    section VARCHAR(16) NOT NULL,
    name VARCHAR(128) NOT NULL,
    platform VARCHAR(32) NOT NULL,
    body TEXT NOT NULL,
    digest VARCHAR(64) NOT NULL,
    updated_at VARCHAR(32) NOT NULL,
    CONSTRAINT switch_xml_key UNIQUE (node, section, name)
)
""")

# Version 4: the media relay's view of a call's quality on the acc rows (a zone proxy's
# BYE: MOS, jitter in ms, loss in %), from the endpoints' RTCP reports.  Text, as acc
# writes every extra: a value PostgreSQL refused to cast would lose the record.
QUALITY = Migration(4, "call_quality", """
ALTER TABLE acc ADD COLUMN mos VARCHAR(8);
ALTER TABLE acc ADD COLUMN jitter_ms VARCHAR(16);
ALTER TABLE acc ADD COLUMN loss_pct VARCHAR(8)
""")

# Version 5: emergency calling.  The zone proxies load a user's site
# (``<account id>/<site id>``: emergency.site_key, where its location document comes from)
# and its callback number (the user's DID, else the site's main number; a device row has
# its user's) at authentication with the other subscriber columns.  A zone proxy marks an
# emergency call's record with the country whose emergency services it went to ("US"),
# and a call those services made back to the caller with "callback"; other hops leave it
# NULL.  The partial index keeps ``cdr ls --emergency`` to the few rows that have it.
EMERGENCY = Migration(5, "emergency", """
ALTER TABLE subscriber ADD COLUMN site TEXT;
ALTER TABLE subscriber ADD COLUMN callback TEXT;
ALTER TABLE acc ADD COLUMN emergency TEXT;
CREATE INDEX IF NOT EXISTS acc_emergency_idx ON acc (callid) WHERE emergency IS NOT NULL
""")

MIGRATIONS: tuple[Migration, ...] = (SUBSCRIBER, RECORDS, SWITCH_XML, QUALITY, EMERGENCY)
LATEST = MIGRATIONS[-1].version


def _ensure_version_table(db: Db) -> None:
    db.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY "
               "NOT NULL, name VARCHAR(64) NOT NULL, applied_at VARCHAR(32) NOT NULL)")


def current_version(db: Db) -> int:
    """The database's schema version: 0 for an empty (or never migrated) database."""
    if VERSION_TABLE not in db.tables():
        return 0
    rows = db.execute(f"SELECT max(version) FROM {VERSION_TABLE}")  # noqa: S608
    return int(rows[0][0] or 0)


@dataclass
class SchemaStatus:
    target: str
    version: int
    latest: int = LATEST
    pending: list[str] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.version > self.latest:
            return "ahead"
        return "current" if self.version == self.latest else "behind"

    def as_dict(self) -> dict[str, Any]:
        return {"database": self.target, "version": self.version, "latest": self.latest,
                "state": self.state, "pending": self.pending, "applied": self.applied}


def status(db: Db) -> SchemaStatus:
    version = current_version(db)
    applied = []
    if version:
        rows = db.execute(f"SELECT version, name, applied_at FROM {VERSION_TABLE} "  # noqa: S608
                          "ORDER BY version")
        applied = [{"version": v, "name": n, "applied_at": a} for v, n, a in rows]
    return SchemaStatus(db.target.label, version,
                        pending=[f"{m.version:03d}_{m.name}" for m in MIGRATIONS
                                 if m.version > version], applied=applied)


def migrate(db: Db, dry_run: bool = False,
            progress: Callable[[Migration], None] | None = None) -> list[Migration]:
    """Apply the migrations the database lacks, each in its own transaction; the ones
    applied (or, dry run, the ones that would be)."""
    version = current_version(db)
    if version > LATEST:
        raise SchemaMismatch(f"database {db.target.label} is at schema version {version}, "
                             f"newer than this zpctl's {LATEST}: upgrade zpctl")
    todo = [m for m in MIGRATIONS if m.version > version]
    if dry_run:
        return todo
    for m in todo:
        if progress is not None:
            progress(m)
        with db.transaction():
            _ensure_version_table(db)
            for statement in m.statements(db.target.engine):
                db.execute(statement)
            if m.after is not None:
                m.after(db)
            db.execute(f"INSERT INTO {VERSION_TABLE} (version, name, applied_at) "  # noqa: S608
                       "VALUES (?, ?, ?)",
                       (m.version, m.name, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))
    return todo


def require_current(db: Db) -> None:
    """Refuse a database at another schema version than this zpctl's (exit 6)."""
    version = current_version(db)
    if version == LATEST:
        return
    if version > LATEST:
        raise SchemaMismatch(f"database {db.target.label} is at schema version {version}, "
                             f"newer than this zpctl's {LATEST}: upgrade zpctl")
    raise SchemaMismatch(f"database {db.target.label} is at schema version {version}, "
                         f"zpctl needs {LATEST}: run `zpctl db migrate`")


def create_sqlite(path: Path) -> None:
    """Create (or complete, or migrate) the sqlite subscriber database at ``path``;
    idempotent.  A new file is mode 0600 in a new 0700 folder; an existing one keeps its
    mode (a host's Kamailio may read it through its group)."""
    with connect(DbTarget.sqlite(path), create=True) as db:
        migrate(db)
