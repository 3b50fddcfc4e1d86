"""Call features through the running lab and a real FreeSWITCH, proven by who heard what:
hold (hold music at the held party), blind transfer by REFER, a three-party conference with
a PIN and a moderator, call park and retrieval by slot (the park lot on the data center's
rendezvous switch, whichever switch the parking call was on), the auto receptionist by the
site's clock (shifted, not waited for), automatic call recording (both parties in the file,
a row in the index).

The flows are :mod:`zpctl.lab.features`' (the demo runs the same).
"""

from __future__ import annotations

import pytest

from tests.freeswitch_binary import require_freeswitch
from zpctl.lab import Lab
from zpctl.lab.features import (
    FeatureLab,
    auto_receptionist,
    automatic_recording,
    blind_transfer,
    conference_call,
    hold_and_resume,
    park_and_retrieve,
)
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server"))),
                                reason="lab binaries missing (make install)")


@pytest.fixture
def fl(zpctl_lab: Lab) -> FeatureLab:
    require_freeswitch()
    return FeatureLab(zpctl_lab)


def test_hold_plays_hold_music_to_the_held_party(fl: FeatureLab) -> None:
    out = hold_and_resume(fl)
    assert out.ok, out.problems
    assert (out.facts["hold_status"], out.facts["resume_status"]) == (200, 200)


def test_blind_transfer_connects_transferee_and_target(fl: FeatureLab) -> None:
    out = blind_transfer(fl)
    assert out.ok, out.problems
    assert out.facts["refer_status"] == 202


def test_conference_three_parties_pin_and_moderator(fl: FeatureLab) -> None:
    out = conference_call(fl)
    assert out.ok, out.problems
    # before the moderator joined, the members heard hold music and not each other
    assert out.facts["before_moderator_s"] < 0.5 <= out.facts["waiting_music_s"]


def test_park_and_retrieve_by_slot(fl: FeatureLab) -> None:
    out = park_and_retrieve(fl)
    assert out.ok, out.problems


def test_auto_receptionist_hours_holiday_menu_and_invalid_keys(fl: FeatureLab) -> None:
    out = auto_receptionist(fl)
    assert out.ok, out.problems
    assert out.facts["heard ivr-that_was_an_invalid_entry.wav"] >= 0.8


def test_automatic_recording_has_both_parties_and_an_index_row(fl: FeatureLab) -> None:
    out = automatic_recording(fl)
    assert out.ok, out.problems
    assert out.facts["parties"] == "1004 -> 1001"
    assert out.facts["duration_ms"] >= 3000
