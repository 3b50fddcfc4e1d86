"""survivability sync: the site's credentials (HA1 hashes, never a password) copied from the
cloud's database into the node's own sqlite file, in one transaction, with a sync record;
and the node's file before any sync.  Against a running node in
tests/integration/test_survivability.py."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest

from zpctl import accounts
from zpctl.control import Control
from zpctl.db import DbTarget
from zpctl.db.schema import KAMAILIO_TABLE_VERSIONS
from zpctl.errors import ExitCode, RemoteFailure, ZpctlError
from zpctl.model import LoadedInventory, load_inventory
from zpctl.model.schema import Node
from zpctl.model.survivable import SurvivableSite, find_site
from zpctl.secrets import Secrets
from zpctl.survivability import SITE_TABLE, create_node_db, read_record, status, sync

# The survivability tests' platform (tests/integration/test_survivability.py).
SITE_MINI = Path(__file__).parents[1] / "integration" / "fixtures" / "site-mini"
LAB_FIXTURE = Path(__file__).parent / "fixtures" / "lab"
DOMAIN = "sitecorp.site.zpctl.test"
SITE_USERS = [str(e) for e in range(2001, 2021)]
NOW = 1_800_000_000
# Neighbours the node must not get: a user of another site of the account, and an
# account of the same data center with one of the site's extensions.
BRANCH = """  - id: branch
    name: Branch
    datacenter: sm1
    timezone: UTC
    country: US
    emergency_address: {street: 2 Test Way, city: Test City, postal_code: '00002', country: US, state: NY}
numbers:
  - {number: '+15550200002', kind: main, site: branch}
"""
OTHERCORP = """id: othercorp
name: Other Corp
cluster: US01
offering: native
sites:
  - id: main
    name: Main
    datacenter: sm1
    timezone: UTC
    country: US
    emergency_address: {street: 3 Test Way, city: Test City, postal_code: '00003', country: US, state: NY}
numbers:
  - {number: '+15550300001', kind: main, site: main}
users:
  - {extension: '2001', name: Other 1, site: main}
"""


@pytest.fixture
def inv(tmp_path: Path) -> LoadedInventory:
    root = tmp_path / "inv"
    shutil.copytree(SITE_MINI, root)
    acct = root / "accounts" / "sitecorp.yml"
    text = acct.read_text(encoding="utf-8")
    assert text.count("numbers:\n") == 1
    text = text.replace("numbers:\n", BRANCH)
    last = "  - {extension: '2020', name: User 20, site: hq, calling_plan: metered}\n"
    assert text.count(last) == 1
    text = text.replace(last, last + "  - {extension: '2021', name: User 21, site: branch, "
                                     "calling_plan: metered}\n")
    acct.write_text(text, encoding="utf-8")
    (root / "accounts" / "othercorp.yml").write_text(OTHERCORP, encoding="utf-8")
    return load_inventory(root)


@pytest.fixture
def secrets(tmp_path: Path) -> Secrets:
    return Secrets(tmp_path / "s.yml")


@pytest.fixture
def cloud(tmp_path: Path, inv: LoadedInventory, secrets: Secrets) -> Path:
    """The platform database, as `zpctl accounts sync` writes it."""
    db = tmp_path / "cloud.sqlite"
    accounts.sync(inv, secrets, db)
    return db


@pytest.fixture
def site(inv: LoadedInventory) -> SurvivableSite:
    return find_site(inv.model, "sitecorp/hq")


def _subscribers(db: Path) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(username, domain) -> (ha1, ha1b, aor)."""
    with sqlite3.connect(db) as conn:
        return {(u, d): (h, hb, a) for u, d, h, hb, a in conn.execute(
            "SELECT username, domain, ha1, ha1b, aor FROM subscriber")}


def test_sync_copies_the_site_users_hashes_and_nothing_else(
        tmp_path: Path, inv: LoadedInventory, secrets: Secrets, cloud: Path,
        site: SurvivableSite) -> None:
    """20 users, only the site's (not the other site's 2021, not the other account's
    2001), with the cloud's HA1 hashes; no password anywhere in the node's file."""
    node = tmp_path / "node" / "survivability.sqlite"
    report = sync(inv, site, DbTarget.sqlite(cloud), node, control=None, now=NOW)
    assert (report.users, report.credentials, report.missing) == (20, 20, [])
    assert report.changed is True and report.dry_run is False
    assert report.node_reloaded is None  # no control: nobody asked
    assert report.source == f"sqlite:{cloud}"

    theirs = _subscribers(cloud)
    assert ("2021", DOMAIN) in theirs and ("2001", "othercorp.site.zpctl.test") in theirs
    mine = _subscribers(node)
    assert sorted(mine) == [(u, DOMAIN) for u in SITE_USERS]
    assert mine == {k: theirs[k] for k in mine}  # the cloud's HA1 and HA1b, the aor
    assert all(aor == user for (user, _), (_, _, aor) in mine.items())
    assert node.stat().st_mode & 0o777 == 0o640

    data = node.read_bytes()
    users = [u for u in accounts.sip_users(inv, secrets) if u.domain == DOMAIN]
    assert len(users) == 21 and all(u.password for u in users)
    for u in users:
        assert u.password.encode() not in data, u.username

    record = read_record(node)
    assert record == {"synced_at": str(NOW), "users": "20", "credentials": "20",
                      "digest": report.digest, "source": f"sqlite:{cloud}",
                      "site": "sitecorp/hq"}
    assert report.synced_at == NOW and len(report.digest) == 16


def test_a_second_sync_changes_nothing_until_the_cloud_does(
        tmp_path: Path, inv: LoadedInventory, cloud: Path, site: SurvivableSite) -> None:
    """The digest of the site's rows says whether anything changed; a new HA1 in the
    cloud (a password reset) reaches the node with the next sync."""
    node = tmp_path / "node.sqlite"
    first = sync(inv, site, DbTarget.sqlite(cloud), node, control=None, now=NOW)
    again = sync(inv, site, DbTarget.sqlite(cloud), node, control=None, now=NOW + 60)
    assert again.changed is False
    assert again.digest == first.digest
    assert read_record(node)["synced_at"] == str(NOW + 60)
    assert len(_subscribers(node)) == 20

    with sqlite3.connect(cloud) as conn:
        conn.execute("UPDATE subscriber SET ha1 = ? WHERE username = '2005' AND domain = ?",
                     ("0" * 32, DOMAIN))
    third = sync(inv, site, DbTarget.sqlite(cloud), node, control=None, now=NOW + 120)
    assert third.changed is True and third.digest != first.digest
    assert _subscribers(node)[("2005", DOMAIN)][0] == "0" * 32
    assert read_record(node)["digest"] == third.digest


def test_a_dry_run_writes_nothing(tmp_path: Path, inv: LoadedInventory, cloud: Path,
                                  site: SurvivableSite) -> None:
    """A dry run reports what a sync would copy and leaves the node's file alone: not
    created when there is none, not touched when there is one."""
    node = tmp_path / "node.sqlite"
    report = sync(inv, site, DbTarget.sqlite(cloud), node, control=None, dry_run=True)
    assert (report.users, report.changed, report.dry_run) == (20, True, True)
    assert report.synced_at == 0
    assert not node.exists()

    sync(inv, site, DbTarget.sqlite(cloud), node, control=None, now=NOW)
    before = node.read_bytes()
    with sqlite3.connect(cloud) as conn:
        conn.execute("DELETE FROM subscriber WHERE username = '2020' AND domain = ?", (DOMAIN,))
    report = sync(inv, site, DbTarget.sqlite(cloud), node, control=None, dry_run=True,
                  now=NOW + 60)
    assert (report.users, report.missing, report.changed) == (19, ["2020"], True)
    assert node.read_bytes() == before


def test_a_cloud_without_the_site_users_is_refused_and_the_node_keeps_its_data(
        tmp_path: Path, inv: LoadedInventory, secrets: Secrets, cloud: Path,
        site: SurvivableSite) -> None:
    """A database with none of the site's users (another platform's, or never synced)
    would leave the site's phones nowhere to register: an error of the environment (exit
    9, not 1: no bug), and the node's file is as it was (or still absent)."""
    elsewhere = tmp_path / "other.sqlite"
    accounts.sync(load_inventory(LAB_FIXTURE), secrets, elsewhere)
    assert _subscribers(elsewhere)  # a database with users, none of them the site's

    fresh = tmp_path / "fresh.sqlite"
    with pytest.raises(ZpctlError, match=r"has none of site sitecorp/hq's users") as info:
        sync(inv, site, DbTarget.sqlite(elsewhere), fresh, control=None, now=NOW)
    assert info.value.exit_code == ExitCode.ENVIRONMENT
    assert not fresh.exists()

    node = tmp_path / "node.sqlite"
    sync(inv, site, DbTarget.sqlite(cloud), node, control=None, now=NOW)
    before = node.read_bytes()
    with pytest.raises(ZpctlError, match=r"the node keeps what it has"):
        sync(inv, site, DbTarget.sqlite(elsewhere), node, control=None, now=NOW + 60)
    assert node.read_bytes() == before
    assert read_record(node)["synced_at"] == str(NOW)


class _Control:
    """Records JSON-RPC calls; fails them with ``error`` when given."""

    def __init__(self, error: str = "") -> None:
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []
        self.error = error

    def call(self, node: Node, method: str, *params: Any) -> Any:
        self.calls.append((node.name, method, params))
        if self.error:
            raise ZpctlError(self.error)
        return {}


def test_the_node_is_asked_to_read_the_record_again(
        tmp_path: Path, inv: LoadedInventory, cloud: Path, site: SurvivableSite) -> None:
    """After the write, the node reloads its htable; a node that does not answer keeps the
    written data and the report says so."""
    ok = _Control()
    report = sync(inv, site, DbTarget.sqlite(cloud), tmp_path / "a.sqlite",
                  control=cast(Control, ok), now=NOW)
    assert ok.calls == [("sm1-hq-local", "htable.reload", ("site",))]
    assert (report.node_reloaded, report.node_error) == (True, "")

    down = _Control("connection refused")
    report = sync(inv, site, DbTarget.sqlite(cloud), tmp_path / "b.sqlite",
                  control=cast(Control, down), now=NOW)
    assert (report.node_reloaded, report.node_error) == (False, "connection refused")
    assert len(_subscribers(tmp_path / "b.sqlite")) == 20

    dry = _Control()
    sync(inv, site, DbTarget.sqlite(cloud), tmp_path / "c.sqlite", control=cast(Control, dry),
         dry_run=True)
    assert dry.calls == []


def _tables(db: Path) -> dict[str, set[str]]:
    with sqlite3.connect(db) as conn:
        names = [n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {n: {c[1] for c in conn.execute(f"PRAGMA table_info({n})")} for n in names}


def test_create_node_db_gives_kamailio_its_tables_and_is_idempotent(
        tmp_path: Path, inv: LoadedInventory, cloud: Path, site: SurvivableSite) -> None:
    """The tables auth_db (subscriber: username, domain, ha1, aor) and htable (zp_site)
    read, with the version rows Kamailio checks; no users and no record before a sync; a
    second create keeps what a sync wrote."""
    node = tmp_path / "state" / "survivability.sqlite"
    create_node_db(node)
    create_node_db(node)
    tables = _tables(node)
    assert set(tables) == {"version", "subscriber", SITE_TABLE}
    assert {"username", "domain", "ha1", "ha1b", "aor"} <= tables["subscriber"]
    assert "password" not in tables["subscriber"]
    assert tables[SITE_TABLE] >= {"key_name", "key_type", "value_type", "key_value", "expires"}
    with sqlite3.connect(node) as conn:
        versions = dict(conn.execute("SELECT table_name, table_version FROM version"))
        # subscriber as the platform database has it; htable's own table version is 2
        assert versions == {"subscriber": KAMAILIO_TABLE_VERSIONS["subscriber"], SITE_TABLE: 2}
        assert conn.execute("SELECT count(*) FROM subscriber").fetchone() == (0,)
    assert read_record(node) == {}
    assert node.stat().st_mode & 0o777 == 0o640

    sync(inv, site, DbTarget.sqlite(cloud), node, control=None, now=NOW)
    create_node_db(node)  # a deploy again: the synced users stay
    assert len(_subscribers(node)) == 20
    assert read_record(node)["users"] == "20"


def test_read_record_of_no_file_creates_none(tmp_path: Path) -> None:
    """Status on a node never set up: an empty record, and no file appears."""
    assert read_record(tmp_path / "none.sqlite") == {}
    assert not (tmp_path / "none.sqlite").exists()


class _Where:
    """The contacts (``ul.dump``) and the sync record (``htable.get``) of a node and the
    cloud's proxies, as a fake Control serves them; a node name in ``down`` does not answer."""

    def __init__(self, contacts: dict[str, dict[str, int]], record: dict[str, str],
                 down: tuple[str, ...] = ()) -> None:
        self.contacts_by_node, self.record, self.down = contacts, record, down

    def contacts(self, node: Node) -> dict[str, list[dict[str, Any]]]:
        if node.name in self.down:
            raise ZpctlError(f"{node.name}: connection refused", ExitCode.UNREACHABLE)
        return {f"{ext}@{DOMAIN}": [{"Last-Modified": at}]
                for ext, at in self.contacts_by_node.get(node.name, {}).items()}

    def call(self, node: Node, method: str, *params: Any) -> Any:
        assert method == "htable.get", method
        if node.name in self.down:
            raise ZpctlError(f"{node.name}: connection refused", ExitCode.UNREACHABLE)
        if params[1] not in self.record:
            raise RemoteFailure(f"{node.name}: htable.get: remote error 500: "
                                "Key name doesn't exist in htable")
        return {"item": {"name": params[1], "value": self.record[params[1]]}}


RECORD = {"synced_at": str(NOW), "users": "20", "digest": "x", "source": "sqlite:cloud"}


@pytest.mark.parametrize(("node", "cloud", "down", "state", "local", "in_cloud"), [
    # nobody at the node
    ({}, {"2001": NOW, "2002": NOW}, (), "cloud", [], ["2001", "2002"]),
    # at the node since the cut; the cloud still holds their older contacts
    ({"2001": NOW + 10, "2002": NOW + 11}, {"2001": NOW, "2002": NOW}, (), "survivable",
     ["2001", "2002"], []),
    # the cloud does not answer (seen from the site during the outage)
    ({"2001": NOW + 10}, {}, ("sm1-a-proxy", "sm1-b-proxy"), "survivable", ["2001"], None),
    # the link is back: 2001 home again, 2002 not yet
    ({"2001": NOW + 10, "2002": NOW + 11}, {"2001": NOW + 60, "2002": NOW}, (), "returning",
     ["2002"], ["2001"]),
    # the node does not answer
    ({}, {"2001": NOW}, ("sm1-hq-local",), "unknown", None, ["2001"]),
])
def test_status_places_each_phone_where_it_registered_last(
        inv: LoadedInventory, site: SurvivableSite, node: dict[str, int],
        cloud: dict[str, int], down: tuple[str, ...], state: str, local: list[str] | None,
        in_cloud: list[str] | None) -> None:
    # zone a's proxy holds the cloud's contacts (DMQ would copy them to zone b's)
    fake = _Where({"sm1-hq-local": node, "sm1-a-proxy": cloud}, RECORD, down)
    st = status(inv, site, cast(Control, fake), now=NOW + 120)
    assert (st["state"], st["registered_locally"], st["registered_in_cloud"]) == \
        (state, local, in_cloud)
    assert st["cloud_answered"] is (in_cloud is not None)


def test_status_names_an_empty_or_stale_node_and_one_that_does_not_answer(
        inv: LoadedInventory, site: SurvivableSite) -> None:
    never = status(inv, site, cast(Control, _Where({}, {})), now=NOW)
    assert [p for p in never["problems"] if "no users synced" in p] == never["problems"] != []
    limit = site.config.max_sync_age_hours * 3600
    fresh = status(inv, site, cast(Control, _Where({}, RECORD)), now=NOW + limit)
    assert fresh["problems"] == [] and fresh["sync_age_s"] == limit
    stale = status(inv, site, cast(Control, _Where({}, RECORD)), now=NOW + limit + 1)
    assert len(stale["problems"]) == 1 and "over the limit of 24 h" in stale["problems"][0]
    gone = status(inv, site, cast(Control, _Where({}, RECORD, ("sm1-hq-local",))), now=NOW)
    assert len(gone["problems"]) == 1 and "does not answer" in gone["problems"][0]
