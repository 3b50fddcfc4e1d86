"""Call records: the list of calls and one call's journey across every hop.

The records are written by the platform itself (docs/CDR.md): the lb, the zone proxies
and the SBCs write one ``acc`` row per hop and transaction (Kamailio's acc: an INVITE's
final reply, a BYE's), the switches one ``switch_cdr`` row per channel (mod_cdr_pg_csv).
A call is what entered the platform at an edge (an lb from a phone, an SBC from a
carrier or a premises PBX): an INVITE row there whose source is not one of the
platform's nodes.  Its journey follows the Call-ID through the SIP hops to the switch,
across the switch's bridge (the A leg's channel to the B legs it originated, each with a
Call-ID of its own) and on through the SIP hops of each B leg, to the far end.

Nothing here writes: listing and journeys only read, and may run against a replica.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from zpctl.db import Db
from zpctl.model import LoadedInventory
from zpctl.model.schema import Role

ACC_COLUMNS = ("method", "callid", "sip_code", "sip_reason", "time_attr", "node", "setup_ts",
               "src_ip", "from_user", "from_domain", "ruri_user", "dst", "mos", "jitter_ms",
               "loss_pct", "emergency")
CDR_COLUMNS = ("uuid", "originator_uuid", "bridged_to", "call_id", "direction", "node",
               "account", "caller", "destination", "start_us", "answer_us", "end_us",
               "hangup_cause", "disposition", "sip_status", "read_codec", "write_codec", "srtp",
               "mos", "jitter", "packets_in", "packets_lost", "packets_out", "recording",
               "recovered")
EDGE_ROLES = (Role.LB, Role.SBC)
# Challenges are not a call's outcome: the phone answers them with a new INVITE.
CHALLENGES = ("401", "407")


@dataclass
class Hop:
    """One hop of a call: a SIP node's transaction, a switch channel, or an end point."""

    node: str
    role: str
    call_id: str
    setup: float | None = None
    answer: float | None = None
    end: float | None = None
    result: str = ""  # the SIP code (SIP hops), the hangup cause (switch channels)
    detail: dict[str, Any] = field(default_factory=dict)
    # the hop the call reached this one from (None: the first, or not known)
    parent: Hop | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "role": self.role, "call_id": self.call_id,
                "setup": _iso(self.setup), "answer": _iso(self.answer), "end": _iso(self.end),
                "result": self.result, **self.detail}


@dataclass
class Call:
    """A call as it entered the platform (its edge hop's record)."""

    call_id: str
    entry: str  # the edge node
    source: str  # the phone's or peer's address
    caller: str
    callee: str
    account: str
    setup: float | None
    answer: float | None
    end: float | None
    code: str
    reason: str
    # the media relay's figures (a zone proxy's BYE record; the worst of the call's legs)
    mos: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    # a zone proxy's mark on a record of the call's Call-ID: the country of the emergency
    # services it went to ("US"), "callback" (those services calling the caller back), or None
    emergency: str | None = None

    @property
    def result(self) -> str:
        if self.code.startswith("2"):
            return "answered"
        return {"486": "busy", "487": "cancelled", "603": "declined", "480": "unavailable",
                "404": "not-found", "403": "refused"}.get(self.code, "failed")

    def as_dict(self) -> dict[str, Any]:
        seconds = (round(self.end - self.answer, 3)
                   if self.answer is not None and self.end is not None else None)
        return {"call_id": self.call_id, "start": _iso(self.setup), "account": self.account,
                "caller": self.caller, "callee": self.callee, "result": self.result,
                "code": self.code, "reason": self.reason, "seconds": seconds,
                "mos": self.mos, "jitter_ms": self.jitter_ms, "loss_pct": self.loss_pct,
                "emergency": self.emergency, "entry": self.entry, "source": self.source}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _float(v: Any) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


class Directory:
    """What the inventory says about addresses, nodes and accounts."""

    def __init__(self, inv: LoadedInventory) -> None:
        self.roles = {p.name: p.role.value for p in inv.nodes()}
        self.addresses = {a: p.name for p in inv.nodes()
                          for a in (p.node.address, p.node.public, p.node.mgmt)}
        self.edges = {p.name for p in inv.nodes() if p.role in EDGE_ROLES}
        self.domains = {inv.model.account_domain(a): a.id for a in inv.model.accounts}
        self.numbers = {n.number: a.id for a in inv.model.accounts for n in a.numbers}
        self.numbers.update({d: a.id for a in inv.model.accounts for u in a.users for d in u.dids})
        self.masked = {a.id for a in inv.model.accounts if a.privacy.mask_personal_data}

    def account_of(self, from_domain: str, caller: str, callee: str) -> str:
        return (self.domains.get(from_domain) or self.numbers.get(callee)
                or self.numbers.get(caller) or "")


def _acc_rows(db: Db, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    rows = db.execute(f"SELECT {', '.join(ACC_COLUMNS)} FROM acc WHERE {where}", params)  # noqa: S608
    return [dict(zip(ACC_COLUMNS, r, strict=True)) for r in rows]


def _cdr_rows(db: Db, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    rows = db.execute(f"SELECT {', '.join(CDR_COLUMNS)} FROM switch_cdr WHERE {where}", params)  # noqa: S608
    return [dict(zip(CDR_COLUMNS, r, strict=True)) for r in rows]


def _in(values: Iterable[str]) -> tuple[str, list[str]]:
    vals = sorted(values)
    return "(" + ", ".join("?" * len(vals)) + ")", vals


@dataclass(frozen=True)
class Filters:
    account: str | None = None
    user: str | None = None  # an extension, caller or callee
    number: str | None = None  # a number, caller or callee
    since: float | None = None
    until: float | None = None
    result: str | None = None  # answered, failed, busy, ...
    limit: int = 100
    emergency: bool = False  # only calls a zone proxy marked (emergency, or a callback)


# What a result filter means for the entry hop's final reply.
RESULT_CODES = {"busy": ("486",), "cancelled": ("487",), "declined": ("603",),
                "unavailable": ("480",), "not-found": ("404",), "refused": ("403",)}


def _calls_query(d: Directory, f: Filters) -> tuple[str, list[Any]]:
    """The SQL that finds the calls (every filter in the database: a busy platform's
    records are millions of rows, and --limit must bound what is read)."""
    where = ["method = 'INVITE'", "sip_code NOT IN ('401', '407')"]
    params: list[Any] = []
    edges, names = _in(d.edges)
    where.append(f"node IN {edges}")
    params += names
    own, addrs = _in(d.addresses)
    where.append(f"COALESCE(src_ip, '') NOT IN {own}")  # a leg from inside: not an entry
    params += addrs
    if f.since is not None:
        where.append("setup_ts >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append("setup_ts < ?")
        params.append(f.until)
    for who in (f.user, f.number):
        if who:
            where.append("(from_user = ? OR ruri_user = ?)")
            params += [who, who]
    if f.account:  # by the caller's domain, else by the account's numbers (DIDs)
        domains = [dom for dom, a in d.domains.items() if a == f.account]
        numbers = [n for n, a in d.numbers.items() if a == f.account]
        din, dvals = _in(domains or [""])
        nin, nvals = _in(numbers or [""])
        where.append(f"(from_domain IN {din} OR ruri_user IN {nin} OR from_user IN {nin})")
        params += dvals + nvals + nvals
    if f.result == "answered":
        where.append("sip_code LIKE '2%'")
    elif f.result == "failed":
        where.append("sip_code NOT LIKE '2%'")
    elif f.result:
        codes, cvals = _in(RESULT_CODES[f.result])
        where.append(f"sip_code IN {codes}")
        params += cvals
    if f.emergency:  # any record of the call's Call-ID marked (acc_emergency_idx)
        where.append("callid IN (SELECT callid FROM acc WHERE emergency IS NOT NULL)")
    return " AND ".join(where) + " ORDER BY setup_ts DESC LIMIT ?", [*params, f.limit]


def calls(db: Db, inv: LoadedInventory, f: Filters = Filters()) -> list[Call]:
    """The calls that entered the platform, newest first, filtered (at most ``f.limit``)."""
    d = Directory(inv)
    where, params = _calls_query(d, f)
    rows = _acc_rows(db, where, params)
    ends: dict[tuple[str, str], float] = {}
    quality: dict[str, Quality] = {}
    marks: dict[str, str] = {}
    if rows:
        ids, vals = _in({r["callid"] for r in rows})
        for b in _acc_rows(db, f"(method = 'BYE' OR emergency IS NOT NULL) AND callid IN {ids}"
                           " ORDER BY time_attr", vals):
            if b["emergency"]:
                marks.setdefault(b["callid"], b["emergency"])
            if b["method"] != "BYE":
                continue
            ts = _float(b["time_attr"])
            if ts is not None:
                ends.setdefault((b["node"], b["callid"]), ts)
            quality.setdefault(b["callid"], Quality()).add(b)
    out = []
    for r in rows:
        caller, callee = r["from_user"] or "", r["ruri_user"] or ""
        setup, done = _float(r["setup_ts"]), _float(r["time_attr"])
        code = r["sip_code"] or ""
        answered = code.startswith("2")
        out.append(Call(r["callid"], r["node"], r["src_ip"] or "", caller, callee,
                        d.account_of(r["from_domain"] or "", caller, callee), setup,
                        done if answered else None,
                        ends.get((r["node"], r["callid"]), None if answered else done),
                        code, r["sip_reason"] or "", *quality.get(r["callid"], Quality()).worst(),
                        emergency=marks.get(r["callid"])))
    return out


@dataclass
class Quality:
    """The media relay's figures of a call's legs (acc BYE rows); the worst of each."""

    mos: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    loss_pct: list[float] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        for name in ("mos", "jitter_ms", "loss_pct"):
            value = _float(row[name])
            if value is not None:
                getattr(self, name).append(value)

    def worst(self) -> tuple[float | None, float | None, float | None]:
        return (min(self.mos, default=None), max(self.jitter_ms, default=None),
                max(self.loss_pct, default=None))


def journey(db: Db, inv: LoadedInventory, call_id: str) -> list[Hop]:
    """Every hop of one call (its Call-ID as it entered), in the order the call crossed
    them: the SIP hops of a Call-ID by the time the INVITE reached each, then the switch
    channel it reached, the legs that channel originated, each followed by its own SIP
    hops (a switch's clock and the proxies' are compared only hop to hop)."""
    d = Directory(inv)
    legs = _switch_legs(db, call_id)
    call_ids = {call_id} | {row["call_id"] for row in legs.values() if row["call_id"]}
    sip: dict[str, list[Hop]] = {}
    for h in _sip_hops(db, d, call_ids):
        sip.setdefault(h.call_id, []).append(h)
    order: list[Hop] = []
    placed_calls: set[str] = set()
    placed_legs: set[str] = set()

    def follow(cid: str, parent: Hop | None) -> None:
        if cid in placed_calls:
            return
        placed_calls.add(cid)
        chain = _chained(sip.get(cid, []), d)
        for h in chain:
            h.parent, parent = parent, h
            order.append(h)
        for a in sorted((r for r in legs.values() if r["call_id"] == cid
                         and r["direction"] == "inbound"), key=lambda r: r["start_us"] or 0):
            if a["uuid"] in placed_legs:
                continue
            placed_legs.add(a["uuid"])
            a_hop = _switch_hop(d, a, parent)
            order.append(a_hop)
            for b in sorted((r for r in legs.values() if r["direction"] != "inbound" and (
                    r["originator_uuid"] == a["uuid"] or a["bridged_to"] == r["uuid"])),
                    key=lambda r: r["start_us"] or 0):
                if b["uuid"] in placed_legs:
                    continue
                placed_legs.add(b["uuid"])
                b_hop = _switch_hop(d, b, a_hop)
                order.append(b_hop)
                if b["call_id"]:
                    follow(b["call_id"], b_hop)

    follow(call_id, None)
    # what the chain did not reach (a leg whose records are incomplete): after it, by time
    rest = [h for cid, hs in sip.items() if cid not in placed_calls for h in hs]
    rest += [_switch_hop(d, r) for u, r in legs.items() if u not in placed_legs]
    return _with_ends(order + sorted(rest, key=_when))


def _chained(hops: list[Hop], d: Directory) -> list[Hop]:
    """One Call-ID's SIP hops in the order the INVITE crossed them: from the hop whose
    source is none of the others, to the hop each relayed to; the rest by time."""
    pending = sorted(hops, key=_when)
    nodes = {h.node for h in pending}
    out: list[Hop] = []
    cur = next((h for h in pending if d.addresses.get(h.detail.get("from", "")) not in nodes),
               None)
    while cur is not None and cur in pending:
        out.append(cur)
        pending.remove(cur)
        nxt = d.addresses.get(next_host(cur.detail.get("to", "")))
        cur = next((h for h in pending if h.node == nxt), None)
    return out + pending


def _when(h: Hop) -> tuple[float, str]:
    return (h.setup if h.setup is not None else float("inf"), h.node)


def _switch_legs(db: Db, call_id: str) -> dict[str, dict[str, Any]]:
    """The switch channels of the call: those with its Call-ID, the legs they bridged
    to or originated, and on (a few rounds: a transfer adds legs)."""
    call_ids, uuids = {call_id}, set[str]()
    legs: dict[str, dict[str, Any]] = {}
    for _ in range(6):
        ids, idvals = _in(call_ids)
        where = f"call_id IN {ids}"
        params: list[Any] = list(idvals)
        if uuids:
            us, uvals = _in(uuids)
            where += f" OR uuid IN {us} OR originator_uuid IN {us} OR bridged_to IN {us}"
            params += uvals * 3
        grew = False
        for row in _cdr_rows(db, where, params):
            if row["uuid"] in legs:
                continue
            legs[row["uuid"]] = row
            grew = True
            uuids.update(row[k] for k in ("uuid", "originator_uuid", "bridged_to") if row[k])
            if row["call_id"]:
                call_ids.add(row["call_id"])
        if not grew:
            break
    return legs


def _sip_hops(db: Db, d: Directory, call_ids: set[str]) -> list[Hop]:
    ids, vals = _in(call_ids)
    rows = _acc_rows(db, f"callid IN {ids}", vals)
    hops: dict[tuple[str, str], Hop] = {}
    for r in sorted(rows, key=lambda x: _float(x["time_attr"]) or 0.0):
        key = (r["node"] or "?", r["callid"])
        if r["method"] == "INVITE":
            if r["sip_code"] in CHALLENGES:
                continue
            code = r["sip_code"] or ""
            if key in hops and hops[key].result.startswith("2") and not code.startswith("2"):
                # answered here, and also refused by this node while it relayed the answer
                # (a media node that did not answer for the 200's SDP): the answer is the
                # hop, its source the one that sent the INVITE
                continue
            done = _float(r["time_attr"])
            hops[key] = Hop(key[0], d.roles.get(key[0], "?"), r["callid"],
                            setup=_float(r["setup_ts"]),
                            answer=done if code.startswith("2") else None,
                            end=None if code.startswith("2") else done,
                            result=code, detail={"reason": r["sip_reason"] or "",
                                                 "from": r["src_ip"] or "", "to": r["dst"] or "",
                                                 "caller": r["from_user"] or "",
                                                 "callee": r["ruri_user"] or ""})
            if r["emergency"]:  # a zone proxy's mark: the country, or "callback"
                hops[key].detail["emergency"] = r["emergency"]
        elif r["method"] == "BYE" and key in hops and hops[key].end is None:
            hops[key].end = _float(r["time_attr"])
            if r["mos"] is not None:  # the media relay's figures of this leg (zone proxies)
                hops[key].detail.update({k: _float(r[k]) for k in ("mos", "jitter_ms",
                                                                   "loss_pct")})
    return list(hops.values())


def _switch_hop(d: Directory, row: dict[str, Any], parent: Hop | None = None) -> Hop:
    def us(v: Any) -> float | None:
        x = _float(v)
        return x / 1e6 if x else None

    node = row["node"] or "?"
    return Hop(node, d.roles.get(node, "switch"), row["call_id"] or "",
               setup=us(row["start_us"]), answer=us(row["answer_us"]), end=us(row["end_us"]),
               result=row["hangup_cause"] or "", parent=parent,
               detail={"leg": "A" if row["direction"] == "inbound" else "B",
                       "uuid": row["uuid"], "caller": unquote(row["caller"] or ""),
                       "callee": unquote(row["destination"] or ""),
                       "codec": row["read_codec"] or "", "srtp": row["srtp"] or "",
                       "mos": _float(row["mos"]), "jitter": _float(row["jitter"]),
                       "packets_in": row["packets_in"], "packets_lost": row["packets_lost"],
                       "sip_status": row["sip_status"] or "", "recording": row["recording"] or "",
                       "recovered": row["recovered"] == "true"})


SIP_ROLES = ("lb", "proxy", "sbc")


def _with_ends(hops: list[Hop]) -> list[Hop]:
    """The call's end points around the platform's hops: where the first SIP hop's
    request came from; where the last hop's went, when the last hop is a SIP one (a
    phone, a carrier, a premises PBX; a call a switch answered itself ends there)."""
    if not hops or hops[0].role not in SIP_ROLES:
        return hops
    first, last = hops[0], hops[-1]
    out = [Hop(first.detail.get("from") or "?", _end_role(first), first.call_id,
               setup=first.setup), *hops]
    target = (last.detail.get("to") or "").removeprefix("sip:")
    if last.role in SIP_ROLES and target:  # a hop that refused the call sent it nowhere
        out.append(Hop(target, _end_role(last), last.call_id, answer=last.answer,
                       end=last.end, result=last.result))
    return out


def gaps_ms(hops: list[Hop]) -> list[float | None]:
    """Each hop's setup after the setup of the hop the call reached it from, in ms: the
    time the INVITE took to cross (a SIP hop), or the switch's work before a leg."""
    return [round((h.setup - h.parent.setup) * 1000, 1)
            if h.setup is not None and h.parent is not None and h.parent.setup is not None
            else None for h in hops]


def _end_role(hop: Hop) -> str:
    return "carrier" if hop.role == "sbc" else "phone"


def mask_number(value: str, keep: int = 4) -> str:
    """An external number with its last digits hidden (``+1555020****``); extensions and
    names are left alone."""
    digits = sum(c.isdigit() for c in value)
    if digits < 7:
        return value
    return value[:-keep] + "*" * keep


@dataclass
class Purged:
    cutoff: float
    acc: int
    switch_cdr: int

    def as_dict(self) -> dict[str, Any]:
        return {"older_than": _iso(self.cutoff), "acc": self.acc, "switch_cdr": self.switch_cdr}


def purge(db: Db, cutoff: float, dry_run: bool = False) -> Purged:
    """Remove the records of calls older than ``cutoff`` (epoch seconds), in one
    transaction; dry run: count them."""
    where_acc = "COALESCE(time_attr, setup_ts, 0) < ?"
    where_cdr = "COALESCE(start_us, 0) < ?"
    with db.transaction():
        n_acc = int(db.execute(f"SELECT count(*) FROM acc WHERE {where_acc}", (cutoff,))[0][0])  # noqa: S608
        n_cdr = int(db.execute(f"SELECT count(*) FROM switch_cdr WHERE {where_cdr}",  # noqa: S608
                               (int(cutoff * 1e6),))[0][0])
        if not dry_run:
            db.execute(f"DELETE FROM acc WHERE {where_acc}", (cutoff,))  # noqa: S608
            db.execute(f"DELETE FROM switch_cdr WHERE {where_cdr}", (int(cutoff * 1e6),))  # noqa: S608
    return Purged(cutoff, n_acc, n_cdr)


# How far a switch's clock may trail the proxies' when a journey's times are compared
# across the two: FreeSWITCH's clock is a timer thread's (1 ms steps), which a loaded
# machine runs late by its scheduling delay.  Measured: 20.2 ms, a fresh clone's test of a
# PostgreSQL restart under load on 2 cores (10 ms was not enough).
CLOCK_TOLERANCE_S = 0.040
_HOST = re.compile(r"sips?:(?:[^@;>]*@)?\[?([0-9a-fA-F.:]+?)\]?(?::\d+)?(?:[;>]|$)")


def next_host(uri: str) -> str:
    """The host a hop relayed to (its ``dst``): ``sip:127.0.1.1;lr;...`` -> 127.0.1.1."""
    m = _HOST.match(uri or "")
    return m.group(1) if m else ""


def check_journey(hops: list[Hop], d: Directory) -> list[str]:
    """What is missing or inconsistent in a journey: a hop a SIP node relayed to that
    left no record (a platform node: lb, proxy, SBC, switch), a switch leg whose SIP hops
    left none, and times that run backwards (beyond the switch clock's step)."""
    problems: list[str] = []
    if len(hops) < 2 or hops[1].role not in ("lb", "sbc"):
        return [f"does not start at an edge (lb or sbc): {[h.role for h in hops[:2]]}"]
    # The next hop a SIP hop names is where it first sent the INVITE: after a failover, or
    # a route chosen once the transaction was made, another node of that role took it.
    reached = {(d.roles.get(h.node, h.role), h.call_id) for h in hops
               if h.role in SIP_ROLES or h.detail.get("leg") == "A"}
    for h in hops:
        if h.role in SIP_ROLES:
            target = d.addresses.get(next_host(h.detail.get("to", "")))
            if target is not None and (d.roles.get(target), h.call_id) not in reached:
                problems.append(f"{h.node} relayed {h.call_id} to {target}, which has no record")
        elif (h.role.startswith("switch") and h.detail.get("leg") == "B" and h.call_id
              and not any(x.call_id == h.call_id and x is not h and (
                  (x.role in SIP_ROLES and d.addresses.get(x.detail.get("from", "")) == h.node)
                  or x.detail.get("leg") == "A") for x in hops)):
            problems.append(f"{h.node}'s leg {h.call_id}: the hop it was sent to left no record")
        if (h.setup is not None and h.answer is not None and h.answer < h.setup - CLOCK_TOLERANCE_S
                and not h.detail.get("recovered")):
            problems.append(f"{h.node}: answered before set up")
        if h.answer is not None and h.end is None and h.role in SIP_ROLES:
            problems.append(f"{h.node}: {h.call_id} answered, no end recorded")
        if h.end is not None and h.answer is not None and h.end < h.answer - CLOCK_TOLERANCE_S:
            problems.append(f"{h.node}: ended before answered")
    for h in hops:
        p = h.parent
        # a channel a standby recovered starts at the recovery: its order says nothing
        if (h.setup is not None and p is not None and p.setup is not None
                and h.setup < p.setup - CLOCK_TOLERANCE_S
                and not h.detail.get("recovered") and not p.detail.get("recovered")):
            problems.append(f"{h.node} set up {1000 * (p.setup - h.setup):.1f} ms before "
                            f"{p.node}, the hop before it")
    return problems


# -- the switches' spool: records the database refused --------------------------------------

_SPOOLED = re.compile(r"INSERT INTO switch_cdr \(([a-z_, ]+)\) VALUES \((.*)\);\s*", re.I)
_LITERAL = re.compile(r"\s*(?:'((?:[^']|'')*)'|(null)|(-?[0-9.eE+]+))\s*(,|$)", re.I)


class SpoolError(ValueError):
    """A spool line that is not one of mod_cdr_pg_csv's INSERTs into switch_cdr."""


def parse_spooled(line: str) -> dict[str, str | None]:
    """One spooled record (mod_cdr_pg_csv's ``INSERT INTO switch_cdr (...) VALUES
    (...);``) as column -> value, read as SQL literals, never run as SQL."""
    m = _SPOOLED.fullmatch(line)
    if m is None:
        raise SpoolError("not an INSERT INTO switch_cdr")
    columns = [c.strip() for c in m.group(1).split(",")]
    unknown = set(columns) - set(CDR_COLUMNS)
    if unknown:
        raise SpoolError(f"unknown columns {sorted(unknown)}")
    values: list[str | None] = []
    text, pos = m.group(2), 0
    while pos < len(text):
        v = _LITERAL.match(text, pos)
        if v is None or v.end() == pos:
            raise SpoolError(f"cannot read the values at {text[pos:pos + 20]!r}")
        values.append(v.group(1).replace("''", "'") if v.group(1) is not None
                      else None if v.group(2) else v.group(3))
        pos = v.end()
    if len(values) != len(columns):
        raise SpoolError(f"{len(columns)} columns, {len(values)} values")
    return dict(zip(columns, values, strict=True))


@dataclass
class Recovered:
    file: str
    loaded: int = 0
    already: int = 0  # a record the database has (same uuid): not loaded twice
    bad: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "loaded": self.loaded, "already": self.already,
                "bad": self.bad}


def spool_files(folder: Path) -> list[Path]:
    """A switch's spool files not loaded yet (the current one and those rotated on HUP)."""
    return sorted(p for p in folder.glob("cdr-spool.sql*") if not p.name.endswith(".loaded"))


def recover_spool(db: Db, path: Path, dry_run: bool = False) -> Recovered:
    """Load a switch's spool file (the records the database refused) in one
    transaction; a record whose channel is already there is skipped.  The file is then
    renamed ``*.loaded`` so it is never loaded twice."""
    out = Recovered(str(path))
    rows = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(parse_spooled(line))
        except SpoolError as exc:
            out.bad.append(f"line {n}: {exc}")
    with db.transaction():
        for row in rows:
            if db.execute("SELECT 1 FROM switch_cdr WHERE uuid = ?", (row.get("uuid"),)):
                out.already += 1
                continue
            out.loaded += 1
            if not dry_run:
                db.execute(f"INSERT INTO switch_cdr ({', '.join(row)}) VALUES "  # noqa: S608
                           f"({', '.join('?' * len(row))})", list(row.values()))
    if not dry_run and not out.bad:
        path.rename(path.with_name(path.name + ".loaded"))
    return out


# -- the SIP hops' journal: their records, as lines in each node's log -------------------------

# acc's log backend writes a record as (acc.c acc_log_request, time_mode 2):
#   ACC: <event>: timestamp=<s>;time_attr=<s.mmm>;method=...;from_tag=...;to_tag=...;
#   call_id=...;code=...;reason=...;<the log_extra pairs, in their order>
JOURNAL_KEYS = ("timestamp", "time_attr", "method", "from_tag", "to_tag", "call_id", "code",
                "reason", "node", "setup_ts", "src_ip", "from_user", "from_domain", "to_user",
                "ruri_user", "dst")
# the media relay's figures, after them (schema 4; a log from before has none), then the
# emergency mark (schema 5; a log from before has none)
JOURNAL_QUALITY_KEYS = ("mos", "jitter_ms", "loss_pct")
_JOURNAL = re.compile(r"ACC: [^:]*: " + ";".join(f"{k}=(?P<{k}>.*?)" for k in JOURNAL_KEYS)
                      + "(?:" + "".join(f";{k}=(?P<{k}>.*?)" for k in JOURNAL_QUALITY_KEYS)
                      + r"(?:;emergency=(?P<emergency>.*?))?)?\s*$")


def parse_journal(line: str) -> dict[str, Any] | None:
    """One acc log line as an ``acc`` row (None: not a record of ours)."""
    m = _JOURNAL.search(line)
    if m is None:
        return None
    v = m.groupdict()
    if not v["node"] or not v["call_id"]:
        return None

    def num(x: str) -> float | None:
        return _float(x)

    return {"method": v["method"], "from_tag": v["from_tag"], "to_tag": v["to_tag"],
            "callid": v["call_id"], "sip_code": v["code"][:3], "sip_reason": v["reason"][:128],
            "time": dt.datetime.fromtimestamp(int(v["timestamp"] or 0)).isoformat(sep=" "),
            "time_attr": num(v["time_attr"]), "node": v["node"], "setup_ts": num(v["setup_ts"]),
            "src_ip": v["src_ip"] or None, "from_user": v["from_user"] or None,
            "from_domain": v["from_domain"] or None, "to_user": v["to_user"] or None,
            "ruri_user": v["ruri_user"] or None, "dst": v["dst"] or None,
            "mos": v["mos"] or None, "jitter_ms": v["jitter_ms"] or None,
            "loss_pct": v["loss_pct"] or None, "emergency": v["emergency"] or None}


def recover_journal(db: Db, path: Path, dry_run: bool = False) -> Recovered:
    """Load the records a node's log holds and the database lacks (same hop, Call-ID,
    method and code), in one transaction.  The log stays: loading it again adds nothing."""
    out = Recovered(str(path))
    rows = []
    with path.open(errors="replace") as fh:
        for line in fh:
            if "ACC: " in line:
                row = parse_journal(line)
                if row is not None:
                    rows.append(row)
    if not rows:
        return out
    since = min(r["time_attr"] or 0.0 for r in rows) - 60
    have = {tuple(r) for r in db.execute(
        "SELECT node, callid, method, sip_code FROM acc WHERE time_attr >= ?", (since,))}
    with db.transaction():
        for row in rows:
            key = (row["node"], row["callid"], row["method"], row["sip_code"])
            if key in have:
                out.already += 1
                continue
            have.add(key)
            out.loaded += 1
            if not dry_run:
                db.execute(f"INSERT INTO acc ({', '.join(row)}) VALUES "  # noqa: S608
                           f"({', '.join('?' * len(row))})", list(row.values()))
    return out
