"""Call flows through the running lab, with SIPp as every phone, carrier and PBX.

Each test asserts on SIP responses and on what each hop saw: the message traces of the
SIPp endpoints, rtpengine's per-call counters, the proxies' registrations over JSON-RPC.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest

from zpctl import pki
from zpctl.clients.kamailio import KamailioRpc
from zpctl.errors import RemoteFailure
from zpctl.lab import Lab
from zpctl.lab.flows import FLOWS, Flow, flow, run_flow, switch_totals
from zpctl.lab.journeys import journeys_since
from zpctl.lab.phones import Phones
from zpctl.model import load_inventory
from zpctl.model.schema import Node, Role
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

EU_MINI = Path(__file__).parent / "fixtures" / "eu-mini"
# The users of the table's extension call register here (a), and call each other (c).
EXT = flow("extension")
assert EXT.callee is not None


def _rpc(node) -> KamailioRpc:  # type: ignore[no-untyped-def]
    return KamailioRpc(f"http://{node.mgmt}:{node.ports.mgmt_http}/RPC")


def _proxies(phones: Phones) -> list:  # type: ignore[type-arg]
    return [phones.inv.zone_node(phones.dc, z, Role.PROXY) for z in sorted(phones.dc.zones)]


def _lookup(proxy: Node, aor: str) -> str:
    """The proxy's ``ul.lookup`` of ``aor`` as text ("" while it has no contact for it)."""
    try:
        return str(_rpc(proxy).call("ul.lookup", "location", aor))
    except RemoteFailure:  # not (yet) registered there
        return ""


def _first_line(msg: str) -> str:
    return msg.split("\n", 1)[0].strip()


def _responses(run) -> list[str]:  # type: ignore[no-untyped-def]
    return [_first_line(m).split(" ", 2)[1] for m in run.received("SIP/2.0")]


# --- a. registration ------------------------------------------------------------------------

def test_a_register_through_lb_with_digest_auth_replicated_to_both_zones(
        zpctl_phones: Phones) -> None:
    for user, ip in ((EXT.caller, "127.0.8.201"), (EXT.callee, "127.0.8.202")):
        run = zpctl_phones.register(user, ip)
        assert run.returncode == 0, run.errors.read_text()[-500:]
        assert _responses(run) == ["401", "200"]
        sip_user = zpctl_phones.user(user)
        aor = f"{sip_user.username}@{sip_user.domain}"
        contact = f"sip:{sip_user.username}@{ip}:5060"
        # Whichever zone took the REGISTER, both proxies have the contact (DMQ).
        for proxy in _proxies(zpctl_phones):
            found = wait_for(f"{contact} on {proxy.name}", lambda p=proxy, a=aor, c=contact: (
                t if c in (t := _lookup(p, a)) else None), 10)
            assert contact in found, (proxy.name, found)


def test_a_wrong_password_is_refused(zpctl_phones: Phones, tmp_path: Path) -> None:
    u = zpctl_phones.user(EXT.caller)
    zpctl_phones.users["bad@acme"] = type(u)(u.username, u.domain, "wrong-password",
                                            u.account, u.offering, u.dids)
    run = zpctl_phones.register("bad@acme")
    assert run.returncode != 0
    assert _responses(run)[:2] == ["401", "401"]


# --- b, d, e, f, g: the flow table (zpctl/lab/flows.py), the demo's flows and more ---------

def test_the_flow_table_names_users_and_peers_of_the_lab_inventory(zpctl_lab: Lab) -> None:
    inv = zpctl_lab.inventory()
    users = {f"{u.username}@{u.account}": u for u in zpctl_lab.users(inv)}
    peers = {p.name for p in zpctl_lab.peers(inv)}
    nodes = {p.name for p in inv.nodes()}
    assert len({f.name for f in FLOWS}) == len(FLOWS)
    for f in FLOWS:
        assert (f.source or f.caller in users) and (f.callee is None or f.callee in users), f
        assert {f.source, f.reaches} - {None} <= peers, f
        assert f.entry is None or f.entry in nodes | peers, f
        assert f.number or (f.callee and users[f.callee].dids), f


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
def test_flow(zpctl_phones: Phones, zpctl_lab: Lab, flow: Flow) -> None:
    """The call and the checks the table gives it: media anchored and relayed both ways
    (b, g), the carrier or PBX that must get the INVITE and only it, with the topology hidden
    and the caller's DID as caller ID (d, f), mutual TLS to the premises (f), transcoding
    (g), refusals (d, e) and inbound DIDs reaching their user (e, f)."""
    start = time.time()
    outcome = run_flow(zpctl_lab, zpctl_phones, flow)
    assert outcome.problems == [], outcome.report()
    # every hop the call crossed left its record, in a consistent order (docs/CDR.md)
    report = journeys_since(zpctl_lab, zpctl_lab.inventory(), start, time.time())
    assert report.problems == [], report.problems
    if flow.name in JOURNEYS:
        assert report.summary == JOURNEYS[flow.name]


# The hops (without the end points) of a few flows' call records.
JOURNEYS = {
    "extension": "lb>proxy>switch>switch>proxy>lb",
    "pstn-native": "lb>proxy>switch>switch>proxy>sbc",
    "inbound-did": "sbc>proxy>switch>switch>proxy>lb",
    "no-calling-plan": "lb>proxy>switch>switch>proxy",
}


# --- c. the lb spreads calls over both zones ------------------------------------------------

def test_c_lb_spreads_calls_evenly_over_both_zones_and_their_switches(
        zpctl_lab: Lab, zpctl_phones: Phones) -> None:
    """1,000 calls: the lb spreads them over the zones, and each zone proxy over its own
    zone's switches (round robin): lab1 zone a has two, each takes 45-55 % of its calls."""
    zpctl_phones.answer(EXT.callee)
    proxies = _proxies(zpctl_phones)
    inv = zpctl_phones.inv

    def processed() -> list[int]:
        out = []
        for p in proxies:
            stat = _rpc(p).call("stats.get_statistics", "processed_dialogs")
            out.append(int(str(stat[0]).split("=")[1]))
        return out

    before, switches_before = processed(), switch_totals(zpctl_lab, inv)
    # 25/s: well under the full path's knee through the switches on a 2-core machine
    # (docs/PERFORMANCE.md), so the test measures the spread, not the knee.
    run = zpctl_phones.call(EXT.caller, EXT.number, hold_ms=100, calls=1000, rate=25, wait_s=150)
    assert run.returncode == 0, run.errors.read_text()[-800:]
    after, switches_after = processed(), switch_totals(zpctl_lab, inv)
    # Each call is two dialogs at its zone proxy: the phone's leg to the switch, and the
    # switch's leg back to the callee (to the switch's own zone proxy).
    per_zone = [(a - b) // 2 for a, b in zip(after, before, strict=True)]
    assert sum(per_zone) == 1000, per_zone
    for n in per_zone:
        assert 450 <= n <= 550, per_zone
    # Each call is two sessions on its switch (the leg in and the leg out).
    took = {name: (switches_after[name] - n) // 2 for name, n in switches_before.items()}
    zone_a = ("lab1-a-switch1", "lab1-a-switch2")
    assert sum(took.values()) == 1000, took
    assert took["lab1-b-switch1"] == per_zone[1], (took, per_zone)
    assert took[zone_a[0]] + took[zone_a[1]] == per_zone[0], (took, per_zone)
    for name in zone_a:
        share = took[name] / per_zone[0]
        assert 0.45 <= share <= 0.55, (name, share, took)
    print(f"\nzones {per_zone}; switches {took}")


# --- f. BYOC-P peers need the platform's client certificate ---------------------------

def _tls_client(zpctl_lab: Lab, cert: tuple[Path, Path] | None) -> ssl.SSLSocket:
    sbc = zpctl_lab.inventory().node("lab1-a-sbc").node
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(zpctl_lab.dir / "pki" / "ca.crt")
    ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(*cert)
    raw = socket.create_connection((sbc.public, sbc.ports.sips), timeout=5,
                                   source_address=("127.0.9.10", 0))
    return ctx.wrap_socket(raw)


def _refused(zpctl_lab: Lab, cert: tuple[Path, Path] | None) -> bool:
    """True when the sbc will not carry SIP for this TLS client."""
    try:
        tls = _tls_client(zpctl_lab, cert)
        # TLS 1.3: a rejected client certificate shows on the first read, not the handshake.
        tls.sendall(b"OPTIONS sip:127.0.1.113 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.9.10:5099;"
                    b"branch=z9hG4bKx1\r\nFrom: <sip:t@127.0.9.10>;tag=1\r\nTo: <sip:x@y>\r\n"
                    b"Call-ID: tls-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    b"Content-Length: 0\r\n\r\n")
        data = tls.recv(2000)
        tls.close()
        return data == b""
    except (ssl.SSLError, OSError):
        return True


def test_f_peer_without_valid_client_certificate_is_refused(zpctl_lab: Lab,
                                                             tmp_path: Path) -> None:
    assert _refused(zpctl_lab, None)
    rogue_ca = tmp_path / "rogue"
    pki.make_ca(rogue_ca, cn="rogue CA")
    rogue = pki.issue(rogue_ca, rogue_ca, "peer", "sbc.initech.test", ["127.0.9.10"])
    assert _refused(zpctl_lab, rogue)
    # The real premises certificate is accepted (the same probe gets an answer).
    home = zpctl_lab.dir / "nodes" / "premises-initech-pbx-0" / "etc"
    assert not _refused(zpctl_lab, (home / "peer.crt", home / "peer.key"))


def test_f_invite_without_sdp_from_peer_is_refused(zpctl_lab: Lab) -> None:
    home = zpctl_lab.dir / "nodes" / "premises-initech-pbx-0" / "etc"
    tls = _tls_client(zpctl_lab, (home / "peer.crt", home / "peer.key"))
    port = tls.getsockname()[1]
    tls.sendall((
        "INVITE sip:+15550300002@127.0.1.113:5061;transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.9.10:{port};branch=z9hG4bKnosdp1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:+15125550100@127.0.9.10>;tag=nosdp\r\n"
        "To: <sip:+15550300002@127.0.1.113>\r\nCall-ID: nosdp-1@127.0.9.10\r\n"
        "CSeq: 1 INVITE\r\nContact: <sip:pbx@127.0.9.10:5061;transport=tls>\r\n"
        "Content-Length: 0\r\n\r\n").encode())
    data = b""
    deadline = time.monotonic() + 5
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        data += tls.recv(4000)
    tls.close()
    status = data.split(b"\r\n", 1)[0].decode()
    assert status.startswith("SIP/2.0 488"), data[:300]
    assert "Early Offer" in status


# --- h. region lock -------------------------------------------------------------------------

def test_h_region_locked_account_is_refused_here(zpctl_phones: Phones, zpctl_lab: Lab) -> None:
    eu = load_inventory(EU_MINI)
    result = zpctl_lab.sync_accounts(eu)
    try:
        assert result.created == ["5001@eurobank.eu.lab.zpctl.test"] or result.unchanged == 1
        user = next(u for u in zpctl_lab.users(eu) if u.username == "5001")
        zpctl_phones.users["5001@eurobank"] = user
        run = zpctl_phones.register("5001@eurobank")
        assert run.returncode != 0
        assert _responses(run) == ["401", "403"]
        assert "Region Locked" in run.received("SIP/2.0 403")[0]
        assert zpctl_phones.attempt("5001@eurobank", "+15557770020") == 403
    finally:
        # Leave the shared database as the lab inventory defines it.
        zpctl_lab.sync_accounts(_emptied(eu))


def _emptied(inv):  # type: ignore[no-untyped-def]
    """The same platform with no accounts: syncing it removes that platform's rows."""
    from zpctl.model import LoadedInventory  # noqa: PLC0415

    return LoadedInventory(inv.model.model_copy(update={"accounts": []}), inv.source)
