"""The lab's call flows as data: one table that `zpctl lab demo` prints and the integration
tests assert on.

How it works: each :class:`Flow` says who calls (a user of the inventory, ``ext@account``,
or for an inbound call a number that a simulated peer sends), what is dialled, who answers
and which checks apply.  :func:`run_flow` places that call through a running lab with SIPp,
collects what each hop saw (the caller's SIP responses, the RTP each end sent and received
counted on the loopback interface, rtpengine's counters for the caller's leg, the switch
that took the call, the INVITE the callee or the carrier received, the premises SBC's log)
into an :class:`Outcome` and runs the flow's checks on it: ``Outcome.problems`` holds one
line per check that failed and is empty when the flow behaved.  Users, their domains and
DIDs, media nodes, sbcs and peers are looked up in the lab's inventory; the table only
names them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from zpctl import sipp
from zpctl.lab import Lab, Peer
from zpctl.lab.phones import Phones, packets_by_tag
from zpctl.lab.rtpcount import PartyRtp, RtpCounter
from zpctl.model import LoadedInventory
from zpctl.model.schema import Role

# Every flow places one call held this long (ms): long enough for rtpengine to count RTP
# both ways many times over.
HOLD_MS = 2500
# The local port an inbound call leaves from on its peer's address (the peer's own SIPp
# holds 5060 there).
INBOUND_PORT = 5071
INBOUND_MEDIA_PORT = 23000
# "RTP both ways": each end sent and received more than this many packets.
MIN_PACKETS = 10
# RTP payload types the checks name (static ones; the phones' Opus is dynamic).
PCMU = 0


@dataclass(frozen=True)
class Flow:
    """One call flow and the checks it must pass."""

    name: str  # short id: the test id
    title: str  # what the demo calls it
    caller: str  # a user ``ext@account``; inbound: the calling number the peer sends
    number: str = ""  # what is dialled; "" = the callee's first DID
    callee: str | None = None  # a user ``ext@account`` that registers and answers
    source: str | None = None  # inbound: the peer the call comes from (sent from its address)
    entry: str | None = None  # inbound: the node (its public address) or peer it is sent to
    scenario: str = "call"  # call | call_opus | call_attempt (outbound); inbound: trunk_call
    expect: int = 200  # the final response to the INVITE
    rtp: bool = False  # the caller's leg is anchored on a media node of its data center
    anchored: bool = False  # the callee's SDP points at a media node, never at the caller
    reaches: str | None = None  # the peer that must get the INVITE (and no other peer)
    hidden: bool = False  # that INVITE shows no internal address or name, From = caller's DID
    mtls: bool = False  # the premises SBC got it over mutual TLS from one of our sbcs
    transcode: tuple[str, str] | None = None  # (caller's codec, carrier's codec)
    blocked: bool = False  # the callee must not be rung (a blocked caller)
    caller_id: str | None = None  # the From user ``reaches`` must see; default: caller's DID
    peer_number: str | None = None  # the number ``reaches`` must see; default: ``number``
    note: str = ""  # said after the result in the demo
    demo: bool = True  # one of the flows `zpctl lab demo` shows

    @property
    def inbound(self) -> bool:
        """The call comes from a simulated peer, not from a user's phone."""
        return self.source is not None


FLOWS: tuple[Flow, ...] = (
    Flow("extension", "extension call", "1001@acme", "1002", callee="1002@acme",
         rtp=True, anchored=True),
    Flow("pstn-native", "PSTN, Native", "1001@acme", "+15557770001",
         reaches="carrier-lab-carrier-0", hidden=True, rtp=True),
    Flow("pstn-byoc-c", "PSTN, BYOC-C", "2001@globex", "+15557770002",
         reaches="carrier-globex-carrier-0", hidden=True, rtp=True),
    Flow("pstn-byoc-p", "PSTN, BYOC-P (mTLS)", "3001@initech", "+15557770003",
         reaches="pbx-initech-pbx-0", hidden=True, mtls=True, rtp=True),
    Flow("transcoding", "PSTN, Opus app -> G.711 carrier", "1001@acme", "+15557770004",
         scenario="call_opus", reaches="carrier-lab-carrier-0", rtp=True,
         transcode=("opus/48000/2", "PCMU/8000")),
    Flow("forwarding-always", "forwarding: always, to the PSTN", "1002@acme", "1005",
         reaches="carrier-lab-carrier-0", rtp=True, peer_number="+15557770020",
         note="1005 forwards every call to her mobile (she has a calling plan)"),
    Flow("no-calling-plan", "PSTN, no calling plan", "1003@acme", "+15557770010",
         scenario="call_attempt", expect=403,
         note="refused, as the seed requires a calling plan"),
    Flow("byoc-needs-no-calling-plan", "PSTN, BYOC-C user without calling plan", "2002@globex",
         "+15557770011", scenario="call_attempt", demo=False),
    Flow("inbound-did", "inbound DID", "+12125550100", callee="1001@acme",
         source="carrier-lab-carrier-0", entry="lab1-a-sbc", scenario="trunk_call"),
    Flow("blocking", "blocking: blocked number", "+19005550100", callee="1001@acme",
         source="carrier-lab-carrier-0", entry="lab1-a-sbc", scenario="trunk_call",
         expect=603, blocked=True, note="declined: the account blocks it (CALL_REJECTED)"),
    Flow("blocking-spam", "blocking: spam number", "+12025550123", callee="1001@acme",
         source="carrier-lab-carrier-0", entry="lab1-a-sbc", scenario="trunk_call",
         expect=607, blocked=True, note="unwanted: on the account's spam list (UNWANTED)"),
    Flow("caller-id-select", "caller ID: picked with *5", "1001@acme", "*52+15557770005",
         reaches="carrier-lab-carrier-0", hidden=True, rtp=True, caller_id="+15550100001",
         peer_number="+15557770005", note="the second of the user's caller IDs"),
    Flow("inbound-unknown-did", "inbound, unknown DID", "+12125550100", "+15550999999",
         source="carrier-lab-carrier-0", entry="lab1-a-sbc", scenario="trunk_call",
         expect=404, demo=False),
    Flow("inbound-byoc-p", "inbound from premises (mTLS)", "+15125550100",
         callee="3001@initech", source="pbx-initech-pbx-0", entry="premises-initech-pbx-0",
         scenario="trunk_call", demo=False),
)

DEMO_FLOWS: tuple[Flow, ...] = tuple(f for f in FLOWS if f.demo)


def flow(name: str) -> Flow:
    """The flow of the table called ``name``."""
    return next(f for f in FLOWS if f.name == name)


@dataclass
class Outcome:
    """What happened when a flow ran, and the checks it failed."""

    flow: Flow
    caller: str  # as the demo shows it
    callee: str
    number: str  # what was dialled
    status: int | None = None  # the final response to the INVITE
    result: str = ""
    returncode: int | None = None
    path: str = ""
    media_node: str = ""
    packets: dict[str, tuple[str, int]] = field(default_factory=dict)  # tag -> codec, count
    # RTP each end sent and received, counted where it arrives: "caller" and "far end"
    ends: dict[str, PartyRtp] = field(default_factory=dict)
    switch: str = ""  # the switch (or switches) that took the call
    peer_invite: str = ""  # the last INVITE the flow's ``reaches`` peer got
    callee_invite: str = ""  # the last INVITE the callee got
    answer: str = ""  # the 200 OK to the caller's INVITE
    errors: str = ""  # the tail of SIPp's error log
    problems: list[str] = field(default_factory=list)
    journey: str = ""  # the hops its call records show (the demo fills it)

    @property
    def name(self) -> str:
        return self.flow.title

    @property
    def ok(self) -> bool:
        return not self.problems

    def media(self) -> str:
        """RTP packets each end sent / received ("-": no call, so no media)."""
        if not self.ends:
            return "-"
        return "  ".join(f"{e.sent}/{e.received}" for e in self.ends.values())

    def row(self) -> dict[str, Any]:
        """The demo's table row."""
        detail = (f"{self.caller} -> {self.callee}: {self.result}; RTP sent/received "
                  f"(caller  far end) {self.media()}")
        return {"flow": self.name, "ok": self.ok, "path": self.path, "journey": self.journey,
                "detail": "; ".join(self.problems) if self.problems else detail,
                "from": self.caller, "to": self.callee, "switch": self.switch or "-",
                "result": self.result, "rtp sent/received (caller  far end)": self.media()}

    def report(self) -> str:
        """The problems, with what the hops saw, for a failed test."""
        return "\n".join([f"{self.flow.name}: {self.result}", *self.problems,
                          f"errors: {self.errors}" if self.errors else ""])


def _tail(run: sipp.SippRun, n: int = 800) -> str:
    return run.errors.read_text(errors="replace")[-n:] if run.errors.exists() else ""


def _final(run: sipp.SippRun) -> tuple[int | None, str]:
    """The last final response to an INVITE the SIPp ``run`` received: (code, status line)."""
    finals = []
    for m in run.received("SIP/2.0 "):
        cseq = re.search(r"^CSeq:\s*\d+\s+(\S+)", m, re.M | re.I)
        first = m.split("\n", 1)[0].strip()
        parts = first.split(" ", 2)
        if cseq and cseq.group(1) == "INVITE" and parts[1].isdigit() and parts[1][0] != "1":
            finals.append((int(parts[1]), " ".join(parts[1:])))
    return finals[-1] if finals else (None, "")


def _watch_media(phones: Phones, caller_ip: str, run: sipp.SippRun,
                 timeout: float = 10.0) -> dict[str, object]:
    """Poll rtpengine while the call runs: the last query of the call placed from
    ``caller_ip`` (SIPp's Call-IDs end with ``@<local ip>``)."""
    seen: dict[str, object] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.proc is not None and run.proc.poll() is None:
        for cid, q in phones.media_calls().items():
            # Keep the last query that shows both parties (a call being torn down may not).
            if cid.endswith("@" + caller_ip) and (len(packets_by_tag(q)) >= 2 or not seen):
                seen = q
        time.sleep(0.25)
    return seen


def peer_invites(lab: Lab, peer: str, number: str) -> list[str]:
    """The INVITEs for ``number`` a simulated peer (SIPp) received, in order."""
    log = lab.dir / "nodes" / peer / "log" / "sipp.messages.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [m for m in sipp.parse_trace(text) if m.startswith(f"INVITE sip:{number}@")]


def switch_totals(lab: Lab, inv: LoadedInventory) -> dict[str, int]:
    """Sessions each running switch has had since it started (ESL ``status``); switches
    that do not answer are left out."""
    if not any(p.role == Role.SWITCH for p in inv.nodes()):
        return {}
    return {r.switch: int(r.extra["sessions_since_startup"]) for r in lab.switch_status(inv)
            if r.error is None and r.extra.get("sessions_since_startup") is not None}


def internal_addresses(inv: LoadedInventory) -> set[str]:
    """Every platform address a carrier must not see: all but the sbcs' and media nodes'
    public addresses."""
    public = {p.node.public for p in inv.nodes() if p.role in (Role.SBC, Role.MEDIA)}
    addrs = {a for p in inv.nodes() for a in (p.node.address, p.node.mgmt, p.node.public)}
    return addrs - public


class _Run:
    """One flow being run: the lab, its phones and the peers, looked up once."""

    def __init__(self, lab: Lab, phones: Phones, flow: Flow) -> None:
        self.lab = lab
        self.phones = phones
        self.flow = flow
        self.inv = phones.inv
        self.peers: dict[str, Peer] = {p.name: p for p in lab.peers(self.inv)}
        number = flow.number or (phones.user(flow.callee).dids[0] if flow.callee else "")
        if flow.inbound:
            assert flow.source is not None
            caller = f"{self.peers[flow.source].kind} {flow.caller}"
            callee = f"{number} ({flow.callee})" if flow.callee else number
        else:
            caller = flow.caller
            callee = flow.callee or (f"{number} via {flow.reaches}" if flow.reaches else number)
        self.out = Outcome(flow, caller, callee, number)
        self.caller_ip = phones.ip() if not flow.inbound else ""  # an outbound call's phone
        self.callee_ip = phones.ip() if flow.callee else ""  # the answering phone's address

    def problem(self, text: str) -> None:
        self.out.problems.append(text)

    def sbc_seen(self, invite: str) -> str:
        """Which sbc (or premises SBC) the INVITE a peer got came from, by its top Via."""
        names = {p.node.public: p.name for p in self.inv.nodes() if p.role == Role.SBC}
        names.update({p.address: f"{p.name} (mutual TLS)" for p in self.peers.values()
                      if p.kind == "premises"})
        m = re.search(r"^Via: SIP/2.0/\S+ ([0-9.]+)", invite, re.M)
        return names.get(m.group(1), m.group(1)) if m else "?"

    # --- placing the call ---------------------------------------------------------------

    def outbound(self) -> None:
        f, out, phones = self.flow, self.out, self.phones
        if f.scenario == "call_attempt":
            out.status = phones.attempt(f.caller, out.number)
            out.returncode = 0 if out.status == 200 else 1
            out.result = f"{out.status}" + (f" ({f.note})" if f.note else "")
            out.path = f"{phones.lb} -> zone proxy"
            return
        ip = self.caller_ip
        run = phones.call_in_background(f.caller, out.number, hold_ms=HOLD_MS,
                                        scenario=f.scenario, ip=ip)
        q = _watch_media(phones, ip, run)
        out.returncode = run.wait(30)
        if run in phones.running:
            phones.running.remove(run)
        out.status, line = _final(run)
        out.result = (line or ("no answer" if out.returncode else "?")) \
            + (f" ({f.note})" if f.note else "")
        out.errors = _tail(run) if out.returncode else ""
        out.packets = packets_by_tag(q)
        out.media_node = str(q.get("media_node", ""))
        zone = next((f"{p.dc.id}/{p.zone}" for p in self.inv.nodes()
                     if p.role == Role.MEDIA and p.name == out.media_node), "?")
        out.path = f"{phones.lb} -> zone {zone}"
        out.answer = next((m for m in run.received("SIP/2.0 200") if "INVITE" in m), "")

    def inbound(self) -> None:
        f, out = self.flow, self.out
        assert f.source is not None
        assert f.entry is not None
        source = self.peers[f.source]
        if f.entry in self.peers:
            entry = self.peers[f.entry]
            target, domain = f"{entry.address}:{entry.port}", entry.address
            out.path = f"{f.source} -> {f.entry} -> sbc (mutual TLS) -> zone proxy -> lb -> phone"
        else:
            sbc = self.inv.node(f.entry).node
            target, domain = f"{sbc.public}:{sbc.ports.sip}", sbc.public
            out.path = f"{f.source} -> {f.entry} ({sbc.public}) -> zone proxy -> lb -> phone"
        run = sipp.run(f.scenario, target, workdir=self.phones.workdir,
                       name=f"flow-{f.name}", local_ip=source.address, local_port=INBOUND_PORT,
                       service=out.number, keys={"caller": f.caller, "domain": domain},
                       hold_ms=HOLD_MS // 2, media_port=INBOUND_MEDIA_PORT, wait_s=20)
        out.returncode = run.returncode
        out.status, line = _final(run)
        out.result = line or f"failed ({run.returncode})"
        out.errors = _tail(run) if run.returncode else ""

    # --- the checks ---------------------------------------------------------------------

    def check_result(self) -> None:
        f, out = self.flow, self.out
        if f.expect == 200:
            # SIPp's exit code says the whole scenario ran (answered, media, BYE).
            bad = out.returncode != 0 or (out.status is not None and out.status != 200)
        else:
            bad = out.returncode == 0 or out.status != f.expect
        if bad:
            self.problem(f"final response {out.status} (SIPp exit {out.returncode}), "
                         f"expected {f.expect}")

    def parties(self) -> dict[str, str]:
        """The address of each end of the call: the caller (a phone, or the peer an
        inbound call comes from) and the far end (the answering phone, or the peer the
        call must reach)."""
        f = self.flow
        if f.inbound:
            assert f.source is not None
            caller = self.peers[f.source].address
        else:
            caller = self.caller_ip
        far = self.callee_ip or (self.peers[f.reaches].address if f.reaches else "")
        return {"caller": caller, "far end": far} if far else {"caller": caller}

    def check_ends(self) -> None:
        """Each end sent and received RTP: the call carried audio both ways, end to end."""
        for name, end in self.out.ends.items():
            if end.sent <= MIN_PACKETS or end.received <= MIN_PACKETS:
                self.problem(f"RTP at the {name} ({self.parties()[name]}): sent {end.sent}, "
                             f"received {end.received}; expected more than {MIN_PACKETS} "
                             "each way")
        if len(self.out.ends) != 2:
            self.problem(f"RTP counted at {len(self.out.ends)} end(s), not both")

    def check_switch(self, before: dict[str, int]) -> None:
        """The call crossed a switch of the caller's data center (each call is two
        sessions there: the leg in and the leg out)."""
        after = switch_totals(self.lab, self.inv)
        took = {name: after[name] - n for name, n in before.items()
                if name in after and after[name] > n}
        self.out.switch = ", ".join(sorted(took))
        if took and self.flow.inbound:
            self.out.path = self.out.path.replace(
                "zone proxy -> ", f"zone proxy -> {self.out.switch} -> zone proxy -> ", 1)
        elif took:
            self.out.path += f" -> {self.out.switch}"
        if not took:
            self.problem("no switch took the call (sessions since startup unchanged on "
                         f"{', '.join(sorted(before)) or 'every switch'})")

    def check_rtp(self) -> None:
        out, caller_ip = self.out, self.caller_ip
        counts = [n for _, n in out.packets.values()]
        if len(counts) != 2 or not all(n > MIN_PACKETS for n in counts):
            self.problem(f"RTP not relayed both ways (more than {MIN_PACKETS} packets each) "
                         f"on the caller's leg from {caller_ip}: {out.packets}")
        if not out.media_node.startswith(f"{self.phones.dc.id}-"):
            self.problem(f"media anchored on {out.media_node or 'no media node'}, not in "
                         f"{self.phones.dc.id}")

    def check_transcoding(self) -> None:
        """The caller talks its codec (rtpengine's view of its leg), the carrier gets and
        sends only its own (PCMU, payload type 0, counted where it arrives): the switch
        transcodes between them."""
        assert self.flow.transcode is not None
        theirs, carrier = self.flow.transcode
        codecs = sorted({c for c, _ in self.out.packets.values()})
        if codecs != [theirs]:
            self.problem(f"the caller's leg carried {codecs}, expected {theirs} both ways")
        far = self.out.ends.get("far end")
        if carrier.startswith("PCMU") and far is not None and (
                set(far.received_types) != {PCMU} or set(far.sent_types) != {PCMU}):
            self.problem(f"the carrier's RTP payload types: received "
                         f"{dict(far.received_types)}, sent {dict(far.sent_types)}; expected "
                         f"only {PCMU} ({carrier})")
        invite = self.out.peer_invite
        sdp = invite.split("\n\n", 1)[1] if "\n\n" in invite else ""
        if carrier not in sdp:
            self.problem(f"the carrier's SDP does not offer {carrier}:\n{sdp}")
        if theirs.split("/")[0].lower() in sdp.lower():
            self.problem(f"the carrier's SDP offers the caller's {theirs}:\n{sdp}")
        if "/".join(theirs.split("/")[:2]) not in self.out.answer:
            self.problem(f"the 200 OK to the caller does not carry {theirs}:\n{self.out.answer}")

    def check_callee(self, callee: sipp.SippRun) -> None:
        f, out = self.flow, self.out
        assert f.callee is not None
        invites = callee.received("INVITE ")
        if f.blocked:
            if invites:
                self.problem(f"{f.callee} was rung by a blocked caller:\n{invites[-1]}")
            return
        if not invites:
            self.problem(f"{f.callee} got no INVITE")
            return
        out.callee_invite = invite = invites[-1]
        user = self.phones.user(f.callee)
        if not invite.startswith(f"INVITE sip:{user.username}@"):
            self.problem(f"{f.callee} got {invite.split(chr(10), 1)[0]}")
        if f.inbound and f.caller not in invite.split("\n\n")[0]:
            self.problem(f"the caller {f.caller} is not in the callee's INVITE:\n{invite}")
        if f.anchored:
            media = {p.node.address for p in self.inv.nodes() if p.role == Role.MEDIA}
            c_line = re.search(r"^c=IN IP4 (\S+)", invite, re.M)
            if c_line is None or c_line.group(1) not in media:
                self.problem(f"the callee's SDP does not point at a media node:\n{invite}")
            caller_ip = self.caller_ip
            if caller_ip and caller_ip in invite.split("\n\n", 1)[-1]:
                self.problem(f"the caller's address {caller_ip} is in the callee's SDP")

    def check_reaches(self) -> None:
        f, out = self.flow, self.out
        assert f.reaches is not None
        number = f.peer_number or out.number
        invites = peer_invites(self.lab, f.reaches, number)
        if not invites:
            self.problem(f"{f.reaches} saw no INVITE for {number}")
        else:
            out.peer_invite = invites[-1]
            out.path += f" -> {self.sbc_seen(out.peer_invite)} -> {f.reaches}"
        for other in sorted(self.peers):
            if other != f.reaches and self.peers[other].kind in ("carrier", "pbx") \
                    and peer_invites(self.lab, other, number):
                self.problem(f"{other} saw an INVITE for {number} too")
        if f.transcode:
            out.path += " (transcoded)"

    def check_hidden(self) -> None:
        invite = self.out.peer_invite
        leaked = sorted(a for a in internal_addresses(self.inv)
                        if re.search(rf"(?<![0-9.]){re.escape(a)}(?![0-9])", invite))
        if leaked:
            self.problem(f"internal addresses visible to {self.flow.reaches}: {leaked}\n{invite}")
        if "zpctl.test" in invite:  # no platform or account host names
            self.problem(f"a platform host name is visible to {self.flow.reaches}:\n{invite}")
        if "X-ZP-" in invite:
            self.problem(f"an X-ZP- header is visible to {self.flow.reaches}:\n{invite}")
        caller_id = self.flow.caller_id or self.phones.user(self.flow.caller).dids[0]
        if not re.search(rf"^From:\s*<sip:{re.escape(caller_id)}@", invite, re.M):
            self.problem(f"the caller ID is not {caller_id}:\n{invite}")

    def check_mtls(self) -> None:
        premises = next(p for p in self.peers.values() if p.kind == "premises"
                        and p.account == self.phones.user(self.flow.caller).account)
        log_file = self.lab.dir / "nodes" / premises.name / "log" / "premises.log"
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        domain = re.escape(self.inv.model.platform.sip_domain)
        sbcs = "|".join(re.escape(p.name) for p in self.inv.nodes()
                        if p.role == Role.SBC and p.dc.id == self.phones.dc.id)
        if not re.search(rf"platform -> PBX: INVITE sip:{re.escape(self.out.number)}@\S+ from "
                         rf"\S+ \(peer cert CN (?:{sbcs})\.{domain}, verified 1\)", log):
            self.problem(f"{premises.name} did not log the INVITE over mutual TLS from one of "
                         f"our sbcs:\n{log[-1000:]}")

    def run(self) -> Outcome:
        f = self.flow
        callee = self.phones.answer(f.callee, ip=self.callee_ip) if f.callee else None
        placed = f.scenario != "call_attempt" and f.expect == 200
        try:
            before = switch_totals(self.lab, self.inv) if placed else {}
            with RtpCounter(set(self.parties().values())) as rtp:
                if f.inbound:
                    self.inbound()
                else:
                    self.outbound()
            if placed:
                self.out.ends = {name: rtp.parties[a] for name, a in self.parties().items()}
            self.check_result()
            if placed:
                self.check_ends()
                if before:
                    self.check_switch(before)
            if f.reaches:
                self.check_reaches()
            if f.hidden:
                self.check_hidden()
            if f.mtls:
                self.check_mtls()
            if f.rtp:
                self.check_rtp()
            if f.transcode:
                self.check_transcoding()
            if callee is not None:
                self.check_callee(callee)
        finally:
            if callee is not None:
                callee.stop()
                if callee in self.phones.running:
                    self.phones.running.remove(callee)
        return self.out


def run_flow(lab: Lab, phones: Phones, flow: Flow) -> Outcome:
    """Place ``flow``'s call through the running ``lab`` with ``phones`` (answering as its
    callee when it has one) and return what happened, with the checks it failed."""
    return _Run(lab, phones, flow).run()
