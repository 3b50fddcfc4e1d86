"""accounts sync: creates, updates and removes subscribers; only HA1 hashes are stored."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.accounts import sip_devices, sip_users, sync
from zpctl.model import load_inventory
from zpctl.model.schema import Role
from zpctl.render import render
from zpctl.render.freeswitch import voicemail_pin
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
    assert len(first.created) == 8 + 4  # users, and devices with credentials of their own
    assert first.aliases == 4
    rows = _rows(db)
    # HA1 = MD5(user:realm:password); the password column stays empty.
    u = next(x for x in sip_users(load_inventory(inv_dir), secrets) if x.username == "1001")
    want = hashlib.md5(f"1001:{u.domain}:{u.password}".encode()).hexdigest()
    assert rows[f"1001@{u.domain}"] == (want, "unlimited", "")
    assert all(pw == "" for _, _, pw in rows.values())
    assert all(u.password not in str(r) for r in rows.values())

    again = sync(load_inventory(inv_dir), secrets, db)
    assert (again.created, again.updated, again.removed, again.unchanged) == ([], [], [], 12)

    acme = inv_dir / "accounts" / "acme.yml"
    old = "calling_plan: none   # no calling plan: internal calls only, PSTN refused"
    text = acme.read_text().replace(old, "calling_plan: metered")
    # remove Dave (1004)
    text = text[:text.index('  - extension: "1004"')]
    acme.write_text(text)
    third = sync(load_inventory(inv_dir), secrets, db)
    # Carol's ATA carries her account attributes too.
    assert sorted(third.updated) == [f"1003@{u.domain}", f"carol-ata@{u.domain}"]
    assert third.removed == [f"1004@{u.domain}"]
    assert _rows(db)[f"1003@{u.domain}"][1] == "metered"


def test_devices_get_own_credentials_bound_to_their_user(tmp_path: Path) -> None:
    secrets = Secrets(tmp_path / "s.yml")
    db = tmp_path / "sub.sqlite"
    inv = load_inventory(LAB_FIXTURE)
    sync(inv, secrets, db)
    with sqlite3.connect(db) as conn:
        rows = {u: (aor, srtp, ha1) for u, aor, srtp, ha1 in conn.execute(
            "SELECT username, aor, srtp, ha1 FROM subscriber")}
    # The seed's policy: apps AES-256, devices AES-128 unless upgraded, plain RTP only for
    # devices marked unencrypted; a user's own credentials are an app's by default.
    assert rows["alice-app"][:2] == ("1001", "AES_256_CM_HMAC_SHA1_80")
    assert rows["alice-desk"][:2] == ("1001", "AES_256_CM_HMAC_SHA1_80")
    assert rows["bob-desk"][:2] == ("1002", "AES_CM_128_HMAC_SHA1_80")
    assert rows["carol-ata"][:2] == ("1003", "plain")
    assert rows["1001"][:2] == ("1001", "AES_256_CM_HMAC_SHA1_80")
    dev = next(d for d in sip_devices(inv, secrets) if d.username == "bob-desk")
    assert dev.password != next(u for u in sip_users(inv, secrets) if u.username == "1002").password
    assert rows["bob-desk"][2] == hashlib.md5(
        f"bob-desk:{dev.domain}:{dev.password}".encode()).hexdigest()


def test_other_platforms_rows_are_kept(tmp_path: Path) -> None:
    secrets = Secrets(tmp_path / "s.yml")
    db = tmp_path / "sub.sqlite"
    sync(load_inventory(LAB_FIXTURE), secrets, db)
    eu = load_inventory(Path(__file__).parents[1] / "integration" / "fixtures" / "eu-mini")
    res = sync(eu, secrets, db)
    assert res.created == ["5001@eurobank.eu.lab.zpctl.test"]
    assert len(_rows(db)) == 12 + 1
    # Syncing the lab again removes nothing of the other platform.
    assert sync(load_inventory(LAB_FIXTURE), secrets, db).removed == []
    assert "5001@eurobank.eu.lab.zpctl.test" in _rows(db)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "sub.sqlite"
    res = sync(load_inventory(INVENTORIES / "lab"), Secrets(tmp_path / "s.yml"), db, dry_run=True)
    assert len(res.created) == 1010 + 4  # 1,010 users, 4 devices
    assert not db.exists()


def test_devices_command_lists_policies_and_writes_credentials_0600(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json  # noqa: PLC0415

    from zpctl.cli.main import main  # noqa: PLC0415

    secrets, creds = tmp_path / "s.yml", tmp_path / "phones.csv"
    rc = main(["-o", "json", "accounts", "devices", str(LAB_FIXTURE), "--secrets", str(secrets),
               "--credentials", str(creds)])
    assert rc == 0
    rows = {r["device"].split("@")[0]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["carol-ata"]["extension"], rows["carol-ata"]["media"]) == ("1003", "plain")
    assert rows["bob-desk"]["media"] == "AES_CM_128_HMAC_SHA1_80"
    assert all("password" not in r for r in rows.values())
    assert creds.stat().st_mode & 0o777 == 0o600
    lines = creds.read_text().splitlines()
    dev = {d.username: d for d in sip_devices(load_inventory(LAB_FIXTURE), Secrets.load(secrets))}
    assert f"bob-desk;{dev['bob-desk'].domain};{dev['bob-desk'].password};1002" in lines


def _documents(db: Path) -> dict[tuple[str, str, str], str]:
    with sqlite3.connect(db) as conn:
        return {(n, s, m): body for n, s, m, body in conn.execute(
            "SELECT node, section, name, body FROM switch_xml")}


def test_sync_writes_each_switch_its_accounts_documents(tmp_path: Path) -> None:
    """The switches' view of the accounts (switch_xml): each switch's dialplan context and
    directory domain per account it serves, the deployed files' text with the voicemail
    PINs written out (a new user has no PIN variable on the switch); rewritten only when
    they change."""
    inv_dir = tmp_path / "inv"
    shutil.copytree(INVENTORIES / "lab", inv_dir)
    secrets = Secrets(tmp_path / "s.yml")
    db = tmp_path / "sub.sqlite"
    loaded = load_inventory(inv_dir)
    first = sync(loaded, secrets, db)
    docs = _documents(db)
    switches = sorted({p.name for p in loaded.nodes() if p.role == Role.SWITCH})
    assert switches
    assert {n for n, _, _ in docs} == set(switches)
    assert sorted(first.switch_written) == sorted(" ".join(k) for k in docs)
    node = switches[0]
    acme = next(a for a in loaded.model.accounts if a.id == "acme")
    domain = loaded.model.account_domain(acme)
    directory = docs[(node, "directory", domain)]
    assert '<user id="1001">' in directory
    assert "$${zp_vm_pin" not in directory
    pin = voicemail_pin(secrets, acme, "1001")
    assert f'<param name="vm-password" value="{pin}"/>' in directory
    # the same text as the deployed file, but for the PINs
    build = render(loaded, secrets)
    deployed = build.files[f"{node}/freeswitch/directory/acme.xml"].data.decode()
    assert re.sub(r'"\$\$\{zp_vm_pin_[^}]+\}"', "PIN", deployed) == re.sub(
        r'name="vm-password" value="[0-9]+"', 'name="vm-password" value=PIN', directory)
    assert docs[(node, "dialplan", "acct-acme")] == \
        build.files[f"{node}/freeswitch/dialplan/acme.xml"].data.decode()

    again = sync(load_inventory(inv_dir), secrets, db)
    assert (again.switch_written, again.switch_removed) == ([], [])

    with (inv_dir / "accounts" / "globex.yml").open("a") as fh:
        fh.write('  - {extension: "2077", name: New Hire, site: main}\n')
    third = sync(load_inventory(inv_dir), secrets, db)
    globex = next(a for a in loaded.model.accounts if a.id == "globex")
    gdomain = loaded.model.account_domain(globex)
    # globex's two documents on each switch that serves it, nothing else
    assert sorted(third.switch_written) == sorted(
        f"{n} {s} {m}" for n in switches for s, m in (("dialplan", "acct-globex"),
                                                       ("directory", gdomain)))
    assert '<user id="2077">' in _documents(db)[(node, "directory", gdomain)]
    assert third.switch_removed == []


def _emergency_columns(db: Path) -> dict[str, tuple[str | None, str | None]]:
    with sqlite3.connect(db) as conn:
        return {u: (site, callback) for u, site, callback in conn.execute(
            "SELECT username, site, callback FROM subscriber")}


def test_sync_writes_each_rows_site_and_callback_and_updates_them(tmp_path: Path) -> None:
    """What an emergency call needs (schema 5): the user's site (account/site) and callback
    number (its DID, else the site's main number); a device's row has its user's.  A
    changed DID or site updates the user's rows and its devices'."""
    inv_dir = tmp_path / "inv"
    shutil.copytree(LAB_FIXTURE, inv_dir)
    secrets = Secrets(tmp_path / "s.yml")
    db = tmp_path / "sub.sqlite"
    sync(load_inventory(inv_dir), secrets, db)
    rows = _emergency_columns(db)
    assert rows["1001"] == rows["alice-app"] == rows["alice-desk"] == ("acme/hq", "+15550100002")
    assert rows["1002"] == rows["bob-desk"] == ("acme/hq", "+15550100003")
    # no DID: the site's main number
    assert rows["1003"] == rows["carol-ata"] == ("acme/hq", "+15550100001")
    assert rows["1004"] == ("acme/hq", "+15550100001")
    assert all(site is not None and callback is not None for site, callback in rows.values())

    acme = inv_dir / "accounts" / "acme.yml"
    text = acme.read_text()
    branch = ("  - id: branch\n    name: Acme Branch\n    datacenter: lab1\n"
              "    timezone: America/Chicago\n    country: US\n    language: en-US\n"
              "    emergency_address: {street: 9 Elm St, city: Shelbyville, postal_code: \"54321\","
              " country: US, state: IL}\n")
    text = text.replace("numbers:\n", branch + "numbers:\n").replace(
        "users:\n", "  - {number: \"+15550100009\", kind: main, site: branch}\n"
                    "  - {number: \"+15550100008\", site: hq}\nusers:\n")
    text = text.replace('dids: ["+15550100003"]', 'dids: ["+15550100008"]')  # Bob: a new DID
    carol = text.index('  - extension: "1003"')  # Carol moves to the branch
    text = text[:carol] + text[carol:].replace("site: hq", "site: branch", 1)
    acme.write_text(text)
    again = sync(load_inventory(inv_dir), secrets, db)
    domain = next(u.domain for u in sip_users(load_inventory(inv_dir), secrets))
    assert sorted(again.updated) == sorted(f"{u}@{domain}" for u in
                                           ("1002", "bob-desk", "1003", "carol-ata"))
    rows = _emergency_columns(db)
    assert rows["1002"] == rows["bob-desk"] == ("acme/hq", "+15550100008")
    assert rows["1003"] == rows["carol-ata"] == ("acme/branch", "+15550100009")
    assert rows["1001"] == ("acme/hq", "+15550100002")
    assert sync(load_inventory(inv_dir), secrets, db).updated == []
