"""Emergency calling through the running lab (docs/EMERGENCY.md), proven at the far end:

- the lab's answering point (a SIPp UAS, ``zpctl/scenarios/psap.xml``, at the carrier the
  inventory marks for emergency calls) refuses a call without a location (424) and logs
  what a located call carried: the Geolocation header, the PIDF-LO document, the callback
  number in P-Asserted-Identity;
- the caller's tone comes back from the answering point (it echoes), and RTP is counted
  both ways at its address;
- a call back from the answering point to the callback number rings the phone that made
  the emergency call, past forwarding and do-not-disturb.

The demo and the integration tests run these flows.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from zpctl.control import Control
from zpctl.errors import RemoteFailure
from zpctl.lab.features import CALLER_HZ, FeatureLab, FeatureOutcome, _media, _talks, wait_until
from zpctl.lab.peers import Peer, peers
from zpctl.lab.rtpcount import RtpCounter
from zpctl.lab.sipua import Dialog, Ua
from zpctl.model import emergency
from zpctl.model.schema import Role

# The answering point's own phone line, for its calls back: the answering point's
# address (the sbcs accept calls from it), another port.
CALLBACK_PORT = 5071
CALLBACK_MEDIA_PORT = 20100
PSAP_NUMBER = "+15550009110"  # the number the answering point calls back from
PSAP_HZ = 900.0  # what the answering point's line says on a call back
_LINE = re.compile(r"PSAP (ANSWERED|REFUSED) (.*?)(?: location=(.*))?$")
_FIELD = re.compile(r"(\w+)=(\S*)")


def psap(fl: FeatureLab) -> Peer:
    """The lab's answering point (the first carrier for emergency calls only)."""
    found = [p for p in peers(fl.inv) if p.kind == "psap"]
    if not found:
        raise RuntimeError("the lab inventory has no carrier for emergency calls only "
                           "(emergency: [...], pstn: false)")
    return found[0]


def psap_log(fl: FeatureLab) -> Path:
    return fl.lab.dir / "nodes" / psap(fl).name / "log" / "sipp.log"


def log_mark(fl: FeatureLab) -> int:
    path = psap_log(fl)
    return path.stat().st_size if path.exists() else 0


def psap_records(fl: FeatureLab, since: int) -> list[dict[str, str]]:
    """What the answering point logged after ``since`` (a :func:`log_mark`): one record per
    INVITE, ``result`` ANSWERED or REFUSED and the fields it found."""
    path = psap_log(fl)
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        if m := _LINE.search(line):
            rec = {"result": m.group(1)}
            rec.update(_FIELD.findall(m.group(2)))
            if m.group(3) is not None:
                rec["location"] = m.group(3).strip()
            out.append(rec)
    return out


def expected_location(fl: FeatureLab, key: str) -> tuple[str, str]:
    """(callback number, PIDF-LO document from <presence on) that a call of ``key`` must
    carry, from the inventory."""
    ext, acct_id = key.split("@")
    acct = fl.account(acct_id)
    user, site = fl.user_and_site(acct, ext)
    callback = emergency.callback_number(acct, user) or ""
    doc = emergency.pidf(site, f"{callback}@{fl.inv.model.account_domain(acct)}")
    return callback, doc[doc.index("<presence"):]


@contextmanager
def _caller(fl: FeatureLab, key: str, ip: str | None, register: bool) -> Iterator[Ua]:
    """The calling phone: registered (FeatureLab.phone), or (``register`` false: its
    address may be banned from registering) a client that only places the call."""
    if register:
        with fl.phone(key, ip=ip) as phone:
            yield phone
        return
    u = fl.user(key)
    ua = Ua(ip or "127.0.7.199", 5064, u.username, u.username, u.domain, u.password, fl.lb,
            media_port=34960)
    try:
        yield ua
    finally:
        ua.close()


def emergency_call(fl: FeatureLab, caller: str = "1001@acme", dial: str = "9911",
                   ip: str | None = None, hold_s: float = 2.0, register: bool = True
                   ) -> FeatureOutcome:
    """``caller`` dials ``dial`` (an emergency number, with or without the outside-line
    prefix): the answering point answers only with the site's location and the callback
    number, the caller's tone comes back from it, and RTP flows both ways at its address."""
    out = FeatureOutcome("emergency", path=f"{caller.split('@', maxsplit=1)[0]} -> lb -> proxy -> sbc -> "
                                           "answering point")
    point = psap(fl)
    callback, doc = expected_location(fl, caller)
    mark = log_mark(fl)
    with _caller(fl, caller, ip, register) as phone, \
            RtpCounter({phone.ip, point.address}) as rtp:
        started = time.monotonic()
        call = phone.dial(dial, timeout=20)
        out.facts["answered_after_s"] = round(time.monotonic() - started, 2)
        media = _media(out, call, f"the emergency call to {dial}")
        out.facts["call_id"] = call.call_id
        try:
            if media is not None:
                mark_heard = media.mark()
                media.play(_tone(CALLER_HZ, hold_s))
                wait_until(lambda: media.tone_heard(CALLER_HZ, mark_heard) >= hold_s - 0.5,
                           hold_s + 4)
                out.facts["caller_heard_s"] = round(media.tone_heard(CALLER_HZ, mark_heard), 2)
        finally:
            if call.established:
                call.bye()
            forget_callback(fl, callback)
    got = rtp.parties[point.address]
    out.facts["psap_rtp"] = {"received": got.received, "sent": got.sent}
    records = [r for r in psap_records(fl, mark) if r["result"] == "ANSWERED"]
    if out.check(len(records) == 1, f"the answering point logged {len(records)} answered calls "
                                    f"(refused: {psap_records(fl, mark)})"):
        rec = records[0]
        out.facts.update(callback=rec.get("callback"), geolocation=rec.get("geo"),
                         routing=rec.get("routing"))
        out.check(rec.get("callback") == callback,
                  f"callback number {rec.get('callback')!r}, not the user's {callback!r}")
        out.check(rec.get("location") == doc,
                  f"the location document differs from the site's:\n{rec.get('location')}\n{doc}")
        out.check(rec.get("routing") == "yes", "no Geolocation-Routing: yes")
    out.check(out.facts.get("caller_heard_s", 0) >= min(1.0, hold_s / 2),
              f"the caller heard {out.facts.get('caller_heard_s')} s of its tone back from "
              "the answering point")
    out.check(got.received >= 25 * hold_s and got.sent >= 25 * hold_s,
              f"RTP at the answering point: {got.received} in, {got.sent} out")
    out.detail = (f"dialled {dial}; answered in {out.facts.get('answered_after_s')} s with "
                  f"callback {out.facts.get('callback')} and the site's civic address; the "
                  f"caller's {CALLER_HZ:g} Hz came back for {out.facts.get('caller_heard_s')} s; "
                  f"RTP at the answering point {got.received} in / {got.sent} out")
    return out


def _tone(hz: float, seconds: float) -> list[int]:
    from zpctl.lab.audio import tone  # noqa: PLC0415

    return tone(hz, seconds)


@contextmanager
def psap_line(fl: FeatureLab) -> Iterator[Ua]:
    """The answering point's line for calls back: a client at its address, calling into the
    sbc's public side as the emergency carrier does."""
    point = psap(fl)
    sbc = next(p.node for p in fl.inv.nodes() if p.role == Role.SBC and p.dc.id == fl.dc.id)
    ua = Ua(point.address, CALLBACK_PORT, PSAP_NUMBER, PSAP_NUMBER, sbc.public or sbc.address,
            "", (sbc.public or sbc.address, sbc.ports.sip), media_port=CALLBACK_MEDIA_PORT)
    try:
        yield ua
    finally:
        ua.close()


def call_back(fl: FeatureLab, number: str) -> Dialog:
    """The answering point calls ``number``."""
    with psap_line(fl) as line:
        return line.dial(number, timeout=20)


def _proxies(fl: FeatureLab) -> list[Any]:
    return [p.node for p in fl.inv.nodes() if p.role == Role.PROXY and p.dc.id == fl.dc.id]


def forget_callback(fl: FeatureLab, number: str) -> None:
    """The zone proxies forget an emergency call from ``number`` (JSON-RPC
    ``htable.delete ecallback``): a call back to it takes the ordinary path again.  The
    flows clean up after themselves so: the lab's other flows call these numbers."""
    control = Control(fl.inv, secrets_file=fl.lab.dir / "secrets.yml")
    for node in _proxies(fl):
        try:
            control.change(node, "htable.delete", "ecallback", number)
        except RemoteFailure as exc:
            if "not found" not in str(exc).lower():  # nothing to forget: fine
                raise


def remembered(fl: FeatureLab, number: str) -> bool:
    """Both zone proxies remember an emergency call from ``number`` (the sister's copy
    comes over DMQ)."""
    control = Control(fl.inv, secrets_file=fl.lab.dir / "secrets.yml")
    for node in _proxies(fl):
        try:
            control.call(node, "htable.get", "ecallback", number)
        except RemoteFailure:
            return False
    return True


def emergency_callback(fl: FeatureLab, caller: str, situation: str) -> FeatureOutcome:
    """``caller``'s calls go elsewhere (``situation``: always forwarded, do not disturb).
    Before an emergency call, a call from the answering point to the caller's callback
    number does not ring the phone; after it, the same call rings that phone directly, is
    answered, and both sides hear each other."""
    out = FeatureOutcome(f"emergency-callback-{situation}",
                         path=f"answering point -> sbc -> proxy -> {caller.split('@', maxsplit=1)[0]} "
                              "(no switch)")
    callback, _ = expected_location(fl, caller)
    out.facts["callback"] = callback
    forget_callback(fl, callback)  # an emergency call of an earlier run is not this one
    with fl.phone(caller) as phone, psap_line(fl) as line:
        before = line.dial(callback, timeout=20)
        out.facts["before"] = f"{before.call.status} {before.call.reason}".strip()
        if before.established:
            before.bye()
        out.check(not phone.received_invites,
                  f"before any emergency call, the call back rang {caller}'s phone")
        mark = log_mark(fl)
        em = phone.dial("911", timeout=20)
        if out.check(em.established, f"the emergency call was not answered "
                                     f"({em.call.status} {em.call.reason})"):
            em.bye()
        out.check(any(r["result"] == "ANSWERED" for r in psap_records(fl, mark)),
                  "the answering point did not log the emergency call")
        # the call back may reach either zone proxy: both must know of the call
        out.check(wait_until(lambda: remembered(fl, callback), 5.0),
                  f"the zone proxies do not both remember {callback}")
        started = time.monotonic()
        back = line.dial(callback, timeout=20)
        out.facts["rang_after_s"] = round(time.monotonic() - started, 2)
        out.facts["after"] = f"{back.call.status} {back.call.reason}".strip()
        try:
            if out.check(back.established and bool(phone.answered),
                         f"the call back did not reach {caller}'s phone ({out.facts['after']})"):
                assert back.media is not None
                out.facts["phone_heard_s"] = round(_talks(back.media, phone.answered[-1],
                                                          PSAP_HZ), 2)
                out.facts["psap_heard_s"] = round(_talks(phone.answered[-1], back.media,
                                                         CALLER_HZ), 2)
                out.check(out.facts["phone_heard_s"] >= 1.0 and out.facts["psap_heard_s"] >= 1.0,
                          f"audio: phone heard {out.facts['phone_heard_s']} s, answering point "
                          f"{out.facts['psap_heard_s']} s")
        finally:
            if back.established:
                back.bye()
            forget_callback(fl, callback)
    out.detail = (f"{situation}: before the emergency call the call back got "
                  f"{out.facts['before']} elsewhere; after it, {caller}'s phone rang and "
                  f"answered ({out.facts.get('after')}), both heard each other")
    return out


class SecurityDesk:
    """An account's security desk as the lab plays it: an HTTP server at the account's
    ``security_desk.webhook`` (a loopback address) that keeps every notice posted to it."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url}: the lab's security desk needs a host and a port")
        self.url, self.path = url, parts.path or "/"
        self.notices: list[tuple[dict[str, str], dict[str, Any]]] = []  # (headers, body)
        desk = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                desk.notices.append(({k.lower(): v for k, v in self.headers.items()}, doc))
                self.send_response(204 if self.path == desk.path else 404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((parts.hostname, parts.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SecurityDesk:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def notice(self, call_id: str, timeout: float = 15.0) -> tuple[dict[str, str], dict[str, Any]] | None:
        """The notice of ``call_id`` (headers, payload), waiting up to ``timeout``."""
        found: list[tuple[dict[str, str], dict[str, Any]]] = []

        def seen() -> bool:
            found[:] = [n for n in self.notices if n[1].get("call_id") == call_id]
            return bool(found)

        wait_until(seen, timeout, step=0.2)
        return found[0] if found else None


def desk_url(fl: FeatureLab, account: str = "acme") -> str:
    desk = fl.account(account).security_desk
    if desk is None:
        raise RuntimeError(f"{account} has no security_desk in the lab inventory")
    return desk.webhook


def check_notice(out: FeatureOutcome, fl: FeatureLab, caller: str, dial: str,
                 notice: tuple[dict[str, str], dict[str, Any]] | None) -> None:
    """The security desk's notice says who called, from where, and where that is."""
    if not out.check(notice is not None, "the security desk got no notice of the call"):
        return
    assert notice is not None
    headers, doc = notice
    ext, acct_id = caller.split("@")
    acct = fl.account(acct_id)
    user, site = fl.user_and_site(acct, ext)
    want = {"account": {"id": acct.id, "name": acct.name},
            "user": {"extension": ext, "name": user.name},
            "site": {"id": site.id, "name": site.name, "location": emergency.location(site)},
            "callback": emergency.callback_number(acct, user), "country": site.country}
    for key, value in want.items():
        out.check(doc.get(key) == value, f"the notice's {key} is {doc.get(key)!r}, not {value!r}")
    out.check(doc.get("number") in (dial, dial[len(acct.outside_prefix or ""):]),
              f"the notice's number is {doc.get('number')!r}")
    out.check(headers.get("x-zp-event") == "emergency-call", f"notice headers {headers}")
    out.facts["notice"] = {"site": site.name, "user": user.name, "switch": doc.get("switch"),
                           "street": site.emergency_address.street}


def emergency_demo(fl: FeatureLab) -> FeatureOutcome:
    """The demo's emergency flow: 1001 dials 9911, the answering point answers with the
    site's location, and acme's security desk (a local HTTP server) gets the notice."""
    with SecurityDesk(desk_url(fl)) as desk:
        out = emergency_call(fl, "1001@acme", "9911")
        call_id = out.facts.get("call_id")
        check_notice(out, fl, "1001@acme", "9911", desk.notice(call_id) if call_id else None)
    if out.ok:
        out.detail += (f"; security desk notified ({out.facts['notice']['user']}, "
                       f"{out.facts['notice']['site']}, {out.facts['notice']['street']})")
    return out


EMERGENCY_FLOWS = (("emergency", emergency_demo),
                   ("emergency-callback", lambda fl: emergency_callback(fl, "1006@acme", "dnd")))
