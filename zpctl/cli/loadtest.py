"""zpctl loadtest: SIPp at scale, with SLO gates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from zpctl.accounts import SipUser, sip_users
from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.output import emit, info, table
from zpctl.cli.types import FiniteFloat, count, seconds
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.loadtest.limits import STOP_SLACK_S, ceiling, grace_s
from zpctl.loadtest.runner import SCENARIOS, Plan, run
from zpctl.loadtest.slo import METRICS, parse_slo
from zpctl.model import LoadedInventory, load_inventory
from zpctl.model.schema import Role
from zpctl.secrets import Secrets, default_path


def _read_users(path: Path) -> list[SipUser]:
    """A SIPp injection file (user;domain;password) as users."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ZpctlError(f"--users {path}: {exc}", ExitCode.USAGE) from None
    out = []
    for n, line in enumerate(lines, 1):
        if n == 1 and line.strip() in ("SEQUENTIAL", "RANDOM", "USER"):
            continue
        fields = line.strip().split(";")
        if len(fields) < 3 or not all(fields[:3]):
            raise ZpctlError(f"--users {path}:{n}: expected user;domain;password", ExitCode.USAGE)
        out.append(SipUser(fields[0], fields[1], fields[2], "", "", ()))
    return out


#: The highest --rate at all, even with --force (beyond what one SIPp can start).
MAX_RATE = 100_000.0


def _check_target(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``lab`` or HOST[:PORT] with a port in 1-65535 (usage error otherwise)."""
    if value == "lab":
        return value
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "5060"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r}: give `lab` or HOST[:PORT] with a port in "
                                 "1-65535")
    return f"{host}:{int(port)}"


def _lab_target(lab: Lab, inv: LoadedInventory, scenario: str) -> tuple[str, str | None]:
    dc = inv.model.datacenters[0]
    lb = next(n for n in dc.nodes if n.role == Role.LB)
    lb_addr = f"{lb.address}:{lb.ports.sip}"
    if scenario == "did":
        sbc = inv.zone_node(dc, sorted(dc.zones)[0], Role.SBC)
        assert sbc is not None
        return f"{sbc.public}:{sbc.ports.sip}", lb_addr
    return lb_addr, None


@click.command("loadtest")
@click.argument("scenario", type=click.Choice(sorted(SCENARIOS)))
@click.option("--target", default="lab", show_default=True, callback=_check_target,
              help="`lab` (the running lab's first lb) or HOST[:PORT].")
@click.option("--rate", type=FiniteFloat(0, MAX_RATE, min_open=True), default=10.0,
              show_default=True, help="Calls (or registrations) started per second; at most "
              "what the target's inventory says it can take (capacity.cps; 200/s for a target "
              "no inventory describes; 5 x that for registrations) unless --force.")
@click.option("--duration", type=seconds(86400.0),
              help="Seconds to start calls for (calls = rate x duration); the run ends at most "
                   "hold + 12 s later, SIPp stopped if needed.")
@click.option("--calls", type=count(1, 1_000_000_000),
              help="Total calls; default rate x duration, or 10 x rate.")
@click.option("--concurrency", type=count(1, 1_000_000),
              help="Cap on simultaneous calls (SIPp -l).")
@click.option("--hold", "hold_ms", type=count(0, 3_600_000), default=1000, show_default=True,
              help="Milliseconds a call stays up with RTP before BYE.")
@click.option("--expires", type=count(1, 86400), default=120, show_default=True,
              help="register/storm: lifetime of the registrations made (they stay until then).")
@click.option("--force", is_flag=True,
              help="Send a --rate above the target's capacity anyway.")
@click.option("--users", "users_file", type=click.Path(path_type=Path),
              help="SIPp injection file user;domain;password (default: from the inventory).")
@click.option("--inventory", type=click.Path(path_type=Path),
              help="Inventory for users when --target is not the lab.")
@click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
              help="Secrets file with the SIP passwords (default: the lab's).")
@click.option("--callee", help="Callee for ext-call/did as EXT@ACCOUNT (default: chosen).")
@click.option("--local-ip", default="127.0.6.1", show_default=True,
              help="Address SIPp sends from (the callee uses the next one).")
@click.option("--slo", default="", help="Objectives, e.g. \"success>=99.9,setup_p99_ms<=100\". "
              f"Metrics: {', '.join(METRICS)}.")
@click.option("--json-out", type=click.Path(path_type=Path), help="Also write the result here.")
@click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR")
@click.option("--dry-run", is_flag=True, help="Print the plan and the SIPp command; run nothing.")
@pass_ctx
def loadtest_cmd(ctx: Context, scenario: str, target: str, rate: float, duration: float | None,
                 calls: int | None, concurrency: int | None, hold_ms: int, expires: int,
                 users_file: Path | None, inventory: Path | None, secrets_file: Path | None,
                 callee: str | None, local_ip: str, slo: str, json_out: Path | None,
                 lab_dir: Path | None, dry_run: bool, force: bool) -> None:
    """Load-test with SIPp and gate on SLOs (exit 8 when an objective is missed).

    \b
    Scenarios:
      register   REGISTER with digest auth, every user in turn
      ext-call   authenticated extension-to-extension calls with RTP, a callee answering
      ext-call-signalling
                 the same calls with SDP but no RTP: the signalling path's capacity
      pstn       authenticated outbound PSTN calls with RTP to the carrier
      did        inbound calls from a carrier to a user's DID
      storm      every user registers at once (after an outage)
    \b
    Examples:
      zpctl loadtest ext-call --rate 20 --duration 20 --slo "success>=99.9,setup_p99_ms<=200"
      zpctl -o json loadtest register --rate 500 --calls 5000 > result.json
      zpctl loadtest pstn --target 192.0.2.10:5060 --users users.csv --rate 50 --duration 60
    A progress line goes to stderr; the result (attempted, succeeded, failed by SIP code,
    achieved rate, call-setup p50/p95/p99, retransmissions, the SIPp command) to stdout.
    """
    objectives = parse_slo(slo)
    sc = SCENARIOS[scenario]
    lb: str | None = None
    inv: LoadedInventory | None = None
    if target == "lab":
        lab = Lab(lab_dir)
        if lab.state() is None:
            raise ZpctlError(f"no lab in {lab.dir}: start it with `zpctl lab up` or give "
                             "--target HOST:PORT", ExitCode.UNREACHABLE)
        inv = lab.inventory()
        target, lb = _lab_target(lab, inv, scenario)
        secrets = Secrets.load(secrets_file or lab.dir / "secrets.yml")
    else:
        if ":" not in target:
            target += ":5060"
        if inventory is not None:
            inv = load_inventory(inventory)
        secrets = Secrets.load(secrets_file or default_path(
            inv.model.platform.name if inv else "default"))
    if users_file is not None:
        users = _read_users(users_file)
    elif inv is not None:
        users = sip_users(inv, secrets)
    else:
        raise ZpctlError("give --users FILE or --inventory INV for a non-lab target",
                         ExitCode.USAGE)
    plan_callee = _pick_callee(users, callee, scenario) if sc.needs_callee else None
    if scenario in ("ext-call", "ext-call-signalling") and plan_callee is not None:
        users = [u for u in users if u.domain == plan_callee.domain]
    if scenario == "pstn" and inv is not None:
        allowed = _pstn_allowed(inv)
        users = [u for u in users if f"{u.username}@{u.domain}" in allowed]
    # --duration bounds the run even when --calls asks for more than fits in it.
    n = int(rate * (duration if duration is not None else 10.0))
    if calls is not None:
        n = min(calls, n) if duration is not None else calls
    if n < 1 and not sc.storm:
        raise ZpctlError(f"--rate {rate:g} for {duration or 10.0:g} s starts no call; give a longer "
                         "--duration or --calls", ExitCode.USAGE)
    if sc.storm:
        n, rate = len(users), float(max(len(users), 1))
    else:
        limit = ceiling(inv, scenario, target)
        if rate > limit.cps and not force:
            raise ZpctlError(f"--rate {rate:g}/s is above what {target} can take: {limit.cps}/s, "
                             f"set by {limit.why}; lower it, or give --force", ExitCode.USAGE)
    trunk_ip = None
    if scenario == "did":
        carriers = [a.address for c in (inv.model.carriers if inv else []) for a in c.addresses]
        if not carriers:
            raise ZpctlError("did needs a carrier address to call from (an inventory with "
                             "carriers)", ExitCode.USAGE)
        trunk_ip = carriers[0]
    plan = Plan(sc, target, users, local_ip, rate, n, concurrency, hold_ms, plan_callee,
                trunk_ip, lb, expires, duration_s=None if sc.storm else duration)
    if dry_run:
        planned = duration if duration is not None and not sc.storm else n / rate
        emit(ctx.output, {"scenario": scenario, "target": target, "calls": n, "rate": rate,
                          "users": len(users), "callee": _name(plan_callee), "slo": slo,
                          "ends_within_s": round(planned + STOP_SLACK_S + grace_s(hold_ms), 2)},
             text=f"would run {scenario}: {n} at {rate:g}/s against {target} with "
                  f"{len(users)} users" + (f", callee {_name(plan_callee)}" if plan_callee
                                           else ""))
        return
    info(f"loadtest {scenario}: {n} at {rate:g}/s against {target} ({len(users)} users)")
    result = run(plan, objectives, progress=info)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    _show(ctx, result)
    if not result["slo_met"]:
        missed = [o["objective"] for o in result["slo"] if not o["met"]]
        raise ZpctlError(f"SLO breached: {', '.join(missed)}", ExitCode.SLO_BREACHED)


def _name(u: SipUser | None) -> str | None:
    return f"{u.username}@{u.domain}" if u else None


def _pick_callee(users: list[SipUser], wanted: str | None, scenario: str) -> SipUser:
    if wanted:
        for u in users:
            if wanted in (f"{u.username}@{u.account}", f"{u.username}@{u.domain}"):
                return u
        raise ZpctlError(f"--callee {wanted}: no such user", ExitCode.USAGE)
    pool = [u for u in users if u.dids] if scenario == "did" else users
    if not pool:
        raise ZpctlError("no user to call (for did: no user with a DID)", ExitCode.USAGE)
    # ext-call: the callee of the account with the most users, so most callers can dial it.
    by_domain: dict[str, int] = {}
    for u in users:
        by_domain[u.domain] = by_domain.get(u.domain, 0) + 1
    return max(pool, key=lambda u: (by_domain[u.domain], -int(u.username)
                                    if u.username.isdigit() else 0))


def _pstn_allowed(inv: LoadedInventory) -> set[str]:
    out = set()
    for a in inv.model.accounts:
        for u in a.users:
            if a.offering != "native" or u.calling_plan != "none":
                out.add(f"{u.extension}@{inv.model.account_domain(a)}")
    return out


def _show(ctx: Context, result: dict[str, object]) -> None:
    if ctx.output != "table":
        emit(ctx.output, result)
        return
    rows = [{"metric": k, "value": result[k]} for k in (
        "scenario", "target", "attempted", "succeeded", "failed", "failed_by_code", "success",
        "offered_rate", "rate", "setup_p50_ms", "setup_p95_ms", "setup_p99_ms", "setup_max_ms",
        "retransmissions", "duration_s")]
    click.echo(table(rows, ["metric", "value"]))
    slo = result.get("slo") or []
    if slo:
        click.echo()
        click.echo(table(slo, ["objective", "actual", "met"]))  # type: ignore[arg-type]
    click.echo(f"\nsipp: {result['sipp_command']}", file=sys.stderr)


__all__ = ["loadtest_cmd"]
