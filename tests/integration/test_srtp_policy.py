"""The SRTP policy through the real lab: each client's leg gets its class's media.

The seed's rules: apps AES_256_CM_HMAC_SHA1_80; SIP devices AES_CM_128_HMAC_SHA1_80 unless
an admin upgraded them (AES-256); plain RTP only for devices marked unencrypted.  The lab's
acme account has alice-app (app), alice-desk (upgraded desk phone), bob-desk (desk phone)
and carol-ata (unencrypted ATA), each with credentials of its own.  A small SIP client
(zpctl/lab/sipua.py) offers chosen suites; the tests read the SDP each side got.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from itertools import count

import pytest

from zpctl.accounts import sip_devices, sip_users
from zpctl.clients.esl import EslConnection
from zpctl.clients.kamailio import KamailioRpc
from zpctl.errors import RemoteFailure
from zpctl.freeswitch.control import parse_rows, targets_for
from zpctl.lab import Lab
from zpctl.lab.sipua import Call, Sdp, Ua
from zpctl.model.schema import Role
from zpctl.secrets import ESL_PASSWORD_KEY
from zpctl.sipp import parse_trace
from zpctl.testing import wait_for

A128 = "AES_CM_128_HMAC_SHA1_80"
A256 = "AES_256_CM_HMAC_SHA1_80"
LB = ("127.0.1.1", 5060)
_ips = (f"127.0.7.{i}" for i in count(40))


def _peer_offer(lab: Lab, peer: str, number: str) -> Sdp:
    """The SDP of the last INVITE for ``number`` that a lab carrier or premises PBX got."""
    log = lab.dir / "nodes" / peer / "log" / "sipp.messages.log"
    invites = [m for m in parse_trace(log.read_text(errors="replace") if log.exists() else "")
               if m.startswith(f"INVITE sip:{number}@")]
    assert invites, f"{peer} saw no INVITE for {number}"
    return Sdp.of(invites[-1])


@pytest.fixture
def clients(zpctl_lab: Lab) -> Iterator[dict[str, Ua]]:
    """One client per provisioned acme device and per acme user (its own credentials)."""
    inv, secrets = zpctl_lab.inventory(), zpctl_lab.secrets()
    out: dict[str, Ua] = {}
    for i, d in enumerate(sip_devices(inv, secrets)):
        if d.domain.startswith("acme"):
            out[d.username] = Ua(next(_ips), 5060, d.aor, d.username, d.domain, d.password, LB,
                                 media_port=31000 + 10 * i)
    for i, u in enumerate(sip_users(inv, secrets)):
        if u.account == "acme":
            out[u.username] = Ua(next(_ips), 5060, u.username, u.username, u.domain,
                                 u.password, LB, media_port=32000 + 10 * i)
    yield out
    for ua in out.values():
        ua.close()


@pytest.fixture
def listen(zpctl_lab: Lab) -> Callable[..., Ua]:
    """Register a client and answer its calls, once both zone proxies hold its contact: the
    lb may send the call to the zone that did not take the REGISTER (DMQ replicates it).
    ``dc``: the data center (index) whose lb and proxies the client uses."""
    inv = zpctl_lab.inventory()

    def lookup(rpc: KamailioRpc, aor: str) -> str:
        try:
            return str(rpc.call("ul.lookup", "location", aor))
        except RemoteFailure:  # not (yet) registered there
            return ""

    def start(ua: Ua, dc_index: int = 0) -> Ua:
        dc = inv.model.datacenters[dc_index]
        rpcs = {}
        for z in sorted(dc.zones):
            proxy = inv.zone_node(dc, z, Role.PROXY)
            assert proxy is not None
            rpcs[proxy.name] = KamailioRpc(f"http://{proxy.mgmt}:{proxy.ports.mgmt_http}/RPC")
        assert ua.register() == 200
        ua.answer_calls()
        aor, contact = f"{ua.aor}@{ua.domain}", f"sip:{ua.aor}@{ua.ip}:{ua.port}"
        for name, rpc in rpcs.items():
            wait_for(f"{contact} on {name}", lambda r=rpc: contact in lookup(r, aor), 10)
        return ua

    return start


def _unregister(*uas: Ua) -> None:
    for ua in uas:
        ua.register(0)


def test_app_to_desk_phone_each_leg_gets_its_suite(clients: dict[str, Ua],
                                                    listen: Callable[[Ua], Ua]) -> None:
    bob = listen(clients["bob-desk"])
    try:
        call = clients["alice-app"].call("1002", [A128, A256])
        assert call.status == 200, call
        # The desk phone was offered AES-128 only; the app got AES-256 back.
        assert bob.received_offers[-1].proto == "RTP/SAVP"
        assert bob.received_offers[-1].suites == [A128]
        assert call.answer is not None
        assert (call.answer.proto, call.answer.suites) == ("RTP/SAVP", [A256])
        # The caller's address (X-ZP-Source, from the lb to the proxy) goes no further.
        assert [h for h, _ in bob.received_invites[-1].headers
                if h.lower().startswith("x-zp-")] == []
    finally:
        _unregister(bob)


def test_desk_phone_to_unencrypted_ata_gets_plain_rtp_on_that_leg_only(
        clients: dict[str, Ua], listen: Callable[[Ua], Ua]) -> None:
    carol = listen(clients["carol-ata"])
    try:
        call = clients["bob-desk"].call("1003", [A256, A128])
        assert call.status == 200, call
        assert (carol.received_offers[-1].proto, carol.received_offers[-1].suites) == \
            ("RTP/AVP", [])
        # A plain leg carries no crypto of any kind: no DTLS attributes either (a
        # DTLS-capable phone could start a handshake or refuse the call).
        assert carol.received_offers[-1].dtls == []
        assert carol.received_offers[-1].streams == 1
        assert call.answer is not None
        assert (call.answer.proto, call.answer.suites) == ("RTP/SAVP", [A128])
        assert call.answer.dtls == []
    finally:
        _unregister(carol)


def test_plain_ata_to_upgraded_desk_phone_gets_aes256(clients: dict[str, Ua],
                                                       listen: Callable[[Ua], Ua]) -> None:
    desk = listen(clients["alice-desk"])
    try:
        call = clients["carol-ata"].call("1001", [])
        assert call.status == 200, call
        assert (desk.received_offers[-1].proto, desk.received_offers[-1].suites) == \
            ("RTP/SAVP", [A256])
        assert call.answer is not None
        assert (call.answer.proto, call.answer.suites) == ("RTP/AVP", [])
    finally:
        _unregister(desk)


def test_each_branch_of_a_forked_call_gets_its_clients_policy(
        clients: dict[str, Ua], listen: Callable[[Ua], Ua]) -> None:
    """1001 is registered twice: with the user's own credentials (plain RTP in the lab,
    where user credentials serve SIPp) and as alice-desk (AES-256)."""
    own, desk = listen(clients["1001"]), listen(clients["alice-desk"])
    try:
        call = clients["bob-desk"].call("1001", [A128])
        assert call.status == 200, call
        assert (own.received_offers[-1].proto, own.received_offers[-1].suites) == \
            ("RTP/AVP", [])
        assert (desk.received_offers[-1].proto, desk.received_offers[-1].suites) == \
            ("RTP/SAVP", [A256])
    finally:
        _unregister(own, desk)


@pytest.mark.parametrize(("caller", "suites"), [
    ("bob-desk", [A256]),  # a desk phone must use AES-128 (it was not upgraded)
    ("alice-app", [A128]),  # apps use AES-256
    ("alice-app", []),  # apps never send plain RTP
])
def test_an_offer_without_the_clients_suite_is_refused(
        clients: dict[str, Ua], caller: str, suites: list[str]) -> None:
    call = clients[caller].call("1002", suites)
    assert call.status == 488, call
    assert call.final is not None
    assert "SRTP with" in (call.final.get("Warning") or "")


def test_device_credentials_act_only_as_their_own_user(clients: dict[str, Ua]) -> None:
    bob = clients["bob-desk"]
    bob.aor = "1001"  # bob's desk phone claiming to be alice
    assert bob.register() == 403
    assert bob.call("1002", [A128]).status == 403


def test_plain_rtp_carrier_gets_plain_rtp_while_the_desk_phone_keeps_aes128(
        zpctl_lab: Lab, clients: dict[str, Ua]) -> None:
    call = clients["bob-desk"].call("+15557770021", [A128])
    assert call.status == 200, call
    assert call.answer is not None
    assert (call.answer.proto, call.answer.suites) == ("RTP/SAVP", [A128])
    offer = _peer_offer(zpctl_lab, "carrier-lab-carrier-0", "+15557770021")
    assert (offer.proto, offer.suites) == ("RTP/AVP", [])  # lab-carrier: srtp false
    assert (offer.dtls, offer.streams) == ([], 1)  # one plain stream, nothing of DTLS


def test_srtp_trunk_is_offered_srtp_even_by_a_plain_caller(
        zpctl_lab: Lab, clients: dict[str, Ua]) -> None:
    """initech's BYOC-P trunk asks for SRTP: its premises side is offered the usual AES-128
    and AES-256 suites, and nothing weaker, though the caller sent plain RTP."""
    inv, secrets = zpctl_lab.inventory(), zpctl_lab.secrets()
    u = next(x for x in sip_users(inv, secrets) if x.username == "3001")
    peter = Ua(next(_ips), 5060, u.username, u.username, u.domain, u.password, LB,
               media_port=33000)
    try:
        call = peter.call("+15557770022", [])
    finally:
        peter.close()
    assert call.status == 200, call
    assert call.answer is not None and call.answer.proto == "RTP/AVP"
    offer = _peer_offer(zpctl_lab, "pbx-initech-pbx-0", "+15557770022")
    assert offer.proto == "RTP/SAVP"
    assert sorted(offer.suites) == sorted([A128, A256])


def _switch_channels(zpctl_lab: Lab) -> list[dict[str, str]]:
    """Every channel on the lab's switches (``show channels as json`` over ESL)."""
    inv = zpctl_lab.inventory()
    password = zpctl_lab.secrets().get(ESL_PASSWORD_KEY)

    async def ask() -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for t in targets_for(inv):
            async with EslConnection(t.host, t.port, password, name=t.name, timeout=5) as c:
                rows += parse_rows(await c.api("show channels as json"))
        return rows

    return asyncio.run(ask())


@pytest.mark.parametrize(("dc_index", "legs"), [(0, "plain"), (1, "srtp")],
                         ids=["lab1-plain-switch-legs", "lab2-srtp-switch-legs"])
def test_switch_legs_follow_the_data_center_while_each_phone_keeps_its_own_policy(
        zpctl_lab: Lab, clients: dict[str, Ua], listen: Callable[..., Ua], dc_index: int,
        legs: str) -> None:
    """A desk phone (AES-128) calls the unencrypted ATA (plain RTP) through a data
    center's lb: the switch in between talks SRTP on both of its legs (to the media node on
    each side) in lab2, plain RTP in lab1 (`switch_legs: plain`, for its standbys), as
    FreeSWITCH itself reports it while the call is up; the phones get their own policy
    either way."""
    inv = zpctl_lab.inventory()
    dc = inv.model.datacenters[dc_index]
    assert inv.model.switch_legs(dc) == legs
    lb = next(n for n in dc.nodes if n.role == Role.LB)
    for name in ("carol-ata", "bob-desk"):
        clients[name].proxy = (lb.address, lb.ports.sip)
    carol = listen(clients["carol-ata"], dc_index)
    seen: list[list[dict[str, str]]] = []
    try:
        result: list[Call] = []
        caller = threading.Thread(target=lambda: result.append(
            clients["bob-desk"].call("1003", [A128], hold_s=3.0)))
        caller.start()

        def two_legs() -> bool:
            # FreeSWITCH fills a leg's `secure` once its media is up: wait for the answer.
            # Only this call's legs (bob calling 1003): the switches may carry others.
            seen.append([c for c in _switch_channels(zpctl_lab)
                         if c.get("cid_num") == "1002" and "1003" in (c.get("dest"),
                                                                      c.get("callee_num"))])
            return len(seen[-1]) >= 2 and all(leg.get("callstate") == "ACTIVE"
                                              for leg in seen[-1])

        wait_for("the call's two legs answered on a switch", two_legs, 10)
        caller.join(20)
        assert result and result[0].status == 200, result
    finally:
        _unregister(carol)
    found = seen[-1]
    assert len(found) == 2, found
    for leg in found:
        assert leg["hostname"].startswith(f"{dc.id}-"), leg  # a switch of that data center
        if legs == "srtp":
            assert "srtp" in leg.get("secure", ""), leg  # e.g. srtp:sdes:AES_CM_128_HMAC_SHA1_80
        else:
            assert leg.get("secure", "") == "", leg
    assert (carol.received_offers[-1].proto, carol.received_offers[-1].suites) == \
        ("RTP/AVP", [])
