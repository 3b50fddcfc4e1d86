"""`zpctl recordings ls`: inputs, dry runs, reply parsing, and scripted switches.

The reply formats are the script's and FreeSWITCH's own:
- ``lua zp_recordings.lua list [account]`` writes one JSON object a line, ordered by
  ``started`` (freeswitch/scripts/zp_recordings.lua.j2: ``"key": value`` joined by ", ",
  control characters, ``"`` and ``\\`` written as ``\\u00XX``);
- an api with no output is answered ``-ERR no reply`` by mod_event_socket
  (mod_event_socket.c:1594-1596); a script that is missing or fails gives
  ``-ERR Cannot execute script`` after what it wrote (mod_lua.cpp, lua_api_function); no
  mod_lua, ``-ERR lua Command not found!``.
The switches are scripted ESL peers (tests/esl_peer.py) with a model of the script's API
as their ``lua`` answer.
"""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import INVENTORIES
from tests.esl_peer import EslPeer, ThreadedEslPeer
from zpctl.cli.main import main
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError
from zpctl.freeswitch import recordings as rec
from zpctl.model import load_inventory

LAB = str(INVENTORIES / "lab")
US01 = str(INVENTORIES / "us01")
PW = "esl-secret-42"
LIST = "api lua zp_recordings.lua list"
LAB1 = ["lab1-a-switch1", "lab1-a-switch2", "lab1-b-switch1"]
LAB2 = ["lab2-a-switch1", "lab2-b-switch1"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "internal error" not in err
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = out
    return code, data, err


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZPCTL_ESL_OVERRIDE", raising=False)


def row(uuid: str, account: str, switch: str, started: int, duration_ms: int,
        caller: str = "1001", callee: str = "1002") -> dict[str, Any]:
    """An index row as the RECORD_STOP hook writes it."""
    return {"uuid": uuid, "account": account,
            "path": f"/var/lib/zpctl/freeswitch/recordings/{account}/2024-05-01/{uuid}.wav",
            "switch": switch, "caller": caller, "callee": callee, "started": started,
            "duration_ms": duration_ms}


def lua_line(r: dict[str, Any]) -> str:
    """One row as zp_recordings.lua writes it (its js() escaping, its separators)."""
    def js(s: str) -> str:
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 32 or c in '"\\\x7f' else c
                             for c in s) + '"'

    return "{" + ", ".join(
        [*(f'"{k}": {js(r[k])}' for k in ("uuid", "account", "path", "switch", "caller",
                                          "callee")),
         f'"started": {r["started"]}', f'"duration_ms": {r["duration_ms"]}']) + "}\n"


# 2024-05-01 09:30:00, 09:45:10 and 10:02:03 UTC
T1, T2, T3 = 1714555800, 1714556710, 1714557723
A1 = row("a1-uuid", "acme", "lab1-a-switch1", T1, 61234)
G1 = row("g1-uuid", "globex", "lab1-a-switch2", T2, 5000, caller="+15550100",
         callee="2001")
A2 = row("a2-uuid", "acme", "lab2-a-switch1", T3, 950)  # during a failover to lab2


# --- help, inputs and dry runs (nothing is contacted) -------------------------------------

def test_help_teaches_what_is_recorded_and_where(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "recordings", "--help")
    assert code == 0
    for words in ("call_recording_automatic", "call_recording_adhoc", "*2", "PATH", "SWITCH",
                  "RECORD_STOP", "Each data center keeps its own index", "Exit codes",
                  "zpctl recordings ls INVENTORY [ACCOUNT]"):
        assert words in out
    code, out, _ = run(capsys, "recordings", "ls", "--help")
    assert code == 0
    assert "INVENTORY [ACCOUNT]" in out
    for opt in ("--limit", "--dry-run", "--esl-address", "--zone", "--switch", "--timeout"):
        assert opt in out


def test_dry_run_prints_the_exact_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "recordings", "ls", LAB, "acme", "--dry-run")
    assert code == 0, err
    # acme's sites are in lab1; lab2, its pair, indexes what it recorded during a failover
    assert out.splitlines() == [f"lab1-a-switch1 (127.1.1.14:8021): {LIST} acme",
                                f"lab2-a-switch1 (127.1.2.14:8021): {LIST} acme"]
    assert ("if lab1-a-switch1 does not answer, the same commands go to lab1-a-switch2, "
            "then lab1-b-switch1") in err
    assert "if lab2-a-switch1 does not answer, the same commands go to lab2-b-switch1" in err
    code, doc, _ = run(capsys, "-o", "json", "recordings", "ls", LAB, "acme", "--dry-run")
    assert code == 0
    assert doc == {"dry_run": True,
                   "commands": [{"switch": "lab1-a-switch1", "address": "127.1.1.14:8021",
                                 "command": f"{LIST} acme"},
                                {"switch": "lab2-a-switch1", "address": "127.1.2.14:8021",
                                 "command": f"{LIST} acme"}],
                   "fallback_switches": {"lab1-a-switch1": LAB1[1:],
                                         "lab2-a-switch1": LAB2[1:]}}


def test_without_account_every_data_center_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "recordings", "ls", LAB, "--dry-run", "--limit", "5")
    assert code == 0
    assert out.splitlines() == [f"lab1-a-switch1 (127.1.1.14:8021): {LIST}",
                                f"lab2-a-switch1 (127.1.2.14:8021): {LIST}"]
    code, out, err = run(capsys, "recordings", "ls", LAB, "acme", "--zone", "lab2",
                         "--dry-run")
    assert code == 0
    assert out.splitlines() == [f"lab2-a-switch1 (127.1.2.14:8021): {LIST} acme"]
    assert "lab1" not in err
    code, out, _ = run(capsys, "recordings", "ls", LAB, "--switch", "lab1-b-switch1",
                       "--dry-run")
    assert out.splitlines() == [f"lab1-b-switch1 (127.1.1.24:8021): {LIST}"]


@pytest.mark.parametrize(("args", "says"), [
    ([LAB, "nosuch"], "no account 'nosuch' in inventory lab; known: acme, globex"),
    ([LAB, "acme", "--switch", "nosuch"], "no switch named 'nosuch'"),
    ([LAB, "--zone", "nodc"], "no switch in zone 'nodc'"),
    ([US01, "northwind", "--zone", "au-sydney"],
     "not a switch of account northwind; its recordings are indexed by the switches of "
     "de-frankfurt, jp-osaka, jp-tokyo, nl-amsterdam, us-east-ny, us-east-va"),
], ids=["account", "switch", "zone", "other-dc"])
def test_bad_names_are_usage_errors(args: list[str], says: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "recordings", "ls", *args, "--dry-run")
    assert code == ExitCode.USAGE == 2
    assert says in err
    assert out is None


def test_the_data_centers_of_an_account() -> None:
    loaded = load_inventory(Path(US01))
    # sites in jp-tokyo, nl-amsterdam, us-east-ny; their pairs jp-osaka, de-frankfurt, us-east-va
    assert rec.account_dcs(loaded, "northwind") == (
        "de-frankfurt", "jp-osaka", "jp-tokyo", "nl-amsterdam", "us-east-ny", "us-east-va")
    with pytest.raises(ZpctlError, match="no account 'x'") as exc:
        rec.account_dcs(loaded, "x")
    assert exc.value.exit_code == ExitCode.USAGE
    by_dc = rec.list_targets(load_inventory(Path(LAB)), "acme")
    assert {dc: [t.name for t in ts] for dc, ts in by_dc.items()} == {"lab1": LAB1,
                                                                     "lab2": LAB2}


# --- the reply formats ----------------------------------------------------------------------

def test_rows_are_parsed_as_the_script_writes_them() -> None:
    text = lua_line(A1) + "\n" + lua_line(G1) + "\r\n  \n"
    got = rec.parse_rows(text, "lab1-a-switch1")
    assert [r.as_dict() for r in got] == [A1, G1]
    assert list(got[0].as_dict()) == ["uuid", "account", "path", "switch", "caller", "callee",
                                      "started", "duration_ms"]
    assert (got[0].duration_s, got[0].started_iso) == (61.234, "2024-05-01T09:30:00Z")


def test_escaped_characters_come_back() -> None:
    odd = row("u", "acme", "sw", T1, 0, caller='say "hi"\\\t')
    assert rec.parse_rows(lua_line(odd))[0].caller == 'say "hi"\\\t'


@pytest.mark.parametrize("reply", ["-ERR no reply\n", "-ERR no reply", "", "\n\n"])
def test_no_rows(reply: str) -> None:
    assert rec.parse_rows(reply, "sw1") == []


def test_whole_number_floats_are_read() -> None:
    line = lua_line(A1).replace(f"{T1}", f"{T1}.0").replace("61234", "61234.0")
    assert rec.parse_rows(line)[0] == rec.parse_rows(lua_line(A1))[0]


@pytest.mark.parametrize(("reply", "says"), [
    ("-ERR lua Command not found!\n", "is mod_lua loaded?"),
    (lua_line(A1) + "-ERR Cannot execute script\n", "is the rendered config deployed?"),
    ("not json\n", "line 1 is not a recording row (not JSON): not json"),
    (lua_line(A1) + "[1, 2]\n", "line 2 is not a recording row (not a JSON object)"),
    (json.dumps({k: v for k, v in A1.items() if k != "path"}), "(no path)"),
    (json.dumps({**A1, "started": True}), "(bad started)"),
    (lua_line({**A1, "duration_ms": -1}), "(bad duration_ms)"),
    (lua_line({**A1, "started": 10**13}), "(bad started)"),
    (json.dumps({**A1, "caller": 1001}), "(bad caller)"),
    (json.dumps(A1).replace(str(T1), "NaN"), "(bad started)"),
    ('{"uuid": "' + "x" * 300, "..."),  # cut short: the line is shortened in the message
], ids=["no-mod-lua", "script-failed", "not-json", "array", "missing", "bool", "negative",
        "huge", "caller-number", "nan", "long"])
def test_bad_replies_are_remote_errors_naming_the_switch(reply: str, says: str) -> None:
    with pytest.raises(RemoteFailure, match=f"^switch lab1-a-switch1: {LIST}: ") as exc:
        rec.parse_rows(reply, "lab1-a-switch1", LIST)
    assert says in exc.value.message
    assert len(exc.value.message) < 300
    assert exc.value.exit_code == ExitCode.REMOTE_ERROR == 6


def test_merge_and_newest() -> None:
    a1, g1, a2 = (rec.parse_rows(lua_line(r))[0] for r in (A1, G1, A2))
    merged = rec.merge([[a1, a2], [g1]])
    assert merged == [a1, g1, a2]
    assert rec.newest(merged, 2) == [g1, a2]
    assert rec.newest(merged, 10) == merged
    assert rec.newest(merged) == merged


def test_failures_become_one_error() -> None:
    rec.raise_for_failures({})
    with pytest.raises(RemoteFailure, match=r"^data center lab2: switch x: boom$"):
        rec.raise_for_failures({"lab2": RemoteFailure("switch x: boom")})
    with pytest.raises(Unreachable) as exc:
        rec.raise_for_failures({"lab1": RemoteFailure("switch x: boom"),
                                "lab2": Unreachable("none answered")})
    assert exc.value.message == ("the index of 2 data centers was not read: data center "
                                 "lab1: switch x: boom; data center lab2: none answered")


# --- against scripted switches ---------------------------------------------------------------

class RecordingIndex:
    """``lua zp_recordings.lua list [account]`` over one data center's rows, written as the
    script writes them; an empty output is left to the peer, which answers
    ``-ERR no reply`` as mod_event_socket does."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows = list(rows or [])

    def lua(self, args: str) -> str:
        argv = args.split(" ")
        if argv[0] != "zp_recordings.lua":
            return "-ERR Cannot execute script\n"
        account = argv[2] if len(argv) > 2 else None
        rows = sorted((r for r in self.rows if account is None or r["account"] == account),
                      key=lambda r: r["started"])
        return "".join(lua_line(r) for r in rows)

    def install(self, sw: EslPeer) -> None:
        sw.answers["lua"] = self.lua


def _switch(t: ThreadedEslPeer) -> EslPeer:
    assert t.peer is not None
    return t.peer


def _api_sent(t: ThreadedEslPeer) -> list[str]:
    return [c for c in _switch(t).commands if c.startswith("api ")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _override(lab1: str, lab2: str) -> str:
    return ",".join([*(f"{n}={lab1}" for n in LAB1), *(f"{n}={lab2}" for n in LAB2)])


@pytest.fixture
def dcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[tuple[ThreadedEslPeer, ThreadedEslPeer]]:
    """One switch answering for lab1 and one for lab2, each with its data center's index."""
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(f"esl_password: {PW}\n")
    secrets.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("ZPCTL_SECRETS", str(secrets))
    monkeypatch.delenv("ZPCTL_SECRET_ESL_PASSWORD", raising=False)
    with ThreadedEslPeer(PW, hostname="lab1-a-switch1") as one, \
            ThreadedEslPeer(PW, hostname="lab2-a-switch1") as two:
        RecordingIndex([G1, A1]).install(_switch(one))
        RecordingIndex([A2]).install(_switch(two))
        monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", _override(one.address, two.address))
        yield one, two


def test_ls_merges_the_data_centers(dcs: tuple[ThreadedEslPeer, ThreadedEslPeer],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    one, two = dcs
    code, out, err = run(capsys, "recordings", "ls", LAB)
    assert code == 0, err
    path = "/var/lib/zpctl/freeswitch/recordings"
    assert out.splitlines() == [
        "STARTED               ACCOUNT  CALLER     CALLEE  DURATION  SWITCH          PATH",
        f"2024-05-01T09:30:00Z  acme     1001       1002    61.2      lab1-a-switch1  "
        f"{path}/acme/2024-05-01/a1-uuid.wav",
        f"2024-05-01T09:45:10Z  globex   +15550100  2001    5.0       lab1-a-switch2  "
        f"{path}/globex/2024-05-01/g1-uuid.wav",
        f"2024-05-01T10:02:03Z  acme     1001       1002    0.9       lab2-a-switch1  "
        f"{path}/acme/2024-05-01/a2-uuid.wav"]
    assert _api_sent(one) == [LIST]
    assert _api_sent(two) == [LIST]

    code, doc, _ = run(capsys, "-o", "json", "recordings", "ls", LAB, "--limit", "2")
    assert code == 0
    assert doc == [G1, A2]


def test_ls_of_an_account(dcs: tuple[ThreadedEslPeer, ThreadedEslPeer],
                          capsys: pytest.CaptureFixture[str]) -> None:
    one, two = dcs
    code, doc, err = run(capsys, "-o", "json", "recordings", "ls", LAB, "acme")
    assert code == 0, err
    assert doc == [A1, A2]
    assert _api_sent(one) == _api_sent(two) == [f"{LIST} acme"]  # what the dry run prints
    code, doc, _ = run(capsys, "-o", "json", "recordings", "ls", LAB, "globex", "--zone",
                       "lab2")
    assert (code, doc) == (0, [])


def test_an_empty_index_is_no_rows(dcs: tuple[ThreadedEslPeer, ThreadedEslPeer],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "recordings", "ls", LAB, "initech")
    assert code == 0, err
    assert out.splitlines() == ["STARTED  ACCOUNT  CALLER  CALLEE  DURATION  SWITCH  PATH"]
    assert "no recordings of account initech in the indexes read" in err


def test_a_data_center_that_does_not_answer(
        dcs: tuple[ThreadedEslPeer, ThreadedEslPeer], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    one, _ = dcs
    monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", _override(one.address,
                                                       f"127.0.0.1:{_closed_port()}"))
    code, doc, err = run(capsys, "-o", "json", "recordings", "ls", LAB, "--timeout", "2")
    assert code == ExitCode.UNREACHABLE == 7
    assert doc == [A1, G1]  # what the data centers that answered hold
    assert ("data center lab2: none of the 2 switch(es) answered (lab2-a-switch1, "
            "lab2-b-switch1)") in err
    assert "asking lab2-b-switch1" in err


def test_a_switch_that_does_not_answer_is_skipped(
        dcs: tuple[ThreadedEslPeer, ThreadedEslPeer], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    one, _ = dcs
    monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", f"lab1-a-switch1=127.0.0.1:{_closed_port()},"
                                             f"lab1-a-switch2={one.address}")
    code, doc, err = run(capsys, "-o", "json", "recordings", "ls", LAB, "--zone", "lab1",
                         "--timeout", "2")
    assert code == 0, err
    assert doc == [A1, G1]
    assert "asking lab1-a-switch2" in err


def test_an_error_answer_is_exit_6(dcs: tuple[ThreadedEslPeer, ThreadedEslPeer],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    one, _ = dcs
    del _switch(one).answers["lua"]  # no mod_lua: "-ERR lua Command not found!"
    code, _, err = run(capsys, "recordings", "ls", LAB, "--zone", "lab1")
    assert code == ExitCode.REMOTE_ERROR == 6
    assert "data center lab1: switch lab1-a-switch1: api lua zp_recordings.lua list" in err
    assert "is mod_lua loaded?" in err
    assert _api_sent(one) == [LIST]  # asked once: the other switches would answer the same


def test_no_esl_password_is_exit_9(dcs: tuple[ThreadedEslPeer, ThreadedEslPeer],
                                   capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.yml"
    empty.write_text("{}\n")
    empty.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("ZPCTL_SECRETS", str(empty))
    code, _, err = run(capsys, "recordings", "ls", LAB)
    assert code == ExitCode.ENVIRONMENT == 9
    assert "esl_password" in err


def test_the_library_call_for_callers_that_are_not_async(
        dcs: tuple[ThreadedEslPeer, ThreadedEslPeer]) -> None:
    loaded = load_inventory(Path(LAB))
    got = rec.list_recordings(loaded, "acme", password=PW)
    assert [(r.uuid, r.switch, r.duration_s) for r in got] == [
        ("a1-uuid", "lab1-a-switch1", 61.234), ("a2-uuid", "lab2-a-switch1", 0.95)]
    assert [r.uuid for r in rec.list_recordings(loaded, zone="lab1", password=PW)] == [
        "a1-uuid", "g1-uuid"]
