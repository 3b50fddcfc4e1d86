"""`zpctl -o json lab demo` prints one object per flow with at least flow, ok, path and
detail, whether the flow is a SIPp call flow or a PBX feature flow, passed or failed."""

from __future__ import annotations

from zpctl.lab.features import FeatureOutcome
from zpctl.lab.flows import FLOWS, Outcome

KEYS = {"flow", "ok", "path", "detail"}


def test_call_flow_rows() -> None:
    good = Outcome(FLOWS[0], "1001@acme", "1002@acme", "1002", status=200, result="200 OK",
                   path="lb -> zone lab1/a")
    row = good.row()
    assert set(row) >= KEYS and row["ok"] is True and "200 OK" in row["detail"]
    bad = Outcome(FLOWS[0], "1001@acme", "1002@acme", "1002", problems=["no switch took it"])
    assert bad.row()["ok"] is False and bad.row()["detail"] == "no switch took it"


def test_feature_rows_say_why_they_failed() -> None:
    out = FeatureOutcome("voicemail", path="a -> b", detail="fine")
    assert out.row() == {"flow": "voicemail", "ok": True, "path": "a -> b", "detail": "fine"}
    out.check(False, "no beep heard")
    out.check(True, "never shown")
    assert out.row()["ok"] is False and out.row()["detail"] == "no beep heard"
