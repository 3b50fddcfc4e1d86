"""Local survivability: a site keeps calling when its link to the cloud is cut.

tests/integration/fixtures/site-mini, in network namespaces on the test's bridge:
``zps-cloud`` holds data center sm1 (lb, proxies, media, sbcs, and a FreeSWITCH per zone),
and ``zps-site`` is site hq: its LAN addresses (the phones, the survivability node, the
site's SBC) on its loopback, and one link, eth0, to the bridge: its WAN.  The test cuts
that link at the bridge (the site's eth0 stays up and its packets to the cloud are lost,
as behind a dead uplink), then restores it.

The phones are zpctl's test UA, in the test's own process, on threads that live in the
site's namespace (:class:`tests.integration.netns.InNamespace`), each provisioned as real
phones are with a primary registrar (the cloud's lb) and a secondary (the site's node):
:class:`FailoverPhone`.  The users reach the node only by ``zpctl survivability sync``, from
the cloud's database: HA1 hashes, checked by the real Kamailio.  What reached the far end is
asserted: RTP both ways, tones, the INVITEs each group member got and in what order, the
voicemail greeting heard, the forwarded call at the carrier.  Skips (with the reason) when
not root or without ``ip netns``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.netns import InNamespace, Namespaces, bridge_health, wait_until, why_not
from zpctl import sipp
from zpctl.accounts import SipUser, sip_users
from zpctl.cli.main import main
from zpctl.control import Control
from zpctl.lab import Lab
from zpctl.lab.audio import best_match, envelope, read_wav, tone
from zpctl.lab.procs import ProcRecord, launch
from zpctl.lab.sipua import Msg, Ua
from zpctl.model import LoadedInventory, emergency, load_inventory
from zpctl.model.survivable import ANNOUNCEMENT, SurvivableSite, find_site
from zpctl.render.paths import node_paths
from zpctl.survivability import read_record, status, sync

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "fixtures" / "site-mini"
NODE, NODE_ADDR = "sm1-hq-local", "10.199.9.2"
NODE_MGMT = "10.199.9.201"  # on the site's management network, 10.199.9.192/26
SBC = "10.199.9.3"  # the site's SBC: a SIPp UAS echoing RTP
INBOUND = "10.199.9.3"  # the SBC's address again, on another port: calls in from the PSTN
PHONES = [f"10.199.9.{100 + i}" for i in range(20)]
WAN = "10.199.8.70"  # the site's end of its link to the cloud
CONTROLLER = "10.199.8.250"  # the operator, on the bridge (a management network)
CARRIER = "10.199.8.240"  # the PSTN as the cloud sees it (the fixture's carrier)
LB = ("10.199.8.1", 5060)  # the phones' primary registrar
SITE_NS, CLOUD_NS, BRIDGE = "zps-site", "zps-cloud", "zps-br0"
# The phones' timers: keepalive to the registrar in use, how long they wait for its answer,
# how often a phone on its secondary asks the primary, and the registration expiry.
KEEPALIVE_S, ANSWER_S, PROBE_S, EXPIRES_S = 2.0, 1.0, 3.0, 60

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
    inside: InNamespace  # runs a function on the site's LAN
    uplink: str  # the bridge's end of the site's WAN link

    def phone(self, ext: str, answer_mode: str = "answer") -> Ua:
        """User ``ext``'s phone on the site's LAN, registered at the node (call inside)."""
        ua = _ua(self, ext, (NODE_ADDR, 5060), answer_mode)
        status_code = ua.register(expires=300)
        assert status_code == 200, f"{ext} registering at the node: {status_code}"
        return ua

    def status(self, where: str = "controller") -> dict[str, Any]:
        """The site's status as the operator sees it, or (``site``) as seen on the site's
        LAN, which still reaches the node when the cloud cannot."""
        if where == "site":
            return self.inside(status, self.inv, self.site, self.control)
        return status(self.inv, self.site, self.control)


def _ua(site: Site, ext: str, registrar: tuple[str, int], answer_mode: str = "answer") -> Ua:
    u = site.users[ext]
    i = int(ext) - 2001
    return Ua(PHONES[i], 5060, u.username, u.username, u.domain, u.password, registrar,
              media_port=40000 + 100 * i, answer_mode=answer_mode)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    tmp = Path(tempfile.mkdtemp(prefix="zpctl-site-test-"))
    shutil.copytree(FIXTURE, tmp / "inv")
    inv = load_inventory(tmp / "inv")
    sm1 = [p for p in inv.nodes() if p.dc.id == "sm1" and p.name != NODE]
    cloud = sorted({a for p in sm1 for a in (p.node.address, p.node.public, p.node.mgmt)})
    nets = Namespaces(BRIDGE, [CONTROLLER, CARRIER])
    procs: dict[str, ProcRecord] = {}
    inside: InNamespace | None = None
    try:
        nets.up({CLOUD_NS: cloud, SITE_NS: [WAN]})
        # The site's LAN: its addresses on the site's loopback, reached through its WAN.
        for a in [NODE_ADDR, NODE_MGMT, SBC, *PHONES]:
            r = nets.run(SITE_NS, "ip", "addr", "add", f"{a}/32", "dev", "lo")
            assert r.returncode == 0, r.stderr
        subprocess_ok(["ip", "route", "add", "10.199.9.0/24", "via", WAN])
        r = nets.run(CLOUD_NS, "ip", "route", "add", "10.199.9.0/24", "via", WAN)
        assert r.returncode == 0, r.stderr
        lab = Lab(tmp / "lab")
        lab.prepare(inv)  # renders, and syncs the accounts into the cloud's database
        names = {p.name for p in sm1}
        for svc in lab.services(inv):
            if svc.home not in names and svc.home != NODE:
                continue
            ns = SITE_NS if svc.home == NODE else CLOUD_NS
            argv = svc.argv + (["-A", "WARMUP_S=0"] if svc.name.endswith("proxy/kamailio")
                               else [])
            procs[svc.name] = launch(svc.name, nets.exec_argv(ns, argv), lab.console_log(svc),
                                     svc.cwd, env=lab.launch_env(svc))
            wait_until(bridge_health(svc), 40, svc.name)
        s = find_site(inv.model, "sitecorp/hq")
        users = {u.username: u for u in sip_users(inv, lab.secrets()) if u.account == "sitecorp"}
        node_db = Path(node_paths(inv.model, NODE, lab.dir).survivability_db)
        inside = InNamespace(SITE_NS, workers=8)
        uplink = f"{BRIDGE[:8]}-v{sorted([CLOUD_NS, SITE_NS]).index(SITE_NS)}"
        yield Site(tmp, inv, lab, nets, s, users, node_db, Control(inv, timeout=2.0), inside,
                   uplink)
    finally:
        if inside is not None:
            inside.close()
        nets.down()
        subprocess_ok(["ip", "route", "del", "10.199.9.0/24"], check=False)
        if os.environ.get("ZPCTL_KEEP_SITE_TEST") is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"site test files kept in {tmp}")


def subprocess_ok(argv: list[str], check: bool = True) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check:
        assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"


def _synced(site: Site) -> None:
    """The site's users at the node (a test that needs them, whatever ran before)."""
    if not read_record(site.node_db).get("users"):
        report = sync(site.inv, site.site, site.lab.db_target(site.inv), site.node_db,
                      site.control)
        assert report.node_reloaded is True, report.node_error


def test_a_node_with_no_users_synced_is_reported(site: Site) -> None:
    """Before any sync: nobody can register at the node, and status names the problem."""
    st = site.status()
    assert st["state"] == "cloud" and st["registered_locally"] == []
    # The node answers (its record is empty, not missing): that one problem, no other.
    assert len(st["problems"]) == 1 and "no users synced" in st["problems"][0], st

    def try_register() -> int:
        ua = _ua(site, "2001", (NODE_ADDR, 5060))
        try:
            return ua.register(expires=60)
        finally:
            ua.close()
    assert site.inside(try_register) != 200


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
    st = site.status()
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


@dataclass
class FailoverPhone:
    """A phone with a primary registrar (the cloud) and a secondary (the site's node), as
    desk phones are provisioned (Yealink, Poly: "failover" and "failback").  It sends its
    registrar a keepalive (OPTIONS) every KEEPALIVE_S; when it goes unanswered for
    ANSWER_S twice in a row it registers at the other; on the secondary it asks the primary
    every PROBE_S
    and, once the primary answers, registers there and leaves the secondary (REGISTER with
    expiry 0).  Made, and started, inside the site's namespace."""

    ua: Ua
    primary: tuple[str, int] = LB
    secondary: tuple[str, int] = (NODE_ADDR, 5060)
    on: str = ""  # "cloud" | "node"
    moves: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # registrations refused or unanswered

    def start(self) -> None:
        self.ua.answer_calls()
        self._stopping = threading.Event()
        self._running = True
        self._registered_at = 0.0
        deadline = time.monotonic() + 20
        while not self._register(self.primary):
            assert time.monotonic() < deadline, f"{self.ua.aor} never registered in the cloud"
            time.sleep(0.5)
        self.on = "cloud"
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _register(self, registrar: tuple[str, int], expires: int = EXPIRES_S) -> bool:
        self.ua.proxy = registrar
        try:
            ok = self.ua.register(expires=expires) == 200
        except OSError:
            ok = False
        if ok:
            self._registered_at = time.monotonic()
        elif expires:
            self.failures.append(f"{self.ua.aor} at {registrar[0]}")
        return ok

    def _loop(self) -> None:
        while self._running:
            if self._stopping.wait(KEEPALIVE_S if self.on == "cloud" else PROBE_S):
                return
            current = self.primary if self.on == "cloud" else self.secondary
            if self.on == "cloud" and not self._answers(self.primary):
                if self._register(self.secondary):
                    self.on = "node"
                    self.moves.append(("node", time.monotonic()))
                else:
                    self.ua.proxy = self.primary
            elif self.on == "node" and self.ua.options(self.primary, ANSWER_S) == 200:
                if self._register(self.primary):
                    self.on = "cloud"
                    self.moves.append(("cloud", time.monotonic()))
                    self._register(self.secondary, 0)  # leave the node
                    self.ua.proxy = self.primary
                else:
                    self.ua.proxy = self.secondary
            elif time.monotonic() - self._registered_at > EXPIRES_S / 2:
                self._register(current)  # refresh where it is

    def _answers(self, registrar: tuple[str, int]) -> bool:
        """The keepalive, sent again once when unanswered: two misses in a row move the
        phone, one does not (a busy moment is not an outage)."""
        return any(self.ua.options(registrar, ANSWER_S) != 0 for _ in range(2))

    def stop(self) -> None:
        try:
            self._running = False
            if getattr(self, "_thread", None) is not None:
                self._stopping.set()
                self._thread.join(PROBE_S + 6)
            if self.on:
                self._register(self.primary if self.on == "cloud" else self.secondary, 0)
        finally:
            self.ua.close()


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


def _internal_calls(phones: dict[str, Ua]) -> int:
    """100 calls between the site's phones, 5 at a time (run inside): how many carried
    RTP both ways.  The first is heard: 1 kHz one way, 600 Hz the other."""
    dialog = phones["2010"].dial("2011", timeout=8.0)
    assert dialog.established and dialog.media is not None, dialog.call
    far = phones["2011"].answered[-1]
    dialog.media.play(tone(1000, 1.0))
    far.play(tone(600, 1.0))
    time.sleep(1.5)
    assert far.tone_heard(1000) > 0.6 and dialog.media.tone_heard(600) > 0.6
    dialog.bye()
    pairs = [(f"20{7 + 2 * k:02d}", f"20{8 + 2 * k:02d}") for k in range(5)]
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(
            lambda p: [_call_with_media(phones[p[0]], phones[p[1]], p[1]) for _ in range(20)],
            pairs))
    return sum(sum(r) for r in results)


def _assert_located(invite: str, site: Site, ext: str) -> None:
    """``invite`` (as SIPp logged it) carries the site's location for ``ext``'s call: the
    Geolocation header naming a body part, and that part the inventory's PIDF-LO document
    (entity: the callback number), byte for byte."""
    account = site.site.account
    user = next(u for u in account.users if u.extension == ext)
    callback = emergency.callback_number(account, user)
    cid = emergency.LOCATION_CID.format(domain=site.site.domain)
    doc = emergency.pidf(site.site.site, f"{callback}@{site.site.domain}")
    head, _, body = invite.partition("\n\n")
    assert f"Geolocation: <cid:{cid}>" in head, head
    assert "Geolocation-Routing: yes" in head, head
    assert re.search(r"^Content-Type: multipart/mixed;\s*boundary=", head, re.M | re.I), head
    parts = [p.strip("\n") for p in re.split(r"^--\S+$", body, flags=re.M)]
    located = [p for p in parts if f"Content-ID: <{cid}>" in p]
    assert len(located) == 1, body
    assert "Content-Type: application/pidf+xml" in located[0], located[0]
    assert located[0].partition("\n\n")[2].strip() == doc, located[0]
    assert any("Content-Type: application/sdp" in p and "m=audio " in p for p in parts), body


def _outside_calls(site: Site) -> dict[str, Any]:
    """Calls from the PSTN (the carrier, on the bridge) to two of the site's DIDs while it
    is cut off: the cloud answers them as the inventory says.  2001 has voicemail: the
    caller hears its greeting.  2002 forwards when unavailable: the forwarded call arrives
    at the carrier, which answers it."""
    carrier = Ua(CARRIER, 5060, "+15557770001", "x", "carrier.invalid", "x",
                 ("10.199.8.113", 5060), media_port=28000)
    try:
        carrier.answer_calls()
        vm = carrier.dial("+15550200011", timeout=40.0)
        assert vm.established and vm.media is not None, ("voicemail", vm.call)
        time.sleep(3.0)
        heard = vm.media.heard()
        vm.bye()
        fwd = carrier.dial("+15550200012", timeout=40.0)
        forwarded = [m for m in carrier.received_invites
                     if m.first.startswith("INVITE sip:+15557770099@")]
        fwd_ok = fwd.established
        fwd.bye()
        # 20 ms frames louder than -40 dBFS: the greeting, spoken (silence and comfort
        # noise stay far below)
        return {"voicemail_loud_s": sum(1 for rms in envelope(heard) if rms > 0.01) * 0.02,
                "forwarded_invites": len(forwarded), "forwarded_answered": fwd_ok}
    finally:
        carrier.close()


def test_the_site_survives_a_cut_link_and_comes_back(site: Site) -> None:
    """20 phones registered in the cloud; the site's link is cut.  Every phone registers
    at the node; internal calls (100, RTP both ways), a PSTN call through the site's SBC
    work there, while the cloud answers the site's DIDs (voicemail, forwarding).  The link
    comes back: every phone returns to the cloud and leaves the node, none lost."""
    _synced(site)
    exts = sorted(site.users)
    phones: list[FailoverPhone] = site.inside(lambda: [FailoverPhone(_ua(site, e, LB))
                                                       for e in exts])
    work = site.tmp / "sbc"
    sbc = sipp.start_argv(
        site.nets.exec_argv(SITE_NS, sipp.command(
            "uas", None, workdir=work, name="sbc", local_ip=SBC, local_port=5060,
            calls=None, media_port=26000, rtp_echo=True)), work, "sbc")
    figures: dict[str, Any] = {}
    try:
        for ph in phones:
            site.inside(ph.start)
        st = site.status()
        assert st["state"] == "cloud" and st["registered_in_cloud"] == exts, st

        # The cut.
        t0 = time.monotonic()
        subprocess_ok(["ip", "link", "set", site.uplink, "down"])
        wait_until(lambda: _assert(site.status("site")["registered_locally"] == exts), 30,
              "every phone at the node")
        figures["all_at_node_s"] = round(time.monotonic() - t0, 2)
        figures["last_move_s"] = round(max(t for ph in phones for w, t in ph.moves
                                           if w == "node") - t0, 2)
        # A phone moves at its next keepalive that goes unanswered twice.
        assert figures["last_move_s"] <= KEEPALIVE_S + 2 * ANSWER_S + 3, figures
        st = site.status("site")
        assert st["state"] == "survivable" and not st["cloud_answered"], st

        by_ext = {ph.ua.aor: ph.ua for ph in phones}
        ok = site.inside(_internal_calls, by_ext)
        figures["internal_calls_ok"] = ok
        assert ok >= 99, figures

        def pstn(number: str) -> float:
            dialog = by_ext["2001"].dial(number, timeout=8.0)
            assert dialog.established and dialog.media is not None, (number, dialog.call)
            dialog.media.play(tone(1000, 1.0))
            time.sleep(1.3)
            heard = dialog.media.tone_heard(1000)
            dialog.bye()
            return heard
        # The PSTN and the emergency number (directly and after the outside-line prefix),
        # through the site's SBC, with 2001's DID as the caller's number (the emergency
        # callback number): its echo heard back.
        for number, arrives in (("+15557770001", "+15557770001"), ("911", "911"),
                                ("9911", "911")):
            assert site.inside(pstn, number) > 0.5, number
            got = sbc.received(f"INVITE sip:{arrives}@")
            assert got, number
            assert "P-Asserted-Identity: <sip:+15550200011@" in got[-1], got[-1]
        assert "Geolocation" not in sbc.received("INVITE sip:+15557770001@")[0]
        # The emergency calls carry the site's location as the cloud sends it (PIDF-LO in
        # a body part beside the SDP, referenced by Geolocation).
        emergency_invites = sbc.received("INVITE sip:911@")
        assert len(emergency_invites) == 2, emergency_invites
        for invite in emergency_invites:
            _assert_located(invite, site, "2001")

        outside = _outside_calls(site)
        figures.update(outside)
        assert outside["voicemail_loud_s"] > 1.0, outside
        assert outside["forwarded_invites"] == 1 and outside["forwarded_answered"], outside

        # The link comes back.
        t1 = time.monotonic()
        subprocess_ok(["ip", "link", "set", site.uplink, "up"])
        wait_until(lambda: _assert(site.status()["registered_in_cloud"] == exts
                              and site.status()["registered_locally"] == []), 60,
              "every phone back in the cloud")
        figures["all_back_s"] = round(time.monotonic() - t1, 2)
        figures["last_return_s"] = round(max(t for ph in phones for w, t in ph.moves
                                             if w == "cloud") - t1, 2)
        st = site.status()
        assert st["state"] == "cloud", st
        assert all([w for w, _ in ph.moves] == ["node", "cloud"] for ph in phones), \
            [ph.moves for ph in phones]
        assert [f for ph in phones for f in ph.failures] == []
    finally:
        subprocess_ok(["ip", "link", "set", site.uplink, "up"], check=False)
        sbc.stop()
        for ph in phones:  # every phone, started or not: their addresses serve the next tests
            try:
                site.inside(ph.stop)
            except Exception as exc:  # one that fails must not keep the others open
                print(f"{ph.ua.aor}: {exc}")
        print(f"survivability figures: {figures}")


def test_groups_ring_all_at_once_and_in_order(site: Site) -> None:
    _synced(site)
    site.inside(_groups, site)


def _groups(site: Site) -> None:
    with ExitStack() as stack:
        # Ring-all (8100: 2001, 2002, 2003), its first member not registered: every
        # registered member's phone rings; the one that answers takes the call and the
        # other is cancelled.
        rings = stack.enter_context(_Phone(site.phone("2002", "ring")))
        answers = stack.enter_context(_Phone(site.phone("2003")))
        caller = stack.enter_context(_Phone(site.phone("2020")))
        for ua in (rings, answers, caller):
            ua.answer_calls()
        dialog = caller.dial("8100", timeout=10.0)
        assert dialog.established, dialog.call
        assert len(rings.received_invites) == 1 and len(answers.received_invites) == 1
        wait_until(lambda: _assert(not rings.ringing()), 5, "the CANCEL")
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
        # In that order: the node numbers each branch of the transaction (the last field
        # of its Via branch parameter), one after another.
        assert [_branch_index(u.received_invites[0]) for u in (first, second, third)] \
            == [0, 1, 2]
        print(f"in-order group: answered by the third member {took:.2f} s after the call")
        assert 4.5 <= took < 10, took  # one member's 5 s, then at once
        dialog.bye()


def _branch_index(invite: Msg) -> int:
    """The transaction branch an INVITE came on, from the node's Via (Kamailio ends its
    branch parameter with ``.<branch number>``)."""
    via = (invite.get("Via") or "").split(",")[0]
    m = re.search(r";branch=z9hG4bK[^;,\s]*\.(\d+)", via)
    assert m is not None, via
    return int(m[1])


def test_dids_from_the_site_sbc_ring_their_users(site: Site) -> None:
    _synced(site)
    site.inside(_dids, site)


def _dids(site: Site) -> None:
    with ExitStack() as stack:
        alice = stack.enter_context(_Phone(site.phone("2001")))
        alice.answer_calls()
        # The SBC delivers a call to 2001's DID; 2001's phone rings and answers.
        pstn = Ua(INBOUND, 5070, "+15557770002", "x", "carrier.invalid", "x",
                  (NODE_ADDR, 5060), media_port=27000)
        stack.enter_context(_Phone(pstn))
        dialog = pstn.dial("+15550200011", timeout=8.0)
        assert dialog.established, dialog.call
        assert alice.received_invites[-1].first.startswith("INVITE sip:2001@")
        dialog.bye()
        # A number nobody at the site has: refused, not rung.
        assert pstn.dial("+15550200099", timeout=5.0).call.status == 404
    # A user's credentials act as that user only: 2019's, registering as 2018, are refused.
    u = site.users["2019"]
    impostor = Ua(PHONES[18], 5062, "2018", u.username, u.domain, u.password,
                  (NODE_ADDR, 5060))
    try:
        assert impostor.register(expires=60) == 403
    finally:
        impostor.close()


def test_a_call_the_site_cannot_make_hears_the_announcement(site: Site) -> None:
    """A number outside the site (another site's extension) while only the node serves:
    the node's announcer answers, and the caller hears the announcement, the prompt file's
    own speech (loudness envelope correlated with the file's), twice."""
    _synced(site)
    prompt = read_wav(site.lab.dir / "nodes" / NODE / "state" / "freeswitch" / "sounds"
                      / ANNOUNCEMENT)
    heard = site.inside(_announcement, site, len(prompt) / 8000)
    score = best_match(heard, prompt)
    loud = sum(1 for rms in envelope(heard) if rms > 0.01) * 0.02
    print(f"announcement: {loud:.1f} s loud, match {score:.2f} "
          f"(prompt {len(prompt) / 8000:.1f} s)")
    assert score > 0.8 and loud > len(prompt) / 8000 * 0.5, (score, loud)


def _announcement(site: Site, seconds: float) -> list[int]:
    with _Phone(site.phone("2019")) as ua:
        ua.answer_calls()
        dialog = ua.dial("3001", timeout=10.0)
        assert dialog.established and dialog.media is not None, dialog.call
        wait_until(lambda: _assert(dialog.ended_by_far_end), 2 * seconds + 10,
              "the announcer's hang-up")
        heard = dialog.media.heard()
        dialog.bye()
        return heard


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
