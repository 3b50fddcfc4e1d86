"""Secrets (SIP passwords, the topoh key, the nonce secret, TLS keys) never appear in files
others can read, in the lab's logs, or in `-o json` output."""

from __future__ import annotations

import stat

import pytest
import yaml

from zpctl.cli.main import main
from zpctl.lab import Lab


def _secrets(lab: Lab) -> list[str]:
    values = yaml.safe_load((lab.dir / "secrets.yml").read_text())
    assert len(values) > 10
    return [v for v in values.values() if len(v) >= 8]


def test_secrets_file_and_keys_are_private(zpctl_lab: Lab) -> None:
    assert stat.S_IMODE((zpctl_lab.dir / "secrets.yml").stat().st_mode) == 0o600
    for key in (zpctl_lab.dir / "pki").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) & 0o077 == 0, key


def test_no_secret_in_readable_files_or_logs(zpctl_lab: Lab) -> None:
    secrets = _secrets(zpctl_lab)
    leaks = []
    for path in list((zpctl_lab.dir / "build").rglob("*")) + \
            list((zpctl_lab.dir / "nodes").glob("*/log/*")):
        if not path.is_file():
            continue
        readable_by_others = stat.S_IMODE(path.stat().st_mode) & 0o077
        if "build" in path.parts and not readable_by_others:
            continue  # secrets.cfg: 0600 on purpose
        text = path.read_text(errors="replace")
        leaks += [f"{path}: {s[:4]}..." for s in secrets if s in text]
    assert leaks == []


@pytest.mark.parametrize("argv", [["accounts", "users", "inventories/lab"],
                                  ["lab", "status"], ["node", "status"],
                                  ["registrations", "ls"]])
def test_no_secret_in_json_output(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str],
                                  argv: list[str]) -> None:
    assert main(["-o", "json", *argv, "--lab-dir", str(zpctl_lab.dir)]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    assert [s[:4] for s in _secrets(zpctl_lab) if s in out] == []
