"""The rendered switch config in a real FreeSWITCH, driven over ESL by zpctl's own client.

Runs wherever a ``freeswitch`` binary is installed (tests/freeswitch_binary.py finds it; `make
install` installs one, see scripts/install-deps.sh).  Without one the tests are skipped, with
the reason printed, or fail when ZPCTL_REQUIRE_FREESWITCH=1 (as in CI).

What it does: copies the small switch inventory (tests/unit/fixtures/switch-mini), moves
one switch (lab1-a-switch1) to 127.0.0.1 on free ports, renders it with lab paths into a
temporary directory, provisions what a deploy would (TLS files for sofia, a silent WAV for
every sound in sounds.txt, a hold-music file per music folder), starts FreeSWITCH on that
conf tree in the foreground and then, over ESL:

- checks the modules the config needs are loaded and the sofia profile is up;
- places calls with loopback endpoints into the account's dialplan: the IVR menu, the
  voicemail box of 1001 and the sales queue, and sees each channel running the
  application the dialplan sent it to (ivr, voicemail, callcenter);
- drives call control: uuid_kill, fsctl pause/resume inbound and pause_check;
- asks the commands zpctl sends with its own client and with FreeSWITCH's fs_cli -x, and
  compares the answers.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.freeswitch_binary import require_freeswitch
from zpctl import pki
from zpctl.clients.esl import EslConnection
from zpctl.freeswitch.control import parse_rows
from zpctl.model import load_inventory
from zpctl.render import render
from zpctl.secrets import Secrets

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "tests" / "unit" / "fixtures" / "switch-mini"
SWITCH = "lab1-a-switch1"
PASSWORD = "zpctl-real-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _silence(path: Path, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * int(8000 * seconds))


@pytest.fixture(scope="module")
def freeswitch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    binary = require_freeswitch()
    lab = tmp_path_factory.mktemp("fs")
    inv = lab / "inv"
    shutil.copytree(MINI, inv)
    dc = inv / "datacenters" / "lab1.yml"
    sip, sips, esl = _free_port(), _free_port(), _free_port()
    old = "{name: lab1-a-switch1, role: switch, address: 127.0.1.14, mgmt_address: 127.1.1.14}"
    text = dc.read_text()
    assert old in text
    dc.write_text(text.replace(old, "{name: lab1-a-switch1, role: switch, address: 127.0.0.1, "
                                    f"mgmt_address: 127.0.0.1, ports: {{sip: {sip}, sips: {sips}, "
                                    f"esl: {esl}}}}}"))
    build = render(load_inventory(inv), Secrets(lab / "secrets.yml", {"esl_password": PASSWORD}),
                   lab_root=lab)
    build.write(lab / "build")
    conf = lab / "build" / SWITCH / "freeswitch"
    state = lab / "nodes" / SWITCH / "state" / "freeswitch"
    # What a deploy provisions: TLS files for sofia, sounds and hold music.
    ca_crt, _ = pki.make_ca(lab / "pki")
    crt, key = pki.issue(lab / "pki", lab / "pki" / "issued", SWITCH, SWITCH, ["127.0.0.1"])
    tls = lab / "pki" / "freeswitch"
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "agent.pem").write_bytes(crt.read_bytes() + key.read_bytes())
    (tls / "cafile.pem").write_bytes(ca_crt.read_bytes())
    for line in (conf / "sounds.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("music "):
            _silence(state / "music" / line[6:] / "silence.wav", 2.0)
        else:
            _silence(state / "sounds" / line)
    _silence(state / "music" / "default" / "silence.wav", 2.0)
    dirs = {d: lab / "run" / d for d in ("log", "db", "run", "storage", "recordings", "cache")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    (lab / "nodes" / SWITCH / "log").mkdir(parents=True, exist_ok=True)
    cmd = [binary, "-nf", "-nonat", "-conf", str(conf), "-log", str(dirs["log"]), "-db",
           str(dirs["db"]), "-run", str(dirs["run"]), "-storage", str(dirs["storage"]),
           "-recordings", str(dirs["recordings"]), "-cache", str(dirs["cache"]), "-sounds",
           str(state / "sounds")]
    log = (lab / "freeswitch.out").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"freeswitch exited with {proc.returncode}:\n"
                            + (lab / "freeswitch.out").read_text(errors="replace")[-4000:])
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", esl)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("FreeSWITCH did not open its event socket within 60 s")
        yield "127.0.0.1", esl
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _esl(freeswitch: tuple[str, int]) -> EslConnection:
    host, port = freeswitch
    return EslConnection(host, port, PASSWORD, name=SWITCH, timeout=15)


def test_config_loads_modules_and_profile(freeswitch: tuple[str, int]) -> None:
    async def body() -> None:
        async with _esl(freeswitch) as c:
            assert (await c.api("status")).startswith("UP ")
            for mod in ("mod_sofia", "mod_callcenter", "mod_voicemail", "mod_valet_parking",
                        "mod_conference", "mod_directory", "mod_local_stream", "mod_loopback"):
                assert (await c.api(f"module_exists {mod}")).strip() == "true", mod
            assert "zpctl" in await c.api("sofia status")
            queues = await c.api("callcenter_config queue list")
            assert "sales@acme.lab.zpctl.test" in queues

    asyncio.run(body())


async def _running(c: EslConnection, uuid: str) -> dict[str, str]:
    for _ in range(40):
        rows = parse_rows(await c.api("show channels as json"))
        row = next((r for r in rows if r.get("uuid") == uuid), None)
        if row and row.get("application"):
            return row
        await asyncio.sleep(0.25)
    raise AssertionError(f"channel {uuid} never ran an application")


@pytest.mark.parametrize(("dest", "app"), [("ivr-main", "ivr"), ("*991001", "voicemail"),
                                           ("7100", "callcenter")])
def test_calls_reach_ivr_voicemail_and_queue(freeswitch: tuple[str, int], dest: str,
                                             app: str) -> None:
    async def body() -> None:
        async with _esl(freeswitch) as c:
            # The application may run only a moment (the test prompts are short silences):
            # watch the events rather than poll the channel list.
            await c.subscribe(["CHANNEL_EXECUTE"])
            # A queue is a rendezvous number: a call that did not come through the proxies'
            # rendezvous route goes out to them (none here); this one stays, as a callback
            # placed on the rendezvous switch itself does.
            out = await c.bgapi(f"originate {{origination_caller_id_number=+15557654321,"
                                f"zp_rendezvous_here=true}}loopback/{dest}/acct-acme &park()",
                                timeout=20)
            assert out.startswith("+OK "), out
            # The loopback's other leg runs the dialplan: some channel executes ``app``.
            seen: list[str] = []
            deadline = time.monotonic() + 15
            while app not in seen:
                assert time.monotonic() < deadline, f"no channel ran {app}; ran {seen}"
                ev = await c.next_event(max(0.1, deadline - time.monotonic()))
                seen.append(str(ev.get("Application")))
            await c.api("hupall NORMAL_CLEARING")

    asyncio.run(body())


def test_call_control_over_esl(freeswitch: tuple[str, int]) -> None:
    async def body() -> None:
        async with _esl(freeswitch) as c:
            await c.subscribe(["CHANNEL_HANGUP_COMPLETE"])
            # A channel that stays up (the IVR waits for digits) until it is killed; not a
            # park lot: this standalone switch has no proxy to reach its rendezvous switch.
            out = await c.bgapi("originate {origination_uuid=zpctl-real-1}"
                                "loopback/ivr-main/acct-acme &park()", timeout=20)
            assert out.strip() == "+OK zpctl-real-1"
            await _running(c, "zpctl-real-1")
            assert (await c.api("uuid_kill zpctl-real-1 MANAGER_REQUEST")).strip() == "+OK"
            # The loopback's other leg hangs up too (with its own cause): take the event of
            # the channel that was killed.
            deadline = time.monotonic() + 10
            while True:
                ev = await c.next_event(max(0.1, deadline - time.monotonic()))
                if ev.get("Unique-ID") == "zpctl-real-1":
                    break
                assert time.monotonic() < deadline, "no CHANNEL_HANGUP_COMPLETE for the uuid"
            assert ev.get("Hangup-Cause") == "MANAGER_REQUEST"
            assert (await c.api("fsctl pause inbound")).strip() == "+OK"
            assert (await c.api("fsctl pause_check inbound")).strip() == "true"
            assert (await c.api("fsctl resume inbound")).strip() == "+OK"
            assert (await c.api("fsctl pause_check inbound")).strip() == "false"

    asyncio.run(body())


# Lines of `status` that change from one second to the next (uptime, idle CPU).
_VOLATILE = re.compile(r"^(UP \d+ years|min idle cpu|Current Stack Size)")


def _steady(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines() if not _VOLATILE.match(line)]


def test_api_answers_are_those_of_fs_cli(freeswitch: tuple[str, int]) -> None:
    """zpctl's sans-IO client and FreeSWITCH's own fs_cli -x get the same answer to the
    commands zpctl sends (apart from the uptime and idle-CPU lines of `status`)."""
    host, port = freeswitch
    fs_cli = shutil.which("fs_cli", path=str(Path(require_freeswitch()).parent)) or \
        shutil.which("fs_cli")
    assert fs_cli, "fs_cli is part of the FreeSWITCH package (../shared/freeswitch)"
    commands = ["version", "status", "show calls as json", "show channels count",
                "sofia status", "fsctl pause_check inbound", "global_getvar zp_clock_shift",
                "callcenter_config queue list", "uuid_kill 00000000-0000-0000-0000-000000000000"]

    async def ours() -> list[str]:
        async with _esl(freeswitch) as c:
            return [await c.api(cmd, check=False) for cmd in commands]

    mine = asyncio.run(ours())
    for cmd, got in zip(commands, mine, strict=True):
        theirs = subprocess.run([fs_cli, "-H", host, "-P", str(port), "-p", PASSWORD, "-x", cmd],
                                capture_output=True, text=True, timeout=15, check=False)
        assert theirs.returncode == 0, (cmd, theirs.stderr)
        assert _steady(got) == _steady(theirs.stdout), cmd
