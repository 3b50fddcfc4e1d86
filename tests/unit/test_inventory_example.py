"""docs/INVENTORY.md's worked example ("A new EU operator from scratch") as a newcomer
would use it: its files written out, validated and rendered."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO
from zpctl.model import load_inventory
from zpctl.model.schema import Role
from zpctl.render import render
from zpctl.render.verify import verify_rendered
from zpctl.secrets import Secrets

DOC = REPO / "docs" / "INVENTORY.md"


def _example_files() -> dict[str, str]:
    text = DOC.read_text()
    section = text[text.index("## A new EU operator from scratch"):]
    blocks = re.findall(r"```yaml\n# file: (\S+)\n(.*?)```", section, re.DOTALL)
    return dict(blocks)


def test_the_worked_example_validates_and_renders(tmp_path: Path) -> None:
    files = _example_files()
    assert set(files) == {"platform.yml", "datacenters/fra1.yml", "datacenters/ams1.yml",
                          "accounts/lawfirm-bv.yml", "accounts/autohaus-gmbh.yml"}
    inv = tmp_path / "eurotel"
    for name, body in files.items():
        (inv / name).parent.mkdir(parents=True, exist_ok=True)
        (inv / name).write_text(body)
    loaded = load_inventory(inv)
    assert {a.id for a in loaded.model.accounts} == {"lawfirm-bv", "autohaus-gmbh"}
    build = render(loaded, Secrets(tmp_path / "s.yml"))
    verify_rendered(build)  # the FreeSWITCH and static checks a render gets
    sbcs = [p.name for p in loaded.nodes() if p.role == Role.SBC]
    assert len(sbcs) == 4
    for sbc in sbcs:
        cfg = build.files[f"{sbc}/kamailio/kamailio.cfg"].data.decode()
        assert '$sht(peer=>198.51.100.50) = "autohaus-sbc"' in cfg  # the premises SBC
        assert "sbc.autohaus.example" in cfg
