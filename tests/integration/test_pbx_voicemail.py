"""Voicemail through the running lab and a real FreeSWITCH: phone -> lb -> proxy -> switch.

The flows are :mod:`zpctl.lab.features`' (the demo runs the same): each asserts what was
heard (the greeting and the beep at the caller, the message's tone at the box's owner, the
lock prompt), what landed on disk (the message file's audio) and what reached the phone
(the message-waiting NOTIFY).  A report lists every check that failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.freeswitch_binary import require_freeswitch
from zpctl.lab import Lab
from zpctl.lab.audio import read_wav, tone_seconds
from zpctl.lab.features import (
    CALLER_HZ,
    FeatureLab,
    leave_voicemail,
    retrieve_voicemail,
    vm_state,
    voicemail_lockout,
)
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server"))),
                                reason="lab binaries missing (make install)")


@pytest.fixture
def fl(zpctl_lab: Lab) -> FeatureLab:
    require_freeswitch()
    return FeatureLab(zpctl_lab)


def test_voicemail_left_notified_and_heard(fl: FeatureLab) -> None:
    left = leave_voicemail(fl)
    assert left.ok, left.problems
    # The message file is on the switches' shared storage and holds the caller's tone.
    msg = fl.voicemail_dir("acme", "1002") / left.facts["message"]
    assert tone_seconds(read_wav(msg), CALLER_HZ) >= 2.5
    assert "Messages-Waiting: yes" in left.facts["mwi"]
    assert vm_state(fl, "acme", "1002")["new"] >= 1
    heard = retrieve_voicemail(fl)
    assert heard.ok, heard.problems
    assert heard.facts["message_tone_s"] >= 2.0


def test_voicemail_pin_lockout_across_calls(fl: FeatureLab) -> None:
    out = voicemail_lockout(fl)
    assert out.ok, out.problems
    assert out.facts["locked"] is True
    # unlocked again by the flow: `zpctl voicemail status` says so, as JSON
    status = subprocess.run(
        [str(Path(sys.executable).with_name("zpctl")), "-o", "json", "voicemail", "status",
         fl.lab.inventory_label(), "acme", "1002", "--secrets",
         str(fl.lab.dir / "secrets.yml")], check=False, capture_output=True, text=True,
        timeout=60)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert (state["locked"], state["wrong_pins"]) == (False, 0)
