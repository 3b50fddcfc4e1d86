"""The scripted demo: real calls through the running lab, summarised.

Each flow is placed with SIPp; the summary says who called whom, which lb, zone and sbc the
call crossed, the SIP result, and the RTP packets rtpengine relayed each way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zpctl import sipp
from zpctl.lab import Lab
from zpctl.lab.phones import Phones, packets_by_tag
from zpctl.model.schema import Role


@dataclass
class Flow:
    name: str
    caller: str
    callee: str
    path: str = ""
    result: str = ""
    media: str = ""
    ok: bool = False

    def row(self) -> dict[str, Any]:
        return {"flow": self.name, "from": self.caller, "to": self.callee, "path": self.path,
                "result": self.result, "rtp (a->b / b->a)": self.media, "ok": self.ok}


def _watch_media(phones: Phones, caller_ip: str, run: sipp.SippRun,
                 timeout: float = 8.0) -> tuple[str, tuple[int, int], str]:
    """Poll rtpengine while the call runs: (media node, packets each way, codecs)."""
    best: tuple[str, tuple[int, int], str] = ("", (0, 0), "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.proc is not None and run.proc.poll() is None:
        for cid, q in phones.media_calls().items():
            if cid.endswith("@" + caller_ip) or caller_ip in cid:
                stats = list(packets_by_tag(q).values())
                if len(stats) == 2:
                    best = (str(q.get("media_node", "")), (stats[0][1], stats[1][1]),
                            " / ".join(c for c, _ in stats))
        time.sleep(0.25)
    return best


class Demo:
    def __init__(self, lab: Lab, workdir: Path, say: Callable[[str], None] = lambda s: None):
        self.lab = lab
        self.inv = lab.inventory()
        self.phones = Phones(self.inv, lab.users(), workdir, subnet="127.0.7")
        self.say = say
        self.public_to_sbc = {p.node.public: p.name for p in self.inv.nodes()
                              if p.role == Role.SBC}
        self.public_to_sbc.update({peer.address: f"{peer.name} (mutual TLS)"
                                   for peer in lab.peers(self.inv) if peer.kind == "premises"})
        self.media_zone = {p.name: f"{p.dc.id}/{p.zone}" for p in self.inv.nodes()
                           if p.role == Role.MEDIA}

    def _call(self, flow: Flow, user: str, number: str, scenario: str = "call") -> None:
        ip = self.phones.ip()
        run = self.phones.call_in_background(user, number, hold_ms=2500, scenario=scenario, ip=ip)
        node, (a, b), codecs = _watch_media(self.phones, ip, run)
        rc = run.wait(30)
        finals = [m.split(" ", 2)[1] + " " + m.split(" ", 2)[2].split("\n")[0]
                  for m in run.received("SIP/2.0") if "CSeq: 2 INVITE" in m
                  and not m.startswith("SIP/2.0 1")]
        flow.result = finals[-1] if finals else ("no answer" if rc else "?")
        flow.ok = rc == 0
        zone = self.media_zone.get(node, "?")
        flow.media = f"{a} / {b}" + (f" ({codecs})" if codecs else "")
        flow.path = f"{self.phones.lb} -> zone {zone}" + flow.path

    def _sbc_seen(self, peer: str, number: str) -> str:
        log = self.lab.dir / "nodes" / peer / "log" / "sipp.messages.log"
        invites = [m for m in sipp.parse_trace(log.read_text(errors="replace") if log.exists()
                                               else "") if m.startswith(f"INVITE sip:{number}@")]
        if not invites:
            return ""
        m = re.search(r"^Via: SIP/2.0/\S+ ([0-9.]+)", invites[-1], re.M)
        return self.public_to_sbc.get(m.group(1), m.group(1)) if m else ""

    def run(self) -> list[Flow]:
        flows: list[Flow] = []
        self.say("demo: registering 1002@acme and 1001@acme through the lb (digest auth)")
        self.phones.answer("1002@acme")
        f = Flow("extension call", "1001@acme", "1002@acme")
        self._call(f, "1001@acme", "1002")
        flows.append(f)
        for name, user, number, peer in (
                ("PSTN, Native", "1001@acme", "+15557000001", "carrier-lab-carrier-0"),
                ("PSTN, BYOC-C", "2001@globex", "+15557000002", "carrier-globex-carrier-0"),
                ("PSTN, BYOC-P (mTLS)", "3001@initech", "+15557000003", "pbx-initech-pbx-0")):
            f = Flow(name, user, f"{number} via {peer}")
            self._call(f, user, number)
            seen = self._sbc_seen(peer, number)
            f.path += f" -> {seen} -> {peer}"
            flows.append(f)
        f = Flow("PSTN, Opus app -> G.711 carrier", "1001@acme", "+15557000004")
        self._call(f, "1001@acme", "+15557000004", scenario="call_opus")
        f.path += f" -> {self._sbc_seen('carrier-lab-carrier-0', '+15557000004')} (transcoded)"
        flows.append(f)
        code = self.phones.attempt("1003@acme", "+15557000005")
        flows.append(Flow("PSTN, no calling plan", "1003@acme", "+15557000005",
                          f"{self.phones.lb} -> zone proxy", f"{code} (refused, as the seed "
                          "requires a calling plan)", "-", code == 403))
        self.phones.stop_all()
        self.phones.answer("1001@acme")
        sbc = self.inv.node("lab1-a-sbc").node
        run = sipp.run("trunk_call", f"{sbc.public}:{sbc.ports.sip}", workdir=self.phones.workdir,
                       name="demo-inbound", local_ip="127.0.9.1", local_port=5081,
                       service="+15550100002", keys={"caller": "+12125550100",
                                                      "domain": sbc.public},
                       hold_ms=1000, media_port=23100, wait_s=20)
        flows.append(Flow("inbound DID", "carrier +12125550100", "+15550100002 (1001@acme)",
                          f"lab-carrier -> lab1-a-sbc ({sbc.public}) -> zone proxy -> lb -> phone",
                          "200 OK" if run.returncode == 0 else f"failed ({run.returncode})", "-",
                          run.returncode == 0))
        self.phones.stop_all()
        return flows
