"""The scripted demo: the lab's call flows (:mod:`zpctl.lab.flows`) through the running
lab, summarised.

Each call flow is placed with SIPp; the summary says who called whom, which lb, zone, switch
and sbc the call crossed, the SIP result, and the RTP packets each end sent and received.
The PBX feature flows (:mod:`zpctl.lab.features`) follow: what each caller heard, what
landed on disk, what the phones were told; then the emergency flows
(:mod:`zpctl.lab.emergency`): the answering point's checks, the security desk's notice,
the call back.  Every flow's calls must have left complete
call records (:mod:`zpctl.lab.journeys`): its row shows the first call's journey.  A flow
is ok when it passed every check it has (the same checks the integration tests make).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from zpctl.lab import Lab
from zpctl.lab.emergency import EMERGENCY_FLOWS
from zpctl.lab.features import FeatureOutcome, run_features
from zpctl.lab.flows import DEMO_FLOWS, Flow, Outcome, run_flow
from zpctl.lab.journeys import JourneyReport, journeys_since
from zpctl.lab.phones import Phones


class Demo:
    def __init__(self, lab: Lab, workdir: Path, say: Callable[[str], None] = lambda s: None,
                 flows: tuple[Flow, ...] = DEMO_FLOWS) -> None:
        self.lab = lab
        self.phones = Phones(lab.inventory(), lab.users(), workdir, subnet="127.0.7")
        self.say = say
        self.flows = flows

    def run(self) -> list[Outcome | FeatureOutcome]:
        """The call flows, then the PBX feature flows (voicemail, ...)."""
        out: list[Outcome | FeatureOutcome] = []
        inv = self.lab.inventory()
        try:
            for f in self.flows:
                self.say(f"demo: {f.title}")
                start = time.time()
                outcome = run_flow(self.lab, self.phones, f)
                self.record(outcome, journeys_since(self.lab, inv, start, time.time()))
                out.append(outcome)
        finally:
            self.phones.stop_all()
        for flows in (None, EMERGENCY_FLOWS):
            out += run_features(self.lab, say=lambda s: self.say(f"demo: {s}"),
                                after=lambda o, start: self.record(
                                    o, journeys_since(self.lab, inv, start, time.time())),
                                flows=flows)
        return out

    @staticmethod
    def record(outcome: Outcome | FeatureOutcome, report: JourneyReport) -> None:
        """The flow's call records: their journeys' problems are the flow's."""
        outcome.journey = report.summary
        outcome.problems += report.problems
