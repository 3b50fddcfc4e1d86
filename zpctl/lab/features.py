"""The PBX feature flows: calls through the running lab (phone -> lb -> proxy -> switch)
that prove a feature by what the far end heard or what landed on disk.

Each flow uses :class:`zpctl.lab.sipua.Ua` phones with the users' own credentials and plain
RTP (the proxy's media node talks SRTP to the switch), sends known audio (a tone, RFC 4733
digits) and checks what arrived: a tone's frequency by Goertzel filter, a generated prompt
by its loudness envelope, a recording's content, the NOTIFY a phone got.  The demo and the
integration tests run the same flows (:data:`FEATURE_FLOWS`); a flow that cannot run says
why with ``ok: false``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import itertools
import re
import time
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.accounts import SipUser
from zpctl.clients.esl import EslConnection
from zpctl.errors import ZpctlError
from zpctl.freeswitch import control as fsc
from zpctl.freeswitch import queues as qs
from zpctl.freeswitch import recordings as rec
from zpctl.freeswitch import voicemail as vm
from zpctl.freeswitch.control import targets_for
from zpctl.freeswitch.provision import MUSIC_HZ
from zpctl.lab import Lab
from zpctl.lab.audio import best_match, read_wav, tone, tone_seconds
from zpctl.lab.phones import wait_reachable
from zpctl.lab.sipua import Dialog, RtpMedia, Ua
from zpctl.lab.standby import giveback, takeover
from zpctl.model import LoadedInventory
from zpctl.model.pbx import callcenter_name
from zpctl.model.schema import Account, Role, Site, User
from zpctl.render.freeswitch import NAMES_FOLDER, conference_pin, directory_name, voicemail_pin
from zpctl.secrets import ESL_PASSWORD_KEY

# Feature phones: their own loopback addresses, apart from the SIPp phones and the tests'.
PHONE_SUBNET = "127.0.7"
# The flows' phones take 127.0.7.200-254 in turn: a lab run (the demo, the test session)
# opens more phones than that, each closed before the turn comes back to its address
# (a flow holds a few at a time).
_hosts = itertools.cycle(range(200, 255))
CALLER_HZ = 1400.0   # the caller's tone: apart from the voicemail beep and the hold music
CALLEE_HZ = 1100.0   # the callee's answer tone
BEEP_HZ = 640.0      # mod_voicemail's record beep (tone-spec %(1000, 0, 640))


@dataclass
class FeatureOutcome:
    """What a feature flow proved, and what it could not."""

    flow: str
    path: str = ""
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    journey: str = ""  # the hops its call records show (the demo fills it)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    def row(self) -> dict[str, Any]:
        return {"flow": self.flow, "ok": self.ok, "path": self.path, "journey": self.journey,
                "detail": "; ".join(self.problems) if self.problems else self.detail,
                **self.facts}


class FeatureLab:
    """The running lab as the feature flows see it: its users, phones, prompts and the
    switches' shared storage."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.inv: LoadedInventory = lab.inventory()
        self.dc = self.inv.model.datacenters[0]
        lb = next(n for n in self.dc.nodes if n.role == Role.LB)
        self.lb = (lb.address, lb.ports.sip)
        self.users = {f"{u.username}@{u.account}": u for u in lab.users()}
        self.secrets = lab.secrets()

    def user(self, key: str) -> SipUser:
        return self.users[key]

    @contextmanager
    def phone(self, key: str, answer_mode: str = "answer", ip: str | None = None) -> Iterator[Ua]:
        """A registered phone of user ``key`` (``ext@account``), reachable through every
        zone proxy; unregistered and closed afterwards.  ``ip``: its address (default: the
        next of the flows' own, which the lbs never rate-limit)."""
        u = self.user(key)
        n = next(_hosts)
        ua = Ua(ip or f"{PHONE_SUBNET}.{n}", 5060, u.username, u.username, u.domain, u.password,
                self.lb, media_port=34000 + 20 * (n - 200), answer_mode=answer_mode)
        try:
            ua.answer_calls()
            # The user's only phone: a contact left by another phone (the demo's SIPp
            # phones) would ring too and hold the call.
            ua.unregister_all()
            status = ua.register()
            if status != 200:
                raise RuntimeError(f"{key} could not register ({status or 'no answer'})")
            wait_reachable(self.inv, self.dc, u, ua.ip)
            yield ua
        finally:
            try:
                ua.register(expires=0)
            finally:
                ua.close()

    def prompt(self, language: str, name: str) -> list[int]:
        """A generated prompt's samples, as the switches play it."""
        switch = next(p.name for p in self.inv.nodes() if p.role == Role.SWITCH)
        path = (self.lab.dir / "nodes" / switch / "state" / "freeswitch" / "sounds" / language
                / name)
        return read_wav(path)

    def account(self, account: str) -> Account:
        acct = self.inv.model.account(account)
        if acct is None:
            raise KeyError(f"no account {account!r} in the lab inventory")
        return acct

    @staticmethod
    def user_and_site(acct: Account, ext: str) -> tuple[User, Site]:
        """User ``ext`` of ``acct`` and the site it is at."""
        user = acct.user(ext)
        site = acct.site(user.site) if user is not None else None
        if user is None or site is None:
            raise KeyError(f"no user {ext!r} at a site of account {acct.id}")
        return user, site

    def voicemail_dir(self, account: str, extension: str) -> Path:
        """The box's folder on the switches' shared storage (the lab's ``shared``)."""
        domain = self.user(f"{extension}@{account}").domain
        return Path(self.lab.dir) / "shared" / "voicemail" / account / domain / extension

    def switch_api(self, command: str, check: bool = True, switch: str | None = None
                   ) -> dict[str, str]:
        """``api <command>`` on every switch of the lab (the lab's ESL password), or on the
        one named ``switch``: each switch's answer.  An -ERR answer raises unless ``check``
        is false."""
        password = self.secrets.get(ESL_PASSWORD_KEY)
        targets = [t for t in targets_for(self.inv) if switch is None or t.name == switch]
        if not targets:
            raise KeyError(f"no switch {switch!r} in the lab")

        async def each() -> dict[str, str]:
            answers = {}
            for t in targets:
                async with EslConnection(t.host, t.port, password, name=t.name,
                                         timeout=5) as c:
                    answers[t.name] = await c.api(command, check=check)
            return answers

        return asyncio.run(each())

    @contextmanager
    def clock_at(self, local: datetime.datetime) -> Iterator[None]:
        """The switches' business-hours clock shifted so that it reads ``local`` (an aware
        datetime) now: the global ``zp_clock_shift`` the rendered hours checks add to the
        clock (no waiting for after-hours or a holiday); back to 0 afterwards."""
        shift = int(local.timestamp() - time.time())
        self.switch_api(f"global_setvar zp_clock_shift={shift}")
        try:
            yield
        finally:
            self.switch_api("global_setvar zp_clock_shift=0")

    def pin(self, account: str, extension: str) -> str:
        return voicemail_pin(self.secrets, self.account(account), extension)


def wait_until(what: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(step)
    return what()


def _speak_wait(media: RtpMedia, since: int, quiet_s: float = 0.6, timeout: float = 15.0
                ) -> bool:
    """Wait until something was heard after ``since`` and it has gone quiet for
    ``quiet_s`` (a prompt finished)."""
    frame = 160
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = media.heard(since)
        loud = [i for i in range(0, len(got) - frame + 1, frame)
                if max(abs(x) for x in got[i:i + frame]) > 500]
        if loud and len(got) - (loud[-1] + frame) >= quiet_s * 8000:
            return True
        time.sleep(0.1)
    return False


def _media(out: FeatureOutcome, call: Dialog, what: str) -> RtpMedia | None:
    """The call's media once answered; None, with a problem saying so, if it was not."""
    if call.established and call.media is not None:
        return call.media
    out.problems.append(f"{what} was not answered ({call.call.status} {call.call.reason})")
    return None


def _answered_call(out: FeatureOutcome, caller: Ua, callee: Ua, dest: str,
                   what: str) -> tuple[Dialog, RtpMedia, RtpMedia] | None:
    """``caller`` dials ``dest`` and ``callee`` answers: the dialog, the caller's media and
    the callee's; None, with a problem saying which is missing, otherwise."""
    call = caller.dial(dest)
    media = _media(out, call, what)
    if media is None or not out.check(bool(callee.answered), f"the callee ({dest}) has no media"):
        return None
    return call, media, callee.answered[-1]


def leave_voicemail(fl: FeatureLab, caller: str = "1001@acme", box: str = "1002@acme",
                    tone_s: float = 3.5) -> FeatureOutcome:
    """A caller reaches a busy user's voicemail: hears the greeting and the beep, leaves a
    tone; the message file holds the tone and the box's phone gets a message-waiting
    NOTIFY."""
    out = FeatureOutcome("voicemail", path=f"{caller} -> lb -> proxy -> switch -> voicemail")
    ext, account = box.split("@")
    folder = fl.voicemail_dir(account, ext)
    before = set(folder.glob("msg_*.wav")) if folder.exists() else set()
    with fl.phone(box, answer_mode="busy") as callee, fl.phone(caller) as phone:
        callee.notifies.clear()
        call = phone.dial(ext)
        media = _media(out, call, f"the call to busy {ext} (by voicemail)")
        if media is None:
            return out
        try:
            beep = wait_until(lambda: media.tone_heard(BEEP_HZ) >= 0.5, 20)
            out.check(beep, f"no {BEEP_HZ:g} Hz record beep heard within 20 s")
            greeting = best_match(media.heard(), fl.prompt("en-US", "voicemail/vm-not_available.wav"))
            out.facts["greeting_match"] = round(greeting, 2)
            out.check(greeting >= 0.8, f"the greeting was not heard (envelope match {greeting:.2f})")
            media.play(tone(CALLER_HZ, tone_s))
            wait_until(media.idle, tone_s + 2)
            media.send_dtmf("#")  # ends the recording; voicemail says goodbye and hangs up
            wait_until(lambda: call.ended_by_far_end, 10)
        finally:
            call.bye()
        new = wait_until(lambda: bool(set(folder.glob("msg_*.wav")) - before), 5)
        if out.check(new, f"no new message file in {folder}"):
            msg = max(set(folder.glob("msg_*.wav")) - before, key=lambda p: p.stat().st_mtime)
            recorded = tone_seconds(read_wav(msg), CALLER_HZ)
            out.facts["recorded_tone_s"] = round(recorded, 2)
            out.facts["message"] = msg.name
            out.check(recorded >= tone_s - 1.0,
                      f"{msg.name} holds {recorded:.1f} s of the caller's {CALLER_HZ:g} Hz tone, "
                      f"want {tone_s - 1.0:.1f}")
        mwi = wait_until(lambda: any(_waiting(n) for n in callee.notifies), 5)
        out.check(mwi, f"{box}'s phone got no NOTIFY with Messages-Waiting: yes "
                       f"({len(callee.notifies)} NOTIFY)")
        if mwi:
            n = next(n for n in callee.notifies if _waiting(n))
            out.facts["mwi"] = re.sub(r"\s+", " ", n.body.strip())
    out.detail = (f"greeting heard (match {out.facts.get('greeting_match')}), beep, "
                  f"{out.facts.get('recorded_tone_s')} s of tone recorded, MWI NOTIFY "
                  f"{out.facts.get('mwi', '-')}")
    return out


def _waiting(n: Any) -> bool:
    return bool(re.search(r"^Messages-Waiting:\s*yes", n.body, re.M | re.I)) and \
        "message-summary" in (n.get("Event") or "")


def retrieve_voicemail(fl: FeatureLab, box: str = "1002@acme") -> FeatureOutcome:
    """The box's user dials *97, enters the PIN over RFC 4733 and hears the newest message
    (the caller's tone) played back."""
    out = FeatureOutcome("voicemail-retrieval", path=f"{box} -> lb -> proxy -> switch -> *97")
    ext, account = box.split("@")
    with fl.phone(box) as phone:
        call = phone.dial("*97")
        media = _media(out, call, "*97")
        if media is None:
            return out
        try:
            out.check(_speak_wait(media, 0), "no password prompt heard")
            prompt = best_match(media.heard(), fl.prompt("en-US", "voicemail/vm-enter_pass.wav"))
            out.facts["pin_prompt_match"] = round(prompt, 2)
            mark = media.mark()
            media.send_dtmf(fl.pin(account, ext) + "#")
            heard = wait_until(lambda: media.tone_heard(CALLER_HZ, mark) >= 2.0, 25)
            out.facts["message_tone_s"] = round(media.tone_heard(CALLER_HZ, mark), 2)
            out.check(heard, f"the message's {CALLER_HZ:g} Hz tone was not played back "
                             f"({out.facts['message_tone_s']} s heard)")
        finally:
            call.bye()
    out.detail = (f"PIN prompt (match {out.facts.get('pin_prompt_match')}), PIN by RFC 4733, "
                  f"{out.facts.get('message_tone_s')} s of the message's tone heard")
    return out


def vm_state(fl: FeatureLab, account: str, extension: str) -> dict[str, Any]:
    """``zpctl voicemail status`` of a box, as its JSON."""
    return vm.box_status(fl.inv, account, extension,
                         secrets_file=Path(fl.lab.dir) / "secrets.yml").as_dict()


def vm_unlock(fl: FeatureLab, account: str, extension: str) -> None:
    """``zpctl voicemail unlock``."""
    vm.unlock_box(fl.inv, account, extension, secrets_file=Path(fl.lab.dir) / "secrets.yml")


def voicemail_lockout(fl: FeatureLab, box: str = "1002@acme") -> FeatureOutcome:
    """Wrong PINs lock the box across calls: a call with the account's limit of wrong PINs
    is ended by the switch, the lock shows in ``zpctl voicemail status``, the next call
    hears that the box is locked; ``zpctl voicemail unlock`` opens it again."""
    ext, account = box.split("@")
    pol = fl.account(account).pbx.voicemail.pin
    out = FeatureOutcome("voicemail-lockout",
                         path=f"{box} -> lb -> proxy -> switch -> *97 (wrong PINs)")
    right = fl.pin(account, ext)
    wrong = "".join(str((int(d) + 1) % 10) for d in right)
    vm_unlock(fl, account, ext)
    with fl.phone(box) as phone:
        call = phone.dial("*97")
        media = _media(out, call, "*97")
        if media is None:
            return out
        try:
            tries = 0
            for _ in range(pol.lockout_after):
                # the PIN prompt (after a wrong PIN: "login incorrect", then the prompt)
                if call.ended_by_far_end or not _speak_wait(media, media.mark()):
                    break
                media.send_dtmf(wrong + "#")
                tries += 1
                wait_until(media.idle, 5)
            ended = wait_until(lambda: call.ended_by_far_end, 15)
            out.facts["wrong_pins_sent"] = tries
            out.check(ended, f"the switch did not end the call after {tries} wrong PINs")
        finally:
            call.bye()
        state = vm_state(fl, account, ext)
        out.facts["locked"] = state.get("locked")
        out.check(state.get("locked") is True, f"the box is not locked after {tries} wrong "
                                               f"PINs: {state}")
        again = phone.dial("*97")
        if out.check(again.established and again.media is not None,
                     f"the second *97 was not answered ({again.call.status})"):
            m2 = again.media
            assert m2 is not None
            try:
                ended = wait_until(lambda: again.ended_by_far_end, 20)
                locked = best_match(m2.heard(), fl.prompt("en-US", "voicemail/vm-locked.wav"))
                out.facts["locked_prompt_match"] = round(locked, 2)
                out.check(ended and locked >= 0.8,
                          f"the next call did not hear the box is locked (match {locked:.2f}, "
                          f"ended by the switch: {ended})")
            finally:
                again.bye()
    vm_unlock(fl, account, ext)
    after = vm_state(fl, account, ext)
    out.check(after.get("locked") is False and after.get("wrong_pins") == 0,
              f"unlock left {after}")
    out.detail = (f"{out.facts.get('wrong_pins_sent')} wrong PINs in one call: call ended, "
                  f"box locked; next call heard the lock prompt (match "
                  f"{out.facts.get('locked_prompt_match')}); unlocked")
    return out


def _talks(src: RtpMedia, dst: RtpMedia, hz: float, seconds: float = 1.5,
           timeout: float = 6.0) -> float:
    """Play a tone of ``hz`` at ``src``; how many seconds of it ``dst`` heard."""
    mark = dst.mark()
    src.play(tone(hz, seconds))
    wait_until(lambda: dst.tone_heard(hz, mark) >= seconds - 0.5, timeout)
    return dst.tone_heard(hz, mark)


def call_and_talk(fl: FeatureLab, caller: str, callee: str, dest: str,
                  flow: str = "call") -> FeatureOutcome:
    """``caller`` dials ``dest``, ``callee`` answers, and each hears the other's tone."""
    out = FeatureOutcome(flow, path=f"{caller} -> switch -> {callee}")
    with fl.phone(callee) as answering, fl.phone(caller) as phone:
        answered = _answered_call(out, phone, answering, dest, f"the call to {dest}")
        if answered is None:
            return out
        call, media, theirs = answered
        out.facts["call_id"] = call.call_id
        try:
            out.facts["callee_heard_s"] = round(_talks(media, theirs, CALLER_HZ), 2)
            out.facts["caller_heard_s"] = round(_talks(theirs, media, CALLEE_HZ), 2)
        finally:
            call.bye()
    out.check(out.facts["callee_heard_s"] >= 1.0, f"{callee} did not hear {caller}")
    out.check(out.facts["caller_heard_s"] >= 1.0, f"{caller} did not hear {callee}")
    out.detail = (f"{callee} heard {out.facts['callee_heard_s']} s of {CALLER_HZ:g} Hz, "
                  f"{caller} heard {out.facts['caller_heard_s']} s of {CALLEE_HZ:g} Hz")
    return out


def hold_and_resume(fl: FeatureLab) -> FeatureOutcome:
    """The caller puts the call on hold (re-INVITE, a=sendonly): the held party hears the
    account's hold music; resumed, it hears the caller again."""
    out = FeatureOutcome("hold", path="1001@acme -> switch -> 1004@acme, re-INVITE sendonly")
    with fl.phone("1004@acme") as callee, fl.phone("1001@acme") as phone:
        answered = _answered_call(out, phone, callee, "1004", "the call")
        if answered is None:
            return out
        call, media, held = answered
        try:
            out.facts["before_s"] = round(_talks(media, held, CALLER_HZ), 2)
            mark = held.mark()
            out.facts["hold_status"] = call.hold(True)
            wait_until(lambda: held.tone_heard(MUSIC_HZ, mark) >= 1.5, 8)
            out.facts["music_s"] = round(held.tone_heard(MUSIC_HZ, mark), 2)
            out.facts["resume_status"] = call.hold(False)
            time.sleep(0.5)
            out.facts["after_s"] = round(_talks(media, held, CALLER_HZ), 2)
        finally:
            call.bye()
    out.check(out.facts["before_s"] >= 1.0, "the callee did not hear the caller before hold")
    out.check(out.facts["hold_status"] == 200, f"hold re-INVITE: {out.facts['hold_status']}")
    out.check(out.facts["music_s"] >= 1.5,
              f"the held party heard {out.facts['music_s']} s of {MUSIC_HZ:g} Hz hold music")
    out.check(out.facts["after_s"] >= 1.0, "the callee did not hear the caller after resume")
    out.detail = (f"held party heard {out.facts['music_s']} s of {MUSIC_HZ:g} Hz hold music; "
                  f"caller heard before ({out.facts['before_s']} s) and after resume "
                  f"({out.facts['after_s']} s)")
    return out


def conference_call(fl: FeatureLab) -> FeatureOutcome:
    """Three parties join a conference with its PIN; members wait with hold music until the
    moderator joins; each party's tone reaches the two others and not itself."""
    conf = next(c for c in fl.account("acme").pbx.conferences)
    pin = conference_pin(fl.secrets, fl.account("acme"), conf.id)
    out = FeatureOutcome("conference", path=f"3 phones -> switch -> conference {conf.extension}")
    mod = conf.moderators[0]
    members = [u.username for u in fl.users.values() if u.account == "acme"
               and u.username not in (mod, "1003")][:2]

    def join(phone: Ua) -> Any:
        d = phone.dial(conf.extension)
        if d.established and d.media is not None:
            _speak_wait(d.media, 0, timeout=10)  # the PIN prompt
            d.media.send_dtmf(pin + "#")
        return d

    with fl.phone(f"{members[0]}@acme") as p1, fl.phone(f"{members[1]}@acme") as p2, \
            fl.phone(f"{mod}@acme") as pm:
        calls = []
        try:
            calls += [join(p1), join(p2)]
            if not out.check(all(c.established and c.media for c in calls),
                             "a member's call to the conference was not answered"):
                return out
            a, b = calls[0].media, calls[1].media
            wait_until(lambda: a.tone_heard(MUSIC_HZ) >= 1.0, 10)
            out.facts["waiting_music_s"] = round(a.tone_heard(MUSIC_HZ), 2)
            out.facts["before_moderator_s"] = round(_talks(b, a, 900.0, timeout=3), 2)
            calls.append(join(pm))
            if not out.check(calls[2].established and calls[2].media is not None,
                             "the moderator's call was not answered"):
                return out
            m = calls[2].media
            time.sleep(2.0)  # PIN entered, joined
            own = m.mark()
            heard = [_talks(m, x, CALLER_HZ, 2.0) for x in (a, b)]
            out.facts["moderator_heard_by_members_s"] = [round(h, 2) for h in heard]
            out.facts["moderator_heard_itself_s"] = round(m.tone_heard(CALLER_HZ, own), 2)
            out.facts["member_heard_by_moderator_s"] = round(_talks(a, m, 900.0, 2.0), 2)
        finally:
            for c in calls:
                c.bye()
    out.check(out.facts["waiting_music_s"] >= 1.0,
              "members waiting for the moderator heard no hold music")
    out.check(out.facts["before_moderator_s"] < 0.5,
              "members heard each other before the moderator joined")
    out.check(min(out.facts["moderator_heard_by_members_s"]) >= 1.2,
              f"the members heard the moderator {out.facts['moderator_heard_by_members_s']} s")
    out.check(out.facts["moderator_heard_itself_s"] < 0.3, "the moderator heard itself")
    out.check(out.facts["member_heard_by_moderator_s"] >= 1.2,
              "the moderator did not hear a member")
    out.detail = (f"PIN over RFC 4733; members waited with hold music "
                  f"({out.facts['waiting_music_s']} s) until the moderator joined; moderator's "
                  f"tone heard by both members {out.facts['moderator_heard_by_members_s']} s, "
                  f"a member's by the moderator {out.facts['member_heard_by_moderator_s']} s")
    return out


def blind_transfer(fl: FeatureLab) -> FeatureOutcome:
    """A blind transfer by REFER: 1004 calls 1002 and transfers it to 1001; 1002 and 1001
    then hear each other and 1004's call ends."""
    out = FeatureOutcome("transfer", path="1004 -> switch -> 1002, REFER to 1001")
    with fl.phone("1002@acme") as b, fl.phone("1001@acme") as c, fl.phone("1004@acme") as a:
        call = a.dial("1002")
        if not out.check(call.established and bool(b.answered), "1004's call to 1002 failed"):
            return out
        try:
            out.facts["refer_status"] = call.refer("1001")
            answered = wait_until(lambda: bool(c.answered), 10)
            out.check(answered, "the transfer target 1001 was never called")
            if answered:
                out.facts["target_heard_s"] = round(_talks(b.answered[-1], c.answered[-1],
                                                           CALLER_HZ), 2)
                out.facts["transferee_heard_s"] = round(_talks(c.answered[-1], b.answered[-1],
                                                               900.0), 2)
            out.facts["transferor_released"] = wait_until(lambda: call.ended_by_far_end, 5)
        finally:
            call.bye()
    out.check(out.facts["refer_status"] == 202, f"REFER answered {out.facts['refer_status']}")
    out.check(out.facts.get("target_heard_s", 0) >= 1.0 and
              out.facts.get("transferee_heard_s", 0) >= 1.0,
              f"1002 and 1001 did not hear each other ({out.facts})")
    out.check(out.facts["transferor_released"], "the transferor's call was not ended")
    out.detail = (f"REFER {out.facts['refer_status']}; transferee and target hear each other "
                  f"({out.facts.get('target_heard_s')} s / {out.facts.get('transferee_heard_s')}"
                  " s); transferor released")
    return out


def attended_transfer(fl: FeatureLab) -> FeatureOutcome:
    """An attended transfer by REFER with Replaces, across two switches: 1004 calls 1002,
    then (while its first switch takes no new calls, so the second call lands on another
    one) consults 1001; then transfers 1002 to 1001.  The first switch sends the INVITE
    with Replaces straight to the second, which connects it to 1001's leg: 1002 and 1001
    hear each other, both of 1004's calls end, and 1001 hanging up reaches 1002."""
    out = FeatureOutcome("transfer-attended",
                         path="1004 -> switch A -> 1002; 1004 -> switch B -> 1001; REFER "
                              "with Replaces: 1002 <-> A <-> B <-> 1001")
    switch_at = {p.node.address: p.name for p in fl.inv.nodes() if p.role == Role.SWITCH}

    def switch_of(d: Dialog) -> str:
        """The switch a call is on: the host of its remote target (the switch's Contact)."""
        m = re.search(r"@([^:;>]+)", d.target)
        return switch_at.get(m[1], m[1]) if m else "?"

    with fl.phone("1002@acme") as b, fl.phone("1001@acme") as c, fl.phone("1004@acme") as a:
        first = a.dial("1002", media=False)
        if not out.check(first.established and bool(b.answered), "1004's call to 1002 failed"):
            return out
        consult: Dialog | None = None
        try:
            on = switch_of(first)
            fl.switch_api("fsctl pause inbound", switch=on)
            try:
                consult = a.dial("1001", media=False)
            finally:
                fl.switch_api("fsctl resume inbound", switch=on)
            if not out.check(consult.established and bool(c.answered),
                             "1004's consultation call to 1001 failed"):
                return out
            out.facts["switches"] = [switch_of(first), switch_of(consult)]
            out.check(len(set(out.facts["switches"])) == 2,
                      f"both calls landed on {out.facts['switches'][0]}: not across switches")
            a.notifies.clear()
            out.facts["refer_status"] = first.refer_replacing(consult)
            done = wait_until(lambda: any("SIP/2.0 200" in n.body for n in a.notifies), 10)
            out.facts["notify"] = a.notifies[-1].body.strip() if a.notifies else "-"
            out.check(done, f"no NOTIFY with 200 (got {out.facts['notify']!r})")
            out.facts["target_heard_s"] = round(_talks(b.answered[-1], c.answered[-1],
                                                       CALLER_HZ), 2)
            out.facts["transferee_heard_s"] = round(_talks(c.answered[-1], b.answered[-1],
                                                           900.0), 2)
            out.facts["transferor_released"] = wait_until(
                lambda: first.ended_by_far_end and consult.ended_by_far_end, 5)
            # the target hangs up: its BYE crosses both switches to the transferee
            b_call = b.received_invites[-1].get("Call-ID")
            c.hang_up_answered()
            out.facts["hang_up_reached_transferee"] = wait_until(
                lambda: b_call in b.ended_calls, 5)
        finally:
            first.bye()
            if consult is not None:
                consult.bye()
    out.check(out.facts.get("refer_status") == 202, f"REFER answered {out.facts.get('refer_status')}")
    out.check(out.facts.get("target_heard_s", 0) >= 1.0 and
              out.facts.get("transferee_heard_s", 0) >= 1.0,
              f"1002 and 1001 did not hear each other ({out.facts})")
    out.check(bool(out.facts.get("transferor_released")), "1004's two calls were not ended")
    out.check(bool(out.facts.get("hang_up_reached_transferee")),
              "1001 hung up, and 1002's call stayed up")
    out.detail = (f"calls on {' and '.join(out.facts.get('switches', []))}; REFER "
                  f"{out.facts.get('refer_status')}, NOTIFY {out.facts.get('notify')}; 1002 "
                  f"and 1001 hear each other ({out.facts.get('target_heard_s')} s / "
                  f"{out.facts.get('transferee_heard_s')} s); 1004 released; 1001's hang-up "
                  "reached 1002")
    return out


def park_and_retrieve(fl: FeatureLab) -> FeatureOutcome:
    """1004 calls 1002 and transfers it to the park lot: 1002 waits in the first slot with
    hold music; 1001 dials the slot and talks with 1002."""
    lot = fl.account("acme").pbx.park_lots[0]
    out = FeatureOutcome("park", path=f"1004 -> 1002, REFER to lot {lot.extension}; 1001 "
                                      f"dials slot {lot.first_slot}")
    with fl.phone("1002@acme") as b, fl.phone("1001@acme") as c, fl.phone("1004@acme") as a:
        call = a.dial("1002")
        if not out.check(call.established and bool(b.answered), "1004's call to 1002 failed"):
            return out
        parked = b.answered[-1]
        retrieve = None
        try:
            mark = parked.mark()
            out.facts["refer_status"] = call.refer(lot.extension)
            wait_until(lambda: parked.tone_heard(MUSIC_HZ, mark) >= 1.5, 10)
            out.facts["parked_music_s"] = round(parked.tone_heard(MUSIC_HZ, mark), 2)
            retrieve = c.dial(lot.first_slot)
            if out.check(retrieve.established and retrieve.media is not None,
                         f"slot {lot.first_slot} did not answer ({retrieve.call.status})"):
                assert retrieve.media is not None
                time.sleep(0.5)
                out.facts["retriever_heard_s"] = round(_talks(parked, retrieve.media,
                                                              CALLER_HZ), 2)
                out.facts["parked_heard_s"] = round(_talks(retrieve.media, parked, 900.0), 2)
        finally:
            call.bye()
            if retrieve is not None:
                retrieve.bye()
    out.check(out.facts.get("parked_music_s", 0) >= 1.5, "the parked call heard no hold music")
    out.check(out.facts.get("retriever_heard_s", 0) >= 1.0 and
              out.facts.get("parked_heard_s", 0) >= 1.0,
              f"the retriever and the parked call did not hear each other ({out.facts})")
    out.detail = (f"parked with hold music ({out.facts.get('parked_music_s')} s); retrieved from "
                  f"slot {lot.first_slot}, both ways heard ({out.facts.get('retriever_heard_s')}"
                  f" s / {out.facts.get('parked_heard_s')} s)")
    return out


def park_orbit(fl: FeatureLab) -> FeatureOutcome:
    """A parked call nobody picks up: after the lot's timeout it takes the lot's return
    route (1004), whose phone rings and hears the parked party."""
    lot = fl.account("acme").pbx.park_lots[0]
    out = FeatureOutcome("park-orbit", path=f"1001 -> 1002, REFER to lot {lot.extension}; "
                                            f"after {lot.timeout_seconds} s -> {lot.return_to}")
    with fl.phone("1002@acme") as b, fl.phone("1004@acme") as orbit, \
            fl.phone("1001@acme") as a:
        call = a.dial("1002")
        if not out.check(call.established and bool(b.answered), "1001's call to 1002 failed"):
            return out
        parked = b.answered[-1]
        try:
            out.facts["refer_status"] = call.refer(lot.extension)
            parked_at = time.monotonic()
            rung = wait_until(lambda: bool(orbit.answered), lot.timeout_seconds + 15, step=0.2)
            out.facts["returned_after_s"] = round(time.monotonic() - parked_at, 1)
            if out.check(rung, f"{lot.return_to} was never rung after the timeout"):
                out.facts["heard_s"] = round(_talks(parked, orbit.answered[-1], CALLER_HZ), 2)
        finally:
            call.bye()
    waited = out.facts.get("returned_after_s", 0)
    out.check(waited >= lot.timeout_seconds - 1,
              f"returned after {waited} s, before the lot's {lot.timeout_seconds} s")
    out.check(out.facts.get("heard_s", 0) >= 1.0, "the orbit target did not hear the parked call")
    out.detail = (f"parked, nobody picked up; after {waited} s (timeout "
                  f"{lot.timeout_seconds} s) {lot.return_to} rang and heard the parked party "
                  f"({out.facts.get('heard_s')} s)")
    return out


def recording_index(fl: FeatureLab, account: str) -> list[dict[str, Any]]:
    """The call-recording index rows of ``account`` (``zpctl recordings ls``)."""
    return [dataclasses.asdict(r) for r in rec.list_recordings(
        fl.inv, account, secrets_file=Path(fl.lab.dir) / "secrets.yml")]


def automatic_recording(fl: FeatureLab, callee_key: str = "1001@acme",
                        caller_key: str = "1004@acme") -> FeatureOutcome:
    """A call to a user recorded automatically (feature call_recording_automatic): the
    caller hears that the call may be recorded; the file holds both parties' audio (the
    caller's tone and the callee's); the index row names the path, duration and parties."""
    callee_ext, account = callee_key.split("@")
    caller_ext = caller_key.split("@", maxsplit=1)[0]
    out = FeatureOutcome("recording", path=f"{caller_ext} -> switch -> {callee_ext} "
                                           "(recorded)")
    started = time.time()
    with fl.phone(callee_key) as callee, fl.phone(caller_key) as phone:
        answered = _answered_call(out, phone, callee, callee_ext, "the call")
        if answered is None:
            return out
        call, media, theirs = answered
        try:
            notice = best_match(media.heard(), fl.prompt(
                "en-US", "ivr/ivr-this_call_may_be_recorded.wav"))
            out.facts["notice_match"] = round(notice, 2)
            out.facts["callee_heard_s"] = round(_talks(media, theirs, CALLER_HZ, 2.0), 2)
            out.facts["caller_heard_s"] = round(_talks(theirs, media, 900.0, 2.0), 2)
        finally:
            call.bye()
    def fresh() -> list[dict[str, Any]]:
        return [r for r in recording_index(fl, account)
                if r["started"] >= int(started) - 1 and r["callee"] == callee_ext]

    wait_until(lambda: bool(fresh()), 5)
    rows = fresh()
    out.check(notice_ok := out.facts["notice_match"] >= 0.8,
              f"the caller did not hear the recording notice (match {out.facts['notice_match']})")
    if not out.check(bool(rows), "no row in the recording index for the call"):
        return out
    row = rows[-1]
    out.facts.update(index_path=row["path"], duration_ms=row["duration_ms"],
                     parties=f"{row['caller']} -> {row['callee']}")
    out.check(row["caller"] == caller_ext, f"the index names caller {row['caller']}")
    audio = read_wav(Path(row["path"]))
    out.facts["recorded_caller_s"] = round(tone_seconds(audio, CALLER_HZ), 2)
    out.facts["recorded_callee_s"] = round(tone_seconds(audio, 900.0), 2)
    out.check(out.facts["recorded_caller_s"] >= 1.0 and out.facts["recorded_callee_s"] >= 1.0,
              f"the recording lacks a party: caller's tone {out.facts['recorded_caller_s']} s, "
              f"callee's {out.facts['recorded_callee_s']} s")
    out.check(abs(row["duration_ms"] / 1000 - len(audio) / 8000) < 0.5,
              f"index duration {row['duration_ms']} ms, file {len(audio) / 8:.0f} ms")
    out.detail = (f"notice heard ({'yes' if notice_ok else 'no'}); {row['path'].rsplit('/', 1)[-1]}"
                  f" holds the caller's tone {out.facts['recorded_caller_s']} s and the "
                  f"callee's {out.facts['recorded_callee_s']} s; index: "
                  f"{out.facts['parties']}, {row['duration_ms']} ms")
    return out


BEFORE_HZ = 1100.0  # a tone played before an ad hoc recording starts (must not be in it)


def adhoc_recording(fl: FeatureLab) -> FeatureOutcome:
    """Ad hoc recording (call_recording_adhoc): 1002 presses *2 during a call; the file
    holds both parties' audio from then on, not what was said before, and the index has
    its row."""
    out = FeatureOutcome("recording-adhoc", path="1004 -> switch -> 1002, *2 during the call")
    started = time.time()
    with fl.phone("1002@acme") as callee, fl.phone("1004@acme") as phone:
        answered = _answered_call(out, phone, callee, "1002", "the call")
        if answered is None:
            return out
        call, media, theirs = answered
        try:
            out.facts["before_heard_s"] = round(_talks(media, theirs, BEFORE_HZ, 1.5), 2)
            theirs.send_dtmf("*2")
            time.sleep(1.0)
            out.facts["callee_heard_s"] = round(_talks(media, theirs, CALLER_HZ, 2.0), 2)
            out.facts["caller_heard_s"] = round(_talks(theirs, media, 900.0, 2.0), 2)
        finally:
            call.bye()

    def fresh() -> list[dict[str, Any]]:
        return [r for r in recording_index(fl, "acme")
                if r["started"] >= int(started) - 1 and r["callee"] == "1002"]

    wait_until(lambda: bool(fresh()), 5)
    rows = fresh()
    if not out.check(bool(rows), "no row in the recording index after *2"):
        return out
    audio = read_wav(Path(rows[-1]["path"]))
    out.facts.update(index_path=rows[-1]["path"],
                     recorded_before_s=round(tone_seconds(audio, BEFORE_HZ), 2),
                     recorded_caller_s=round(tone_seconds(audio, CALLER_HZ), 2),
                     recorded_callee_s=round(tone_seconds(audio, 900.0), 2))
    out.check(out.facts["recorded_caller_s"] >= 1.0 and out.facts["recorded_callee_s"] >= 1.0,
              f"the recording lacks a party ({out.facts})")
    out.check(out.facts["recorded_before_s"] < 0.3,
              f"the recording holds {out.facts['recorded_before_s']} s from before *2")
    out.detail = (f"*2 started the recording: both parties in it "
                  f"({out.facts['recorded_caller_s']} s / {out.facts['recorded_callee_s']} s), "
                  f"nothing from before ({out.facts['recorded_before_s']} s); index row")
    return out


def _ivr_call(fl: FeatureLab, out: FeatureOutcome, local: datetime.datetime, digits: str,
              answerer: str, hear: str | None = None) -> None:
    """Call acme's auto receptionist (8000) with the switches' clock at ``local``, press
    ``digits`` (one per menu prompt), and check that ``answerer``'s phone answers and hears
    the caller; ``hear``: a prompt the caller must have heard first."""
    with fl.clock_at(local), fl.phone(f"{answerer}@acme") as target, \
            fl.phone("1003@acme") as phone:
        call = phone.dial("8000")
        media = _media(out, call, "8000")
        if media is None:
            return
        try:
            for d in digits:
                _speak_wait(media, media.mark(), timeout=10)
                media.send_dtmf(d)
            if hear is not None:
                _speak_wait(media, media.mark(), timeout=10)
                match = best_match(media.heard(), fl.prompt("en-US", hear))
                out.facts[f"heard {hear.rsplit('/', 1)[-1]}"] = round(match, 2)
                out.check(match >= 0.8, f"the caller did not hear {hear} ({match:.2f})")
            answered = wait_until(lambda: bool(target.answered), 15)
            if out.check(answered, f"{answerer} was not rung"):
                heard = _talks(media, target.answered[-1], CALLER_HZ)
                out.check(heard >= 1.0, f"{answerer} heard the caller {heard:.1f} s")
        finally:
            call.bye()


def _next(weekday: int, hour: int, tz: str) -> datetime.datetime:
    """The next ``weekday`` (Monday 0) at ``hour``:00 in ``tz``."""
    now = datetime.datetime.now(zoneinfo.ZoneInfo(tz))
    day = now + datetime.timedelta(days=(weekday - now.weekday()) % 7 or 7)
    return day.replace(hour=hour, minute=0, second=0, microsecond=0)


def auto_receptionist(fl: FeatureLab) -> FeatureOutcome:
    """acme's auto receptionist (8000) by the site's clock (shifted, not waited for):
    open, the greeting and key 1 to Bob, key 3 to the support queue (Bob answers as its
    agent); an unknown key says so, replays the menu and ends
    at the failure route (Dave); after hours to Bob's voicemail (greeting and beep heard);
    on New Year's day to Dave."""
    acct = fl.account("acme")
    site = acct.sites[0]
    tz = site.timezone
    out = FeatureOutcome("ivr", path="1003 -> lb -> proxy -> switch -> receptionist 8000")
    monday = _next(0, 10, tz)
    _ivr_call(fl, out, monday, "1", "1002", None)
    greeting_ok = not out.problems
    with _queue_ready(fl, ("1002",)):
        _ivr_call(fl, out, monday, "3", "1002", None)  # key 3: the support queue's agent
    queue_ok = not out.problems
    _ivr_call(fl, out, monday, "77", "1004", "ivr/ivr-that_was_an_invalid_entry.wav")
    invalid_ok = not out.problems
    sunday = _next(6, 3, tz)
    with fl.clock_at(sunday), fl.phone("1003@acme") as phone:
        call = phone.dial("8000")
        if out.check(call.established and call.media is not None, "8000 after hours: no answer"):
            media = call.media
            assert media is not None
            try:
                beep = wait_until(lambda: media.tone_heard(BEEP_HZ) >= 0.5, 20)
                out.check(beep, "after hours: no voicemail beep")
                match = best_match(media.heard(), fl.prompt("en-US",
                                                            "voicemail/vm-not_available.wav"))
                out.facts["after_hours_greeting"] = round(match, 2)
                out.check(match >= 0.8, f"after hours: no voicemail greeting ({match:.2f})")
            finally:
                call.bye()
    holiday = next(h for h in site.holidays if h.name == "New Year")
    new_year = datetime.datetime.fromisoformat(f"{holiday.date}T10:00").replace(
        tzinfo=zoneinfo.ZoneInfo(tz))
    _ivr_call(fl, out, new_year, "", "1004", None)
    out.detail = (f"open ({monday:%a %H:%M}): key 1 to 1002 {'ok' if greeting_ok else 'FAILED'};"
                  f" key 3 to queue support, its agent 1002 {'ok' if queue_ok else 'FAILED'};"
                  f" unknown keys: invalid-entry prompt, menu again, then 1004 "
                  f"{'ok' if invalid_ok else 'FAILED'}; after hours ({sunday:%a %H:%M}): "
                  f"1002's voicemail; {holiday.name} {holiday.date}: 1004")
    return out


KEYPAD = {c: str(d) for d, letters in ((2, "ABC"), (3, "DEF"), (4, "GHI"), (5, "JKL"),
                                       (6, "MNO"), (7, "PQRS"), (8, "TUV"), (9, "WXYZ"))
          for c in letters}


def dial_by_name(fl: FeatureLab, ext: str = "1004") -> FeatureOutcome:
    """acme's auto receptionist, key 9: the dial-by-name directory.  The caller hears the
    directory's prompt, keys the first three letters of the user's last name and #, hears
    the user's name (the prompt espeak-ng made from the directory name), presses 1, and
    the user's phone rings; they hear each other."""
    acct = fl.account("acme")
    user, _ = fl.user_and_site(acct, ext)
    name = directory_name(user.name)
    digits = "".join(KEYPAD.get(ch, "") for ch in name.split()[-1].upper()[:3])
    out = FeatureOutcome("ivr-directory", path=f"1003 -> receptionist 8000, key 9 -> "
                                               f"directory: {digits}# -> {ext}")
    monday = _next(0, 10, acct.sites[0].timezone)
    with fl.clock_at(monday), fl.phone(f"{ext}@acme") as target, \
            fl.phone("1003@acme") as phone:
        call = phone.dial("8000")
        media = _media(out, call, "8000")
        if media is None:
            return out
        try:
            _speak_wait(media, media.mark(), timeout=10)  # the menu's greeting
            media.send_dtmf("9")
            mark = media.mark()
            _speak_wait(media, mark, timeout=15)
            intro = best_match(media.heard(mark),
                               fl.prompt("en-US", "directory/dir-enter_person.wav"))
            out.facts["intro_match"] = round(intro, 2)
            out.check(intro >= 0.8, f"the directory's prompt was not heard ({intro:.2f})")
            # letters nobody's name starts with: "no names match", and the prompt again
            mark = media.mark()
            media.send_dtmf("999#")
            none = fl.prompt("en-US", "directory/dir-no_matching_results.wav")
            out.facts["no_match_heard"] = wait_until(
                lambda: best_match(media.heard(mark), none) >= 0.8, 15, step=0.5)
            out.check(out.facts["no_match_heard"], "999#: 'no names match' was not heard")
            _speak_wait(media, media.mark(), timeout=15)  # the prompt again
            mark = media.mark()
            media.send_dtmf(digits + "#")
            said = fl.prompt(NAMES_FOLDER, f"{name}.wav")
            named = wait_until(lambda: best_match(media.heard(mark), said) >= 0.8, 15, step=0.5)
            out.facts["name_match"] = round(best_match(media.heard(mark), said), 2)
            if out.check(named, f"the caller did not hear {name!r} after {digits}# "
                                f"({out.facts['name_match']})"):
                media.send_dtmf("1")
                answered = wait_until(lambda: bool(target.answered), 15)
                if out.check(answered, f"{ext} was not rung after the caller picked the name"):
                    out.facts["heard_s"] = round(_talks(media, target.answered[-1], CALLER_HZ), 2)
                    out.check(out.facts["heard_s"] >= 1.0,
                              f"{ext} heard the caller {out.facts['heard_s']} s")
        finally:
            call.bye()
    out.detail = (f"directory prompt heard (match {out.facts.get('intro_match')}); 999#: no "
                  f"names match, the prompt again; {digits}#: "
                  f"{name!r} said (match {out.facts.get('name_match')}); 1: {ext} rang, "
                  f"answered and heard the caller ({out.facts.get('heard_s')} s)")
    return out


def forward_no_answer(fl: FeatureLab) -> FeatureOutcome:
    """A user's no-answer forwarding rule: 1004's phone rings its ring_seconds unanswered,
    then the call goes to 1002, who answers and hears the caller."""
    rule = fl.account("acme").pbx.users["1004"]
    out = FeatureOutcome("forwarding", path="1001 -> switch -> 1004 (no answer) -> 1002")
    with fl.phone("1004@acme", answer_mode="ring") as dave, fl.phone("1002@acme") as bob, \
            fl.phone("1001@acme") as phone:
        started = time.monotonic()
        call = phone.dial("1004", timeout=rule.ring_seconds + 15)
        out.facts["answered_after_s"] = round(time.monotonic() - started, 1)
        media = _media(out, call, "the forwarded call")
        try:
            _rung_once(out, dave, "1004")
            if media is not None and out.check(bool(bob.answered), "1002 was not rung"):
                out.facts["heard_s"] = round(_talks(media, bob.answered[-1], CALLER_HZ), 2)
                out.check(out.facts["heard_s"] >= 1.0, "1002 did not hear the caller")
        finally:
            call.bye()
    # FreeSWITCH's ring timeout runs from the originate, in whole seconds: allow 1.5 s
    out.check(out.facts["answered_after_s"] >= rule.ring_seconds - 1.5,
              f"forwarded after {out.facts['answered_after_s']} s, before 1004's "
              f"{rule.ring_seconds} s of ringing")
    out.detail = (f"1004 rang unanswered (ring_seconds {rule.ring_seconds}); forwarded to "
                  f"1002, answered {out.facts['answered_after_s']} s after the dial, heard "
                  f"the caller ({out.facts.get('heard_s')} s)")
    return out


def forward_busy(fl: FeatureLab) -> FeatureOutcome:
    """A user's busy forwarding rule: 1004's phone answers busy, and the call goes at once to
    1003, who answers and hears the caller.  1004 is offered the call once: the switch
    tries the sister zone's proxy only when the first proxy is down, not when the user is
    busy."""
    rule = fl.account("acme").pbx.users["1004"]
    to = next(r.to for r in rule.forwarding if r.when == "busy")
    target = to.split(":", 1)[1]
    out = FeatureOutcome("forwarding-busy", path=f"1001 -> switch -> 1004 (busy) -> {target}")
    with fl.phone("1004@acme", answer_mode="busy") as dave, \
            fl.phone(f"{target}@acme") as carol, fl.phone("1001@acme") as phone:
        started = time.monotonic()
        call = phone.dial("1004", timeout=15)
        out.facts["answered_after_s"] = round(time.monotonic() - started, 1)
        media = _media(out, call, "the forwarded call")
        try:
            _rung_once(out, dave, "1004")
            if media is not None and out.check(bool(carol.answered), f"{target} was not rung"):
                out.facts["heard_s"] = round(_talks(media, carol.answered[-1], CALLER_HZ), 2)
                out.check(out.facts["heard_s"] >= 1.0, f"{target} did not hear the caller")
        finally:
            call.bye()
    out.check(out.facts["answered_after_s"] < rule.ring_seconds,
              f"forwarded after {out.facts['answered_after_s']} s: the busy answer should "
              f"forward at once, not after {rule.ring_seconds} s of ringing")
    out.detail = (f"1004 busy (offered {out.facts.get('invites_to_1004')} time); forwarded to "
                  f"{target}, answered {out.facts['answered_after_s']} s after the dial, heard "
                  f"the caller ({out.facts.get('heard_s')} s)")
    return out


def _rung_once(out: FeatureOutcome, phone: Ua, ext: str) -> None:
    """``ext``'s phone got the call exactly once (distinct Call-IDs: one leg, not a second
    one through the sister zone's proxy after a busy answer or the end of the ring)."""
    legs = {m.get("Call-ID") for m in phone.received_invites}
    out.facts[f"invites_to_{ext}"] = len(legs)
    if out.check(bool(legs), f"{ext}'s phone was never rung"):
        out.check(len(legs) == 1, f"{ext}'s phone was offered the call {len(legs)} times")


def shared_line(fl: FeatureLab) -> FeatureOutcome:
    """A shared line group rings all its members at once; the one who answers talks with
    the caller, the others stop ringing."""
    line = fl.account("acme").pbx.shared_lines[0]
    out = FeatureOutcome("shared-line", path=f"1001 -> switch -> {line.extension} "
                                              f"({', '.join(line.members)})")
    first, second = line.members[:2]
    with fl.phone(f"{first}@acme") as a, fl.phone(f"{second}@acme", answer_mode="ring") as b, \
            fl.phone("1001@acme") as phone:
        call = phone.dial(line.extension)
        media = _media(out, call, line.extension)
        try:
            out.check(bool(a.received_invites) and bool(b.received_invites),
                      f"not every member rang ({first}: {len(a.received_invites)}, "
                      f"{second}: {len(b.received_invites)})")
            if media is not None and out.check(bool(a.answered), f"{first} did not answer"):
                out.facts["heard_s"] = round(_talks(media, a.answered[-1], CALLER_HZ), 2)
                out.check(out.facts["heard_s"] >= 1.0, f"{first} did not hear the caller")
            out.facts["others_stopped"] = wait_until(lambda: not b.ringing(), 5)
            out.check(out.facts["others_stopped"], f"{second} kept ringing after the answer")
        finally:
            call.bye()
    out.detail = (f"both members rang; {first} answered and heard the caller "
                  f"({out.facts.get('heard_s')} s); {second} stopped ringing")
    return out


def paging(fl: FeatureLab) -> FeatureOutcome:
    """A page: the sender's voice reaches every member's phone (answered automatically),
    one way: the members are muted.  A user who is not a sender is refused."""
    group = fl.account("acme").pbx.paging_groups[0]
    sender = group.senders[0]
    out = FeatureOutcome("paging", path=f"{sender} -> switch -> {group.extension} -> "
                                         f"{', '.join(group.members)}")
    m1_key, m2_key = (f"{m}@acme" for m in group.members[:2])
    with fl.phone(m1_key) as m1, fl.phone(m2_key) as m2, fl.phone(f"{sender}@acme") as phone:
        call = phone.dial(group.extension)
        media = _media(out, call, group.extension)
        try:
            if media is not None and out.check(
                    wait_until(lambda: bool(m1.answered) and bool(m2.answered), 15),
                    "not every member's phone was called"):
                time.sleep(1.0)
                marks = [m.answered[-1].mark() for m in (m1, m2)]
                _talks(media, m1.answered[-1], CALLER_HZ, 2.0)
                heard = [round(m.answered[-1].tone_heard(CALLER_HZ, k), 2)
                         for m, k in zip((m1, m2), marks, strict=True)]
                out.facts["members_heard_s"] = heard
                out.facts["sender_heard_member_s"] = round(_talks(m1.answered[-1], media,
                                                                  900.0, 2.0, 3.0), 2)
                out.check(min(heard) >= 1.2, f"members heard the page {heard} s")
                out.check(out.facts["sender_heard_member_s"] < 0.3,
                          "the sender heard a member: the page is not one way")
        finally:
            call.bye()
        refused = m1.dial(group.extension, media=False)
        out.facts["non_sender_status"] = refused.call.status
        refused.bye()
    out.check(out.facts["non_sender_status"] >= 400,
              f"a non-sender's page was answered ({out.facts['non_sender_status']})")
    out.detail = (f"members heard the page {out.facts.get('members_heard_s')} s; the sender "
                  f"heard them {out.facts.get('sender_heard_member_s')} s (one way); a "
                  f"non-sender refused ({out.facts['non_sender_status']})")
    return out


def queue_state(fl: FeatureLab, queue: str = "support") -> qs.QueueState:
    """The queue's live state, as ``zpctl queues status`` reads it."""
    return qs.queue_status(fl.inv, "acme", queue, secrets_file=Path(fl.lab.dir) / "secrets.yml")[0]


def _opted_in(fl: FeatureLab) -> list[str]:
    return [a["agent"] for a in queue_state(fl).agents if a["opted_in"]]


def _feature_code(phone: Ua, code: str) -> int:
    """Dial a feature code (the confirmation prompt plays), hang up; the answer's status."""
    d = phone.dial(code, timeout=10)
    if d.established and d.media is not None:
        _speak_wait(d.media, 0, timeout=6)
    d.bye()
    return d.call.status


@contextmanager
def _queue_ready(fl: FeatureLab, agents: tuple[str, ...]) -> Iterator[None]:
    """The support queue with exactly ``agents`` opted in and every agent available (the
    flows before may have left one resting after a call it did not answer); afterwards
    every agent is opted in again.  Set on every switch (-ERR where a tier already is or
    is not there is expected)."""
    queue = fl.account("acme").pbx.queues[0]
    domain = fl.user("1002@acme").domain
    name = callcenter_name(queue.id, domain)

    def opt(user: str, level: int, position: int, opted: bool) -> None:
        agent = callcenter_name(user, domain)
        fl.switch_api(f"callcenter_config agent set status {agent} Available", check=False)
        fl.switch_api(f"callcenter_config agent set state {agent} Waiting", check=False)
        fl.switch_api(f"callcenter_config tier del {name} {agent}", check=False)
        if opted:
            fl.switch_api(f"callcenter_config tier add {name} {agent} {level} {position}",
                          check=False)

    for a in queue.agents:
        opt(a.user, a.level, a.position, a.user in agents)
    try:
        yield
    finally:
        for a in queue.agents:
            opt(a.user, a.level, a.position, True)


def call_queue(fl: FeatureLab) -> FeatureOutcome:
    """A ring-all queue: both agents ring, the one who answers talks with the caller.  An
    agent's *76<queue> opts it out (the queue's state says so, and the next caller rings
    only the other agent); *75<queue> opts it back in."""
    q = fl.account("acme").pbx.queues[0]
    out = FeatureOutcome("queue", path=f"1001 -> switch -> queue {q.extension} ({q.strategy}: "
                                       f"{', '.join(a.user for a in q.agents)})")
    with _queue_ready(fl, ("1002", "1004")), fl.phone("1002@acme") as bob, \
            fl.phone("1004@acme", answer_mode="ring") as dave, fl.phone("1001@acme") as phone:
        call = phone.dial(q.extension, timeout=30)
        media = _media(out, call, f"the call to queue {q.extension}")
        try:
            if media is not None and out.check(wait_until(lambda: bool(bob.answered), 20),
                                               "no agent answered"):
                out.facts["both_rang"] = bool(dave.received_invites)
                out.facts["agent_heard_s"] = round(_talks(media, bob.answered[-1], CALLER_HZ), 2)
                out.facts["caller_heard_s"] = round(_talks(bob.answered[-1], media, 900.0), 2)
        finally:
            call.bye()
        out.check(out.facts.get("both_rang", False), "ring-all: 1004 was not rung")
        out.check(out.facts.get("agent_heard_s", 0) >= 1.0 and
                  out.facts.get("caller_heard_s", 0) >= 1.0,
                  f"the agent and the caller did not hear each other ({out.facts})")
        out.facts["opt_out_status"] = _feature_code(bob, f"*76{q.extension}")
        out.facts["opted_in_after_out"] = _opted_in(fl)
        rung, rung_1004 = len(bob.received_invites), len(dave.received_invites)
        second = phone.dial(q.extension, timeout=30)
        try:
            out.facts["next_caller_rang_1004"] = wait_until(
                lambda: len(dave.received_invites) > rung_1004, 15)
            out.facts["opted_out_agent_rung"] = len(bob.received_invites) > rung
        finally:
            second.bye()
        out.facts["opt_in_status"] = _feature_code(bob, f"*75{q.extension}")
        out.facts["opted_in_after_in"] = _opted_in(fl)
    out.check(out.facts["opted_in_after_out"] == ["1004"],
              f"after *76 the queue's agents are {out.facts['opted_in_after_out']}")
    out.check(out.facts["next_caller_rang_1004"], "the next caller did not ring 1004")
    out.check(not out.facts["opted_out_agent_rung"], "the opted-out agent 1002 was rung")
    out.check(sorted(out.facts["opted_in_after_in"]) == ["1002", "1004"],
              f"after *75 the queue's agents are {out.facts['opted_in_after_in']}")
    out.detail = (f"both agents rang, 1002 answered, both ways heard "
                  f"({out.facts.get('agent_heard_s')} s / {out.facts.get('caller_heard_s')} s); "
                  f"*76: agents {out.facts['opted_in_after_out']}, the next caller rang only "
                  f"1004; *75: agents {out.facts['opted_in_after_in']}")
    return out


def queue_callback(fl: FeatureLab) -> FeatureOutcome:
    """No agent free: the caller presses the callback key, hears that it will be called
    back, and the call ends.  Nothing happens until an agent opts in; then the caller's
    phone rings, and once it answers the agent is rung and they talk."""
    q = fl.account("acme").pbx.queues[0]
    out = FeatureOutcome("queue-callback", path=f"1001 -> queue {q.extension}, key "
                                                f"{q.callback_key}; 1002 *75 -> callback")
    with _queue_ready(fl, ()), fl.phone("1002@acme") as bob, fl.phone("1001@acme") as phone:
        call = phone.dial(q.extension, timeout=30)
        media = _media(out, call, f"the call to queue {q.extension}")
        if media is None:
            return out
        try:
            _speak_wait(media, 0, timeout=8)  # "your call is being placed in queue"
            mark = media.mark()
            media.send_dtmf(q.callback_key)
            out.facts["call_ended"] = wait_until(lambda: call.ended_by_far_end, 10)
            out.facts["confirmation_heard"] = _speak_wait(media, mark, timeout=1) or \
                len(media.heard(mark)) > 0
        finally:
            call.bye()
        time.sleep(4)
        out.facts["called_back_without_agent"] = bool(phone.received_invites)
        opted = time.monotonic()
        out.facts["opt_in_status"] = _feature_code(bob, f"*75{q.extension}")
        out.facts["called_back"] = wait_until(lambda: bool(phone.answered), 20)
        out.facts["callback_after_opt_in_s"] = round(time.monotonic() - opted, 1)
        if out.facts["called_back"] and wait_until(lambda: bool(bob.answered), 20):
            out.facts["agent_heard_s"] = round(_talks(phone.answered[-1], bob.answered[-1],
                                                      CALLER_HZ), 2)
            out.facts["caller_heard_s"] = round(_talks(bob.answered[-1], phone.answered[-1],
                                                       900.0), 2)
    out.check(out.facts.get("call_ended", False), "the switch did not end the call after the key")
    out.check(not out.facts.get("called_back_without_agent", True),
              "the caller was called back before an agent was free")
    out.check(out.facts.get("called_back", False), "the caller was never called back")
    out.check(out.facts.get("agent_heard_s", 0) >= 1.0 and
              out.facts.get("caller_heard_s", 0) >= 1.0,
              f"the agent and the called-back caller did not hear each other ({out.facts})")
    out.detail = (f"key {q.callback_key} ended the call; no callback while no agent was free; "
                  f"called back {out.facts.get('callback_after_opt_in_s')} s after 1002 opted "
                  f"in, then talked with 1002 ({out.facts.get('agent_heard_s')} s / "
                  f"{out.facts.get('caller_heard_s')} s)")
    return out


def queue_overflow(fl: FeatureLab) -> FeatureOutcome:
    """The agents ring but nobody answers: after the queue's max_wait_seconds (and the
    agents' ring in progress) the call takes the overflow route (1003), who answers and
    hears the caller."""
    q = fl.account("acme").pbx.queues[0]
    out = FeatureOutcome("queue-overflow", path=f"1001 -> queue {q.extension} (no answer) -> "
                                                f"after {q.max_wait_seconds} s {q.overflow}")
    with _queue_ready(fl, ("1002", "1004")), fl.phone("1002@acme", answer_mode="ring"), \
            fl.phone("1004@acme", answer_mode="ring"), fl.phone("1003@acme") as carol, \
            fl.phone("1001@acme") as phone:
        started = time.monotonic()
        call = phone.dial(q.extension, timeout=30)
        media = _media(out, call, f"the call to queue {q.extension}")
        try:
            if media is not None and out.check(
                    wait_until(lambda: bool(carol.answered), q.max_wait_seconds + 30),
                    f"the call never reached the overflow route {q.overflow}"):
                out.facts["overflow_after_s"] = round(time.monotonic() - started, 1)
                out.facts["heard_s"] = round(_talks(media, carol.answered[-1], CALLER_HZ), 2)
        finally:
            call.bye()
    waited = out.facts.get("overflow_after_s", 0)
    out.check(waited >= q.max_wait_seconds - 1,
              f"overflowed after {waited} s, before max_wait_seconds {q.max_wait_seconds}")
    out.check(out.facts.get("heard_s", 0) >= 1.0, "1003 did not hear the caller")
    out.detail = (f"nobody answered; overflowed to {q.overflow} after {waited} s "
                  f"(max_wait_seconds {q.max_wait_seconds}, then the agents' 15 s ring "
                  f"ends); 1003 heard the caller ({out.facts.get('heard_s')} s)")
    return out


SUPERVISOR_HZ = 2000.0  # the supervisor's voice in the monitoring flow


def _supervisor_joins(phone: Ua, join: Callable[[], object]) -> RtpMedia | None:
    """Run ``join`` (a monitor command); the media of the call it rings ``phone`` with."""
    n = len(phone.answered)
    join()
    return phone.answered[-1] if wait_until(lambda: len(phone.answered) > n, 10) else None


def call_monitoring(fl: FeatureLab) -> FeatureOutcome:
    """A supervisor joins 1001's call with 1002 through ``zpctl calls monitor``: listening
    it hears both and nobody hears it; whispering only 1002 hears it; barging both do;
    taking over, 1001 talks with the supervisor and 1002's leg ends.  A user without a
    grant is refused."""
    out = FeatureOutcome("monitoring", path="1001 -> switch -> 1002; 1004 listens, whispers, "
                                            "barges, takes over (zpctl calls monitor)")
    password = fl.secrets.get(ESL_PASSWORD_KEY)
    targets = targets_for(fl.inv)

    def monitor(uuid: str, mode: str, who: str = "1004@acme") -> dict[str, Any]:
        return asyncio.run(fsc.amonitor(fl.inv, targets, password, uuid, mode, who))

    with fl.phone("1002@acme") as bob, fl.phone("1004@acme") as dave, \
            fl.phone("1001@acme") as alice:
        answered = _answered_call(out, alice, bob, "1002", "1001's call to 1002")
        if answered is None:
            return out
        call, media, user = answered
        try:
            row = _call_row(fl, "1001", "1002")
            if not out.check(row is not None, "the call is on no switch's `show calls`"):
                return out
            assert row is not None
            try:
                monitor(row["uuid"], "listen", "1001@acme")
                out.facts["unpermitted"] = "accepted"
            except ZpctlError as exc:
                out.facts["unpermitted"] = exc.message
            for mode in ("listen", "whisper", "barge", "takeover"):
                spy = _supervisor_joins(dave, functools.partial(monitor, row["uuid"], mode))
                if not out.check(spy is not None,
                                 f"{mode}: the supervisor's phone was not called"):
                    return out
                assert spy is not None
                time.sleep(1.0)
                got: dict[str, Any] = {}
                if mode != "takeover":
                    got["heard_caller_s"] = round(_talks(media, spy, CALLER_HZ), 2)
                    got["heard_user_s"] = round(_talks(user, spy, 900.0), 2)
                marks = (media.mark(), user.mark())
                spy.play(tone(SUPERVISOR_HZ, 2.0))
                time.sleep(3.0)
                got["caller_heard_supervisor_s"] = round(media.tone_heard(SUPERVISOR_HZ,
                                                                          marks[0]), 2)
                got["user_heard_supervisor_s"] = round(user.tone_heard(SUPERVISOR_HZ, marks[1]), 2)
                if mode == "takeover":
                    got["user_released"] = wait_until(lambda: bool(bob.ended_calls), 5)
                else:
                    dave.hang_up_answered()
                    time.sleep(0.5)
                out.facts[mode] = got
        finally:
            call.bye()
    f = out.facts
    out.check("not permitted" in str(f.get("unpermitted")),
              f"an unpermitted supervisor was not refused ({f.get('unpermitted')})")
    hear, quiet = 1.0, 0.3
    for mode, to_caller, to_user in (("listen", False, False), ("whisper", False, True),
                                     ("barge", True, True), ("takeover", True, False)):
        g = f.get(mode, {})
        if mode != "takeover":
            out.check(g.get("heard_caller_s", 0) >= hear and g.get("heard_user_s", 0) >= hear,
                      f"{mode}: the supervisor did not hear both parties ({g})")
        for who, want, key in (("the caller", to_caller, "caller_heard_supervisor_s"),
                               ("1002", to_user, "user_heard_supervisor_s")):
            got_s = g.get(key, 0)
            out.check(got_s >= hear if want else got_s < quiet,
                      f"{mode}: {who} heard the supervisor {got_s} s")
    out.check(f.get("takeover", {}).get("user_released", False),
              "takeover: 1002's leg was not ended")
    out.detail = ("listen: supervisor heard both, nobody heard it; whisper: only 1002 heard "
                  "it; barge: both; takeover: 1001 talks with the supervisor, 1002 released; "
                  "1001 as supervisor refused")
    return out


def _call_row(fl: FeatureLab, caller: str, dest: str, timeout: float = 15.0
              ) -> dict[str, str] | None:
    """The `show calls` row (with its switch) of the call ``caller`` -> ``dest``, once a
    switch shows it; None if none does within ``timeout``.  A switch whose core database
    is PostgreSQL (switch_recovery) lists a call once its row is written there: on two busy
    cores a fresh-clone run once saw none within 5 s."""
    password = fl.secrets.get(ESL_PASSWORD_KEY)
    found: list[dict[str, str]] = []

    def look() -> bool:
        rows, _ = asyncio.run(fsc.alist_calls(targets_for(fl.inv), password))
        found[:] = [r for r in rows if r.get("cid_num") == caller and r.get("dest") == dest]
        return bool(found)

    wait_until(look, timeout, step=0.3)
    return found[0] if found else None


def switch_standby(fl: FeatureLab) -> FeatureOutcome:
    """The switch carrying a call dies (SIGKILL); its zone's standby takes it over and
    recovers the call from the switches' PostgreSQL: both parties hear each other again,
    and the call ends normally.  The switch is started again afterwards."""
    out = FeatureOutcome("switch-standby", path="1001 -> switch (killed) -> 1002; the zone's "
                                                "standby takes over (zpctl lab takeover)")
    with fl.phone("1002@acme") as bob, fl.phone("1001@acme") as alice:
        answered = _answered_call(out, alice, bob, "1002", "1001's call to 1002")
        if answered is None:
            return out
        call, media, user = answered
        killed = ""
        try:
            row = _call_row(fl, "1001", "1002")
            if not out.check(row is not None, "the call is on no switch's `show calls`"):
                return out
            assert row is not None
            switch = row["switch"]
            out.facts["before_s"] = round(_talks(media, user, CALLER_HZ), 2)
            fl.lab.kill(f"{switch}/freeswitch")
            killed = switch
            took = takeover(fl.lab, switch)
            out.facts.update(switch=switch, standby=took["standby"],
                             recovered_channels=took["recovered_channels"],
                             takeover_s=took["took_s"])
            out.facts["heard_after_s"] = [round(_talks(media, user, CALLER_HZ), 2),
                                          round(_talks(user, media, 900.0), 2)]
        finally:
            call.bye()
            if killed:
                giveback(fl.lab, killed)
    f = out.facts
    out.check(f.get("recovered_channels") == 2,
              f"{f.get('recovered_channels')} channel(s) recovered, not the call's 2")
    out.check(all(s >= 1.0 for s in f.get("heard_after_s", [0])),
              f"after the takeover the parties did not hear each other ({f.get('heard_after_s')})")
    out.detail = (f"{f.get('switch')} killed; {f.get('standby')} recovered the call in "
                  f"{f.get('takeover_s')} s; both parties heard again")
    return out


FEATURE_FLOWS: tuple[tuple[str, Callable[[FeatureLab], FeatureOutcome]], ...] = (
    ("voicemail", leave_voicemail),
    ("voicemail-retrieval", retrieve_voicemail),
    ("voicemail-lockout", voicemail_lockout),
    ("ivr", auto_receptionist),
    ("ivr-directory", dial_by_name),
    ("hold", hold_and_resume),
    ("transfer", blind_transfer),
    ("transfer-attended", attended_transfer),
    ("conference", conference_call),
    ("park", park_and_retrieve),
    ("park-orbit", park_orbit),
    ("recording", automatic_recording),
    ("recording-adhoc", adhoc_recording),
    ("forwarding", forward_no_answer),
    ("forwarding-busy", forward_busy),
    ("shared-line", shared_line),
    ("paging", paging),
    ("queue", call_queue),
    ("queue-callback", queue_callback),
    ("queue-overflow", queue_overflow),
    ("monitoring", call_monitoring),
    ("switch-standby", switch_standby),
)


Flows = tuple[tuple[str, Callable[[FeatureLab], FeatureOutcome]], ...]


def run_features(lab: Lab, names: tuple[str, ...] | None = None,
                 say: Callable[[str], None] = lambda s: None,
                 after: Callable[[FeatureOutcome, float], None] | None = None,
                 flows: Flows | None = None) -> list[FeatureOutcome]:
    """Run the feature flows (``names``: only those; ``flows``: other flows of the same
    kind, e.g. the emergency ones); ``after`` is called with each outcome and the time
    (epoch seconds) its flow started."""
    fl = FeatureLab(lab)
    out = []
    for name, flow in flows or FEATURE_FLOWS:
        if names is not None and name not in names:
            continue
        say(f"feature: {name}")
        start = time.time()
        try:
            outcome = flow(fl)
        except Exception as exc:
            outcome = FeatureOutcome(name, problems=[f"could not run: {exc}"])
        if after is not None:
            after(outcome, start)
        out.append(outcome)
    return out
