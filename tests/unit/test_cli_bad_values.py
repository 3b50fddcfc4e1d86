"""Bad values are stopped at the edge of every command: a usage error, never a bug.

The click command tree is walked: every numeric option of every command gets -5, 0, nan,
1e999 and "abc" (out of range or not a number: exit 2, naming the valid range), and every
command that takes a name (node, zone, data center, switch, user ...) gets one that does not
exist.  Whatever the input, no command may exit 1 (the internal-error code), print a
traceback or say "internal error".  Commands that need a running lab get a lab directory
that does not exist: a clear non-1 error is fine there.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from tests.cli_tree import command, leaves
from tests.conftest import INVENTORIES
from zpctl.cli.main import main
from zpctl.cli.types import FiniteFloat

LAB = str(INVENTORIES / "lab")
US01 = str(INVENTORIES / "us01")
# An inventory with a survivable site (its node is in a network namespace the integration
# test makes: here it does not answer).
SITE = str(Path(__file__).parents[1] / "integration" / "fixtures" / "site-mini")
# Fast failure instead of a connection timeout for the ESL commands.
ESL = ["--esl-address", "127.0.0.1:1"]

# One valid invocation of every command that changes nothing and starts nothing (dry runs,
# a lab directory that does not exist).  "{tmp}" is the test's temporary directory.
BASE: dict[tuple[str, ...], list[str]] = {
    ("accounts", "devices"): [LAB],
    ("accounts", "sync"): [LAB, "--dry-run", "--db", "{tmp}/db.sqlite"],
    ("accounts", "users"): [LAB],
    ("db", "migrate"): [LAB, "--dry-run", "--db", "{tmp}/db.sqlite"],
    ("db", "status"): [LAB, "--db", "{tmp}/db.sqlite"],
    ("cdr", "journey"): [LAB, "1-1@127.0.0.1", "--db", "{tmp}/db.sqlite"],
    ("cdr", "ls"): [LAB, "--db", "{tmp}/db.sqlite"],
    ("cdr", "purge"): [LAB, "--dry-run", "--db", "{tmp}/db.sqlite"],
    ("cdr", "recover"): [LAB, "--dry-run", "--spool", "{tmp}/spool", "--db", "{tmp}/db.sqlite"],
    ("calls", "hold"): [US01, "0f0e-uuid", "--dry-run", *ESL],
    ("calls", "kill"): [US01, "0f0e-uuid", "--dry-run", *ESL],
    ("calls", "ls"): [US01, *ESL],
    ("calls", "monitor"): [US01, "0f0e-uuid", "--mode", "listen", "--supervisor", "1@x",
                           "--dry-run", *ESL],
    ("calls", "originate"): [US01, "1001", "--endpoint", "loopback/1001", "--dry-run", *ESL],
    ("calls", "park"): [US01, "0f0e-uuid", "--dry-run", *ESL],
    ("calls", "takeover"): [US01, "0f0e-uuid", "--supervisor", "1@x", "--dry-run", *ESL],
    ("calls", "record"): [US01, "0f0e-uuid", "start", "/tmp/x.wav", "--dry-run", *ESL],
    ("calls", "show"): [US01, "0f0e-uuid", *ESL],
    ("calls", "transfer"): [US01, "0f0e-uuid", "1002", "--dry-run", *ESL],
    ("calls", "unhold"): [US01, "0f0e-uuid", "--dry-run", *ESL],
    ("calls", "watch"): [US01, "--duration", "1", *ESL],
    ("dc", "admission"): ["lab1", "--cps", "5", "--dry-run", "--inventory", LAB],
    ("dc", "failover"): ["--from", "lab1", "--to", "lab2", "--dry-run", "--inventory", LAB],
    ("dc", "status"): ["lab1", "--inventory", LAB],
    ("deploy", "history"): [],
    ("deploy", "rollback"): [],
    ("deploy", "run"): [LAB, "--dry-run"],
    ("dialogs", "end"): ["no-such-call", "--dry-run", "--inventory", LAB],
    ("dialogs", "ls"): ["--inventory", LAB],
    ("diff",): [LAB, "--build", "{tmp}/build"],
    ("dns", "records"): [LAB],
    ("dns", "resolve"): ["acme.lab.zpctl.test", "--server", "127.0.0.1", "--port", "9",
                         "--timeout", "0.2"],
    ("emergency", "ls"): [US01, "--spool", "{tmp}/spool.sqlite"],
    ("emergency", "watch"): [US01, "--dry-run", "--spool", "{tmp}/spool.sqlite", *ESL],
    ("exporter",): [LAB, "--once"],
    ("inventory", "schema"): [],
    ("inventory", "show"): [LAB],
    ("inventory", "validate"): [LAB],
    ("lab", "demo"): [],
    ("lab", "down"): [],
    ("lab", "logs"): [],
    ("lab", "kill"): ["lab1-a-switch1"],
    ("lab", "takeover"): ["lab1-a-switch1"],
    ("lab", "giveback"): ["lab1-a-switch1"],
    ("lab", "status"): [],
    ("lab", "up"): [LAB, "--dry-run"],
    ("loadtest",): ["register", "--target", "127.0.1.1:5060", "--inventory", LAB, "--dry-run"],
    ("node", "status"): ["--inventory", LAB],
    ("pki", "issue"): [LAB, "--csr-only", "--out", "{tmp}/pki", "--dry-run"],
    ("pki", "rotate"): ["lab1-a-proxy", "--dry-run"],
    ("pki", "status"): [],
    ("recordings", "ls"): [LAB, "--dry-run", *ESL],
    ("queues", "status"): [LAB, "acme", "--dry-run", *ESL],
    ("registrations", "ls"): ["--inventory", LAB],
    ("registrations", "show"): ["1001@northwind.lab", "--inventory", LAB],
    ("render",): [LAB, "--out", "{tmp}/build", "--dry-run", "--no-check"],
    ("switch", "drain"): [US01, "us-east-ny-a-switch1", "--dry-run"],
    ("switch", "pause"): [US01, "--dry-run", *ESL],
    ("switch", "resume"): [US01, "--dry-run", *ESL],
    ("survivability", "status"): ["sitecorp/hq", "--inventory", SITE, "--timeout", "0.2"],
    ("survivability", "sync"): ["sitecorp/hq", "--inventory", SITE, "--dry-run", "--db",
                                "{tmp}/db.sqlite", "--to", "{tmp}/node.sqlite"],
    ("switch", "status"): [US01, "--dry-run", *ESL],
    ("voicemail", "status"): [LAB, "acme", "1002", "--dry-run", *ESL],
    ("voicemail", "unlock"): [LAB, "acme", "1002", "--dry-run", *ESL],
    ("zone", "drain"): ["lab1/a", "--dry-run", "--inventory", LAB],
    ("zone", "restore"): ["lab1/a", "--dry-run", "--inventory", LAB],
    ("zone", "status"): ["lab1/a", "--inventory", LAB],
}

# Numeric options for which 0 is a meaningful value (elsewhere 0 is refused: exit 2).
ZERO_OK = {
    (("loadtest",), "--hold"),  # hang up as soon as the call is answered
    (("pki", "status"), "--warn-days"),  # warn only about certificates already expired
}

# Every command that takes a name, with one that does not exist (after its base arguments,
# replacing the name where the base has one).
UNKNOWN_NAMES: list[tuple[tuple[str, ...], list[str]]] = [
    (("lab", "logs"), ["no-such-node"]),
    (("lab", "takeover"), ["no-such-node"]),
    (("lab", "kill"), ["no-such-node"]),
    (("node", "status"), ["no-such-node", "--inventory", LAB]),
    (("registrations", "ls"), ["--scope", "nodc/z", "--inventory", LAB]),
    (("registrations", "show"), ["nobody@nowhere.example", "--inventory", LAB]),
    (("registrations", "show"), ["not-a-user", "--inventory", LAB]),
    (("dialogs", "ls"), ["--scope", "no-such-dc", "--inventory", LAB]),
    (("zone", "status"), ["nodc/a", "--inventory", LAB]),
    (("zone", "status"), ["lab1/nozone", "--inventory", LAB]),
    (("zone", "drain"), ["nodc/a", "--dry-run", "--inventory", LAB]),
    (("zone", "drain"), ["garbage", "--dry-run", "--inventory", LAB]),
    (("zone", "restore"), ["lab1/nozone", "--dry-run", "--inventory", LAB]),
    (("dc", "status"), ["nodc", "--inventory", LAB]),
    (("survivability", "status"), ["nosite", "--inventory", SITE, "--timeout", "0.2"]),
    (("survivability", "status"), ["acme/hq", "--inventory", LAB, "--timeout", "0.2"]),
    (("survivability", "sync"), ["nosite", "--inventory", SITE, "--dry-run", "--db",
                                 "{tmp}/db.sqlite", "--to", "{tmp}/node.sqlite"]),
    (("dc", "failover"), ["--from", "nodc", "--to", "lab2", "--dry-run", "--inventory", LAB]),
    (("dc", "failover"), ["--from", "lab1", "--to", "nodc", "--dry-run", "--inventory", LAB]),
    (("pki", "rotate"), ["no-such-node", "--dry-run"]),
    (("pki", "issue"), [LAB, "--csr-only", "--out", "{tmp}/pki", "--dry-run",
                        "--limit", "no-such-node"]),
    (("deploy", "run"), [LAB, "--dry-run", "--limit", "no-such-node"]),
    (("deploy", "rollback"), ["no-such-build"]),
    (("deploy", "history"), ["--platform", "no-such-platform"]),
    (("switch", "status"), [US01, "--dry-run", "--switch", "no-such-switch", *ESL]),
    (("switch", "pause"), [US01, "--dry-run", "--zone", "nodc/a", *ESL]),
    (("switch", "resume"), [US01, "--dry-run", "--zone", "no-such-dc", *ESL]),
    (("calls", "ls"), [US01, "--switch", "no-such-switch", *ESL]),
    (("emergency", "watch"), [US01, "--dry-run", "--switch", "no-such-switch", *ESL]),
    (("emergency", "watch"), [US01, "--dry-run", "--zone", "nodc/a", *ESL]),
    (("emergency", "ls"), ["{tmp}/no-such-inventory"]),
    (("calls", "kill"), [US01, "0f0e-uuid", "--dry-run", "--zone", "nodc/a", *ESL]),
    (("calls", "monitor"), [US01, "0f0e-uuid", "--mode", "listen", "--supervisor",
                            "nobody@noaccount", "--dry-run", *ESL]),
    (("calls", "originate"), [US01, "1001", "--from", "nobody@noaccount", "--dry-run", *ESL]),
    (("calls", "takeover"), [US01, "0f0e-uuid", "--supervisor", "nobody@noaccount",
                             "--dry-run", *ESL]),
    (("loadtest",), ["ext-call", "--target", "127.0.1.1:5060", "--inventory", LAB,
                     "--dry-run", "--callee", "nobody@noaccount"]),
    (("loadtest",), ["register", "--target", "127.0.1.1:notaport", "--inventory", LAB,
                     "--dry-run"]),
    (("loadtest",), ["register", "--target", "127.0.1.1:99999", "--inventory", LAB,
                     "--dry-run"]),
    (("voicemail", "status"), [LAB, "no-such-account", "1002", "--dry-run", *ESL]),
    (("voicemail", "status"), [LAB, "acme", "9999", "--dry-run", *ESL]),
    (("voicemail", "unlock"), [LAB, "acme", "1003", "--dry-run", *ESL]),
    (("voicemail", "unlock"), [LAB, "acme", "1002", "--dry-run", "--switch", "no-such-switch",
                               *ESL]),
    (("recordings", "ls"), [LAB, "no-such-account", "--dry-run", *ESL]),
    (("queues", "status"), [LAB, "acme", "no-such-queue", "--dry-run", *ESL]),
    (("queues", "status"), [LAB, "acme", "--dry-run", "--switch", "no-such-switch", *ESL]),
    (("recordings", "ls"), [LAB, "acme", "--dry-run", "--switch", "no-such-switch", *ESL]),
    (("recordings", "ls"), [LAB, "--dry-run", "--zone", "nodc/a", *ESL]),
    (("inventory", "show"), ["{tmp}/no-such-inventory"]),
    (("dns", "records"), [LAB, "--name", "no-such-name"]),
    (("dns", "records"), ["{tmp}/no-such-inventory"]),
    (("dns", "resolve"), ["acme.lab.zpctl.test", "--server", "not-an-address"]),
    (("render",), ["{tmp}/no-such-inventory", "--out", "{tmp}/build", "--dry-run"]),
]

# Names for which "nothing found" is an answer, not an error (exit 0 allowed, never 1).
EMPTY_IS_AN_ANSWER = {
    ("registrations", "show"),  # an AoR nobody registered: no contacts
    ("deploy", "history"),  # a platform never deployed: no history
}

# Failures that are known and belong to function bodies other owners fix: (command, value or
# name) -> reason.  Each is an xfail(strict=True): it must start passing once fixed.
KNOWN: dict[tuple[tuple[str, ...], str], str] = {}
# Known failures that must not even run here: they would act on whatever runs on this
# machine's lab addresses.
NOT_RUN: dict[tuple[tuple[str, ...], str], str] = {}


def _is_numeric(p: click.Parameter) -> bool:
    return isinstance(p, click.Option) and not p.is_flag and not p.count and isinstance(
        p.type, click.types._NumberParamTypeBase)  # click's int/float base


def _numeric_options() -> list[tuple[tuple[str, ...], str]]:
    return [(path, p.opts[-1]) for path in leaves() for p in command(path).params
            if _is_numeric(p)]


def _run(args: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main([a.replace("{tmp}", str(tmp)) for a in args])
    cap = capsys.readouterr()
    return rc, cap.err


@pytest.fixture(autouse=True)
def _nothing_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No default lab, deploy state or home directory of this machine is touched."""
    monkeypatch.setenv("ZPCTL_LAB_DIR", str(tmp_path / "no-lab"))
    monkeypatch.setenv("ZPCTL_DEPLOY_DIR", str(tmp_path / "deploy"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ZPCTL_ESL_OVERRIDE", raising=False)
    monkeypatch.chdir(tmp_path)


def _xfail_known(request: pytest.FixtureRequest, path: tuple[str, ...], what: str) -> None:
    reason = KNOWN.get((path, what))
    if reason:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    reason = NOT_RUN.get((path, what))
    if reason:
        pytest.xfail(reason)


def test_every_command_has_a_base_invocation() -> None:
    assert set(leaves()) == set(BASE)


@pytest.mark.parametrize(("path", "opt"), _numeric_options(),
                         ids=[f"{' '.join(p)} {o}" for p, o in _numeric_options()])
def test_every_numeric_option_names_its_range(path: tuple[str, ...], opt: str) -> None:
    param = next(p for p in command(path).params if opt in getattr(p, "opts", []))
    assert isinstance(param.type, (click.IntRange, FiniteFloat)), \
        f"{' '.join(path)} {opt}: use click.IntRange or zpctl.cli.types (not {param.type!r})"


BAD = ["-5", "0", "nan", "1e999", "abc"]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize(("path", "opt"), _numeric_options(),
                         ids=[f"{' '.join(p)} {o}" for p, o in _numeric_options()])
def test_bad_numbers_are_usage_errors(path: tuple[str, ...], opt: str, value: str,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      request: pytest.FixtureRequest) -> None:
    _xfail_known(request, path, f"{opt}={value}")
    rc, err = _run([*path, *BASE[path], f"{opt}={value}"], tmp_path, capsys)
    assert "Traceback" not in err
    assert "internal error" not in err
    assert rc != 1, err
    if value != "0" or (path, opt) not in ZERO_OK:
        assert rc == 2, err
        assert opt in err or "valid" in err.lower(), err
        if value != "abc":
            assert "range" in err or "valid:" in err, err  # says what would be accepted


@pytest.mark.parametrize(("path", "args"), UNKNOWN_NAMES,
                         ids=[f"{' '.join(p)} {' '.join(a)[:40]}" for p, a in UNKNOWN_NAMES])
def test_unknown_names_are_clear_errors(path: tuple[str, ...], args: list[str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        request: pytest.FixtureRequest) -> None:
    _xfail_known(request, path, " ".join(args))
    rc, err = _run([*path, *args], tmp_path, capsys)
    assert "Traceback" not in err
    assert "internal error" not in err
    assert rc != 1, err
    if path not in EMPTY_IS_AN_ANSWER:
        assert rc != 0
        assert err.strip(), "a failure says why"


@pytest.mark.parametrize("path", sorted(BASE), ids=" ".join)
def test_base_invocations_do_not_crash(path: tuple[str, ...], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       request: pytest.FixtureRequest) -> None:
    """The valid base invocation itself: success, or a clear error (no lab here)."""
    _xfail_known(request, path, "base")
    rc, err = _run([*path, *BASE[path]], tmp_path, capsys)
    assert "Traceback" not in err
    assert "internal error" not in err
    assert rc != 1, err


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:0", "sw1=127.0.0.1:70000",
                                     "127.0.0.1:", ":5060"])
def test_esl_address_ports_are_checked(address: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: "internal error OverflowError: connect(): port must be 0-65535"."""
    monkeypatch.setenv("ZPCTL_SECRET_ESL_PASSWORD", "x")
    rc, err = _run(["switch", "status", US01, "--switch", "us-east-ny-a-switch1",
                    "--timeout", "0.5", "--esl-address", address], tmp_path, capsys)
    assert rc == 2, err
    assert "1-65535" in err
