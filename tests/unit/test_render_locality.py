"""What an SBC trusts, and what an unrelated change rewrites (the inventory as a newcomer
meets it, #23): an SBC carries only the trunks and premises SBCs of the accounts its data
center serves, and an account's dispatcher set comes from its id, so adding an account
touches only the nodes that serve it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import INVENTORIES
from zpctl.model import load_inventory
from zpctl.model.schema import Role
from zpctl.render import Build, account_set_ids, render
from zpctl.secrets import Secrets

REGIONAL = INVENTORIES / "regional"
CONTOSO_PREMISES_SBC = "203.0.113.20"  # contoso-eu's premises SBC (BYOC-P, region eu)
NEW_ACCOUNT = """\
id: wombat-legal
name: Wombat Legal
cluster: AU01
offering: byoc-c
region_lock: au
billing: {currency: AUD}
trunks:
  - id: wombat-carrier
    addresses:
      - {address: 198.51.100.77, port: 5060, transport: udp}
    codecs: [pcma]
sites:
  - id: sydney
    name: Wombat Legal Sydney
    datacenter: au01-sydney
    timezone: Australia/Sydney
    country: AU
    emergency_address: {street: 1 Macquarie St, city: Sydney, postal_code: "2000",
                        country: AU, state: NSW}
numbers:
  - {number: "+61290000001", kind: main, site: sydney}
users:
  - {extension: "101", name: Wendy Wombat, site: sydney}
"""


def _text(build: Build, path: str) -> str:
    return build.files[path].data.decode()


def test_an_sbc_carries_only_the_accounts_its_data_center_serves(tmp_path: Path) -> None:
    loaded = load_inventory(REGIONAL)
    build = render(loaded, Secrets(tmp_path / "s.yml"))
    sbcs = [p for p in loaded.nodes() if p.role == Role.SBC]
    carrying = {p.name for p in sbcs
                if CONTOSO_PREMISES_SBC in _text(build, f"{p.name}/kamailio/dispatcher.list")}
    eu = {p.name for p in sbcs if p.dc.region == "eu"}
    assert carrying == eu  # the premises SBC is trusted in its region only
    for p in sbcs:
        cfg = _text(build, f"{p.name}/kamailio/kamailio.cfg")
        # its peer entry (the address a request must come from, with its certificate name)
        assert (f'$sht(peer=>{CONTOSO_PREMISES_SBC}) = "contoso-eu-sbc"' in cfg) == (p.name in eu)


def test_adding_an_account_changes_only_the_files_that_must(tmp_path: Path) -> None:
    inv = tmp_path / "regional"
    shutil.copytree(REGIONAL, inv)
    secrets = Secrets(tmp_path / "s.yml")
    before_inv = load_inventory(inv)
    before = render(before_inv, secrets)
    (inv / "accounts" / "wombat-legal.yml").write_text(NEW_ACCOUNT)
    after_inv = load_inventory(inv)
    after = render(after_inv, secrets)
    changed = {path for path in set(before.files) | set(after.files)
               if path not in before.files or path not in after.files
               or before.files[path].data != after.files[path].data}
    assert changed
    au = {p.name for p in after_inv.nodes() if p.dc.cluster == "AU01"}
    # ... and the DNS zone, which gains the account's NAPTR records (docs/EDGE.md)
    assert {path.split("/", 1)[0] for path in changed} <= au | {"_dns"}
    assert [p for p in changed if p.startswith("_dns/")] == ["_dns/regional.zpctl.example.zone"]
    # no other account's dispatcher set moved
    old, new = account_set_ids(before_inv.model), account_set_ids(after_inv.model)
    assert {a: new[a] for a in old} == old
    assert "wombat-legal" in new
