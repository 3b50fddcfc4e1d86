"""zpctl deploy against real hosts: one network namespace with its own sshd per node.

One module-scoped platform (tests/integration/fixtures/deploy-mini, data center dm1: an lb
and two zones of proxy, media and sbc; dm2 exists for the model's pair check and is never
deployed: every run uses ``--limit dm1``).  In order: a first deploy, verified with
testinfra; a second deploy that changes nothing; a broken config refused before any host
is touched; a rollout whose zone b fails its health check and is rolled back while a SIPp
load runs through zone a.  Skips (with the reason) when not root or without ``ip netns``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import zpctl.render as zrender
from tests.integration.netns import MOUNT_POINT, NsHosts, why_not
from zpctl import pki, sipp
from zpctl.accounts import sip_users
from zpctl.cli.main import main
from zpctl.control import Control
from zpctl.errors import ExitCode
from zpctl.loadtest import results
from zpctl.model import load_inventory
from zpctl.secrets import Secrets

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "fixtures" / "deploy-mini"
CONTROLLER = ["10.199.1.254", "10.199.1.253", "10.199.1.252"]
SERVICES = ("kamailio", "rtpengine", "redis", "keepalived", "nftables")

_reason = why_not()
if _reason is not None:
    print(f"\nSKIP test_deploy: {_reason}")
    pytest.skip(_reason, allow_module_level=True)
testinfra = pytest.importorskip("testinfra", reason="pytest-testinfra is not installed")
pytest.importorskip("ansible_runner", reason="ansible-runner is not installed")


class Platform:
    def __init__(self, tmp: Path, hosts: NsHosts) -> None:
        self.tmp = tmp
        self.inv_dir = tmp / "inv"
        self.hosts = hosts
        self.state = tmp / "state"
        self.secrets = tmp / "secrets.yml"

    def deploy(self, *extra: str, capsys: pytest.CaptureFixture[str] | None = None
               ) -> tuple[int, dict[str, Any]]:
        out = self.tmp / "last.json"
        argv = ["-o", "json", "deploy", str(self.inv_dir), "--limit", "dm1", "--secrets",
                str(self.secrets), "--state-dir", str(self.state), *extra]
        if capsys is not None:
            capsys.readouterr()
        rc = main(argv)
        captured = capsys.readouterr() if capsys is not None else None
        text = captured.out if captured is not None else ""
        if captured is not None:
            sys.__stderr__.write(captured.err)  # the progress view, for the test log
        out.write_text(text)
        try:
            return rc, json.loads(text) if text.strip() else {}
        except ValueError:
            return rc, {"raw": text}

    def host(self, node: str) -> Any:
        addr = self.hosts.hosts[node].ssh_address
        return testinfra.get_host(f"ssh://root@{addr}", ssh_config=str(self.hosts.ssh_config))

    def edit(self, rel: str, change: Any) -> None:
        path = self.inv_dir / rel
        doc = yaml.safe_load(path.read_text())
        change(doc)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    # Not pytest's tmp_path: other pytest sessions on the machine rotate (delete) old base
    # temp dirs, and these directories are the hosts' file systems for minutes.
    tmp = Path(tempfile.mkdtemp(prefix="zpctl-deploy-test-"))
    shutil.copytree(FIXTURE, tmp / "inv")
    # A snapshot of the templates: the module's deploys must render the same files even
    # when someone edits kamailio/*.j2 while it runs (a second deploy must change nothing).
    saved_dirs = zrender.TEMPLATE_DIRS
    zrender.TEMPLATE_DIRS = tuple(Path(shutil.copytree(d, tmp / "templates" / d.name))
                                  for d in saved_dirs)
    inv = load_inventory(tmp / "inv")
    nodes = {p.name: (sorted({p.node.address, p.node.public, p.node.mgmt}), p.node.mgmt)
             for p in inv.nodes() if p.dc.id == "dm1"}
    hosts = NsHosts(tmp, CONTROLLER)
    try:
        hosts.up(nodes)
        # Certificates are provisioned before a deploy, not by it (docs/DEPLOY.md): the
        # lb listens on TLS and needs its own.
        pki.make_ca(tmp / "pki")
        for p in inv.nodes():
            if p.dc.id == "dm1" and p.role.value in ("lb", "proxy", "sbc"):
                out = tmp / "hosts" / p.name / "etc" / "pki"
                pki.issue(tmp / "pki", out, p.name, f"{p.name}.{inv.model.platform.sip_domain}",
                          sorted({p.node.address, p.node.public}))
                (out / "peer-cas.pem").write_bytes((tmp / "pki" / "ca.crt").read_bytes())
        (tmp / "inv" / "deploy.yml").write_text(yaml.safe_dump({
            "defaults": {"user": "root", "key": str(hosts.key),
                         "ssh_args": f"-F {hosts.ssh_config}"},
            # The test hosts have the packages (they share this machine's) and no systemd.
            "vars": {**{f"{s}_{k}": v for s in SERVICES
                        for k, v in (("install_packages", False),
                                     ("service_manager", "supervised"))},
                     # The hosts share /usr/local with this machine: the guard goes in theirs.
                     "kamailio_fork_guard_path": f"{MOUNT_POINT}/lib/ossl_fork_guard.so"},
        }))
        yield Platform(tmp, hosts)
    finally:
        zrender.TEMPLATE_DIRS = saved_dirs
        hosts.down()
        if os.environ.get("ZPCTL_KEEP_DEPLOY_TEST") is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"deploy test files kept in {tmp}")
        assert not MOUNT_POINT.exists() or not any(MOUNT_POINT.iterdir())


def test_first_deploy(platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    rc, result = platform.deploy(capsys=capsys)
    print(f"first deploy: {time.monotonic() - t0:.0f} s")
    assert rc == 0, (platform.tmp / "last.json").read_text()
    assert [s["result"] for s in result["steps"]] == ["deployed"] * 3
    assert result["changed"] > 0

    proxy = platform.host("dm1-a-proxy")
    etc = f"{MOUNT_POINT}/etc/kamailio"
    secrets = proxy.file(f"{etc}/secrets.cfg")
    assert secrets.exists
    assert secrets.mode == 0o600
    assert proxy.file(f"{etc}/kamailio.cfg").mode == 0o644
    assert proxy.file(f"{etc}/kamailio.cfg").contains("managed by zpctl")
    assert proxy.file(f"{MOUNT_POINT}/lib/subscriber.sqlite").exists
    assert proxy.socket("udp://10.199.1.11:5060").is_listening
    assert proxy.socket("tcp://10.199.1.211:8080").is_listening
    assert proxy.process.filter(comm="kamailio")
    # Debian 12's Kamailio (5.6) runs with the OpenSSL fork guard zpctl built and shipped.
    pid = proxy.file(f"{MOUNT_POINT}/run/zpctl-kamailio.pid").content_string.strip()
    assert f"{MOUNT_POINT}/lib/ossl_fork_guard.so" in proxy.file(f"/proc/{pid}/maps").content_string
    media = platform.host("dm1-b-media")
    assert media.file(f"{MOUNT_POINT}/etc/rtpengine/rtpengine.conf").exists
    assert media.socket("tcp://10.199.1.222:6379").is_listening
    assert media.socket("udp://10.199.1.222:2223").is_listening
    assert media.process.filter(comm="rtpengine")
    assert media.process.filter(comm="redis-server")
    lb = platform.host("dm1-lb")
    assert lb.socket("udp://10.199.1.1:5060").is_listening
    # Each host sees only its own tree: the lb has no rtpengine config.
    assert not lb.file(f"{MOUNT_POINT}/etc/rtpengine").exists
    status = Control(load_inventory(platform.inv_dir)).zone_status("dm1/a")
    assert status["serving"], status
    # Every host loaded its rendered firewall, last (the deploy's checks above ran through it).
    for node in ("dm1-lb", "dm1-a-proxy", "dm1-b-media"):
        table = platform.host(node).run("nft list table inet zpctl")
        assert table.rc == 0, table.stderr
        assert "policy drop" in table.stdout
    assert 'comment "SIP from phones"' in lb.run("nft list table inet zpctl").stdout


def test_second_deploy_changes_nothing(platform: Platform,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc, result = platform.deploy(capsys=capsys)
    assert rc == 0
    assert result["changed"] == 0
    assert all(n == 0 for n in result["would_change"].values()), result["would_change"]
    assert [s["result"] for s in result["steps"]] == ["unchanged"] * 3


def test_broken_config_is_refused(platform: Platform, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A template bug that kamailio -c rejects: refused on the controller, no host touched."""
    broken = tmp_path / "kamailio"
    shutil.copytree(zrender.TEMPLATE_DIRS[0], broken)
    with open(broken / "proxy.cfg.j2", "a") as fh:
        fh.write("\nroute[BROKEN] { this is not kamailio; }\n")
    monkeypatch.setattr(zrender, "TEMPLATE_DIRS", (broken, *zrender.TEMPLATE_DIRS[1:]))
    runs_before = sorted((platform.state / "deploy-mini" / "runs").iterdir())
    proxy = platform.host("dm1-a-proxy")
    pid_before = proxy.file(f"{MOUNT_POINT}/run/zpctl-kamailio.pid").content_string
    rc, _ = platform.deploy(capsys=capsys)
    assert rc == ExitCode.RENDER_FAILED
    # No Ansible run was even started, and the proxy runs the same process.
    assert sorted((platform.state / "deploy-mini" / "runs").iterdir()) == runs_before
    assert proxy.file(f"{MOUNT_POINT}/run/zpctl-kamailio.pid").content_string == pid_before


def _load(platform: Platform, workdir: Path, rate: float, duration_s: float
          ) -> tuple[sipp.SippRun, sipp.SippRun]:
    """A registered callee (UAS with RTP echo) and SIPp calls to it through the lb."""
    inv = load_inventory(platform.inv_dir)
    users = [u for u in sip_users(inv, Secrets.load(platform.secrets)) if u.account == "miniload"]
    callee, callers = users[0], users[1:]
    lb = "10.199.1.1:5060"
    workdir.mkdir(parents=True, exist_ok=True)
    csv = sipp.users_csv(workdir / "callee.csv", [(callee.username, callee.domain, callee.password)])
    for _ in range(3):  # a zone proxy restored a moment ago may still be settling
        reg = sipp.run("register", lb, workdir=workdir, name="callee-register",
                       local_ip=CONTROLLER[1], local_port=5060, users=csv,
                       keys={"expires": "3600"}, wait_s=15)
        if reg.returncode == 0:
            break
        time.sleep(1)
    assert reg.returncode == 0, reg.output
    uas = sipp.start("uas", None, workdir=workdir, name="callee", local_ip=CONTROLLER[1],
                     local_port=5060, calls=None, media_port=25000, rtp_echo=True, trace=False)
    time.sleep(0.3)
    call_csv = sipp.users_csv(workdir / "callers.csv",
                              [(u.username, u.domain, u.password) for u in callers])
    calls = sipp.start_argv(sipp.command(
        "call", lb, workdir=workdir, name="calls", local_ip=CONTROLLER[2], local_port=5300,
        users=call_csv, service=callee.username, calls=int(rate * duration_s), rate=rate,
        media_port=24000, hold_ms=1000, trace=False, timeout_s=duration_s + 60,
        extra=["-trace_err", "-error_file", str(workdir / "calls.errors.log")]), workdir, "calls")
    return uas, calls


def test_failed_zone_rolls_back_while_other_zone_serves(
        platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    """Zones a and b get a new log level; zone b's media also gets a Redis port that
    collides with rtpengine's HTTP port (kamailio -c cannot see that): zone a deploys, zone
    b fails its health check, goes back to its last good build and is restored; the rollout
    exits 5.  SIPp calls run through the lb the whole time."""
    good = json.loads((platform.state / "deploy-mini" / "good.json").read_text())

    def change(doc: dict[str, Any]) -> None:
        for zone in ("a", "b"):
            doc["zones"][zone].setdefault("defaults", {})["kamailio"] = {"log_level": 2}
        media = next(n for n in doc["zones"]["b"]["nodes"] if n["name"] == "dm1-b-media")
        media["ports"] = {"redis": 8080}

    platform.edit("datacenters/dm1.yml", change)
    # Enough calls for the longest rollout; once it is over (and zone b serves again), a
    # few more seconds of calls, then SIPp stops placing new ones and finishes the rest.
    uas, calls = _load(platform, platform.tmp / "load", rate=3.0, duration_s=150.0)
    try:
        t0 = time.monotonic()
        rc, _ = platform.deploy("--health-timeout", "8", capsys=capsys)
        rollout_s = time.monotonic() - t0
        print(f"failing rollout: {rollout_s:.0f} s")
        time.sleep(8)
        calls.soft_exit(30)
    finally:
        calls.stop()
        uas.stop()
    assert rc == ExitCode.DEPLOY_FAILED
    history = [json.loads(line) for line in
               (platform.state / "deploy-mini" / "history.jsonl").read_text().splitlines()]
    last = history[-1]
    assert not last["ok"]
    assert "dm1/b" in last["reason"]
    steps = {s["scope"]: s for s in last["steps"]}
    assert steps["dm1/a"]["result"] == "deployed"
    assert steps["dm1/b"]["result"] == "failed"
    assert "rolled back" in steps["dm1/b"]["rollback"]
    after = json.loads((platform.state / "deploy-mini" / "good.json").read_text())
    assert after["dm1/a"] == last["build"]
    assert after["dm1/b"] == good["dm1/b"]  # still the old build
    # Zone b runs its old build again and serves.
    media = platform.host("dm1-b-media")
    assert media.socket("tcp://10.199.1.222:6379").is_listening
    status = Control(load_inventory(FIXTURE)).zone_status("dm1/b")
    assert status["serving"], status
    stats = results.last_row(calls.stats)
    attempted = int(stats.get("TotalCallCreated", 0) or 0)
    succeeded = int(stats.get("SuccessfulCall(C)", 0) or 0)
    print(f"load through the rollout: {succeeded}/{attempted} calls succeeded")
    assert attempted >= 3.0 * rollout_s * 0.9  # the load ran through the whole rollout
    assert succeeded / attempted >= 0.98


def test_history_check_diff_and_rollback_from_the_cli(
        platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    """After the failed rollout: history tells it; --check --diff shows what zone b would get
    and changes nothing; `deploy rollback BUILD --limit dm1/a` puts zone a back on the first
    build, which its proxy then runs."""
    state = ["--state-dir", str(platform.state)]
    capsys.readouterr()
    assert main(["-o", "json", "deploy", "history", *state]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [e["ok"] for e in history][-1] is False
    first = history[0]["build"]
    proxy = platform.host("dm1-b-proxy")
    pid = proxy.file(f"{MOUNT_POINT}/run/zpctl-kamailio.pid").content_string
    rc, out = platform.deploy("--check", "--diff", capsys=capsys)
    assert rc == 0, out
    assert out["would_change"].get("dm1-b-media", 0) > 0, out  # the Redis port, still
    assert proxy.file(f"{MOUNT_POINT}/run/zpctl-kamailio.pid").content_string == pid
    assert main(["-o", "json", "deploy", "rollback", first, "--limit", "dm1/a", "-i",
                 str(platform.inv_dir), *state]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["build"] == first
    assert {s["scope"]: s["result"] for s in result["steps"]}["dm1/a"] == "deployed"
    good = json.loads((platform.state / "deploy-mini" / "good.json").read_text())
    assert good["dm1/a"] == first
    cfg = platform.host("dm1-a-proxy").file(
        f"{MOUNT_POINT}/etc/kamailio/kamailio.cfg").content_string
    kept = (platform.state / "deploy-mini" / "builds" / first / "dm1-a-proxy" / "kamailio"
            / "kamailio.cfg").read_text()
    assert cfg == kept
