"""zpctl cdr: the platform's call records (list, one call's journey, retention)."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import click

from zpctl import cdr as records
from zpctl.cli.accounts import db_options, db_target
from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit
from zpctl.db import connect, require_current
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.lab.journeys import record_sources
from zpctl.model import LoadedInventory, load_inventory

RESULTS = ("answered", "failed", "busy", "cancelled", "declined", "unavailable", "not-found",
           "refused")
_AGO = re.compile(r"(\d+)\s*([smhd])")


def parse_when(value: str, option: str) -> float:
    """A time: ISO 8601 (UTC unless it says otherwise) or an age (``90s``, ``15m``,
    ``2h``, ``7d``: that long ago)."""
    m = _AGO.fullmatch(value.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return time.time() - n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ZpctlError(f"{option} {value!r}: give an ISO time (2026-12-05T10:00) or an age "
                         "(90s, 15m, 2h, 7d)", ExitCode.USAGE) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@click.group("cdr")
def cdr_group() -> None:
    """Call records: every call that entered the platform, and each call's journey across
    the lb, zone proxy, switch, SBC and carrier, from the platform database.

    \b
      zpctl cdr ls inventories/lab --since 1h --result failed
      zpctl cdr ls inventories/lab --emergency --since 7d  # emergency calls, callbacks
      zpctl cdr journey inventories/lab CALL-ID          # every hop, in time order
      zpctl -o json cdr journey inventories/lab CALL-ID
      zpctl cdr purge inventories/lab --dry-run          # the inventory's retention
    The database is the running lab's, or --platform (the inventory's), or --db FILE.
    Accounts with privacy.mask_personal_data see external numbers' last digits hidden.
    """


def _open(inventory: Path, db: Path | None, platform_db: bool, lab_dir: Path | None,
          secrets_file: Path | None) -> tuple[LoadedInventory, Any]:
    inv = load_inventory(inventory)
    target, _secrets = db_target(inv, db, lab_dir, secrets_file, platform_db)
    return inv, target


def _masked(row: dict[str, Any], masked: set[str]) -> dict[str, Any]:
    if row.get("account") not in masked:
        return row
    return {**row, **{k: records.mask_number(row[k]) for k in ("caller", "callee")
                      if isinstance(row.get(k), str)}}


@cdr_group.command("ls")
@INVENTORY_ARG
@click.option("--account", help="Only calls from this account's users or to its numbers (its id).")
@click.option("--user", help="Only calls from or to this extension.")
@click.option("--number", help="Only calls from or to this number (E.164, as dialled).")
@click.option("--since", help="From this time: ISO 8601 (UTC) or an age (15m, 2h, 7d).")
@click.option("--until", help="Before this time: ISO 8601 (UTC) or an age.")
@click.option("--result", type=click.Choice(RESULTS),
              help="Only calls that ended so (failed: every call not answered).")
@click.option("--emergency", is_flag=True,
              help="Only emergency calls and the callbacks emergency services made (a zone "
                   "proxy marked a record of the call).")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True,
              help="At most this many calls, newest first.")
@db_options
@pass_ctx
def ls_cmd(ctx: Context, inventory: Path, account: str | None, user: str | None,
           number: str | None, since: str | None, until: str | None, result: str | None,
           emergency: bool, limit: int, db: Path | None, platform_db: bool,
           lab_dir: Path | None, secrets_file: Path | None) -> None:
    """List the calls that entered the platform, newest first: when, account, caller,
    callee, result (SIP code), talk time, and where they entered.  EMERGENCY is the
    country whose emergency services an emergency call went to, or "callback" for a call
    they made back to the caller (empty, JSON null, for any other call)."""
    filters = records.Filters(account, user, number,
                              parse_when(since, "--since") if since else None,
                              parse_when(until, "--until") if until else None, result, limit,
                              emergency)
    inv, target = _open(inventory, db, platform_db, lab_dir, secrets_file)
    with connect(target) as conn:
        require_current(conn)
        found = records.calls(conn, inv, filters)
    masked = records.Directory(inv).masked
    rows = [_masked(c.as_dict(), masked) for c in found]
    # the column when it says something: asked for, or a listed call is marked
    marked = ["emergency"] if emergency or any(c.emergency for c in found) else []
    emit(ctx.output, rows, rows=rows, columns=["start", "account", "caller", "callee",
                                                "result", "code", "seconds", "mos", *marked,
                                                "entry", "call_id"])


@cdr_group.command("journey")
@INVENTORY_ARG
@click.argument("call_id")
@db_options
@pass_ctx
def journey_cmd(ctx: Context, inventory: Path, call_id: str, db: Path | None, platform_db: bool,
                lab_dir: Path | None, secrets_file: Path | None) -> None:
    """Show every hop of one call in time order: the phone or carrier it came from, the
    lb, zone proxy, switch (both legs), SBC and the far end, with when the INVITE reached
    each hop (and the gap from the hop before), when it was answered and ended there, the
    SIP code or hangup cause, and the switch's codec, SRTP suite and MOS.  CALL_ID is the
    Call-ID as the call entered (the first column of `zpctl cdr ls`)."""
    inv, target = _open(inventory, db, platform_db, lab_dir, secrets_file)
    with connect(target) as conn:
        require_current(conn)
        hops = records.journey(conn, inv, call_id)
    if not hops:
        raise ZpctlError(f"no records of call {call_id!r} in {target.label}", ExitCode.USAGE)
    gaps = records.gaps_ms(hops)
    data = [{**h.as_dict(), "gap_ms": g} for h, g in zip(hops, gaps, strict=True)]
    rows = [{"#": i + 1, "hop": h.node, "role": h.role, "setup": _clock(h.setup),
             "+ms": "" if g is None else f"{g:.1f}", "answer": _clock(h.answer),
             "end": _clock(h.end), "result": h.result,
             "media": _media(h.detail)} for i, (h, g) in enumerate(zip(hops, gaps, strict=True))]
    emit(ctx.output, {"call_id": call_id, "hops": data}, rows=rows,
         columns=["#", "hop", "role", "setup", "+ms", "answer", "end", "result", "media"])


def _clock(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def _media(detail: dict[str, Any]) -> str:
    parts = [detail.get("codec") or ""]
    if detail.get("srtp"):
        parts.append("srtp")
    if detail.get("mos") is not None:
        parts.append(f"MOS {detail['mos']:.2f}")
    if detail.get("loss_pct") is not None:
        parts.append(f"loss {detail['loss_pct']:g}%")
    if detail.get("jitter_ms") is not None:
        parts.append(f"jitter {detail['jitter_ms']:g} ms")
    return " ".join(p for p in parts if p)


@cdr_group.command("purge")
@INVENTORY_ARG
@click.option("--older-than", "older_than", type=click.IntRange(1, 3650),
              help="Days to keep (default: the inventory's database.record_retention_days).")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@db_options
@pass_ctx
def purge_cmd(ctx: Context, inventory: Path, older_than: int | None, dry_run: bool,
              db: Path | None, platform_db: bool, lab_dir: Path | None,
              secrets_file: Path | None) -> None:
    """Remove call records older than the retention (in one transaction).  Run it daily
    (a cron job or systemd timer) to enforce the inventory's retention."""
    inv, target = _open(inventory, db, platform_db, lab_dir, secrets_file)
    days = older_than or inv.model.database.record_retention_days
    with connect(target) as conn:
        require_current(conn)
        done = records.purge(conn, time.time() - days * 86400, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    emit(ctx.output, {"database": target.label, "days": days, "dry_run": dry_run,
                      **done.as_dict()},
         text=f"{target.label}: {verb} {done.acc} hop records and {done.switch_cdr} switch "
              f"records older than {days} days")


@cdr_group.command("recover")
@INVENTORY_ARG
@click.option("--spool", "spools", multiple=True, type=click.Path(path_type=Path),
              help="A switch's spool folder or file (repeatable; default: every lab "
                   "switch's <state>/freeswitch/cdr-spool).")
@click.option("--journal", "journals", multiple=True, type=click.Path(path_type=Path),
              help="A Kamailio node's log with its ACC lines (repeatable; default: every "
                   "lab lb's, proxy's and SBC's kamailio.log).")
@click.option("--dry-run", is_flag=True, help="Count what would be loaded; load nothing.")
@db_options
@pass_ctx
def recover_cmd(ctx: Context, inventory: Path, spools: tuple[Path, ...],
                journals: tuple[Path, ...], dry_run: bool, db: Path | None, platform_db: bool,
                lab_dir: Path | None, secrets_file: Path | None) -> None:
    """Load the call records the database missed while it was down or unreachable.

    \b
    The switches spool what the database refused (mod_cdr_pg_csv): each spool file is
    loaded in one transaction and renamed *.loaded.  The lb, proxies and SBCs write each
    record to their log as well (acc's log backend, the journal): the records the database
    lacks are loaded from it.  A record already there is never loaded twice, so running it
    again is safe.  Run it once the database is back; in production give the spool folders
    and the nodes' logs (journalctl -u kamailio > FILE) with --spool and --journal.
    """
    inv, target = _open(inventory, db, platform_db, lab_dir, secrets_file)
    if not spools and not journals:
        lab_spools, lab_journals = record_sources(Lab(lab_dir), inv)
        spools, journals = tuple(lab_spools), tuple(lab_journals)
    files = [f for s in spools for f in (records.spool_files(s) if s.is_dir()
                                         else [s] if s.exists() else [])]
    rows = []
    with connect(target) as conn:
        require_current(conn)
        for f in files:
            rows.append({"kind": "spool", **records.recover_spool(conn, f, dry_run).as_dict()})
        for f in journals:
            if f.exists():
                rows.append({"kind": "journal",
                             **records.recover_journal(conn, f, dry_run).as_dict()})
    emit(ctx.output, {"database": target.label, "dry_run": dry_run, "files": rows}, rows=rows,
         columns=["kind", "file", "loaded", "already", "bad"])
