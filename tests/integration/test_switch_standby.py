"""A switch dies under calls; its zone's standby takes over its addresses and recovers the
calls from the shared PostgreSQL (`zpctl lab takeover`), and the phones hear each other
again.

The calls are real phones (:mod:`zpctl.lab.sipua`) talking through lb -> proxy -> switch:
each call's RTP is captured at both phones across the failure, so what is asserted is what
the phones heard: a tone each way after the takeover, and the longest silence in the
stream.  Figures go to build/chaos/switch-standby.json (docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.freeswitch_binary import require_freeswitch
from zpctl.clients.esl import EslConnection
from zpctl.control import Control
from zpctl.freeswitch.control import parse_rows, targets_for
from zpctl.lab import Lab
from zpctl.lab.capture import Datagram, LoopbackCapture
from zpctl.lab.features import CALLER_HZ, FeatureLab, _talks, switch_standby, wait_until
from zpctl.lab.standby import giveback, takeover
from zpctl.secrets import ESL_PASSWORD_KEY
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server"))),
                                reason="lab binaries missing (make install)")

OUT = Path(__file__).resolve().parents[2] / "build" / "chaos"
VICTIM = "lab1-a-switch1"
CALLS = [("1001@acme", "1002"), ("1003@acme", "1004"), ("2001@globex", "2002"),
         ("3001@initech", "3002")]
CALLEE_HZ = 900.0


@pytest.fixture
def fl(zpctl_lab: Lab) -> Iterator[FeatureLab]:
    """The lab with every switch of lab1 but the victim paused, so that the calls all land
    on the victim; afterwards the victim is itself again and the others take calls."""
    require_freeswitch()
    f = FeatureLab(zpctl_lab)
    others = [p.name for p in f.inv.nodes()
              if p.role.value == "switch" and p.dc.id == "lab1" and p.name != VICTIM]
    # A victim started again a moment ago (the test before) is selected by the proxies
    # once their probe has found it up; until then its calls would take the direct path.
    control = Control(f.inv, secrets_file=zpctl_lab.dir / "secrets.yml")
    victim = f.inv.node(VICTIM).node
    proxies = [p.node for p in f.inv.nodes() if p.role.value == "proxy" and p.dc.id == "lab1"]
    wait_for(f"the proxies to select {VICTIM}", lambda: all(
        t["DEST"]["FLAGS"].startswith("A") for p in proxies
        for r in control.call(p, "dispatcher.list")["RECORDS"] for t in r["SET"]["TARGETS"]
        if victim.address in t["DEST"]["URI"]), 20, 0.2)
    for name in others:
        f.switch_api("fsctl pause inbound", switch=name)
    try:
        yield f
    finally:
        giveback(zpctl_lab, VICTIM)
        for name in others:
            f.switch_api("fsctl resume inbound", switch=name)


def longest_gap(packets: list[Datagram], since: float) -> float:
    """The longest time between two RTP packets arriving after ``since`` (monotonic)."""
    times = sorted(d.at for d in packets if d.at >= since and len(d.payload) > 12
                   and d.payload[0] >> 6 == 2)
    return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


def calls_on(fl: FeatureLab, switch: str) -> int:
    """Calls up on ``switch`` (``show calls``)."""
    t = targets_for(fl.inv, switch=switch)[0]

    async def count() -> int:
        async with EslConnection(t.host, t.port, fl.secrets.get(ESL_PASSWORD_KEY),
                                 name=t.name, timeout=5) as c:
            return len(parse_rows(await c.api("show calls as json")))
    return asyncio.run(count())


def test_standby_recovers_the_calls_of_a_killed_switch(fl: FeatureLab, zpctl_lab: Lab) -> None:
    with ExitStack() as stack:
        calls = []
        for caller, callee in CALLS:
            account = caller.split("@")[1]
            b = stack.enter_context(fl.phone(f"{callee}@{account}"))
            a = stack.enter_context(fl.phone(caller))
            dialog = a.dial(callee)
            assert dialog.established and dialog.media is not None and b.answered, caller
            calls.append((a, b, dialog))
        assert wait_until(lambda: calls_on(fl, VICTIM) == len(CALLS), 5), \
            f"the calls are not all on {VICTIM}"
        for _a, b, d in calls:
            assert d.media is not None
            assert _talks(d.media, b.answered[-1], CALLER_HZ) >= 1.0
        phones = [ua.ip for a, b, _ in calls for ua in (a, b)]
        with LoopbackCapture(phones) as cap:
            killed = time.monotonic()
            zpctl_lab.kill(f"{VICTIM}/freeswitch")
            took = takeover(zpctl_lab, VICTIM)
            heard = []
            for _a, b, d in calls:
                assert d.media is not None
                heard.append((_talks(d.media, b.answered[-1], CALLER_HZ),
                              _talks(b.answered[-1], d.media, CALLEE_HZ)))
            packets = cap.snapshot()
        gaps = [round(longest_gap([p for p in packets if p.dst == ip], killed - 0.5), 2)
                for ip in phones]
        resumed = sum(1 for ab, ba in heard if ab >= 1.0 and ba >= 1.0)
        # The recovered calls end as calls end: the BYE reaches the standby, which ends
        # the other party's leg too.
        for _a, _b, d in calls:
            d.bye()
        ended = all(wait_until(lambda b=b: b.received_invites[-1].get("Call-ID")
                               in b.ended_calls, 5) for _a, b, _d in calls)
        figures = {"calls": len(CALLS), "recovered_channels": took["recovered_channels"],
                   "resumed_both_ways": resumed, "takeover_s": took["took_s"],
                   "switch_started_s": took["started_s"], "audio_gap_s": gaps,
                   "heard_after_s": heard, "ended_cleanly": ended}
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "switch-standby.json").write_text(json.dumps(figures, indent=2) + "\n")
        assert took["recovered_channels"] == 2 * len(CALLS), figures
        assert resumed / len(CALLS) >= 0.95, figures
        assert max(gaps) <= 3.0, figures
        assert ended, figures
        assert wait_until(lambda: calls_on(fl, VICTIM) == 0, 5)


def test_the_demo_row_kills_a_switch_and_the_call_goes_on(fl: FeatureLab) -> None:
    """`zpctl lab demo`'s switch-standby row: the same, for one call, with the switch found
    from `show calls` and started again afterwards."""
    out = switch_standby(fl)
    assert out.ok, (out.problems, out.facts)
    assert (out.facts["switch"], out.facts["standby"]) == (VICTIM, "lab1-a-standby")
    assert calls_on(fl, VICTIM) == 0  # itself again, and the call over
