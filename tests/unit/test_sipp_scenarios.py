"""The bundled SIPp scenarios and the signalling-only variant the benchmark and
`zpctl loadtest ext-call-signalling` run."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from zpctl import sipp


@pytest.mark.parametrize("name", sorted(p.stem for p in sipp.SCENARIOS.glob("*.xml")))
def test_every_scenario_is_well_formed_xml(name: str) -> None:
    ET.parse(sipp.scenario(name))


def test_signalling_only_drops_the_rtp_stream_and_keeps_every_message(tmp_path: Path) -> None:
    full = ET.parse(sipp.scenario("call")).getroot()
    path = sipp.signalling_only("call", tmp_path)
    bare = ET.parse(path).getroot()
    assert path.parent == tmp_path
    assert "rtp_stream" in sipp.scenario("call").read_text()
    assert "rtp_stream" not in path.read_text()
    kept = [(e.tag, e.get("request") or e.get("response")) for e in bare if e.tag != "nop"]
    assert kept == [(e.tag, e.get("request") or e.get("response")) for e in full
                    if e.tag != "nop"]
    assert "m=audio [media_port] RTP/AVP 0 101" in path.read_text()  # the SDP offer stays


def test_a_nomedia_name_runs_the_stripped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               ) -> None:
    monkeypatch.setattr(sipp, "sipp_binary", lambda: "sipp")
    argv = sipp.command("call" + sipp.NO_MEDIA, "127.0.0.1:5060", workdir=tmp_path,
                        name="load", local_ip="127.0.0.1")
    sf = Path(argv[argv.index("-sf") + 1])
    assert sf == tmp_path / "call-nomedia.xml"
    assert "rtp_stream" not in sf.read_text()
    with pytest.raises(Exception, match="unknown SIPp scenario"):
        sipp.command("nope" + sipp.NO_MEDIA, None, workdir=tmp_path, name="x",
                     local_ip="127.0.0.1")
