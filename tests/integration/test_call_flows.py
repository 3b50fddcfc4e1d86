"""Call flows through the running lab, with SIPp as every phone, carrier and PBX.

Each test asserts on SIP responses and on what each hop saw: the message traces of the
SIPp endpoints, rtpengine's per-call counters, the proxies' registrations over JSON-RPC.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from pathlib import Path

import pytest

from zpctl import pki
from zpctl.clients.kamailio import KamailioRpc
from zpctl.errors import RemoteFailure
from zpctl.lab import Lab
from zpctl.lab.phones import Phones, packets_by_tag
from zpctl.model import load_inventory
from zpctl.model.schema import Node, Role
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

EU_MINI = Path(__file__).parent / "fixtures" / "eu-mini"


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


def _wait_for_media(phones: Phones, caller_ip: str, timeout: float = 6.0) -> dict:  # type: ignore[type-arg]
    """The rtpengine query of the call placed from ``caller_ip``, once RTP flowed both ways."""
    deadline = time.monotonic() + timeout
    seen: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        for cid, q in phones.media_calls().items():
            if cid.endswith("@" + caller_ip):
                seen = q
                counts = [n for _, n in packets_by_tag(q).values()]
                if len(counts) >= 2 and all(n > 10 for n in counts):
                    return q
        time.sleep(0.3)
    return seen


def _carrier_invites(lab: Lab, peer: str, number: str) -> list[str]:
    from zpctl.sipp import parse_trace  # noqa: PLC0415

    log = lab.dir / "nodes" / peer / "log" / "sipp.messages.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [m for m in parse_trace(text) if m.startswith(f"INVITE sip:{number}@")]


def _internal_addresses(lab: Lab) -> set[str]:
    """Every platform address a carrier must not see: all but the sbcs' and media nodes'
    public addresses."""
    inv = lab.inventory()
    public = {p.node.public for p in inv.nodes() if p.role in (Role.SBC, Role.MEDIA)}
    addrs = {a for p in inv.nodes() for a in (p.node.address, p.node.mgmt, p.node.public)}
    return addrs - public


# --- a. registration ------------------------------------------------------------------------

def test_a_register_through_lb_with_digest_auth_replicated_to_both_zones(
        zpctl_phones: Phones) -> None:
    for user, ip in (("1001@acme", "127.0.8.201"), ("1002@acme", "127.0.8.202")):
        run = zpctl_phones.register(user, ip)
        assert run.returncode == 0, run.errors.read_text()[-500:]
        assert _responses(run) == ["401", "200"]
        aor = f"{user.split('@')[0]}@acme.lab.zpctl.test"
        contact = f"sip:{user.split('@')[0]}@{ip}:5060"
        # Whichever zone took the REGISTER, both proxies have the contact (DMQ).
        for proxy in _proxies(zpctl_phones):
            found = wait_for(f"{contact} on {proxy.name}", lambda p=proxy, a=aor, c=contact: (
                t if c in (t := _lookup(p, a)) else None), 10)
            assert contact in found, (proxy.name, found)


def test_a_wrong_password_is_refused(zpctl_phones: Phones, tmp_path: Path) -> None:
    u = zpctl_phones.user("1001@acme")
    zpctl_phones.users["bad@acme"] = type(u)(u.username, u.domain, "wrong-password",
                                            u.account, u.offering, u.dids)
    run = zpctl_phones.register("bad@acme")
    assert run.returncode != 0
    assert _responses(run)[:2] == ["401", "401"]


# --- b. extension to extension with media anchored ------------------------------------------

def test_b_extension_call_media_anchored_both_ways(zpctl_phones: Phones, zpctl_lab: Lab) -> None:
    callee = zpctl_phones.answer("1002@acme")
    caller_ip = "127.0.8.111"
    call = zpctl_phones.call_in_background("1001@acme", "1002", hold_ms=3000, ip=caller_ip)
    q = _wait_for_media(zpctl_phones, caller_ip)
    assert call.wait(20) == 0, call.errors.read_text()[-800:]
    stats = packets_by_tag(q)
    assert len(stats) == 2, q
    assert all(n > 10 for _, n in stats.values()), stats  # RTP both ways
    # The callee saw an SDP pointing at a media node, not at the caller.
    invite = next(m for m in callee.received("INVITE "))
    media_nodes = {p.node.address for p in zpctl_lab.inventory().nodes() if p.role == Role.MEDIA}
    c_line = re.search(r"^c=IN IP4 (\S+)", invite, re.M)
    assert c_line is not None
    assert c_line.group(1) in media_nodes
    assert caller_ip not in invite.split("\n\n", 1)[-1]
    assert q["media_node"].startswith("lab1-")


# --- c. the lb spreads calls over both zones ------------------------------------------------

def test_c_lb_spreads_calls_evenly_over_both_zones(zpctl_phones: Phones) -> None:
    zpctl_phones.answer("1002@acme")
    proxies = _proxies(zpctl_phones)

    def processed() -> list[int]:
        out = []
        for p in proxies:
            stat = _rpc(p).call("stats.get_statistics", "processed_dialogs")
            out.append(int(str(stat[0]).split("=")[1]))
        return out

    before = processed()
    # 50/s: half the full path's measured capacity on a 2-core machine (docs/PERFORMANCE.md),
    # so the test measures the spread, not the knee.
    run = zpctl_phones.call("1001@acme", "1002", hold_ms=100, calls=1000, rate=50, wait_s=120)
    assert run.returncode == 0, run.errors.read_text()[-800:]
    after = processed()
    per_zone = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(per_zone) == 1000, per_zone
    for n in per_zone:
        assert 450 <= n <= 550, per_zone


# --- d. outbound PSTN -----------------------------------------------------------------------

@pytest.mark.parametrize(("user", "number", "carrier"), [
    ("1001@acme", "+15557770001", "carrier-lab-carrier-0"),        # Native: platform carrier
    ("2001@globex", "+15557770002", "carrier-globex-carrier-0"),   # BYOC-C: its own carrier
])
def test_d_outbound_pstn_through_sbc_with_topology_hidden(
        zpctl_phones: Phones, zpctl_lab: Lab, user: str, number: str, carrier: str) -> None:
    run = zpctl_phones.call(user, number, hold_ms=500)
    assert run.returncode == 0, run.errors.read_text()[-800:]
    invites = _carrier_invites(zpctl_lab, carrier, number)
    assert invites, f"{carrier} saw no INVITE for {number}"
    other = "carrier-globex-carrier-0" if carrier == "carrier-lab-carrier-0" \
        else "carrier-lab-carrier-0"
    assert _carrier_invites(zpctl_lab, other, number) == []
    invite = invites[-1]
    leaked = sorted(a for a in _internal_addresses(zpctl_lab)
                    if re.search(rf"(?<![0-9.]){re.escape(a)}(?![0-9])", invite))
    assert leaked == [], f"internal addresses visible to the carrier: {leaked}\n{invite}"
    assert "zpctl.test" not in invite  # no platform or account host names
    assert "X-ZP-" not in invite
    caller_id = zpctl_phones.user(user).dids[0]
    assert re.search(rf"^From: <sip:{re.escape(caller_id)}@", invite, re.M), invite


def test_d_native_user_without_calling_plan_is_refused(zpctl_phones: Phones) -> None:
    assert zpctl_phones.attempt("1003@acme", "+15557770010") == 403


def test_d_byoc_user_needs_no_calling_plan(zpctl_phones: Phones) -> None:
    assert zpctl_phones.attempt("2002@globex", "+15557770011") == 200


# --- e. inbound DID -------------------------------------------------------------------------

def test_e_inbound_did_reaches_the_user(zpctl_phones: Phones, zpctl_lab: Lab) -> None:
    from zpctl import sipp  # noqa: PLC0415

    callee = zpctl_phones.answer("1001@acme")
    sbc = zpctl_lab.inventory().node("lab1-a-sbc").node
    run = sipp.run("trunk_call", f"{sbc.public}:{sbc.ports.sip}", workdir=zpctl_phones.workdir,
                   name="inbound-did", local_ip="127.0.9.1", local_port=5071,
                   service="+15550100002", keys={"caller": "+12125550100",
                                                  "domain": sbc.public},
                   hold_ms=500, media_port=23000, wait_s=20)
    assert run.returncode == 0, run.errors.read_text()[-800:]
    invite = callee.received("INVITE ")[-1]
    assert invite.startswith("INVITE sip:1001@")
    assert "+12125550100" in invite.split("\n\n")[0]


def test_e_unknown_did_is_404(zpctl_phones: Phones, zpctl_lab: Lab) -> None:
    from zpctl import sipp  # noqa: PLC0415

    sbc = zpctl_lab.inventory().node("lab1-a-sbc").node
    run = sipp.run("trunk_call", f"{sbc.public}:{sbc.ports.sip}", workdir=zpctl_phones.workdir,
                   name="inbound-unknown", local_ip="127.0.9.1", local_port=5072,
                   service="+15550999999", keys={"caller": "+12125550100", "domain": sbc.public},
                   hold_ms=500, media_port=23002, wait_s=20)
    assert run.returncode != 0
    assert "404" in _responses(run)


# --- f. BYOC-P over mutual TLS --------------------------------------------------------------

def test_f_byoc_p_outbound_over_mutual_tls(zpctl_phones: Phones, zpctl_lab: Lab) -> None:
    run = zpctl_phones.call("3001@initech", "+15557770003", hold_ms=500)
    assert run.returncode == 0, run.errors.read_text()[-800:]
    assert _carrier_invites(zpctl_lab, "pbx-initech-pbx-0", "+15557770003")
    log = (zpctl_lab.dir / "nodes" / "premises-initech-pbx-0" / "log" / "premises.log").read_text(
        errors="replace")
    assert re.search(r"platform -> PBX: INVITE sip:\+15557770003@\S+ from \S+ \(peer cert CN "
                     r"lab1-[ab]-sbc\.lab\.zpctl\.test, verified 1\)", log), log[-1000:]


def test_f_byoc_p_inbound_from_premises_over_mutual_tls(zpctl_phones: Phones,
                                                        zpctl_lab: Lab) -> None:
    from zpctl import sipp  # noqa: PLC0415

    callee = zpctl_phones.answer("3001@initech")
    run = sipp.run("trunk_call", "127.0.9.10:5060", workdir=zpctl_phones.workdir,
                   name="premises-inbound", local_ip="127.0.9.11", local_port=5071,
                   service="+15550300002", keys={"caller": "+15125550100",
                                                  "domain": "127.0.9.10"},
                   hold_ms=500, media_port=23004, wait_s=20)
    assert run.returncode == 0, run.errors.read_text()[-800:]
    assert callee.received("INVITE sip:3001@")


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


# --- g. transcoding -------------------------------------------------------------------------

def test_g_opus_caller_reaches_pcmu_carrier_transcoded(zpctl_phones: Phones,
                                                       zpctl_lab: Lab) -> None:
    caller_ip = "127.0.8.121"
    call = zpctl_phones.call_in_background("1001@acme", "+15557770004", hold_ms=3000,
                                           scenario="call_opus", ip=caller_ip)
    q = _wait_for_media(zpctl_phones, caller_ip)
    assert call.wait(20) == 0, call.errors.read_text()[-800:]
    stats = packets_by_tag(q)
    codecs = sorted(c for c, _ in stats.values())
    assert codecs == ["PCMU/8000", "opus/48000/2"], stats
    assert all(n > 10 for _, n in stats.values()), stats
    invite = _carrier_invites(zpctl_lab, "carrier-lab-carrier-0", "+15557770004")[-1]
    sdp = invite.split("\n\n", 1)[1]
    assert "PCMU/8000" in sdp
    assert "opus" not in sdp.lower()
    ok = next(m for m in call.received("SIP/2.0 200") if "INVITE" in m)
    assert "opus/48000" in ok


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
