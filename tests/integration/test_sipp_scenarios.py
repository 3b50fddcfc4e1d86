"""zpctl's own SIPp scenarios against a scripted far end (SIPp itself, on loopback)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from zpctl import sipp
from zpctl.loadtest import results
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("sipp",))), reason="sipp missing")

_REPLY = """\
      SIP/2.0 {code}
      [last_Via:]
      [last_From:]
      [last_To:];tag=farend[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:far@[local_ip]:[local_port]>
{extra}      Content-Length: [len]
{body}"""

_SDP = """
      v=0
      o=far 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
"""

# Challenges the first INVITE, answers the second, and answers the BYE 481, as a switch does
# when the BYE reaches it a second time (its 200 was lost with a crashed proxy).
_CHALLENGE = _REPLY.format(code="407 Proxy Authentication Required", body="",
                           extra='      Proxy-Authenticate: Digest realm="t", nonce="abc"\n')
_ANSWER = _REPLY.format(code="200 OK", extra="      Content-Type: application/sdp\n", body=_SDP)
_GONE = _REPLY.format(code="481 Call/Transaction Does Not Exist", extra="", body="")
FAR_END = f"""<?xml version="1.0" encoding="UTF-8"?>
<scenario name="challenge, answer, 481 to BYE">
  <recv request="INVITE"/>
  <send><![CDATA[
{_CHALLENGE}
  ]]></send>
  <recv request="ACK"/>
  <recv request="INVITE"/>
  <send><![CDATA[
{_ANSWER}
  ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
{_GONE}
  ]]></send>
</scenario>
"""


def test_call_scenario_ends_the_call_on_a_481_to_its_bye(tmp_path: Path) -> None:
    """RFC 3261 15.1.1: a BYE answered 481 ends the dialog.  The call counts as succeeded and
    the 481 is counted apart (GenericCounter1), where the steady load reports it."""
    (tmp_path / "far.xml").write_text(FAR_END)
    far = subprocess.Popen([sipp.sipp_binary(), "-sf", str(tmp_path / "far.xml"),
                            "-i", "127.0.0.1", "-p", "5891", "-m", "1", "-nostdin",
                            "-timeout", "20", "-bg"], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        users = sipp.users_csv(tmp_path / "u.csv", [("alice", "t.test", "secret")])
        run = sipp.run("call", "127.0.0.1:5891", workdir=tmp_path, name="caller",
                       local_ip="127.0.0.1", local_port=5892, users=users, service="2000",
                       media_port=24990, hold_ms=200, wait_s=20)
    finally:
        far.wait(10)
    assert run.returncode == 0, run.output
    row = results.last_row(run.stats)
    assert row["SuccessfulCall(C)"] == "1", row
    assert row["GenericCounter1(C)"] == "1", row
