"""Generate a large inventory for the render benchmark: D data centers x 2 zones, A accounts
with U users in all (each account on one data center, native, one site, a DID per user)."""

from __future__ import annotations

import sys
from pathlib import Path

PLATFORM = """platform:
  name: big
  sip_domain: big.zpctl.example
  management_networks: [10.200.0.0/16]
clusters:
  - {id: US01, name: United States}
carriers:
  - id: carrier
    name: Carrier
    addresses: [{address: 198.51.100.10}, {address: 198.51.100.11}]
    emergency: [US]
database: {engine: postgres, host: 10.200.0.10}
defaults:
  capacity: {cps: 2000}
"""


def dc(k: int, pair: int, role: str) -> str:
    nodes = "\n".join(
        f"      - {{name: dc{k}-{z}-{r}, role: {r}, address: 10.{k}.{zi}.{h}, "
        f"mgmt_address: 10.200.{k}.{zi}{h - 10}"
        + (f", public_address: 100.64.{k}.{zi}{h - 10}" if r in ("media", "sbc") else "") + "}"
        for zi, z in ((1, "a"), (2, "b")) for h, r in ((11, "proxy"), (12, "media"), (13, "sbc")))
    zones = {}
    for z in ("a", "b"):
        zones[z] = "\n".join(line for line in nodes.split("\n") if f"-{z}-" in line)
    return (f"id: dc{k}\ncity: City {k}\ncountry: US\nregion: r{(k + 1) // 2}\ncluster: US01\n"
            f"role: {role}\npair: dc{pair}\nnodes:\n"
            f"  - {{name: dc{k}-lb, role: lb, address: 10.{k}.0.1, mgmt_address: 10.200.{k}.1}}\n"
            f"zones:\n  a:\n    nodes:\n{zones['a']}\n  b:\n    nodes:\n{zones['b']}\n")


def account(i: int, dcs: int, users: int) -> str:
    d = (i % dcs) + 1
    lines = [f"id: acct{i}", f"name: Account {i}", "cluster: US01", "offering: native",
             "sites:", f"  - {{id: s1, name: Site, datacenter: dc{d}, timezone: America/New_York,"
             " country: US, emergency_address: {street: 1 Main St, city: X, state: NY,"
             " postal_code: '10001', country: US}}", "numbers:"]
    base = 12000000000 + i * 1000
    lines += [f"  - {{number: '+{base + u}', site: s1}}" for u in range(users)]
    lines.append("users:")
    lines += [f"  - {{extension: '{1000 + u}', name: User {u}, site: s1, calling_plan: metered,"
              f" dids: ['+{base + u}']}}" for u in range(users)]
    return "\n".join(lines) + "\n"


def generate(root: Path, dcs: int = 20, accounts: int = 1000, users: int = 50000) -> Path:
    (root / "datacenters").mkdir(parents=True, exist_ok=True)
    (root / "accounts").mkdir(parents=True, exist_ok=True)
    (root / "platform.yml").write_text(PLATFORM)
    for k in range(1, dcs + 1):
        primary = k % 2 == 1
        (root / "datacenters" / f"dc{k}.yml").write_text(
            dc(k, k + 1 if primary else k - 1, "primary" if primary else "secondary"))
    per = users // accounts
    for i in range(accounts):
        (root / "accounts" / f"acct{i}.yml").write_text(account(i, dcs, per))
    return root


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
