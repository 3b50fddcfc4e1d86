"""make bench: the project's performance record.

1. Finds, by searching the offered rate (doubling, then bisecting to within 5 %), the highest
   sustained rate with >= 99.9 % success and call-setup p99 <= 100 ms for
     i.  REGISTER with digest auth through lb -> proxy, DMQ replication on (the full path);
     ii. authenticated extension-to-extension calls through the full lab path (lb, proxy,
         switch, proxy, lb), SDP but no RTP: the signalling path's capacity;
     iii. both through a minimal single-hop stateful Kamailio proxy with in-memory auth
         (the reference), on the same machine in the same run.
2. Times load + validate + render of a generated inventory: 20 data centers x 2 zones,
   1,000 accounts, 50,000 users.
Prints a table, writes bench.json and the figures block of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from geninv import generate

from zpctl.accounts import SipUser, sip_users
from zpctl.clients.kamailio import KamailioRpc
from zpctl.lab import Lab
from zpctl.loadtest.runner import SCENARIOS, Plan, run
from zpctl.loadtest.slo import parse_slo
from zpctl.model import load_inventory
from zpctl.render import BANNER, environment, render
from zpctl.secrets import Secrets

SLO = parse_slo("success>=99.9,setup_p99_ms<=100")
REF_ADDR = "127.0.5.200"
BENCH_USERS = 2000
CALL = "ext-call-signalling"  # SDP, no RTP: SIPp's RTP caps a run near 100 calls/s
STEP_SECONDS = 8
PRECISION = 0.05  # the search stops when the passing and failing rates are this close


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_inventory(dest: Path, users: int) -> Path:
    """The lab inventory with one more account of many users, and capacity for the load."""
    shutil.copytree(REPO / "inventories" / "lab", dest)
    plat = (dest / "platform.yml").read_text()
    # Capacity above what the machine can take, so that the lb's admission never limits the
    # search, and shared memory for it.
    plat = plat.replace("cps: 200 ", "registrations: 4000\n    cps: 1000 ").replace(
        "children: 2\n", "children: 4\n")
    (dest / "platform.yml").write_text(plat)
    lines = ["id: benchco", "name: Bench Co", "cluster: US01", "offering: native", "sites:",
             "  - {id: s, name: S, datacenter: lab1, timezone: UTC, country: US,"
             " emergency_address: {street: x, city: x, postal_code: '1', country: US}}",
             "users:"]
    lines += [f"  - {{extension: '{10000 + i}', name: U{i}, site: s, calling_plan: metered}}"
              for i in range(users)]
    (dest / "accounts" / "benchco.yml").write_text("\n".join(lines) + "\n")
    return dest


def search(name: str, precision: float, start: int, attempt: Any,
           cap: int = 64000) -> dict[str, Any]:
    """The highest offered rate meeting the SLO, to within PRECISION: double from ``start``
    until a rate fails (halve if ``start`` fails), then bisect.  Every probe is kept."""
    steps: list[dict[str, Any]] = []

    def probe(rate: int) -> bool:
        res = attempt(rate)
        ok = bool(res["slo_met"])
        steps.append({"offered": rate, "achieved": res["rate"], "success": res["success"],
                      "p99_ms": res["setup_p99_ms"], "retrans": res["retransmissions"],
                      "ok": ok})
        log(f"  {name:<26} offered {rate:>5}/s  achieved {res['rate']:>8}/s  success "
            f"{res['success']:>7}%  p99 {res['setup_p99_ms']} ms  {'ok' if ok else 'FAIL'}")
        return ok

    lo: int | None = None
    hi: int | None = None
    rate = start
    if probe(rate):
        lo = rate
        while rate * 2 <= cap:
            rate *= 2
            if not probe(rate):
                hi = rate
                break
            lo = rate
    else:
        hi = rate
        while rate > 1:
            rate //= 2
            if probe(rate):
                lo = rate
                break
            hi = rate
    while lo is not None and hi is not None and (hi - lo) / lo > precision:
        mid = (lo + hi) // 2
        if mid in (lo, hi):
            break
        if probe(mid):
            lo = mid
        else:
            hi = mid
    best = next((st for st in steps if st["offered"] == lo and st["ok"]), None)
    return {"best": best, "passing": lo, "failing": hi, "steps": steps}


def full_path(lab: Lab, users: list[SipUser], scenario: str, rate: int, work: Path,
              callee: SipUser | None) -> dict[str, Any]:
    sc = SCENARIOS[scenario]
    plan = Plan(sc, "127.0.1.1:5060", users, "127.0.6.1", float(rate), rate * STEP_SECONDS,
                None, 500, callee, workdir=work / f"{scenario}-{rate}")
    return run(plan, SLO)


def _rpc(node: Any, method: str, *params: Any) -> Any:
    return KamailioRpc(f"http://{node.mgmt}:{node.ports.mgmt_http}/RPC", 10).call(method, *params)


def _shm_used(node: Any) -> int:
    return int(_rpc(node, "core.shmmem")["real_used"])


def _contacts(node: Any) -> int:
    """Contacts the proxy holds (each zone holds its sister's too, through DMQ)."""
    for item in _rpc(node, "stats.get_statistics", "usrloc:"):
        key, _, value = str(item).partition("=")
        if key.strip() == "usrloc:registered_users":
            return int(value.strip())
    return 0


def start_reference(work: Path, password: str) -> subprocess.Popen[bytes]:
    cfg = work / "reference.cfg"
    cfg.write_text(environment().get_template("bench/reference.cfg.j2").render(
        banner=BANNER, address=REF_ADDR, secret="bench-secret", password=password))
    (work / "ref-run").mkdir(exist_ok=True)
    with open(work / "reference.log", "wb") as out:
        proc = subprocess.Popen(["kamailio", "-DD", "-E", "-f", str(cfg), "-Y",
                                 str(work / "ref-run"), "-m", "1024", "-M", "16"],
                                stdout=out, stderr=subprocess.STDOUT)
    time.sleep(1.5)
    if proc.poll() is not None:
        raise SystemExit(f"the reference Kamailio did not start:\n"
                         f"{(work / 'reference.log').read_text()[-1500:]}")
    return proc


def reference(users: list[SipUser], scenario: str, rate: int, work: Path,
              callee: SipUser | None) -> dict[str, Any]:
    sc = SCENARIOS[scenario]
    plan = Plan(sc, f"{REF_ADDR}:5060", users, "127.0.5.201", float(rate), rate * STEP_SECONDS,
                None, 500, callee, workdir=work / f"ref-{scenario}-{rate}")
    return run(plan, SLO)


def time_large_render(work: Path) -> dict[str, Any]:
    root = generate(work / "big", dcs=20, accounts=1000, users=50000)
    t0 = time.perf_counter()
    inv = load_inventory(root)
    t1 = time.perf_counter()
    build = render(inv, Secrets(work / "s.yml", {"topoh_mask_key": "k", "db_password": "p",
                                                 "auth_nonce_secret": "n"}))
    t2 = time.perf_counter()
    return {"datacenters": 20, "zones": 40, "accounts": 1000, "users": 50000,
            "validate_s": round(t1 - t0, 2), "render_s": round(t2 - t1, 2),
            "total_s": round(t2 - t0, 2), "files": len(build.files), "target_s": 10,
            "met": (t2 - t0) <= 10}


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 30)
    versions = {}
    for cmd, arg in (("kamailio", "-v"), ("sipp", "-v"), ("rtpengine", "--version")):
        try:
            out = subprocess.run([cmd, arg], capture_output=True, text=True, timeout=10,
                                 check=False)
            versions[cmd] = (out.stdout + out.stderr).strip().splitlines()[0][:80]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[cmd] = "?"
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": mem,
            "os": platform.platform(), "python": platform.python_version(), **versions}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter steps")
    ap.add_argument("--out", default=str(REPO / "bench.json"))
    args = ap.parse_args()
    precision = 0.5 if args.quick else PRECISION
    work = Path(tempfile.mkdtemp(prefix="zpctl-bench-"))
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                               "slo": "success>=99.9%, call-setup p99<=100 ms"}
    log("bench: large inventory (20 DCs x 2 zones, 1,000 accounts, 50,000 users)")
    results["render"] = time_large_render(work)
    log(f"  validate {results['render']['validate_s']} s + render "
        f"{results['render']['render_s']} s = {results['render']['total_s']} s")

    inv_dir = bench_inventory(work / "inv", BENCH_USERS)
    lab = Lab(work / "lab")
    log(f"bench: starting the lab with {BENCH_USERS} extra users")
    lab.up(inv_dir, progress=lambda s: None, timeout=60)
    try:
        inv = lab.inventory()
        users = [u for u in sip_users(inv, lab.secrets()) if u.account == "benchco"]
        callee = users[0]
        callers = users[1:]
        log("bench: full path")
        proxies = [p.node for p in inv.nodes() if p.role.value == "proxy" and p.dc.id == "lab1"]
        shm_before = sum(_shm_used(n) for n in proxies)
        results["full_register"] = search("full path REGISTER", precision, 250,
                                          lambda r: full_path(lab, callers, "register", r, work,
                                                              None))
        time.sleep(6)  # transactions leave shared memory 5 s after they end (wait timer)
        contacts = sum(_contacts(n) for n in proxies)
        grown = sum(_shm_used(n) for n in proxies) - shm_before
        results["registration_cost"] = {
            "contacts": contacts, "shm_grown_bytes": grown,
            "bytes_per_contact": round(grown / contacts) if contacts else None}
        results["full_call"] = search("full path call", precision, 25,
                                      lambda r: full_path(lab, callers, CALL, r, work, callee))
    finally:
        lab.down()
    log("bench: reference (single stateful hop, in-memory auth)")
    password = "bench-password"
    ref_users = [SipUser(u.username, u.domain, password, u.account, u.offering, u.dids)
                 for u in users]
    proc = start_reference(work, password)
    try:
        results["ref_register"] = search("reference REGISTER", precision, 1000,
                                         lambda r: reference(ref_users[1:], "register", r, work,
                                                             None))
        results["ref_call"] = search("reference call", precision, 250,
                                     lambda r: reference(ref_users[1:], CALL, r, work,
                                                         ref_users[0]))
    finally:
        proc.terminate()
        proc.wait(10)

    def best(key: str) -> float:
        b = results[key]["best"]
        return float(b["achieved"]) if b else 0.0

    results["ratios"] = {
        "register_full_vs_ref": round(best("full_register") / best("ref_register"), 2)
        if best("ref_register") else None,
        "call_full_vs_ref": round(best("full_call") / best("ref_call"), 2)
        if best("ref_call") else None,
    }
    results["targets"] = {
        "calls_ratio>=0.2": (results["ratios"]["call_full_vs_ref"] or 0) >= 0.2,
        "register_ratio>=0.5": (results["ratios"]["register_full_vs_ref"] or 0) >= 0.5,
        "render<=10s": results["render"]["met"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = figures_table(results)
    print(table)
    update_performance_md(table)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def figures_table(r: dict[str, Any]) -> str:
    def row(name: str, key: str) -> str:
        b = r[key]["best"]
        bracket = f"{r[key]['passing']}/s passes, {r[key]['failing']}/s fails"
        if not b:
            return f"| {name} | none passed | | | {bracket} |"
        return (f"| {name} | {b['achieved']}/s | {b['success']} % | {b['p99_ms']} ms | "
                f"{bracket} |")

    m = r["machine"]
    lines = [
        f"Measured {r['date']} on {m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"{m['os']}; {m.get('kamailio', '')}; {m.get('sipp', '')}.",
        "",
        "| scenario | highest sustained rate | success | call-setup p99 | search |",
        "| --- | --- | --- | --- | --- |",
        row("REGISTER, full path (lb -> proxy, DMQ on)", "full_register"),
        row("REGISTER, reference (one stateful hop, in-memory auth)", "ref_register"),
        row("ext -> ext call, full path (lb, proxy, switch, proxy, lb; no RTP)", "full_call"),
        row("ext -> ext call, reference (no RTP)", "ref_call"),
        "",
        f"Ratios full path / reference: REGISTER {r['ratios']['register_full_vs_ref']} "
        f"(target >= 0.5: {r['targets']['register_ratio>=0.5']}), calls "
        f"{r['ratios']['call_full_vs_ref']} (target >= 0.2: {r['targets']['calls_ratio>=0.2']}).",
        "",
        f"Shared memory per registration held at a zone proxy: "
        f"{r.get('registration_cost', {}).get('bytes_per_contact', '?')} bytes "
        f"({r.get('registration_cost', {}).get('contacts', '?')} contacts).",
        "",
        f"Large inventory (20 DCs x 2 zones, 1,000 accounts, 50,000 users): validate "
        f"{r['render']['validate_s']} s + render {r['render']['render_s']} s = "
        f"{r['render']['total_s']} s (target <= 10 s: {r['render']['met']}).",
    ]
    return "\n".join(lines)


def update_performance_md(table: str) -> None:
    path = REPO / "docs" / "PERFORMANCE.md"
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), block, text, flags=re.S)
    else:
        text += "\n## Latest figures\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
