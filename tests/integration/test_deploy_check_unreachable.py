"""`zpctl deploy INV --check` with hosts that refuse SSH: exit 5, each host named once.

Before the fix every unreachable host was printed twice: as a progress line and again in
the error, each time with the whole SSH message.  Real Ansible against 127.0.0.1 port 1
(connection refused at once); no host is touched.  Not tests/integration/test_deploy.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zpctl.cli.main import main
from zpctl.errors import ExitCode

MINI = Path(__file__).parent / "fixtures" / "deploy-mini"
NODES = ("dm1-a-proxy", "dm1-a-media", "dm1-a-sbc")


def test_check_lists_each_unreachable_host_once(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv"
    shutil.copytree(MINI, inv)
    (inv / "deploy.yml").write_text("defaults: {host: 127.0.0.1, port: 1}\n")
    code = main(["deploy", str(inv), "--check", "--limit", "dm1/a",
                 "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == ExitCode.DEPLOY_FAILED, err
    about_reach = [ln for ln in err.splitlines() if "unreachable" in ln.lower()]
    for node in NODES:
        assert sum(ln.count(node) for ln in about_reach) == 1, err
    assert err.count("Connection refused") == 1, err
