"""Rendering: sizing, determinism, secrets kept apart, diff, shipped inventories render."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES, shipped_inventories
from zpctl.cli.main import main
from zpctl.model import load_inventory
from zpctl.model.schema import Capacity
from zpctl.render import render
from zpctl.render.diff import diff_build
from zpctl.render.sizing import (
    TRANSACTIONS_PER_CALL,
    TRANSACTIONS_PER_REGISTRATION,
    shm_mb,
    shm_reserve_bytes,
)
from zpctl.secrets import Secrets


@pytest.mark.parametrize(("cps", "role", "mb"), [
    (1, "sbc", 64), (200, "sbc", 64), (500, "sbc", 112), (2000, "sbc", 352), (5000, "sbc", 832),
    (200, "proxy", 400), (200, "lb", 272), (2000, "lb", 2416)])
def test_shm_sizing(cps: int, role: str, mb: int) -> None:
    assert shm_mb(Capacity(cps=cps), role) == mb
    # never below the transactions it must hold: (cps * T + 5 * cps * R) * 5 s * 13 kB
    held = cps * TRANSACTIONS_PER_CALL[role] + 5 * cps * TRANSACTIONS_PER_REGISTRATION[role]
    assert mb * 1024 >= held * 5 * 13


def test_declared_registrations_size_shared_memory() -> None:
    # The lab's lb before this sizing: 112 MB for 200 calls/s ran out at 700 REGISTER/s.
    small = Capacity(cps=200, registrations=100)
    large = Capacity(cps=200, registrations=2000)
    assert shm_mb(small, "lb") < shm_mb(Capacity(cps=200), "lb") < shm_mb(large, "lb")
    assert shm_mb(large, "lb") * 1024 >= (200 * 5 + 2000 * 2) * 5 * 13
    assert shm_mb(large, "sbc") == shm_mb(small, "sbc")  # an sbc takes no registrations
    assert shm_reserve_bytes(shm_mb(large, "lb")) == int(shm_mb(large, "lb") * 0.2) << 20


def _secrets(tmp_path: Path) -> Secrets:
    return Secrets(tmp_path / "s.yml", {"topoh_mask_key": "k" * 32, "db_password": "pw",
                                        "auth_nonce_secret": "n" * 32})


@pytest.mark.parametrize("inventory", shipped_inventories(), ids=lambda p: p.name)
def test_render_is_deterministic(inventory: Path, tmp_path: Path) -> None:
    inv = load_inventory(inventory)
    secrets = Secrets.load(tmp_path / "secrets.yml")
    first = render(inv, secrets)
    secrets.save()
    second = render(load_inventory(inventory), Secrets.load(tmp_path / "secrets.yml"))
    assert first.files == second.files
    assert first.digest() == second.digest()
    kamailio_nodes = [p for p in inv.nodes() if p.role.value in ("lb", "proxy", "sbc")]
    assert len([f for f in first.files if f.endswith("/kamailio.cfg")]) == len(kamailio_nodes)


def test_secrets_stay_out_of_configs(tmp_path: Path) -> None:
    build = render(load_inventory(INVENTORIES / "lab"), _secrets(tmp_path))
    for path, f in build.files.items():
        if path.endswith("secrets.cfg"):
            assert f.mode == 0o600
            assert b"k" * 32 in f.data
        else:
            assert b"k" * 32 not in f.data, path
    build.write(tmp_path / "out")
    secret_file = next((tmp_path / "out").glob("*/kamailio/secrets.cfg"))
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_generated_secrets_file_is_private(tmp_path: Path) -> None:
    s = Secrets.load(tmp_path / "sub" / "secrets.yml")
    key = s.get("topoh_mask_key")
    s.save()
    assert stat.S_IMODE((tmp_path / "sub" / "secrets.yml").stat().st_mode) == 0o600
    assert Secrets.load(tmp_path / "sub" / "secrets.yml").get("topoh_mask_key") == key


def test_diff_reports_changed_files(tmp_path: Path) -> None:
    inv = load_inventory(INVENTORIES / "lab")
    build = render(inv, _secrets(tmp_path))
    out = tmp_path / "build"
    assert len(diff_build(build, out).added) == len(build.files)
    build.write(out)
    assert diff_build(build, out).empty()
    cfg = next(out.glob("*-lb/kamailio/kamailio.cfg"))
    cfg.write_text(cfg.read_text().replace("ds_ping_interval", "ds_ping_intervalX"))
    (out / "stale" / "x").parent.mkdir()
    (out / "stale" / "x").write_text("old")
    delta = diff_build(build, out)
    assert delta.changed == [str(cfg.relative_to(out))]
    assert delta.removed == ["stale/x"]
    assert "ds_ping_intervalX" in delta.patches[delta.changed[0]]


def test_cli_render_and_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    assert main(["render", str(INVENTORIES / "lab"), "--out", str(out), "--no-check"]) == 0
    assert (out / "MANIFEST.json").exists()
    capsys.readouterr()
    assert main(["diff", str(INVENTORIES / "lab"), "--build", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "no changes"
    assert main(["-o", "json", "render", str(INVENTORIES / "lab"), "--out", str(out), "--dry-run",
                 "--no-check"]) == 0
    assert '"changed": []' in capsys.readouterr().out


def test_cli_missing_inventory_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "/nonexistent/inv"]) == 3
    err = capsys.readouterr().err
    assert "not an inventory directory" in err
    assert "Traceback" not in err


def test_each_trunk_destination_says_its_media(tmp_path: Path) -> None:
    """us01's two platform carriers share a dispatcher set but not a media policy: each
    destination carries srtp=0|1 and the sbc picks the offer by the chosen one."""
    build = render(load_inventory(INVENTORIES / "us01"), Secrets.load(tmp_path / "s.yml"))
    path = next(p for p in sorted(build.files) if p.endswith("-sbc/kamailio/dispatcher.list"))
    lines = build.files[path].data.decode().splitlines()
    secure = [ln for ln in lines if "carrier-pstn-secure" in ln]
    plain = [ln for ln in lines if "carrier-pstn-global" in ln]
    assert secure and all(ln.endswith(";srtp=1") for ln in secure), secure
    assert plain and all(ln.endswith(";srtp=0") for ln in plain), plain
    cfg = build.files[path.replace("dispatcher.list", "kamailio.cfg")].data.decode()
    assert "transport-protocol=RTP/SAVP" in cfg and "SDES-no-NULL_HMAC_SHA1_80" in cfg


def test_call_records_follow_the_database_engine(tmp_path: Path) -> None:
    """PostgreSQL: every lb, proxy and SBC accounts (and records its own refusals), every
    switch writes its channels; the password only in the 0600 secrets files.  sqlite (a
    file one node holds): no call records anywhere."""
    secrets = Secrets(tmp_path / "s.yml", {"db_password": "Dbpw-7f3a9c2e1b"})
    pg = render(load_inventory(INVENTORIES / "lab"), secrets)
    cfgs = {p: f.data.decode() for p, f in pg.files.items() if p.endswith("/kamailio.cfg")}
    assert cfgs and all('loadmodule "acc.so"' in c and "acc_db_request(" in c
                        and 'modparam("acc", "db_insert_mode", 0)' in c for c in cfgs.values())
    switches = [p for p in pg.files if p.endswith("autoload_configs/cdr_pg_csv.conf.xml")]
    assert len(switches) == len([p for p in load_inventory(INVENTORIES / "lab").nodes()
                                 if p.role.value == "switch"])  # a standby runs theirs
    holders = sorted(p for p, f in pg.files.items() if b"Dbpw-7f3a9c2e1b" in f.data)
    assert holders and all(p.endswith(("secrets.cfg", "/pgpass")) for p in holders)
    assert all(pg.files[p].mode == 0o600 for p in holders)
    lite = render(load_inventory(Path(__file__).parent / "fixtures" / "lab"), secrets)
    cfgs = {p: f.data.decode() for p, f in lite.files.items() if p.endswith("/kamailio.cfg")}
    assert cfgs and not any("acc.so" in c or "acc_db_request" in c for c in cfgs.values())
    assert all("route[REFUSE]" in c for c in cfgs.values())
    assert not any(p.endswith("cdr_pg_csv.conf.xml") for p in lite.files)
