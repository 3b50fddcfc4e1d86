"""accounts sync: creates, updates and removes subscribers; only HA1 hashes are stored."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

from tests.conftest import INVENTORIES
from zpctl.accounts import sip_users, sync
from zpctl.model import load_inventory
from zpctl.secrets import Secrets

LAB_FIXTURE = Path(__file__).parent / "fixtures" / "lab"


def _rows(db: Path) -> dict[str, tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return {f"{u}@{d}": (ha1, plan, pw) for u, d, ha1, plan, pw in conn.execute(
            "SELECT username, domain, ha1, calling_plan, password FROM subscriber")}


def test_sync_creates_updates_removes(tmp_path: Path) -> None:
    inv_dir = tmp_path / "inv"
    shutil.copytree(LAB_FIXTURE, inv_dir)
    secrets = Secrets(tmp_path / "s.yml")
    db = tmp_path / "sub.sqlite"
    first = sync(load_inventory(inv_dir), secrets, db)
    assert len(first.created) == 8
    assert first.aliases == 4
    rows = _rows(db)
    # HA1 = MD5(user:realm:password); the password column stays empty.
    u = next(x for x in sip_users(load_inventory(inv_dir), secrets) if x.username == "1001")
    want = hashlib.md5(f"1001:{u.domain}:{u.password}".encode()).hexdigest()
    assert rows[f"1001@{u.domain}"] == (want, "unlimited", "")
    assert all(pw == "" for _, _, pw in rows.values())
    assert all(u.password not in str(r) for r in rows.values())

    again = sync(load_inventory(inv_dir), secrets, db)
    assert (again.created, again.updated, again.removed, again.unchanged) == ([], [], [], 8)

    acme = inv_dir / "accounts" / "acme.yml"
    old = "calling_plan: none   # no calling plan: internal calls only, PSTN refused"
    text = acme.read_text().replace(old, "calling_plan: metered")
    # remove Dave (1004)
    text = text[:text.index('  - extension: "1004"')]
    acme.write_text(text)
    third = sync(load_inventory(inv_dir), secrets, db)
    assert third.updated == [f"1003@{u.domain}"]
    assert third.removed == [f"1004@{u.domain}"]
    assert _rows(db)[f"1003@{u.domain}"][1] == "metered"


def test_other_platforms_rows_are_kept(tmp_path: Path) -> None:
    secrets = Secrets(tmp_path / "s.yml")
    db = tmp_path / "sub.sqlite"
    sync(load_inventory(LAB_FIXTURE), secrets, db)
    eu = load_inventory(Path(__file__).parents[1] / "integration" / "fixtures" / "eu-mini")
    res = sync(eu, secrets, db)
    assert res.created == ["5001@eurobank.eu.lab.zpctl.test"]
    assert len(_rows(db)) == 9
    # Syncing the lab again removes nothing of the other platform.
    assert sync(load_inventory(LAB_FIXTURE), secrets, db).removed == []
    assert "5001@eurobank.eu.lab.zpctl.test" in _rows(db)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "sub.sqlite"
    res = sync(load_inventory(INVENTORIES / "lab"), Secrets(tmp_path / "s.yml"), db, dry_run=True)
    assert len(res.created) == 1008
    assert not db.exists()
