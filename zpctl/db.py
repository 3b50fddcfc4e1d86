"""The subscriber database that the zone proxies authenticate against.

Kamailio's own tables (``subscriber`` at table version 7, ``dbaliases`` at 1, and the
``version`` table that modules check at start-up), with the account attributes the proxy
loads at authentication (auth_db ``load_credentials``) as extra subscriber columns: among
them ``aor``, the extension a credential may register and call as (a provisioned device has
credentials of its own), and ``srtp``, the media policy of that client (a suite or "plain").  Passwords
are never stored: only the HA1 hashes (``MD5(user:realm:password)``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS version (
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);
CREATE TABLE IF NOT EXISTS subscriber (
    id INTEGER PRIMARY KEY NOT NULL,
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
    caller_id VARCHAR(32) DEFAULT '' NOT NULL,
    platform VARCHAR(32) DEFAULT '' NOT NULL,
    aor VARCHAR(64) DEFAULT '' NOT NULL,
    srtp VARCHAR(32) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
);
CREATE INDEX IF NOT EXISTS subscriber_username_idx ON subscriber (username);
CREATE TABLE IF NOT EXISTS dbaliases (
    id INTEGER PRIMARY KEY NOT NULL,
    alias_username VARCHAR(64) DEFAULT '' NOT NULL,
    alias_domain VARCHAR(64) DEFAULT '' NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    platform VARCHAR(32) DEFAULT '' NOT NULL
);
CREATE INDEX IF NOT EXISTS dbaliases_alias_idx ON dbaliases (alias_username, alias_domain);
CREATE INDEX IF NOT EXISTS dbaliases_target_idx ON dbaliases (username, domain);
"""

TABLE_VERSIONS = {"version": 1, "subscriber": 7, "dbaliases": 1}


# Columns added since the first schema: (table, column, definition), applied when missing.
MIGRATIONS = (
    ("subscriber", "caller_id", "VARCHAR(32) DEFAULT '' NOT NULL"),
    ("subscriber", "platform", "VARCHAR(32) DEFAULT '' NOT NULL"),
    ("dbaliases", "platform", "VARCHAR(32) DEFAULT '' NOT NULL"),
    ("subscriber", "aor", "VARCHAR(64) DEFAULT '' NOT NULL"),
    ("subscriber", "srtp", "VARCHAR(32) DEFAULT '' NOT NULL"),
)


def create_sqlite(path: Path) -> None:
    """Create (or complete, or migrate) the subscriber database at ``path``; idempotent.

    A new database is created mode 0600 (in a new folder 0700): its HA1 hashes are as good
    as passwords.  SQLite gives its journal the database's mode.  An existing file keeps its
    mode (a host's Kamailio may read it through its group).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        for table, column, definition in MIGRATIONS:
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        conn.executemany(
            "INSERT OR REPLACE INTO version (table_name, table_version) VALUES (?, ?)",
            sorted(TABLE_VERSIONS.items()),
        )
    conn.close()
