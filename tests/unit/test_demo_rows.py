"""`zpctl lab demo` names a row after every PBX feature issue 16 lists."""

from __future__ import annotations

from zpctl.lab.features import FEATURE_FLOWS
from zpctl.lab.flows import FLOWS

REQUIRED = ("voicemail", "ivr", "queue", "park", "conference", "recording", "monitoring",
            "transfer", "hold", "forwarding", "blocking")


def test_every_feature_has_a_demo_row_by_name() -> None:
    names = {name for name, _ in FEATURE_FLOWS} | {f.name for f in FLOWS}
    assert [n for n in REQUIRED if n not in names] == []
    assert len(names) == len(FEATURE_FLOWS) + len(FLOWS)  # no two rows share a name
