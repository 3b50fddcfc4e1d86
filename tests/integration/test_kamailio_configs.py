"""Every shipped inventory renders into Kamailio configs that the real kamailio accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shipped_inventories
from zpctl.model import load_inventory
from zpctl.render import render
from zpctl.render.verify import check_kamailio_build, check_kamailio_config
from zpctl.secrets import Secrets
from zpctl.testing import missing_binaries

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio",))),
                                reason="kamailio is not installed (make install)")


@pytest.mark.parametrize("inventory", shipped_inventories(), ids=lambda p: p.name)
def test_every_config_passes_kamailio_check(inventory: Path, tmp_path: Path) -> None:
    inv = load_inventory(inventory)
    build = render(inv, Secrets(tmp_path / "s.yml"))
    build.write(tmp_path / "build")
    configs = sorted((tmp_path / "build").glob("*/kamailio/kamailio.cfg"))
    assert len(configs) == sum(1 for p in inv.nodes() if p.role.value in ("lb", "proxy", "sbc"))
    assert check_kamailio_build(tmp_path / "build") == []


def test_kamailio_check_catches_a_broken_config(tmp_path: Path) -> None:
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text('#!KAMAILIO\nloadmodule "sl.so"\nrequest_route { sl_send_reply("200" }\n')
    ok, output = check_kamailio_config(cfg)
    assert not ok
    assert "parse error" in output or "error" in output.lower()
