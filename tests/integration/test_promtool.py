"""The rendered monitoring files checked by Prometheus's own promtool: `check config` and
`check rules` for every shipped inventory, and `test rules` with the unit tests in
tests/integration/promtool/ (each alert fires on synthetic series, and stays quiet where it
should)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import INVENTORIES, shipped_inventories
from zpctl.model import load_inventory
from zpctl.render import render_monitoring
from zpctl.render.monitoring import MONITORING
from zpctl.render.verify import verify_written

PROMTOOL = shutil.which("promtool")
RULE_TESTS = Path(__file__).parent / "promtool"
pytestmark = pytest.mark.skipif(PROMTOOL is None,
                                reason="promtool missing (Debian package prometheus; make install)")


def _write(inventory: Path, dest: Path) -> Path:
    for rel, text in render_monitoring(load_inventory(inventory)).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    return dest / MONITORING / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("inventory", shipped_inventories(), ids=lambda p: p.name)
def test_promtool_checks_config_and_rules(inventory: Path, tmp_path: Path) -> None:
    prom = _write(inventory, tmp_path)
    config = _promtool("check", "config", str(prom / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout
    rules = _promtool("check", "rules", str(prom / "rules" / "zpctl.rules.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def _alerts(rules_file: Path) -> set[str]:
    doc = yaml.safe_load(rules_file.read_text())
    return {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_promtool_rule_unit_tests(tmp_path: Path) -> None:
    prom = _write(INVENTORIES / "lab", tmp_path)
    tests = sorted(RULE_TESTS.glob("*_test.yml"))
    for t in tests:
        shutil.copy(t, prom / "rules" / t.name)
    result = _promtool("test", "rules", *[str(prom / "rules" / t.name) for t in tests])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout


def test_every_alert_has_a_firing_rule_test() -> None:
    fired = set()
    for t in RULE_TESTS.glob("*_test.yml"):
        for case in yaml.safe_load(t.read_text())["tests"]:
            fired |= {a["alertname"] for a in case.get("alert_rule_test", []) if a["exp_alerts"]}
    rules = render_monitoring(load_inventory(INVENTORIES / "lab"))
    path = Path(MONITORING) / "prometheus" / "rules" / "zpctl.rules.yml"
    doc = yaml.safe_load(rules[str(path)])
    alerts = {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}
    assert alerts - fired == set(), "alerts without a promtool test that makes them fire"


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check is real: promtool fails a rules file with an invalid expression."""
    prom = _write(INVENTORIES / "lab", tmp_path)
    rules = prom / "rules" / "zpctl.rules.yml"
    rules.write_text(rules.read_text().replace("expr: zpctl_zone_up == 0", "expr: zpctl_zone_up =="))
    result = _promtool("check", "rules", str(rules))
    assert result.returncode != 0
    assert _alerts(rules)  # still YAML; only promtool sees the PromQL error


def test_verify_runs_promtool_on_a_written_build(tmp_path: Path) -> None:
    """`zpctl render` and `zpctl deploy` check the written monitoring files with promtool
    (zpctl.render.verify): the shipped files pass, a broken rule is a failure."""
    prom = _write(INVENTORIES / "lab", tmp_path)
    assert verify_written(tmp_path) == []
    rules = prom / "rules" / "zpctl.rules.yml"
    rules.write_text(rules.read_text().replace("expr: zpctl_zone_up == 0", "expr: zpctl_zone_up =="))
    failures = verify_written(tmp_path)
    assert [(f["check"], Path(f["config"]).name) for f in failures] == \
        [("promtool check config", "prometheus.yml")]
    assert "zpctl.rules.yml" in failures[0]["output"]
