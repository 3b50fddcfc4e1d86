"""Local survivability: what a site's node holds, and where its phones are.

**Sync** copies the site's users from the cloud's state (the platform database's subscriber
rows: user names, HA1 hashes, the extension each credential acts as; never a password)
into the node's own sqlite file, in one transaction, with a record of when and from where
(table ``zp_site``).  The node's Kamailio reads the users at each authentication, so a sync
is live at once; it reads the record into memory (htable ``site``), and sync asks it to
read it again over JSON-RPC, so that status reports what the node itself holds.

**Status** asks the node (the record, and the contacts it holds) and the cloud (the zone
proxies of the site's data center: which of the site's users are registered there) and
names the site's state:

- ``cloud``: no phone of the site is registered at the node;
- ``survivable``: phones are registered at the node and none in the cloud (or the cloud
  does not answer);
- ``returning``: phones are registered in both (the link is back, and phones are moving
  home, each at its next probe);
- ``unknown``: the node does not answer.

Its problems (no users synced, data older than ``max_sync_age_hours``, a node that does
not answer) come back as a list: ``zpctl survivability status`` exits 7 when there is one.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.control import Control
from zpctl.db import Db, DbTarget, connect, require_current
from zpctl.db.schema import KAMAILIO_TABLE_VERSIONS
from zpctl.errors import EnvironmentProblem, ExitCode, RemoteFailure, ZpctlError
from zpctl.freeswitch.prompts import Outcome, generate
from zpctl.model import LoadedInventory
from zpctl.model.schema import Node, Role
from zpctl.model.survivable import ANNOUNCEMENT, ANNOUNCEMENT_TEXT, SurvivableSite

SITE_TABLE = "zp_site"  # the sync record, as Kamailio's htable module loads a table
HTABLE_VERSION = 2  # the htable table version Kamailio's htable module expects

_NODE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS version (
    table_name VARCHAR(32) NOT NULL PRIMARY KEY,
    table_version INTEGER DEFAULT 0 NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriber (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    aor VARCHAR(64) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_idx UNIQUE (username, domain)
);
CREATE TABLE IF NOT EXISTS {SITE_TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_name VARCHAR(64) DEFAULT '' NOT NULL,
    key_type INTEGER DEFAULT 0 NOT NULL,
    value_type INTEGER DEFAULT 0 NOT NULL,
    key_value VARCHAR(128) DEFAULT '' NOT NULL,
    expires INTEGER DEFAULT 0 NOT NULL
);
"""


@dataclass
class SyncReport:
    site: str
    node: str
    to: str  # the node's file
    source: str  # the cloud database it read
    users: int  # the site's users the cloud has
    credentials: int  # rows written: users and their devices
    missing: list[str] = field(default_factory=list)  # site users the cloud does not have
    changed: bool = False
    synced_at: int = 0
    digest: str = ""
    dry_run: bool = False
    node_reloaded: bool | None = None  # None: not asked (dry run)
    node_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cloud_rows(db: Db, site: SurvivableSite) -> list[tuple[str, str, str, str, str]]:
    """The site's credentials in the cloud's subscriber table: (username, domain, ha1,
    ha1b, aor) of every user of the site and of each of their devices."""
    exts = site.extensions
    marks = ",".join("?" for _ in exts)
    rows = db.execute(f"SELECT username, domain, ha1, ha1b, aor FROM subscriber "  # noqa: S608 - placeholders only
                      f"WHERE domain = ? AND aor IN ({marks}) ORDER BY username",
                      (site.domain, *exts))
    return [(str(u), str(d), str(h), str(hb), str(a)) for u, d, h, hb, a in rows]


def _digest(rows: list[tuple[str, str, str, str, str]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update("\x1f".join(row).encode() + b"\x1e")
    return h.hexdigest()[:16]


@contextmanager
def _node_db(path: Path) -> Iterator[sqlite3.Connection]:
    """The node's file, open (created 0640 first when missing: HA1 hashes are as good as
    passwords in the account's realm); every failure an EnvironmentProblem (exit 9)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o640))
        conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise EnvironmentProblem(f"{path}: {exc}") from None
    with closing(conn):
        yield conn


def _write(path: Path, work: Callable[[sqlite3.Connection], None], what: str) -> None:
    """``work`` in one transaction on the node's file: all of it or none (exit 9, the file
    as it was, when sqlite refuses)."""
    with _node_db(path) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
            work(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise EnvironmentProblem(f"{path}: {exc}; {what}") from None


def create_node_db(path: Path) -> None:
    """The node's file with its tables and no users (idempotent): the node starts on it,
    refuses every phone, and status reports that nothing was synced."""
    _write(path, _create_tables, "nothing was changed")


def _create_tables(conn: sqlite3.Connection) -> None:
    for statement in _NODE_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    for table, version in (("subscriber", KAMAILIO_TABLE_VERSIONS["subscriber"]),
                           (SITE_TABLE, HTABLE_VERSION)):
        conn.execute("INSERT OR REPLACE INTO version (table_name, table_version) "
                     "VALUES (?, ?)", (table, version))


def prepare_announcer(state: Path, language: str) -> Outcome:
    """The announcer's folders under the node's state folder, and its announcement spoken
    in the site's language (espeak-ng, :mod:`zpctl.freeswitch.prompts`)."""
    for sub in ("sounds", "recordings", "storage", "cache"):
        (state / "freeswitch" / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    return generate(state / "freeswitch" / "sounds" / ANNOUNCEMENT, ANNOUNCEMENT_TEXT, language)


def read_record(path: Path) -> dict[str, str]:
    """The sync record in the node's file ({} when there is none)."""
    if not path.exists():
        return {}
    with _node_db(path) as conn:
        try:
            rows = conn.execute(f"SELECT key_name, key_value FROM {SITE_TABLE}").fetchall()  # noqa: S608 - constant
        except sqlite3.Error:
            return {}
    return {str(k): str(v) for k, v in rows}


def sync(inv: LoadedInventory, site: SurvivableSite, source: DbTarget, to: Path,
         control: Control | None, dry_run: bool = False, now: float | None = None
         ) -> SyncReport:
    """Copy ``site``'s credentials from the cloud database ``source`` into the node's file
    ``to`` (one transaction), then ask the node to read the sync record again."""
    with connect(source) as db:
        require_current(db)
        rows = cloud_rows(db, site)
    have = {r[4] for r in rows}
    report = SyncReport(site.where, site.config.node, str(to), source.label,
                        len(have), len(rows), [e for e in site.extensions if e not in have],
                        dry_run=dry_run)
    report.digest = _digest(rows)
    old = read_record(to)
    report.changed = old.get("digest") != report.digest
    if dry_run:
        return report
    if not rows:
        raise ZpctlError(f"{source.label} has none of site {site.where}'s users: run "
                         "`zpctl accounts sync` first; the node keeps what it has",
                         ExitCode.ENVIRONMENT)
    report.synced_at = int(now if now is not None else time.time())
    record = {"synced_at": (1, str(report.synced_at)), "users": (1, str(len(have))),
              "credentials": (1, str(len(rows))), "digest": (0, report.digest),
              "source": (0, source.label[:128]), "site": (0, site.where)}
    def write(conn: sqlite3.Connection) -> None:
        _create_tables(conn)
        conn.execute("DELETE FROM subscriber")
        conn.executemany("INSERT INTO subscriber (username, domain, ha1, ha1b, aor) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute(f"DELETE FROM {SITE_TABLE}")  # noqa: S608 - constant
        conn.executemany(f"INSERT INTO {SITE_TABLE} (key_name, value_type, key_value) "  # noqa: S608 - constant
                         "VALUES (?, ?, ?)", [(k, t, v) for k, (t, v) in record.items()])
    _write(to, write, "the node keeps what it had")
    if control is not None:
        node = inv.node(site.config.node).node
        try:
            control.call(node, "htable.reload", "site")
            report.node_reloaded = True
        except ZpctlError as exc:
            report.node_reloaded = False
            report.node_error = str(exc)
    return report


def _site_contacts(control: Control, site: SurvivableSite, proxy: Any) -> dict[str, int]:
    """The site's extensions with a contact at ``proxy`` (a zone proxy or the node), each
    with the time its freshest contact was registered or refreshed (Last-Modified)."""
    exts = set(site.extensions)
    out: dict[str, int] = {}
    for aor, contacts in control.contacts(proxy).items():
        user, _, domain = aor.partition("@")
        if domain == site.domain and user in exts and contacts:
            out[user] = max(int(c.get("Last-Modified") or 0) for c in contacts)
    return out


def _record_item(control: Control, node: Node, key: str) -> str | None:
    """One item of the sync record as the node holds it in memory; None when it has none
    (a node never synced: htable.get answers an absent key with the fault "Key name
    doesn't exist", code 500)."""
    try:
        got = control.call(node, "htable.get", "site", key)
    except RemoteFailure as exc:
        if "Key name doesn't exist" in str(exc):
            return None
        raise
    value = got.get("item", {}).get("value") if isinstance(got, dict) else None
    return None if value is None else str(value)


def status(inv: LoadedInventory, site: SurvivableSite, control: Control,
           now: float | None = None) -> dict[str, Any]:
    """Where the site's phones are, and what its node holds (module docstring)."""
    now = now if now is not None else time.time()
    node = inv.node(site.config.node).node
    problems: list[str] = []
    at_node: dict[str, int] | None = None
    record: dict[str, str] = {}
    try:
        at_node = _site_contacts(control, site, node)
        for key in ("synced_at", "users", "digest", "source"):
            value = _record_item(control, node, key)
            if value is not None:
                record[key] = value
    except ZpctlError as exc:
        problems.append(f"node {node.name} does not answer: {exc}")
    in_cloud: dict[str, int] = {}
    dc = inv.dc(site.site.datacenter)
    answered = False
    for zname in sorted(dc.zones):
        proxy = inv.zone_node(dc, zname, Role.PROXY)
        if proxy is None:
            continue
        try:
            for ext, at in _site_contacts(control, site, proxy).items():
                in_cloud[ext] = max(at, in_cloud.get(ext, 0))
            answered = True
        except ZpctlError:
            continue
    # A phone is where it registered last: the cloud keeps a phone that moved to the node
    # until that registration expires, and the node one that went home until it says so.
    local = None if at_node is None else {e for e, at in at_node.items()
                                           if at >= in_cloud.get(e, 0)}
    cloud = None if not answered else {e for e, at in in_cloud.items()
                                       if at > (at_node or {}).get(e, 0)}
    synced_at = int(record["synced_at"]) if record.get("synced_at", "").isdigit() else None
    age = None if synced_at is None else max(0, int(now) - synced_at)
    limit = site.config.max_sync_age_hours * 3600
    if local is not None:
        if synced_at is None or record.get("users", "0") == "0":
            problems.append(f"node {node.name} has no users synced: run `zpctl survivability "
                            f"sync {site.where}`; in an outage no phone could register there")
        elif age is not None and age > limit:
            problems.append(f"node {node.name}'s users were synced {age // 3600} h ago, over "
                            f"the limit of {site.config.max_sync_age_hours} h "
                            "(max_sync_age_hours): run `zpctl survivability sync`")
    if local is None:
        state = "unknown"
    elif not local:
        state = "cloud"
    elif cloud:
        state = "returning"
    else:
        state = "survivable"
    return {
        "site": site.where, "node": node.name, "state": state,
        "synced_at": synced_at, "sync_age_s": age, "max_sync_age_s": limit,
        "users_synced": int(record["users"]) if record.get("users", "").isdigit() else None,
        "users": len(site.extensions),
        "registered_locally": sorted(local) if local is not None else None,
        "registered_in_cloud": sorted(cloud) if cloud is not None else None,
        "cloud_answered": cloud is not None,
        "problems": problems,
    }
