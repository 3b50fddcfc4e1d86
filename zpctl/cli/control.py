"""Live control: node, registrations, dialogs, zone and dc commands (JSON-RPC)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.output import emit, info
from zpctl.cli.types import DEADLINE, TIMEOUT
from zpctl.clients.guard import AddressGuard
from zpctl.control import Control, inventory_line, not_up, unanswered
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.model import LoadedInventory, load_inventory
from zpctl.render.paths import node_paths


def control_options(f: Any) -> Any:
    f = click.option("--inventory", type=click.Path(path_type=Path),
                     help="The platform's inventory (default: the running lab's).")(f)
    f = click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR",
                     help="Lab directory, when controlling a lab.")(f)
    f = click.option("--timeout", type=TIMEOUT, default=3.0, show_default=True,
                     help="Seconds to wait for each JSON-RPC answer.")(f)
    return click.option("--local", is_flag=True,
                        help="Use each node's local jsonrpcs datagram socket instead of HTTP "
                             "(on the node's host, or for a lab).")(f)


def make_control(inventory: Path | None, lab_dir: Path | None, timeout: float, local: bool,
                 dry_run: bool = False, loaded: LoadedInventory | None = None) -> Control:
    """The Control of the --inventory/--lab-dir/--timeout/--local options (also for other
    command groups that control nodes: zpctl survivability); ``loaded``: the inventory the
    caller has loaded already from those options."""
    lab = Lab(lab_dir)
    if loaded is not None:
        inv = loaded
    elif inventory is None:
        if lab.state() is None:
            raise ZpctlError(f"no --inventory and no lab in {lab.dir}", ExitCode.USAGE)
        inv = lab.inventory()
    else:
        inv = load_inventory(inventory)
    info(inventory_line(inv, lab.dir if inventory is None else None))
    run_dirs = None
    if local:
        lab_root = lab.dir if lab.state() is not None else None
        run_dirs = {p.name: node_paths(inv.model, p.name, lab_root).run for p in inv.nodes()}
    # The running lab's switches take the lab's ESL password.
    secrets = lab.dir / "secrets.yml" if inventory is None else None
    return Control(inv, timeout=timeout, dry_run=dry_run, run_dirs=run_dirs,
                   guard=AddressGuard(inv), secrets_file=secrets)


def _partial(ctx: Context, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows of the proxies that answered; those that did not are named on stderr, kept in
    JSON/YAML as rows with ``error``, and make the exit code 7."""
    good = [r for r in rows if not r.get("error")]
    for r in rows:
        if r.get("error"):
            info(f"{r['proxy']} ({r['zone']}): {r['error']}")
    emit(ctx.output, rows, rows=good, columns=columns)
    dead = unanswered(rows)
    if dead is not None:
        raise dead


def _dry(ctx: Context, c: Control, text: str) -> None:
    reqs = [r.as_dict() for r in c.sent]
    if ctx.output == "table":
        import json  # noqa: PLC0415

        click.echo(f"dry run: {text}; would send {len(reqs)} request(s):")
        for r in reqs:
            click.echo(f"  {r['node']:<14} POST {r['endpoint']}  {json.dumps(r['request'])}")
    else:
        emit(ctx.output, {"dry_run": True, "requests": reqs})


# -- node -------------------------------------------------------------------------------------

@click.group()
def node() -> None:
    """Kamailio nodes over JSON-RPC."""


@node.command("status")
@click.argument("name", required=False)
@control_options
@pass_ctx
def node_status(ctx: Context, name: str | None, inventory: Path | None, lab_dir: Path | None,
                timeout: float, local: bool) -> None:
    """Uptime, shared memory, transactions, registrations and dialogs of each Kamailio node."""
    rows = make_control(inventory, lab_dir, timeout, local).node_status(name)
    emit(ctx.output, rows, rows=rows, columns=["node", "role", "dc", "zone", "state", "uptime_s",
                                                "shm_used_mb", "transactions", "registrations",
                                                "dialogs"])
    bad = not_up(rows)
    if bad is not None:
        raise bad


# -- registrations ----------------------------------------------------------------------------

@click.group()
def registrations() -> None:
    """Registrations held by the zone proxies (usrloc, replicated by DMQ)."""


@registrations.command("ls")
@click.option("--scope", help="DC, DC/ZONE or a proxy name (default: every zone proxy).")
@control_options
@pass_ctx
def registrations_ls(ctx: Context, scope: str | None, inventory: Path | None,
                     lab_dir: Path | None, timeout: float, local: bool) -> None:
    """Every registered contact, per zone proxy."""
    rows = make_control(inventory, lab_dir, timeout, local).registrations(scope)
    _partial(ctx, rows, ["zone", "aor", "contact", "expires_s", "user_agent"])


@registrations.command("show")
@click.argument("user")
@control_options
@pass_ctx
def registrations_show(ctx: Context, user: str, inventory: Path | None, lab_dir: Path | None,
                       timeout: float, local: bool) -> None:
    """Where USER (ext@domain) is registered, as each zone proxy sees it."""
    rows = make_control(inventory, lab_dir, timeout, local).registration(user)
    emit(ctx.output, rows, rows=[{**r, "contacts": r.get("error") or " ".join(r["contacts"])
                                  or "-"} for r in rows],
         columns=["zone", "proxy", "aor", "contacts"])
    dead = unanswered(rows)
    if dead is not None:
        raise dead


# -- dialogs ----------------------------------------------------------------------------------

@click.group()
def dialogs() -> None:
    """Calls in progress on the zone proxies (dialog module)."""


@dialogs.command("ls")
@click.option("--scope", help="DC, DC/ZONE or a proxy name.")
@control_options
@pass_ctx
def dialogs_ls(ctx: Context, scope: str | None, inventory: Path | None, lab_dir: Path | None,
               timeout: float, local: bool) -> None:
    """Every dialog on the zone proxies."""
    rows = make_control(inventory, lab_dir, timeout, local).dialogs(scope)
    _partial(ctx, rows, ["zone", "call_id", "from", "to", "state"])


@dialogs.command("end")
@click.argument("call_id")
@click.option("--dry-run", is_flag=True, help="Print the request; hang up nothing.")
@control_options
@pass_ctx
def dialogs_end(ctx: Context, call_id: str, dry_run: bool, inventory: Path | None,
                lab_dir: Path | None, timeout: float, local: bool) -> None:
    """Hang up the call CALL_ID (BYE to both ends) on the proxy that holds it."""
    c = make_control(inventory, lab_dir, timeout, local, dry_run)
    c.end_dialog(call_id)
    if dry_run:
        _dry(ctx, c, f"end {call_id}")
        return
    emit(ctx.output, {"ended": call_id}, text=f"ended {call_id}")


# -- zone -------------------------------------------------------------------------------------

@click.group()
def zone() -> None:
    """SIP zones: status, drain (no new calls, wait for calls to end), restore.

    \b
      zpctl zone status lab1/a
      zpctl zone drain lab1/a --timeout 300     # progress on stderr; exit 7 on the deadline
      zpctl zone restore lab1/a                 # registrations synced, gate open, then traffic
      zpctl zone drain lab1/a --dry-run         # the exact JSON-RPC requests
    """


@zone.command("status")
@click.argument("spec", metavar="DC/ZONE")
@control_options
@pass_ctx
def zone_status(ctx: Context, spec: str, inventory: Path | None, lab_dir: Path | None,
                timeout: float, local: bool) -> None:
    """Whether the lbs send the zone new calls, its registrations and calls in progress."""
    st = make_control(inventory, lab_dir, timeout, local).zone_status(spec)
    emit(ctx.output, st, text="\n".join(f"{k:<14} {_text(v)}" for k, v in st.items()))


def _text(value: Any) -> str:
    """A value for people: ``{'lab1-lb': 'active'}`` as ``lab1-lb=active``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "-"
    return str(value)


@zone.command("drain")
@click.argument("spec", metavar="DC/ZONE")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the zone's calls in progress have ended.")
@click.option("--deadline", type=DEADLINE, default=300.0, show_default=True,
              help="Seconds to wait for calls to end (exit 7 when they have not).")
@click.option("--dry-run", is_flag=True, help="Print the requests; change nothing.")
@control_options
@pass_ctx
def zone_drain(ctx: Context, spec: str, wait: bool, deadline: float, dry_run: bool,
               inventory: Path | None, lab_dir: Path | None, timeout: float,
               local: bool) -> None:
    """Stop new calls to DC/ZONE (lbs and sbcs), pause its switches, wait for its calls."""
    c = make_control(inventory, lab_dir, timeout, local, dry_run)
    result = c.zone_drain(spec, wait=wait, timeout=deadline, progress=info)
    if dry_run:
        _dry(ctx, c, f"drain {spec}")
        return
    emit(ctx.output, result, text=f"{spec}: takes no new calls" +
         (f"; drained in {result.get('waited_s')} s" if result["drained"] else ""))


@zone.command("restore")
@click.argument("spec", metavar="DC/ZONE")
@click.option("--dry-run", is_flag=True, help="Print the requests; change nothing.")
@control_options
@pass_ctx
def zone_restore(ctx: Context, spec: str, dry_run: bool, inventory: Path | None,
                 lab_dir: Path | None, timeout: float, local: bool) -> None:
    """Put DC/ZONE back: copy the registrations it lacks from its sister zone, open its
    warm-up gate, let the lbs and sbcs send it calls, resume its switches."""
    c = make_control(inventory, lab_dir, timeout, local, dry_run)
    result = c.zone_restore(spec, progress=info)
    if dry_run:
        _dry(ctx, c, f"restore {spec}")
        return
    emit(ctx.output, result, text=f"{spec}: restored ({result['registrations']['copied']} "
                                  "registrations copied)")


# -- dc ---------------------------------------------------------------------------------------

@click.group()
def dc() -> None:
    """Data centers: status, admission and failover to the pair."""


@dc.command("status")
@click.argument("dc_id", metavar="DC")
@control_options
@pass_ctx
def dc_status(ctx: Context, dc_id: str, inventory: Path | None, lab_dir: Path | None,
              timeout: float, local: bool) -> None:
    """The data center's lbs and zones, whether it serves calls, and which lb answers at
    its service address (address_held_by: of an lb pair, the one that holds it)."""
    st = make_control(inventory, lab_dir, timeout, local).dc_status(dc_id)
    emit(ctx.output, st)


@dc.command("failover")
@click.option("--from", "from_dc", required=True, help="The data center to leave.")
@click.option("--to", "to_dc", required=True, help="Its pair, which must be serving.")
@click.option("--dry-run", is_flag=True, help="Print the requests; change nothing.")
@control_options
@pass_ctx
def dc_failover(ctx: Context, from_dc: str, to_dc: str, dry_run: bool, inventory: Path | None,
                lab_dir: Path | None, timeout: float, local: bool) -> None:
    """Send new traffic to the pair: the first data center's lbs take no new requests
    (phones re-register on the pair).  Undo with `zpctl zone restore DC/ZONE` per zone."""
    c = make_control(inventory, lab_dir, timeout, local, dry_run)
    result = c.dc_failover(from_dc, to_dc, progress=info)
    if dry_run:
        _dry(ctx, c, f"failover {from_dc} -> {to_dc}")
        return
    emit(ctx.output, result, text=f"{from_dc} takes no new requests; traffic goes to {to_dc}")


@dc.command("admission")
@click.argument("dc_id", metavar="DC")
@click.option("--cps", type=click.IntRange(1, 100000), metavar="N",
              help="New calls per second each lb admits.")
@click.option("--registrations", type=click.IntRange(1, 1000000), metavar="N",
              help="New registrations per second each lb admits.")
@click.option("--dry-run", is_flag=True, help="Print the requests; change nothing.")
@control_options
@pass_ctx
def dc_admission(ctx: Context, dc_id: str, cps: int | None, registrations: int | None,
                 dry_run: bool, inventory: Path | None, lab_dir: Path | None, timeout: float,
                 local: bool) -> None:
    """Show or set what the data center's lbs admit.

    Each lb takes new calls and new registrations up to a rate per second (the inventory's
    capacity.cps and capacity.registrations) and answers the rest 503 with Retry-After,
    before any transaction is made; below 20 % free shared memory it answers every new
    request so.  SHED_RATE and SHED_MEMORY count those answers since the lb started.

    Lower the rates during an incident (a slow database, a zone short of switches), raise
    them for a known event; they hold until the lb restarts, when the inventory's figures
    come back.

    \b
    Examples:
      zpctl dc admission lab1
      zpctl dc admission lab1 --cps 50 --dry-run
      zpctl -o json dc admission lab1 --registrations 300
    """
    c = make_control(inventory, lab_dir, timeout, local, dry_run)
    rows = c.admission(dc_id, cps, registrations)
    if dry_run:
        _dry(ctx, c, f"admission of {dc_id}")
        return
    emit(ctx.output, rows, rows=rows, columns=["lb", "cps", "registrations", "inventory_cps",
                                              "inventory_registrations", "shed_rate",
                                              "shed_memory"])
