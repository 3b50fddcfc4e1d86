"""The platform database on the lab's PostgreSQL: its versioned schema, day-2 account
changes that are live without a restart, and a sync that is all or nothing.

Each test works against the real PostgreSQL the lab runs and the real zone proxies that
authenticate from it (db_postgres); a REGISTER's 200 or 401/403 is the proof.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.freeswitch_binary import require_freeswitch
from zpctl import sipp
from zpctl.accounts import SipUser, password_key, sip_users
from zpctl.cdr import Directory, Hop, check_journey, journey
from zpctl.control import Control
from zpctl.db import connect
from zpctl.lab import Lab
from zpctl.lab.features import FeatureLab, call_and_talk, wait_until
from zpctl.lab.journeys import answered_from
from zpctl.lab.phones import Phones
from zpctl.loadtest.steady import SteadyLoad
from zpctl.model import load_inventory
from zpctl.model.schema import Role
from zpctl.render.freeswitch import served_accounts
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

LAB = Path("inventories/lab")
OUT = Path(__file__).resolve().parents[2] / "build" / "chaos"  # figures, as test_chaos
ZPCTL = str(Path(sys.executable).with_name("zpctl"))


def _zpctl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZPCTL, *args, "--lab-dir",
                           str(lab.dir)], capture_output=True, text=True, check=False,
                          timeout=120)


def _with_new_user(tmp_path: Path, extension: str = "2077") -> Path:
    """The lab inventory with one more user in globex (the same platform).  Each test adds
    its own extension: the proxies ban a user after failed authentications (auth_bans),
    and a test's refused REGISTERs of its user must not ban another test's."""
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    with (inv / "accounts" / "globex.yml").open("a") as fh:
        fh.write(f'  - {{extension: "{extension}", name: New Hire, site: main}}\n')
    return inv


def _new_user(lab: Lab, inv: Path, extension: str = "2077") -> SipUser:
    """The added user, its password saved in the lab's secrets (where the sync finds it)."""
    secrets = lab.secrets()
    user = next(u for u in sip_users(load_inventory(inv), secrets) if u.username == extension)
    secrets.save()
    return user


def _proxy_pids(lab: Lab) -> dict[str, int]:
    return {r.name: r.pid for r in lab.records() if r.name.endswith("proxy/kamailio")}


def test_lab_database_is_postgres_at_the_current_schema(zpctl_lab: Lab) -> None:
    res = _zpctl(zpctl_lab, "-o", "json", "db", "status", str(LAB))
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["database"] == "postgres://kamailio@127.1.0.5:5432/zpctl"
    assert st["state"] == "current"
    assert st["version"] == st["latest"]
    assert st["pending"] == []
    assert [a["version"] for a in st["applied"]] == list(range(1, st["latest"] + 1))
    # a second migrate changes nothing
    res = _zpctl(zpctl_lab, "-o", "json", "db", "migrate", str(LAB))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["applied"] == []


def test_a_user_added_registers_at_once_and_a_removed_one_is_refused(
        zpctl_lab: Lab, zpctl_phones: Phones, tmp_path: Path) -> None:
    """Day 2: a sync adds a user live (no restart), measured from the sync command to the
    first 200 OK to its REGISTER; syncing the inventory back removes it."""
    inv = _with_new_user(tmp_path)
    user = _new_user(zpctl_lab, inv)
    zpctl_phones.users["2077@globex"] = user
    pids = _proxy_pids(zpctl_lab)
    assert zpctl_phones.register("2077@globex").returncode != 0  # not provisioned yet
    start = time.monotonic()
    res = _zpctl(zpctl_lab, "-o", "json", "accounts", "sync", str(inv))
    try:
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["created"] == [f"2077@{user.domain}"]
        run = zpctl_phones.register("2077@globex")
        took = time.monotonic() - start
        assert run.returncode == 0, run.errors.read_text()[-400:]
        OUT.mkdir(parents=True, exist_ok=True)  # the figure in docs/CDR.md
        (OUT / "sync-to-register.json").write_text(json.dumps({"seconds": round(took, 2)}))
        # Both zones' proxies remember it now (the lb spreads REGISTERs by Call-ID) ...
        for _ in range(3):
            assert zpctl_phones.register("2077@globex").returncode == 0
    finally:
        back = _zpctl(zpctl_lab, "-o", "json", "accounts", "sync", str(LAB))
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["removed"] == [f"2077@{user.domain}"]
    # ... and forget it with the sync: refused whichever proxy a REGISTER reaches.
    for _ in range(3):
        assert zpctl_phones.register("2077@globex").returncode != 0
    assert _proxy_pids(zpctl_lab) == pids  # nothing restarted


def _auth_counts(lab: Lab) -> dict[str, int]:
    """Authentications the lab's zone proxies answered from memory and from the database."""
    ctl = Control(lab.inventory())
    proxies = [node for _, node in ctl.proxies()]
    return {where: sum(ctl.stat(n, f"script:zp_auth_{where}") for n in proxies)
            for where in ("memory", "database")}


def test_a_changed_password_is_live_at_once_though_the_proxies_remember_credentials(
        zpctl_lab: Lab, zpctl_phones: Phones, tmp_path: Path) -> None:
    """The zone proxies check credentials they read in the last 15 minutes in memory, with
    no database query; the sync that changes a password deletes what every proxy
    remembers of that user, so the old password is refused at once and the new one works."""
    inv = _with_new_user(tmp_path, "2079")
    user = _new_user(zpctl_lab, inv, "2079")
    res = _zpctl(zpctl_lab, "-o", "json", "accounts", "sync", str(inv))
    assert res.returncode == 0, res.stderr
    try:
        zpctl_phones.users["2079@globex"] = user
        # The lb spreads REGISTERs over the two zones by Call-ID: once each proxy has read
        # the user from the database, it answers from memory.
        before = _auth_counts(zpctl_lab)
        for _ in range(6):
            assert zpctl_phones.register("2079@globex").returncode == 0
        after = _auth_counts(zpctl_lab)
        assert after["database"] - before["database"] in (1, 2)  # a query per proxy, once
        assert after["memory"] - before["memory"] == 6 - (after["database"] - before["database"])

        secrets = zpctl_lab.secrets()
        new_password = "changed-" + secrets.values[password_key("2079", user.domain)][:12]
        secrets.values[password_key("2079", user.domain)] = new_password
        secrets.dirty = True
        secrets.save()
        res = _zpctl(zpctl_lab, "-o", "json", "accounts", "sync", str(inv))
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["updated"] == [f"2079@{user.domain}"]
        assert {r["proxy"]: r["forgotten"] for r in out["credentials_forgotten"]} == {
            n.name: 1 for _, n in Control(zpctl_lab.inventory()).proxies()}

        old = zpctl_phones.register("2079@globex")
        assert old.returncode != 0  # the remembered password is gone with the sync
        assert len(old.received("SIP/2.0 401")) == 2  # the old password challenged again
        zpctl_phones.users["2079@globex"] = replace(user, password=new_password)
        assert zpctl_phones.register("2079@globex").returncode == 0
    finally:
        back = _zpctl(zpctl_lab, "-o", "json", "accounts", "sync", str(LAB))
        assert back.returncode == 0, back.stderr


def _switches_know(fl: FeatureLab, user: SipUser, switches: list[str]) -> dict[str, bool]:
    """Whether each switch's directory has ``user`` (``user_exists``)."""
    return {name: fl.switch_api(f"user_exists id {user.username} {user.domain}",
                                switch=name)[name].strip()
            == "true" for name in switches}


def test_a_user_added_is_live_on_the_switches_without_a_reload_by_hand(
        zpctl_lab: Lab, tmp_path: Path) -> None:
    """Day 2 on the switch tier: the sync writes the accounts' dialplans and directories
    (switch_xml); each switch copies its own and reloads.  The new user is then in the
    switches' directory and its extension answers through them, both ways heard; synced
    away, it is gone from every switch.  Measured: sync command to every switch knowing it."""
    require_freeswitch()
    inv = _with_new_user(tmp_path, "2078")
    user = _new_user(zpctl_lab, inv, "2078")
    fl = FeatureLab(zpctl_lab)
    fl.users["2078@globex"] = user
    loaded = fl.inv
    switches = [p.name for p in loaded.nodes() if p.role == Role.SWITCH
                and any(a.id == "globex" for a in served_accounts(loaded.model, p))]
    assert len(switches) >= 2
    assert not any(_switches_know(fl, user, switches).values())
    pids = {r.name: r.pid for r in zpctl_lab.records() if "switch" in r.name}
    start = time.monotonic()
    res = _zpctl(zpctl_lab, "-o", "json", "accounts", "sync", str(inv))
    try:
        assert res.returncode == 0, res.stderr
        written = json.loads(res.stdout)["switch_documents"]["written"]
        # the globex dialplan and directory of each switch that serves globex, nothing else
        assert sorted(written) == sorted(f"{s} {sec} {name}" for s in switches for sec, name in (
            ("dialplan", "acct-globex"), ("directory", user.domain)))
        assert wait_until(lambda: all(_switches_know(fl, user, switches).values()), 10)
        took = time.monotonic() - start
        out = call_and_talk(fl, "2001@globex", "2078@globex", "2078", flow="new-user")
        assert out.ok, out.problems
        OUT.mkdir(parents=True, exist_ok=True)  # the figure in docs/CDR.md
        (OUT / "sync-to-switches.json").write_text(json.dumps({"seconds": round(took, 2)}))
    finally:
        back = _zpctl(zpctl_lab, "-o", "json", "accounts", "sync", str(LAB))
    assert back.returncode == 0, back.stderr
    assert wait_until(lambda: not any(_switches_know(fl, user, switches).values()), 10)
    assert {r.name: r.pid for r in zpctl_lab.records() if "switch" in r.name} == pids


def test_a_call_record_carries_the_media_relays_quality(zpctl_lab: Lab) -> None:
    """Phones that send RTCP receiver reports (the lab's phones, one every 2 s): at the
    BYE the zone proxy reads the media relay's MOS, jitter and loss (rtpengine_delete)
    into the leg's record, for the caller's leg and the callee's; `cdr ls` shows the
    worst."""
    require_freeswitch()
    fl = FeatureLab(zpctl_lab)
    out = call_and_talk(fl, "1001@acme", "1004@acme", "1004", flow="quality")
    assert out.ok, out.problems
    call_id = out.facts["call_id"]
    inv = zpctl_lab.inventory()

    def rated() -> list[Hop]:
        with connect(zpctl_lab.db_target()) as db:
            return [h for h in journey(db, inv, call_id)
                    if h.role == "proxy" and h.detail.get("mos") is not None]

    assert wait_until(lambda: len(rated()) == 2, 5), journey_text(zpctl_lab, call_id)
    for hop in rated():
        # loopback: nothing lost, little jitter, the best an 8 kHz G.711 call rates
        assert 4.0 <= hop.detail["mos"] <= 5.0, hop.detail
        assert hop.detail["loss_pct"] == 0, hop.detail
        assert hop.detail["jitter_ms"] < 20, hop.detail
    res = _zpctl(zpctl_lab, "-o", "json", "cdr", "ls", str(LAB), "--limit", "20")
    assert res.returncode == 0, res.stderr
    row = next(r for r in json.loads(res.stdout) if r["call_id"] == call_id)
    assert row["mos"] == min(h.detail["mos"] for h in rated())


def journey_text(lab: Lab, call_id: str) -> str:
    with connect(lab.db_target()) as db:
        return "\n".join(str(h.as_dict()) for h in journey(db, lab.inventory(), call_id))


def _rows(lab: Lab) -> list[tuple[str, str, str]]:
    with connect(lab.db_target()) as db:
        return [tuple(r) for r in db.execute(  # type: ignore[misc]
            "SELECT username, domain, ha1 FROM subscriber ORDER BY username, domain")]


def test_a_sync_that_fails_changes_nothing(zpctl_lab: Lab, tmp_path: Path) -> None:
    """A row of another platform in the way of the last user aborts the sync: the new
    user before it must not be left behind (one transaction)."""
    inv = _with_new_user(tmp_path)
    user = _new_user(zpctl_lab, inv)
    last = max(sip_users(load_inventory(inv), zpctl_lab.secrets()),
               key=lambda u: (u.username, u.domain))
    with connect(zpctl_lab.db_target()) as db, db.transaction():
        db.execute("UPDATE subscriber SET platform = 'elsewhere' WHERE username = ? "
                   "AND domain = ?", (last.username, last.domain))
    before = _rows(zpctl_lab)
    try:
        res = _zpctl(zpctl_lab, "accounts", "sync", str(inv))
        assert res.returncode == 9, res.stderr
        assert f"{last.username}@{last.domain} already belongs to another platform" in res.stderr
        assert "Traceback" not in res.stderr
        assert _rows(zpctl_lab) == before
        assert ("2077", user.domain) not in {(u, d) for u, d, _ in before}
    finally:
        with connect(zpctl_lab.db_target()) as db, db.transaction():
            db.execute("UPDATE subscriber SET platform = 'lab' WHERE username = ? "
                       "AND domain = ?", (last.username, last.domain))


def test_a_database_at_another_schema_version_is_refused(zpctl_lab: Lab) -> None:
    with connect(zpctl_lab.db_target()) as db, db.transaction():
        db.execute("INSERT INTO zpctl_schema (version, name, applied_at) VALUES (99, 'x', 'now')")
    try:
        for args in (("accounts", "sync", str(LAB)), ("db", "migrate", str(LAB))):
            res = _zpctl(zpctl_lab, *args)
            assert res.returncode == 6, res.stderr
            assert "schema version 99" in res.stderr
            assert "postgres://kamailio@127.1.0.5:5432/zpctl" in res.stderr
            assert "Traceback" not in res.stderr
    finally:
        with connect(zpctl_lab.db_target()) as db, db.transaction():
            db.execute("DELETE FROM zpctl_schema WHERE version = 99")


OUTAGE_S = 10.0


def test_no_record_is_lost_across_a_database_restart_under_load(
        zpctl_lab: Lab, tmp_path: Path) -> None:
    """10 calls/s for 30 s; the database goes away for 10 s in the middle.  Every call SIPp
    completed has its record once `zpctl cdr recover` has loaded what the hops journaled
    and the switches spooled meanwhile.  The calls' own success while the database is
    away is measured (the proxies authenticate from it) and written down."""
    # The callers have registered before (a phone re-registers every 10 minutes): each
    # zone proxy holds their credentials, as it would on a platform that has run a while.
    inv = zpctl_lab.inventory()
    callers = sipp.users_csv(tmp_path / "warm.csv", [
        (u.username, u.domain, u.password) for u in zpctl_lab.users() if u.account == "loadco"])
    for proxy in ("lab1-a-proxy", "lab1-b-proxy"):
        node = inv.node(proxy).node
        reg = _zpctl(zpctl_lab, "loadtest", "register", "--target",
                     f"{node.address}:{node.ports.sip}", "--users", str(callers), "--calls",
                     "400", "--rate", "200")
        assert reg.returncode == 0, reg.stderr[-600:]
    load = SteadyLoad(zpctl_lab, tmp_path, call_rate=10, duration_s=30, hold_ms=1000,
                      reg_rate=2).start()
    try:
        time.sleep(8)
        down_at = time.time()
        zpctl_lab.kill("db/postgres", sig=signal.SIGINT)  # a fast shutdown, as on a restart
        time.sleep(OUTAGE_S)
        zpctl_lab.start("db/postgres")
        up_at = time.time()
        res = load.finish()
    finally:
        load.stop()
    succeeded = res["calls"]["succeeded"]
    before = answered_from(zpctl_lab, inv, load.started_at - 1, load.local_ip)
    rec = _zpctl(zpctl_lab, "-o", "json", "cdr", "recover", str(LAB))
    assert rec.returncode == 0, rec.stderr
    loaded = json.loads(rec.stdout)["files"]
    after = answered_from(zpctl_lab, inv, load.started_at - 1, load.local_ip)
    # calls started while the database was away, by when SIPp started them
    in_outage = int(OUTAGE_S * load.call_rate)
    fails = [t for t in res["calls"]["fail_times"] if 0 <= t + load.started_at - down_at
             <= OUTAGE_S + 2]
    figures = {"attempted": res["calls"]["attempted"], "succeeded": succeeded,
               "failed_by_code": res["calls"]["failed_by_code"],
               "outage_s": round(up_at - down_at, 1), "started_in_outage": in_outage,
               "failed_in_outage": len(fails),
               "success_in_outage_pct": round(100 * (1 - len(fails) / in_outage), 1),
               "answered_records_before_recover": len(before),
               "answered_records_after_recover": len(after),
               "recovered": {k: sum(f["loaded"] for f in loaded if f["kind"] == k)
                             for k in ("spool", "journal")}}
    OUT.mkdir(parents=True, exist_ok=True)  # the figures in docs/CDR.md
    (OUT / "db-restart.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert len(after) >= succeeded, figures
    # every call's journey is whole again, the restart's included
    d = Directory(zpctl_lab.inventory())
    with connect(zpctl_lab.db_target()) as db:
        broken = {c.call_id: p for c in after
                  for p in [check_journey(journey(db, zpctl_lab.inventory(), c.call_id), d)] if p}
    assert broken == {}, list(broken.items())[:3]
