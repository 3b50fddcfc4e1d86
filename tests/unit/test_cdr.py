"""Call records: listing, journeys (their order and completeness), masking, retention.

The rows are those the lab's real hops write (their shape as measured in a lab call: an
extension call through lb, zone proxy and switch), in a sqlite platform database; the
integration tests check the same against the lab's PostgreSQL and its real records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import INVENTORIES
from zpctl import cdr
from zpctl.cli.main import main
from zpctl.db import DbTarget, connect, create_sqlite
from zpctl.model import load_inventory

INV = load_inventory(INVENTORIES / "lab")
ADDR = {p.name: p.node.address for p in INV.nodes()}
T0 = time.time() - 60
A, B = "1-100@127.0.8.10", "b2b-200"
PHONE, CALLEE = "127.0.8.10", "127.0.8.11"


def _acc(node: str, callid: str, setup: float, done: float, src: str, dst: str,
         method: str = "INVITE", code: str = "200", caller: str = "1001",
         callee: str = "1002", domain: str = "acme.lab.zpctl.test") -> dict[str, Any]:
    return {"method": method, "callid": callid, "sip_code": code, "sip_reason": "OK",
            "time": "2026-12-05 10:00:00", "time_attr": T0 + done, "node": node,
            "setup_ts": T0 + setup, "src_ip": src, "from_user": caller, "from_domain": domain,
            "to_user": callee, "ruri_user": callee, "dst": dst}


def _leg(uuid: str, call_id: str, direction: str, start: float, answer: float, end: float,
         originator: str | None = None, bridged: str | None = None) -> dict[str, Any]:
    return {"uuid": uuid, "originator_uuid": originator, "bridged_to": bridged,
            "call_id": call_id, "direction": direction, "node": "lab1-a-switch1",
            "account": "acme", "caller": "1001", "destination": "1002",
            "start_us": int((T0 + start) * 1e6), "answer_us": int((T0 + answer) * 1e6),
            "end_us": int((T0 + end) * 1e6), "hangup_cause": "NORMAL_CLEARING",
            "read_codec": "PCMU", "write_codec": "PCMU", "mos": "4.5"}


def _extension_call() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lb, proxy, switch = ADDR["lab1-lb"], ADDR["lab1-a-proxy"], ADDR["lab1-a-switch1"]
    acc = [
        _acc("lab1-lb", A, 0.000, 0.072, PHONE, f"sip:{proxy}:5060"),
        _acc("lab1-a-proxy", A, 0.0004, 0.072, lb, f"sip:{switch}:5061;transport=tls"),
        # the switch's clock trails by up to a step: its leg B set up "before" the proxy
        _acc("lab1-a-proxy", B, 0.048, 0.055, switch, f"sip:{lb};lr;received=sip:{CALLEE}:5060"),
        _acc("lab1-lb", B, 0.050, 0.052, proxy, f"sip:{CALLEE}:5060"),
        *(_acc(n, c, 2.6, 2.6, "x", "", method="BYE")
          for n, c in [("lab1-lb", A), ("lab1-a-proxy", A), ("lab1-a-proxy", B), ("lab1-lb", B)]),
    ]
    legs = [_leg("ua", A, "inbound", 0.014, 0.068, 2.6, bridged="ub"),
            _leg("ub", B, "outbound", 0.024, 0.056, 2.6, originator="ua")]
    return acc, legs


def _db(tmp_path: Path, acc: list[dict[str, Any]], legs: list[dict[str, Any]]) -> DbTarget:
    path = tmp_path / "records.sqlite"
    create_sqlite(path)
    target = DbTarget.sqlite(path)
    with connect(target) as db, db.transaction():
        for row in acc:
            db.execute(f"INSERT INTO acc ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))
        for row in legs:
            db.execute(f"INSERT INTO switch_cdr ({', '.join(row)}) VALUES "
                       f"({', '.join('?' * len(row))})", list(row.values()))
    return target


def test_a_journey_runs_phone_lb_proxy_switch_switch_proxy_lb_phone(tmp_path: Path) -> None:
    target = _db(tmp_path, *_extension_call())
    with connect(target) as db:
        hops = cdr.journey(db, INV, A)
    assert [h.role for h in hops] == ["phone", "lb", "proxy", "switch", "switch", "proxy",
                                      "lb", "phone"]
    assert [h.node for h in hops][1:-1] == ["lab1-lb", "lab1-a-proxy", "lab1-a-switch1",
                                            "lab1-a-switch1", "lab1-a-proxy", "lab1-lb"]
    assert hops[0].node == PHONE and hops[-1].node == f"{CALLEE}:5060"
    assert [h.detail.get("leg") for h in hops[3:5]] == ["A", "B"]
    assert cdr.check_journey(hops, cdr.Directory(INV)) == []
    gaps = cdr.gaps_ms(hops)
    assert gaps[2] == pytest.approx(0.4, abs=0.05)  # lb -> proxy
    assert all(h.end is not None for h in hops[1:])


@pytest.mark.parametrize(("drop", "says"), [
    (("acc", "lab1-a-proxy", B), "leg b2b-200: the hop it was sent to left no record"),
    (("leg", "ua", ""), "relayed 1-100@127.0.8.10 to lab1-a-switch1, which has no record"),
    (("acc", "lab1-lb", B), "relayed b2b-200 to lab1-lb, which has no record"),
])
def test_a_missing_record_is_named(tmp_path: Path, drop: tuple[str, str, str],
                                   says: str) -> None:
    acc, legs = _extension_call()
    kind, key, callid = drop
    if kind == "acc":
        acc = [r for r in acc if not (r["node"] == key and r["callid"] == callid)]
    else:
        legs = [r for r in legs if r["uuid"] != key]
    target = _db(tmp_path, acc, legs)
    with connect(target) as db:
        problems = cdr.check_journey(cdr.journey(db, INV, A), cdr.Directory(INV))
    assert any(says in p for p in problems), problems


def test_times_that_run_backwards_are_named(tmp_path: Path) -> None:
    acc, legs = _extension_call()
    acc[1]["setup_ts"] = T0 - 0.050  # the proxy "got" the INVITE 50 ms before the lb
    target = _db(tmp_path, acc, legs)
    with connect(target) as db:
        problems = cdr.check_journey(cdr.journey(db, INV, A), cdr.Directory(INV))
    assert problems == ["lab1-a-proxy set up 50.0 ms before lab1-lb, the hop before it"]


def test_calls_are_what_entered_at_an_edge_filtered(tmp_path: Path) -> None:
    acc, legs = _extension_call()
    acc.append(_acc("lab1-lb", "busy-1", 10, 10.5, PHONE, "", code="486", callee="1003"))
    acc.append(_acc("lab1-a-sbc", "in-1", 20, 20.1, "127.0.9.1", "", caller="+12125550100",
                    callee="+15550100002", domain="127.0.9.1"))
    target = _db(tmp_path, acc, legs)
    with connect(target) as db:
        every = cdr.calls(db, INV)
        assert [c.call_id for c in every] == ["in-1", "busy-1", A]  # newest first; not B
        assert [c.account for c in every] == ["acme", "acme", "acme"]  # by DID, by domain
        assert [c.result for c in every] == ["answered", "busy", "answered"]
        assert every[2].as_dict()["seconds"] == pytest.approx(2.528, abs=0.001)
        assert [c.call_id for c in cdr.calls(db, INV, cdr.Filters(result="failed"))] == ["busy-1"]
        assert [c.call_id for c in cdr.calls(db, INV, cdr.Filters(user="1003"))] == ["busy-1"]
        assert [c.call_id for c in cdr.calls(db, INV, cdr.Filters(number="+12125550100"))] \
            == ["in-1"]
        assert cdr.calls(db, INV, cdr.Filters(account="globex")) == []
        assert [c.call_id for c in cdr.calls(db, INV, cdr.Filters(since=T0 + 5,
                                                                   until=T0 + 15))] == ["busy-1"]


def test_masking_hides_an_external_numbers_last_digits_only() -> None:
    assert cdr.mask_number("+12125550100") == "+1212555****"
    assert cdr.mask_number("1001") == "1001"
    assert cdr.mask_number("*97") == "*97"


def test_purge_removes_only_what_is_older_than_the_retention(tmp_path: Path) -> None:
    acc, legs = _extension_call()
    old = _acc("lab1-lb", "old-1", -40 * 86400, -40 * 86400, PHONE, "")
    target = _db(tmp_path, [*acc, old], [*legs, _leg("uo", "old-1", "inbound", -40 * 86400,
                                                      -40 * 86400, -40 * 86400)])
    with connect(target) as db:
        dry = cdr.purge(db, time.time() - 30 * 86400, dry_run=True)
        assert (dry.acc, dry.switch_cdr) == (1, 1)
        assert len(db.execute("SELECT id FROM acc")) == len(acc) + 1
        done = cdr.purge(db, time.time() - 30 * 86400)
        assert (done.acc, done.switch_cdr) == (1, 1)
        assert len(db.execute("SELECT id FROM acc")) == len(acc)
        assert db.execute("SELECT uuid FROM switch_cdr ORDER BY uuid") == [("ua",), ("ub",)]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_lists_journeys_and_masks_for_an_account_that_asks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acc, legs = _extension_call()
    acc.append(_acc("lab1-a-sbc", "in-1", 20, 20.1, "127.0.9.1", "", caller="+12125550100",
                    callee="+15550100002", domain="127.0.9.1"))
    target = _db(tmp_path, acc, legs)
    db = str(target.path)
    code, out, err = _cli(capsys, "-o", "json", "cdr", "journey", str(INVENTORIES / "lab"), A,
                          "--db", db)
    assert code == 0, err
    assert '"role": "switch"' in out and '"gap_ms"' in out
    inv = tmp_path / "inv"
    import shutil  # noqa: PLC0415
    shutil.copytree(INVENTORIES / "lab", inv)
    acme = inv / "accounts" / "acme.yml"
    acme.write_text(acme.read_text() + "privacy:\n  mask_personal_data: true\n")
    code, out, err = _cli(capsys, "cdr", "ls", str(inv), "--db", db)
    assert code == 0, err
    assert "+1212555****" in out and "+12125550100" not in out
    assert "1001" in out  # an extension is not personal data to hide
    code, _out, err = _cli(capsys, "cdr", "journey", str(inv), "no-such-call", "--db", db)
    assert code == 2 and "no records of call 'no-such-call'" in err
    code, _out, err = _cli(capsys, "cdr", "ls", str(inv), "--db", db, "--since", "yesterday")
    assert code == 2 and "--since 'yesterday'" in err


SPOOLED = ("INSERT INTO switch_cdr (uuid,originator_uuid,call_id,direction,node,caller,"
           "start_us,mos) VALUES ({uuid},null,'c-1','inbound','lab1-a-switch1','O''Brien',"
           "1733400000000000,4.5);")


def test_a_spool_is_loaded_once_read_as_literals_never_run(tmp_path: Path) -> None:
    target = _db(tmp_path, *_extension_call())
    spool = tmp_path / "cdr-spool.sql"
    spool.write_text("\n".join([
        SPOOLED.format(uuid="'s-1'"),
        SPOOLED.format(uuid="'ua'"),  # already in the database: skipped
        SPOOLED.format(uuid="'x'); DROP TABLE acc; --"),  # not a literal: refused
    ]) + "\n")
    with connect(target) as db:
        got = cdr.recover_spool(db, spool)
        assert (got.loaded, got.already) == (1, 1)
        assert len(got.bad) == 1 and got.bad[0].startswith("line 3:")
        assert db.execute("SELECT caller, originator_uuid, mos FROM switch_cdr "
                          "WHERE uuid = 's-1'") == [("O'Brien", None, 4.5)]
        assert "acc" in db.tables()
    assert spool.exists()  # a file with a bad line stays, for a person to look at
    spool.write_text(SPOOLED.format(uuid="'s-2'") + "\n")
    assert cdr.spool_files(tmp_path) == [spool]
    with connect(target) as db:
        assert cdr.recover_spool(db, spool).loaded == 1
    assert cdr.spool_files(tmp_path) == []
    assert (tmp_path / "cdr-spool.sql.loaded").exists()


JOURNAL = (" 9(123) NOTICE: acc [acc.c:292]: acc_log_request(): ACC: transaction answered: "
           "timestamp={ts};time_attr={ts}.123;method={method};from_tag=ab;to_tag=cd;"
           "call_id={callid};code=200;reason=OK;node={node};setup_ts={ts}.001234;"
           "src_ip=127.0.8.10;from_user=1001;from_domain=acme.lab.zpctl.test;to_user=1002;"
           "ruri_user=1002;dst=sip:127.0.1.1;lr;received=sip:127.0.8.11:5060\n")


def test_the_journal_fills_in_what_the_database_missed_once(tmp_path: Path) -> None:
    acc, legs = _extension_call()
    target = _db(tmp_path, acc, legs)
    ts = int(T0)
    log = tmp_path / "kamailio.log"
    log.write_text("".join([
        " 1(1) INFO: <core> something else\n",
        JOURNAL.format(ts=ts, method="INVITE", callid=A, node="lab1-lb"),  # already there
        JOURNAL.format(ts=ts, method="INVITE", callid="lost-1", node="lab1-lb"),
        JOURNAL.format(ts=ts + 3, method="BYE", callid="lost-1", node="lab1-lb"),
    ]))
    with connect(target) as db:
        got = cdr.recover_journal(db, log)
        assert (got.loaded, got.already) == (2, 1)
        rows = db.execute("SELECT method, setup_ts, dst FROM acc WHERE callid = 'lost-1' "
                          "ORDER BY method DESC")
        assert rows[0] == ("INVITE", pytest.approx(ts + 0.001234),
                           "sip:127.0.1.1;lr;received=sip:127.0.8.11:5060")
        again = cdr.recover_journal(db, log)
        assert (again.loaded, again.already) == (0, 3)
        assert {c.call_id for c in cdr.calls(db, INV)} == {A, "lost-1"}


def test_a_journal_line_with_the_media_relays_quality() -> None:
    """A proxy's BYE line ends with mos, jitter_ms and loss_pct (empty when unset); a line
    from before schema 4 has none of them."""
    line = JOURNAL.format(ts=1, method="BYE", callid="q", node="lab1-a-proxy").rstrip("\n")
    old = cdr.parse_journal(line)
    assert old is not None
    assert (old["dst"], old["mos"]) == ("sip:127.0.1.1;lr;received=sip:127.0.8.11:5060", None)
    new = cdr.parse_journal(line + ";mos=4.4;jitter_ms=3;loss_pct=0")
    assert new is not None
    assert (new["dst"], new["mos"], new["jitter_ms"], new["loss_pct"]) == (
        "sip:127.0.1.1;lr;received=sip:127.0.8.11:5060", "4.4", "3", "0")
    unset = cdr.parse_journal(line + ";mos=;jitter_ms=;loss_pct=")
    assert unset is not None
    assert (unset["dst"], unset["mos"]) == ("sip:127.0.1.1;lr;received=sip:127.0.8.11:5060", None)


@pytest.mark.parametrize("refusal_first", [True, False])
def test_a_refusal_recorded_while_relaying_the_answer_does_not_hide_the_hop(
        tmp_path: Path, refusal_first: bool) -> None:
    """The proxy's media node did not answer for the callee's 200 (its SDP): the proxy
    recorded a 503 from the reply's source, in the same millisecond as the 200 it relayed.
    The hop is the answered one, reached from the switch, whichever row comes first."""
    acc, legs = _extension_call()
    lb = ADDR["lab1-lb"]
    refusal = {**_acc("lab1-a-proxy", B, 0.048, 0.055, lb, ""), "sip_code": "503",
               "sip_reason": "Media Unavailable"}
    at = next(i for i, r in enumerate(acc) if r["node"] == "lab1-a-proxy" and r["callid"] == B)
    acc.insert(at if refusal_first else at + 1, refusal)
    target = _db(tmp_path, acc, legs)
    with connect(target) as db:
        hops = cdr.journey(db, INV, A)
    proxy_b = next(h for h in hops if h.node == "lab1-a-proxy" and h.call_id == B)
    assert (proxy_b.result, proxy_b.detail["from"]) == ("200", ADDR["lab1-a-switch1"])
    assert cdr.check_journey(hops, cdr.Directory(INV)) == []


def test_a_flows_report_names_a_missing_record_and_a_flow_without_calls(tmp_path: Path) -> None:
    from zpctl.lab.journeys import JourneyReport  # noqa: PLC0415

    target = _db(tmp_path, *_extension_call())
    with connect(target) as db:
        hops = cdr.journey(db, INV, A)
        call = cdr.calls(db, INV)[0]
    ok = JourneyReport([(call, hops, [])])
    assert (ok.problems, ok.summary) == ([], "lb>proxy>switch>switch>proxy>lb")
    broken = JourneyReport([(call, hops, ["lab1-lb: x"])])
    assert broken.problems == [f"journey {A}: lab1-lb: x"]
    assert JourneyReport([]).problems == ["no call record"]
    assert JourneyReport([], require_calls=False).problems == []
    assert JourneyReport([], enabled=False).summary == "-"


def test_a_switch_reads_its_passwords_from_the_file_beside_its_config(tmp_path: Path) -> None:
    from zpctl.lab.services import switch_env  # noqa: PLC0415

    conf = tmp_path / "freeswitch"
    conf.mkdir()
    argv = ["freeswitch", "-nf", "-conf", str(conf), "-log", "x"]
    assert switch_env(argv) is None  # no password file: nothing to point at
    (conf / "pgpass").write_text("127.1.0.5:5432:*:freeswitch:pw\n")
    env = switch_env(argv)
    assert env is not None and env["PGPASSFILE"] == str(conf / "pgpass")
    assert switch_env(["freeswitch", "-nf"]) is None


def _emergency_calls() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The extension call, an emergency call (the zone proxy marked its INVITE record "US";
    the lb left it NULL) and a callback from emergency services through the SBC (the zone
    proxy marked "callback")."""
    acc, legs = _extension_call()
    lb, proxy = ADDR["lab1-lb"], ADDR["lab1-a-proxy"]
    acc += [
        _acc("lab1-lb", "e-911", 10, 10.2, PHONE, f"sip:{proxy}:5060", callee="911"),
        {**_acc("lab1-a-proxy", "e-911", 10.001, 10.2, lb, "sip:127.0.3.1:5060",
                callee="911"), "emergency": "US"},
        _acc("lab1-lb", "e-911", 40, 40, PHONE, "", method="BYE", callee="911"),
        _acc("lab1-a-sbc", "cb-1", 50, 50.1, "127.0.9.1", f"sip:{proxy}:5060",
             caller="+12125550911", callee="+15550100002", domain="127.0.9.1"),
        {**_acc("lab1-a-proxy", "cb-1", 50.001, 50.1, ADDR["lab1-a-sbc"], "sip:127.0.8.10",
                caller="+12125550911", callee="+15550100002", domain="127.0.9.1"),
         "emergency": "callback"},
    ]
    return acc, legs


def test_emergency_calls_and_callbacks_are_marked_and_filtered(tmp_path: Path) -> None:
    target = _db(tmp_path, *_emergency_calls())
    with connect(target) as db:
        every = cdr.calls(db, INV)
        assert [(c.call_id, c.emergency) for c in every] == [
            ("cb-1", "callback"), ("e-911", "US"), (A, None)]
        assert all("emergency" in c.as_dict() for c in every)
        assert every[1].as_dict()["seconds"] == pytest.approx(29.8, abs=0.001)  # its BYE
        marked = cdr.calls(db, INV, cdr.Filters(emergency=True))
        assert [(c.call_id, c.emergency) for c in marked] == [("cb-1", "callback"),
                                                               ("e-911", "US")]
        # in the database, with the other filters and within --limit
        assert [c.call_id for c in cdr.calls(db, INV, cdr.Filters(emergency=True, limit=1))] \
            == ["cb-1"]
        assert [c.call_id for c in cdr.calls(db, INV, cdr.Filters(emergency=True,
                                                                   until=T0 + 45))] == ["e-911"]
        assert cdr.calls(db, INV, cdr.Filters(emergency=True, user="1002")) == []
        where, _params = cdr._calls_query(cdr.Directory(INV), cdr.Filters(emergency=True))
        assert "emergency IS NOT NULL" in where
        hops = cdr.journey(db, INV, "e-911")
    assert [h.detail.get("emergency") for h in hops if h.role in ("lb", "proxy")] == [None, "US"]


def test_cli_ls_emergency_lists_the_marked_calls_with_the_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json  # noqa: PLC0415

    target = _db(tmp_path, *_emergency_calls())
    inv, db = str(INVENTORIES / "lab"), str(target.path)
    code, out, err = _cli(capsys, "-o", "json", "cdr", "ls", inv, "--db", db)
    assert code == 0, err
    assert {r["call_id"]: r["emergency"] for r in json.loads(out)} == {
        "cb-1": "callback", "e-911": "US", A: None}
    code, out, err = _cli(capsys, "-o", "json", "cdr", "ls", inv, "--db", db, "--emergency")
    assert code == 0, err
    assert [(r["call_id"], r["emergency"]) for r in json.loads(out)] == [
        ("cb-1", "callback"), ("e-911", "US")]
    code, out, err = _cli(capsys, "cdr", "ls", inv, "--db", db, "--emergency")
    assert code == 0, err
    lines = out.splitlines()
    assert "EMERGENCY" in lines[0] and len(lines) == 3
    assert "callback" in lines[1] and " US " in lines[2] and A not in out
    code, out, err = _cli(capsys, "cdr", "ls", inv, "--db", db, "--emergency", "--result",
                          "busy")
    assert code == 0, err
    assert out.splitlines()[1:] == []
    code, out, err = _cli(capsys, "cdr", "ls", "--help")
    assert code == 0 and "--emergency" in out


def test_a_journal_line_with_the_emergency_mark_is_recovered_with_it(tmp_path: Path) -> None:
    """Schema 5's lines end with emergency (empty when unset: NULL); a line from before
    (with or without the media figures) is loaded with it NULL."""
    line = JOURNAL.format(ts=1, method="INVITE", callid="e", node="lab1-a-proxy").rstrip("\n")
    marked = cdr.parse_journal(line + ";mos=;jitter_ms=;loss_pct=;emergency=US")
    assert marked is not None
    assert (marked["dst"], marked["mos"], marked["emergency"]) == (
        "sip:127.0.1.1;lr;received=sip:127.0.8.11:5060", None, "US")
    bye = cdr.parse_journal(line + ";mos=4.4;jitter_ms=3;loss_pct=0;emergency=callback")
    assert bye is not None
    assert (bye["mos"], bye["loss_pct"], bye["emergency"]) == ("4.4", "0", "callback")
    unset = cdr.parse_journal(line + ";mos=;jitter_ms=;loss_pct=;emergency=")
    assert unset is not None
    assert (unset["dst"], unset["emergency"]) == (
        "sip:127.0.1.1;lr;received=sip:127.0.8.11:5060", None)
    for old in (line, line + ";mos=4.4;jitter_ms=3;loss_pct=0"):
        parsed = cdr.parse_journal(old)
        assert parsed is not None and parsed["emergency"] is None

    target = _db(tmp_path, [], [])
    ts = int(T0)
    log = tmp_path / "kamailio.log"
    lb = JOURNAL.format(ts=ts, method="INVITE", callid="e-lost", node="lab1-lb")
    proxy = JOURNAL.format(ts=ts, method="INVITE", callid="e-lost", node="lab1-a-proxy")
    old = JOURNAL.format(ts=ts, method="INVITE", callid="old-1", node="lab1-lb")
    log.write_text(lb.replace("\n", ";mos=;jitter_ms=;loss_pct=;emergency=\n")
                   + proxy.replace("\n", ";mos=;jitter_ms=;loss_pct=;emergency=US\n") + old)
    with connect(target) as db:
        got = cdr.recover_journal(db, log)
        assert (got.loaded, got.already, got.bad) == (3, 0, [])
        assert db.execute("SELECT node, callid, emergency FROM acc ORDER BY callid, node") == [
            ("lab1-a-proxy", "e-lost", "US"), ("lab1-lb", "e-lost", None),
            ("lab1-lb", "old-1", None)]
        assert [c.call_id for c in cdr.calls(db, INV, cdr.Filters(emergency=True))] == ["e-lost"]
