"""Local survivability: a site's node, serving the site's phones on its own.

Site hq of tests/integration/fixtures/site-mini: its survivability node (Kamailio, rendered
by zpctl) runs in network namespace zps-site on the test's bridge.  The phones (zpctl's
test UA, plain RTP) and the site's SBC (a SIPp UAS that echoes RTP) sit on the bridge
beside it, in the root namespace.  The users reach the node only by `zpctl survivability
sync`, from the cloud's database (the lab's sqlite file): HA1 hashes, checked by the real
Kamailio.  What reached the far end is asserted: RTP both ways, tones, the INVITEs each
group member got and in what order.  Skips (with the reason) when not root or without
``ip netns``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.netns import Namespaces, why_not
from zpctl import sipp
from zpctl.accounts import SipUser, sip_users
from zpctl.cli.main import main
from zpctl.clients.probes import sip_options
from zpctl.control import Control
from zpctl.lab import Lab
from zpctl.lab.audio import tone
from zpctl.lab.procs import ProcRecord, launch
from zpctl.lab.sipua import Ua
from zpctl.model import LoadedInventory, load_inventory
from zpctl.model.survivable import DB_FILE, SurvivableSite, find_site
from zpctl.survivability import read_record, status, sync

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "fixtures" / "site-mini"
NODE, NODE_ADDR = "sm1-hq-local", "10.199.9.2"
SBC = "10.199.9.3"  # the site's SBC: a SIPp UAS echoing RTP
INBOUND = "10.199.9.3"  # the SBC's address again, on another port: calls in from the PSTN
PHONES = [f"10.199.9.{100 + i}" for i in range(20)]
CONTROLLER = "10.199.9.250"

_reason = why_not()
if _reason is not None:
    print(f"\nSKIP test_survivability: {_reason}")
    pytest.skip(_reason, allow_module_level=True)


@dataclass
class Site:
    tmp: Path
    inv: LoadedInventory
    lab: Lab
    nets: Namespaces
    site: SurvivableSite
    users: dict[str, SipUser]
    node_db: Path
    control: Control

    def phone(self, ext: str, answer_mode: str = "answer") -> Ua:
        """User ``ext``'s phone at its own address, registered at the node."""
        u = self.users[ext]
        i = int(ext) - 2001
        ua = Ua(PHONES[i], 5060, u.username, u.username, u.domain, u.password,
                (NODE_ADDR, 5060), media_port=40000 + 100 * i, answer_mode=answer_mode)
        status_code = ua.register(expires=300)
        assert status_code == 200, f"{ext} registering at the node: {status_code}"
        return ua


def _wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout:g} s: {last}")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    tmp = Path(tempfile.mkdtemp(prefix="zpctl-site-test-"))
    shutil.copytree(FIXTURE, tmp / "inv")
    inv = load_inventory(tmp / "inv")
    nets = Namespaces("zps-br0", [*PHONES, CONTROLLER, SBC])
    procs: dict[str, ProcRecord] = {}
    try:
        nets.up({"zps-site": [NODE_ADDR]})
        lab = Lab(tmp / "lab")
        lab.prepare(inv)  # renders, and syncs the accounts into the cloud's database
        svc = next(s for s in lab.services(inv) if s.home == NODE)
        procs[svc.name] = launch(svc.name, nets.exec_argv("zps-site", svc.argv),
                                 lab.console_log(svc), svc.cwd, env=lab.launch_env(svc))
        _wait(lambda: sip_options(NODE_ADDR, 5060, 0.5, source=CONTROLLER), 20, "the node")
        s = find_site(inv.model, "sitecorp/hq")
        users = {u.username: u for u in sip_users(inv, lab.secrets()) if u.account == "sitecorp"}
        node_db = tmp / "lab" / "nodes" / NODE / "state" / DB_FILE
        yield Site(tmp, inv, lab, nets, s, users, node_db, Control(inv, timeout=2.0))
    finally:
        nets.down()
        if os.environ.get("ZPCTL_KEEP_SITE_TEST") is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"site test files kept in {tmp}")


def test_a_node_with_no_users_synced_is_reported(site: Site) -> None:
    """Before any sync: nobody can register, and status names the problem (exit 7)."""
    st = status(site.inv, site.site, site.control)
    assert st["state"] == "cloud"
    assert st["registered_locally"] == []
    assert any("no users synced" in p for p in st["problems"]), st
    u = site.users["2001"]
    ua = Ua(PHONES[0], 5060, u.username, u.username, u.domain, u.password, (NODE_ADDR, 5060))
    try:
        assert ua.register(expires=60) in (401, 403, 500, 0)
    finally:
        ua.close()


def test_sync_pushes_hashes_and_the_node_reads_the_record(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    source = site.lab.db_target(site.inv)
    before = time.time()
    report = sync(site.inv, site.site, source, site.node_db, site.control)
    assert report.users == 20 and report.credentials == 20 and report.missing == []
    assert report.node_reloaded is True, report.node_error
    # Hashes only: no column of the node's file holds a password.
    text = site.node_db.read_bytes()
    assert all(u.password.encode() not in text for u in site.users.values())
    assert read_record(site.node_db)["users"] == "20"
    st = status(site.inv, site.site, site.control)
    assert st["problems"] == [] and st["users_synced"] == 20
    assert st["synced_at"] is not None and st["synced_at"] >= int(before)
    # The same data again: nothing changed, and the CLI says so.
    capsys.readouterr()
    rc = main(["-o", "json", "survivability", "sync", "sitecorp/hq", "--inventory",
               str(site.tmp / "inv"), "--db", str(site.lab.db_path), "--to", str(site.node_db),
               "--secrets", str(site.lab.dir / "secrets.yml")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["changed"] is False and out["node_reloaded"] is True
    # Data older than the inventory's limit is reported.
    late = status(site.inv, site.site, site.control,
                  now=st["synced_at"] + site.site.config.max_sync_age_hours * 3600 + 60)
    assert any("over the limit" in p for p in late["problems"]), late


def _call_with_media(caller: Ua, callee: Ua, number: str, seconds: float = 0.6) -> bool:
    """A call from ``caller`` to ``number`` that ``callee`` answers; True when RTP arrived
    both ways."""
    answered_before = len(callee.answered)
    dialog = caller.dial(number, timeout=8.0)
    try:
        if not dialog.established or dialog.media is None:
            return False
        time.sleep(seconds)
        far = callee.answered[answered_before:]
        return dialog.media.packets_in > 5 and bool(far) and far[0].packets_in > 5
    finally:
        dialog.bye()


def test_phones_register_and_call_each_other_with_audio(site: Site) -> None:
    """Every phone of the site registers with its own credentials (HA1 from the sync);
    100 calls between them, 5 at a time, each with RTP both ways; at least 99 % succeed."""
    with ExitStack() as stack:
        phones = {e: stack.enter_context(_Phone(site.phone(e))) for e in sorted(site.users)}
        for ua in phones.values():
            ua.answer_calls()
        st = status(site.inv, site.site, site.control)
        assert st["registered_locally"] == sorted(site.users)
        assert st["state"] == "survivable"  # the cloud (not started here) does not answer
        # The first call, heard: a 1 kHz tone one way, 600 Hz the other.
        dialog = phones["2010"].dial("2011", timeout=8.0)
        assert dialog.established and dialog.media is not None
        far = phones["2011"].answered[-1]
        dialog.media.play(tone(1000, 1.0))
        far.play(tone(600, 1.0))
        time.sleep(1.5)
        assert far.tone_heard(1000) > 0.6 and dialog.media.tone_heard(600) > 0.6
        dialog.bye()
        pairs = [(f"20{7 + 2 * k:02d}", f"20{8 + 2 * k:02d}") for k in range(5)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(5) as pool:
            results = list(pool.map(
                lambda p: [_call_with_media(phones[p[0]], phones[p[1]], p[1])
                           for _ in range(20)], pairs))
        ok = sum(sum(r) for r in results)
        print(f"internal calls at the node: {ok}/100 with RTP both ways, "
              f"{time.monotonic() - t0:.1f} s")
        assert ok >= 99


def test_groups_ring_all_at_once_and_in_order(site: Site) -> None:
    with ExitStack() as stack:
        ring1 = stack.enter_context(_Phone(site.phone("2001", "ring")))
        ring2 = stack.enter_context(_Phone(site.phone("2002", "ring")))
        answers = stack.enter_context(_Phone(site.phone("2003")))
        caller = stack.enter_context(_Phone(site.phone("2020")))
        for ua in (ring1, ring2, answers, caller):
            ua.answer_calls()
        # Ring-all (8100): every member's phone rings; the one that answers takes the call
        # and the others are cancelled.
        dialog = caller.dial("8100", timeout=10.0)
        assert dialog.established
        assert len(ring1.received_invites) == 1 and len(ring2.received_invites) == 1
        assert len(answers.received_invites) == 1
        _wait(lambda: _assert(not ring1.ringing() and not ring2.ringing()), 5, "the CANCELs")
        dialog.bye()
    with ExitStack() as stack:
        first = stack.enter_context(_Phone(site.phone("2004", "ring")))
        second = stack.enter_context(_Phone(site.phone("2005", "busy")))
        third = stack.enter_context(_Phone(site.phone("2006")))
        caller = stack.enter_context(_Phone(site.phone("2020")))
        for ua in (first, second, third, caller):
            ua.answer_calls()
        # In order (8200, 5 s each): 2004 rings out, 2005 is busy, 2006 answers.
        t0 = time.monotonic()
        dialog = caller.dial("8200", timeout=20.0)
        took = time.monotonic() - t0
        assert dialog.established, dialog.call
        assert [len(u.received_invites) for u in (first, second, third)] == [1, 1, 1]
        assert 4.5 <= took < 10, took  # one member's 5 s, then at once
        dialog.bye()


def test_pstn_leaves_through_the_site_sbc_and_dids_ring_users(site: Site) -> None:
    work = site.tmp / "sbc"
    work.mkdir(exist_ok=True)
    uas = sipp.start("uas", None, workdir=work, name="sbc", local_ip=SBC, local_port=5060,
                     calls=None, media_port=26000, rtp_echo=True)
    try:
        time.sleep(0.3)
        with ExitStack() as stack:
            alice = stack.enter_context(_Phone(site.phone("2001")))
            alice.answer_calls()
            # Out: a PSTN number and the emergency number go to the site's SBC; the echo
            # brings the caller's own tone back.
            for number in ("+15557770001", "911"):
                dialog = alice.dial(number, timeout=8.0)
                assert dialog.established and dialog.media is not None, (number, dialog.call)
                dialog.media.play(tone(1000, 1.0))
                time.sleep(1.3)
                assert dialog.media.tone_heard(1000) > 0.5, number
                dialog.bye()
            assert len(uas.received("INVITE sip:+15557770001@")) == 1
            assert len(uas.received("INVITE sip:911@")) == 1
            # In: the SBC delivers a call to 2001's DID; 2001's phone rings and answers.
            pstn = Ua(INBOUND, 5070, "+15557770002", "x", "carrier.invalid", "x",
                      (NODE_ADDR, 5060), media_port=27000)
            stack.enter_context(_Phone(pstn))
            dialog = pstn.dial("+15550200011", timeout=8.0)
            assert dialog.established, dialog.call
            assert alice.received_invites[-1].first.startswith("INVITE sip:2001@")
            dialog.bye()
            # A number nobody at the site has: refused, not rung.
            assert pstn.dial("+15550200099", timeout=5.0).call.status == 404
    finally:
        uas.stop()


def _assert(cond: bool) -> None:
    assert cond


class _Phone:
    """A phone that unregisters and closes when the block ends."""

    def __init__(self, ua: Ua) -> None:
        self.ua = ua

    def __enter__(self) -> Ua:
        return self.ua

    def __exit__(self, *exc: object) -> None:
        if self.ua.domain != "carrier.invalid":
            self.ua.register(expires=0)
        self.ua.close()
