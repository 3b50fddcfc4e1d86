"""`zpctl voicemail status|unlock`: inputs, dry runs, reply parsing, and a scripted switch.

The reply formats are FreeSWITCH's own, read from its source (signalwire/freeswitch):
- ``db select/<realm>/<key>`` writes the value, or nothing for a missing key
  (mod_db.c:391-400), and mod_event_socket answers an api with no output
  ``-ERR no reply\\n`` (mod_event_socket.c:1594-1596); bad arguments: ``!err!``
  (mod_db.c:457); ``db delete`` always ``+OK`` (mod_db.c:381-390);
- ``vm_boxcount [profile/]<user>@<domain>[|how]`` (mod_voicemail.c:3800) with ``all``:
  ``new:saved:new-urgent:saved-urgent`` (mod_voicemail.c:3874), an unknown profile:
  ``-ERR No such profile\\n`` (mod_voicemail.c:3847).
The switch itself is the scripted ESL peer (tests/esl_peer.py) with a small model of those
two APIs as its answers; the real-FreeSWITCH test is under tests/integration.
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
from zpctl.errors import ExitCode, RemoteFailure, ZpctlError
from zpctl.freeswitch import voicemail as vm
from zpctl.model import load_inventory

LAB = str(INVENTORIES / "lab")
PW = "esl-secret-42"
BOX = "1002@acme.lab.zpctl.test"
STATUS_CMDS = [f"api db select/zp_vmlock/{BOX}", f"api db select/zp_vmfail/{BOX}",
               f"api vm_boxcount acct-acme/{BOX}|all"]
UNLOCK_CMDS = [f"api db select/zp_vmlock/{BOX}", f"api db select/zp_vmfail/{BOX}",
               f"api db delete/zp_vmfail/{BOX}", f"api db delete/zp_vmlock/{BOX}"]


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


# --- help, inputs and dry runs (nothing is contacted) -------------------------------------

def test_help_teaches_lock_unlock_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "voicemail", "--help")
    assert code == 0
    for words in ("lockout_after", "wrong", "locked", "zpctl voicemail unlock", "mod_db",
                  "Exit codes", "7 no"):
        assert words in out
    code, out, _ = run(capsys, "voicemail", "status", "--help")
    assert code == 0
    assert "INVENTORY ACCOUNT EXTENSION" in out
    assert "--esl-address" in out and "--dry-run" in out
    code, out, _ = run(capsys, "voicemail", "unlock", "--help")
    assert code == 0
    assert "reset its wrong-PIN count" in out


def test_status_dry_run_prints_the_exact_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "voicemail", "status", LAB, "acme", "1002", "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [f"lab1-a-switch1 (127.1.1.14:8021): {c}" for c in STATUS_CMDS]
    assert ("if lab1-a-switch1 does not answer, the same commands go to lab1-a-switch2, "
            "then lab1-b-switch1") in err


def test_unlock_dry_run_prints_the_exact_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "voicemail", "unlock", LAB, "acme", "1002", "--dry-run")
    assert code == 0
    assert out.splitlines() == [f"lab1-a-switch1 (127.1.1.14:8021): {c}" for c in UNLOCK_CMDS]
    code, doc, _ = run(capsys, "-o", "json", "voicemail", "unlock", LAB, "acme", "1002",
                       "--dry-run")
    assert code == 0
    assert doc == {"dry_run": True,
                   "commands": [{"switch": "lab1-a-switch1", "address": "127.1.1.14:8021",
                                 "command": c} for c in UNLOCK_CMDS],
                   "fallback_switches": {"lab1-a-switch1": ["lab1-a-switch2",
                                                            "lab1-b-switch1"]}}


def test_the_paired_data_center_can_be_chosen(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "voicemail", "status", LAB, "acme", "1002", "--zone", "lab2",
                       "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == f"lab2-a-switch1 (127.1.2.14:8021): {STATUS_CMDS[0]}"


@pytest.mark.parametrize(("args", "says"), [
    (["nosuch", "1002"], "no account 'nosuch' in inventory lab; known: acme, globex"),
    (["acme", "9999"], "no extension '9999' in account acme; known: 1001, 1002, 1003, 1004"),
    (["acme", "1003"], "1003 (Carol Cole) of account acme has no voicemail box: the voicemail "
                       "feature is not in its features; users with one: 1001, 1002"),
    (["acme", "1002", "--switch", "nosuch"], "no switch named 'nosuch'"),
], ids=["account", "extension", "no-voicemail", "switch"])
@pytest.mark.parametrize("action", ["status", "unlock"])
def test_bad_names_are_usage_errors(action: str, args: list[str], says: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "voicemail", action, LAB, *args, "--dry-run")
    assert code == ExitCode.USAGE == 2
    assert says in err
    assert out is None


def test_a_switch_that_does_not_have_the_box_is_refused() -> None:
    loaded = load_inventory(Path(LAB))
    box = vm.resolve_box(loaded, "acme", "1002")
    other = vm.Box("acme", "1002", "acme.lab.zpctl.test", "elsewhere", ("elsewhere",), 3)
    assert [t.name for t in vm.box_targets(loaded, box)] == [
        "lab1-a-switch1", "lab1-a-switch2", "lab1-b-switch1"]
    with pytest.raises(ZpctlError, match="not a switch of account acme") as exc:
        vm.box_targets(loaded, other, switch="lab1-a-switch1")
    assert exc.value.exit_code == ExitCode.USAGE
    assert (box.key, box.profile, box.dc, box.serving_dcs, box.lockout_after) == (
        BOX, "acct-acme", "lab1", ("lab1", "lab2"), 3)


# --- the reply formats FreeSWITCH writes ----------------------------------------------------

@pytest.mark.parametrize(("reply", "value"), [
    ("-ERR no reply\n", None),  # key not set: empty output, turned into this by ESL
    ("locked", "locked"),
    ("3", "3"),
])
def test_db_select_replies(reply: str, value: str | None) -> None:
    assert vm.parse_db_select(reply, "sw1") == value


@pytest.mark.parametrize(("reply", "says"), [
    ("!err!", "!err!"),
    ("-ERR db Command not found!\n", "is mod_db loaded?"),
    ("-USAGE: db ...\n", "-USAGE"),
])
def test_db_select_errors_are_remote_errors(reply: str, says: str) -> None:
    with pytest.raises(RemoteFailure, match="switch sw1: api db select") as exc:
        vm.parse_db_select(reply, "sw1", "api db select/zp_vmlock/x")
    assert says in exc.value.message
    assert exc.value.exit_code == ExitCode.REMOTE_ERROR == 6


@pytest.mark.parametrize(("value", "count"), [(None, 0), ("0", 0), ("4", 4), ("4.0", 4),
                                              ("junk", 0)])
def test_wrong_pin_count_is_read_as_the_hook_reads_it(value: str | None, count: int) -> None:
    assert vm.parse_wrong_pins(value) == count


def test_boxcount_all() -> None:
    assert vm.parse_boxcount("0:0:0:0") == (0, 0)
    assert vm.parse_boxcount("3:5:1:2\n") == (3, 5)  # urgent ones are in new and saved


@pytest.mark.parametrize(("reply", "says"), [
    ("-ERR No such profile\n", "no such voicemail profile"),
    ("-ERR vm_boxcount Command not found!\n", "is mod_voicemail loaded?"),
    ("2", "2"),  # a single count: the |all was lost
    ("", "(empty)"),
])
def test_boxcount_errors(reply: str, says: str) -> None:
    with pytest.raises(RemoteFailure) as exc:
        vm.parse_boxcount(reply, "sw1", "api vm_boxcount acct-acme/1002@x|all")
    assert says in exc.value.message


# --- against a scripted switch ---------------------------------------------------------------

class ModDbAndVoicemail:
    """mod_db's ``db`` API and mod_voicemail's ``vm_boxcount`` as their source writes them
    (see the module docstring), over a dict; an empty output is left to the peer,
    which answers ``-ERR no reply`` as mod_event_socket does."""

    def __init__(self, profiles: tuple[str, ...] = ("acct-acme",)) -> None:
        self.store: dict[tuple[str, str], str] = {}
        self.profiles = profiles
        self.messages: dict[str, tuple[int, int, int, int]] = {}

    def db(self, args: str) -> str:
        argv = args.split("/", 3)
        if argv[0] == "insert" and len(argv) == 4:
            self.store[(argv[1], argv[2])] = argv[3]
            return "+OK"
        if argv[0] == "delete" and len(argv) >= 3:
            self.store.pop((argv[1], argv[2]), None)
            return "+OK"
        if argv[0] == "select" and len(argv) >= 3:
            return self.store.get((argv[1], argv[2]), "")
        return "!err!"

    def boxcount(self, args: str) -> str:
        profile, _, rest = args.partition("/")
        box, _, how = rest.partition("|")
        if profile not in self.profiles:
            return "-ERR No such profile\n"
        n = self.messages.get(box, (0, 0, 0, 0))
        return ":".join(map(str, n)) if how == "all" else str(n[0])

    def install(self, sw: EslPeer) -> None:
        sw.answers["db"] = self.db
        sw.answers["vm_boxcount"] = self.boxcount


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedEslPeer]:
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(f"esl_password: {PW}\n")
    secrets.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("ZPCTL_SECRETS", str(secrets))
    monkeypatch.delenv("ZPCTL_SECRET_ESL_PASSWORD", raising=False)
    with ThreadedEslPeer(PW, hostname="lab1-a-switch1") as t:
        monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", t.address)
        yield t


def _switch(t: ThreadedEslPeer) -> EslPeer:
    assert t.peer is not None
    return t.peer


def _api_sent(t: ThreadedEslPeer) -> list[str]:
    return [c for c in _switch(t).commands if c.startswith("api ")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_unlock_status(fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    store = ModDbAndVoicemail()
    store.install(_switch(fs))
    # what the Lua hook leaves after the third wrong PIN in a row
    store.db(f"insert/zp_vmfail/{BOX}/3")
    store.db(f"insert/zp_vmlock/{BOX}/locked")
    store.messages[BOX] = (2, 1, 1, 0)

    code, doc, err = run(capsys, "-o", "json", "voicemail", "status", LAB, "acme", "1002")
    assert code == 0, err
    assert doc == {"account": "acme", "extension": "1002", "box": BOX, "locked": True,
                   "wrong_pins": 3, "lockout_after": 3, "new": 2, "saved": 1,
                   "switch": "lab1-a-switch1", "dc": "lab1"}
    assert _api_sent(fs) == STATUS_CMDS  # what the dry run prints is what is sent

    code, out, _ = run(capsys, "voicemail", "status", LAB, "acme", "1002")
    assert out.splitlines() == [
        "ACCOUNT  EXTENSION  LOCKED  WRONG PINS  LOCKS AT  NEW  SAVED  SWITCH",
        "acme     1002       yes     3           3         2    1      lab1-a-switch1"]

    _switch(fs).commands.clear()
    code, out, err = run(capsys, "voicemail", "unlock", LAB, "acme", "1002")
    assert code == 0, err
    assert out.strip() == f"unlocked {BOX} (was locked, 3 wrong PINs)"
    assert _api_sent(fs) == UNLOCK_CMDS
    assert store.store == {}

    code, doc, _ = run(capsys, "-o", "json", "voicemail", "status", LAB, "acme", "1002")
    assert (doc["locked"], doc["wrong_pins"]) == (False, 0)
    code, doc, _ = run(capsys, "-o", "json", "voicemail", "unlock", LAB, "acme", "1002")
    assert code == 0
    assert doc == {"account": "acme", "extension": "1002", "box": BOX, "unlocked": True,
                   "was_locked": False, "wrong_pins": 0, "switch": "lab1-a-switch1",
                   "dc": "lab1"}


def test_a_switch_that_does_not_answer_is_skipped(
        fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ModDbAndVoicemail().install(_switch(fs))
    monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", f"lab1-a-switch1=127.0.0.1:{_closed_port()},"
                                             f"lab1-a-switch2={fs.address},"
                                             f"lab1-b-switch1={fs.address}")
    code, doc, err = run(capsys, "-o", "json", "voicemail", "status", LAB, "acme", "1002",
                         "--timeout", "2")
    assert code == 0, err
    assert doc["switch"] == "lab1-a-switch2"
    assert "switch lab1-a-switch1: cannot connect" in err
    assert "asking lab1-a-switch2" in err


def test_no_switch_answers_is_exit_7(fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZPCTL_ESL_OVERRIDE", f"127.0.0.1:{_closed_port()}")
    code, _, err = run(capsys, "voicemail", "unlock", LAB, "acme", "1002", "--timeout", "1")
    assert code == ExitCode.UNREACHABLE == 7
    assert ("none of the 3 switch(es) answered (lab1-a-switch1, lab1-a-switch2, "
            "lab1-b-switch1)") in err


def test_an_error_answer_is_exit_6_and_stops_the_search(
        fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str]) -> None:
    # no mod_db: the peer answers "-ERR db Command not found!" as FreeSWITCH would
    code, _, err = run(capsys, "voicemail", "unlock", LAB, "acme", "1002")
    assert code == ExitCode.REMOTE_ERROR == 6
    assert "is mod_db loaded?" in err
    assert _api_sent(fs) == UNLOCK_CMDS[:1]  # asked once, on one switch
    ModDbAndVoicemail(profiles=()).install(_switch(fs))
    code, _, err = run(capsys, "voicemail", "status", LAB, "acme", "1002")
    assert code == 6
    assert "-ERR No such profile" in err
    assert "is the rendered config deployed?" in err


def test_no_esl_password_is_exit_9(fs: ThreadedEslPeer, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.yml"
    empty.write_text("{}\n")
    empty.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("ZPCTL_SECRETS", str(empty))
    code, _, err = run(capsys, "voicemail", "status", LAB, "acme", "1002")
    assert code == ExitCode.ENVIRONMENT == 9
    assert "esl_password" in err


def test_the_library_calls_for_callers_that_are_not_async(fs: ThreadedEslPeer) -> None:
    store = ModDbAndVoicemail()
    store.install(_switch(fs))
    store.db(f"insert/zp_vmfail/{BOX}/1")
    loaded = load_inventory(Path(LAB))
    state = vm.box_status(loaded, "acme", "1002", password=PW)
    assert (state.locked, state.wrong_pins, state.switch) == (False, 1, "lab1-a-switch1")
    done = vm.unlock_box(loaded, "acme", "1002", password=PW)
    assert str(done) == f"unlocked {BOX} (was not locked, 1 wrong PIN)"
    assert store.store == {}
