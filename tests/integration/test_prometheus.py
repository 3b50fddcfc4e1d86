"""A real Prometheus scraping the running lab: every node's native /metrics and `zpctl exporter`
(run as its CLI), with the rendered rules, on loopback.  During SIPp load its queries return
live values: the registrations SIPp made, call counters rising, call quality from RTCP, a
zone taken out of service — and the alerts built on them go pending.

Uses the session lab (zpctl_lab) and its phones (zpctl_phones).  Prometheus listens on
127.0.0.1 at a free port with its data in a temporary directory; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.rtcp_peer import RtcpCall
from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import ng_command
from zpctl.errors import RemoteFailure
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.metrics.health import PROBED_ROLES
from zpctl.metrics.registrations import contacts
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.schema import Node, Role
from zpctl.render import render_monitoring
from zpctl.render.monitoring import MONITORING, MonitoringOptions
from zpctl.sipp import SippRun
from zpctl.testing import missing_binaries, wait_for

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing (Debian package; make install)"),
    pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server", "sipp"))),
                       reason="lab binaries or sipp missing (make install)"),
]

# Phones of this module: 127.0.8.150 and up (the call-flow tests use lower ones).
PHONE_IPS = (f"127.0.8.{i}" for i in range(150, 200))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, timeout: float = 3.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        doc = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def values(self, expr: str, *by: str) -> dict[tuple[str, ...], float]:
        return {tuple(r["metric"].get(k, "") for k in by): float(r["value"][1])
                for r in self.query(expr)}

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str) -> list[dict[str, Any]]:
        doc = _get(f"{self.url}/api/v1/alerts")
        return [a for a in doc["data"]["alerts"] if a["labels"]["alertname"] == name]

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = _get(f"{self.url}/api/v1/targets")["data"]["activeTargets"]
        return active


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def exporter(zpctl_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`zpctl exporter` for the lab's inventory, watching the lab's PKI; its host:port."""
    st = zpctl_lab.state()
    assert st is not None
    listen = f"127.0.0.1:{_free_port()}"
    log = tmp_path_factory.mktemp("exporter") / "exporter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from zpctl.cli.main import main; sys.exit(main())",
             "exporter", st["inventory"], "--listen", listen, "--lab-dir", str(zpctl_lab.dir)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"zpctl exporter exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as resp:
                    return b"zpctl_zone_up" in resp.read()
            except OSError:
                return False
        wait_for("zpctl exporter to serve /metrics", ready, 20)
        yield listen
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def prom(zpctl_lab: Lab, exporter: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    """Prometheus with the lab's rendered config (1 s scrapes) pointed at the exporter."""
    assert PROMETHEUS is not None
    home = tmp_path_factory.mktemp("prometheus")
    options = MonitoringOptions(exporter=exporter, scrape_interval="1s", scrape_timeout="1s",
                                evaluation_interval="1s")
    for rel, text in render_monitoring(zpctl_lab.inventory(), options).items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    listen = f"127.0.0.1:{_free_port()}"
    log = home / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={home / MONITORING / 'prometheus' / 'prometheus.yml'}",
             f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address={listen}",
             "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=home)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{listen}/-/ready", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False
        wait_for("prometheus to be ready", ready, 30)
        yield Prom(f"http://{listen}")
    finally:
        _stop(proc)


def _rpc(node: Node) -> KamailioRpc:
    return KamailioRpc(f"http://{node.mgmt}:{node.ports.mgmt_http}/RPC")


def _first_dc_nodes(inv: LoadedInventory, role: Role) -> list[Node]:
    dc = inv.model.datacenters[0]
    return [n for z in sorted(dc.zones) for n in dc.zones[z].nodes if n.role == role]


# --- scraping -------------------------------------------------------------------------------

def test_every_node_and_the_exporter_are_scraped(prom: Prom, zpctl_lab: Lab) -> None:
    inv = zpctl_lab.inventory()
    kamailio = [p for p in inv.nodes() if p.role in (Role.LB, Role.PROXY, Role.SBC)]
    media = [p for p in inv.nodes() if p.role == Role.MEDIA]

    def all_up() -> list[dict[str, Any]] | None:
        targets = prom.targets()
        ok = len(targets) == len(kamailio) + len(media) + 1 and \
            all(t["health"] == "up" for t in targets)
        return targets if ok else None

    targets = wait_for("every target to be scraped successfully", all_up, 30)
    jobs = sorted(t["labels"]["job"] for t in targets)
    assert jobs.count("kamailio") == len(kamailio) and jobs.count("rtpengine") == len(media)
    # Native metrics of every node arrive, labelled with their data center and zone.  (A
    # target shows "up" a moment before its scrape's samples are committed: wait for them.)
    def of_every(metric: str, nodes: list[PlacedNode], *by: str
                 ) -> dict[tuple[str, ...], float] | None:
        v = prom.values(metric, "node", *by)
        return v if {k[0] for k in v} == {p.name for p in nodes} else None

    native = wait_for("every Kamailio node's native metrics", lambda: of_every(
        "kamailio_core_rcv_requests", kamailio, "dc", "zone"), 10)
    assert {k[0] for k in native} == {p.name for p in kamailio}
    assert ("lab1-a-proxy", "lab1", "a") in native
    assert native[("lab1-a-proxy", "lab1", "a")] > 0  # the exporter's OPTIONS at least
    uptime = wait_for("every rtpengine's native metrics",
                      lambda: of_every("rtpengine_uptime_seconds", media), 10)
    assert {k[0] for k in uptime} == {p.name for p in media}


def test_health_is_live(prom: Prom, zpctl_lab: Lab) -> None:
    inv = zpctl_lab.inventory()
    zones = {(dc.id, z) for dc in inv.model.datacenters for z in dc.zones}
    every_up = dict.fromkeys(zones, 1.0)
    up = wait_for("zpctl_zone_up 1 for every zone",
                  lambda: (v if (v := prom.values("zpctl_zone_up", "dc", "zone")) == every_up
                           else None))
    assert up == every_up
    assert set(prom.values("zpctl_datacenter_up", "dc").values()) == {1.0}
    nodes = prom.values("zpctl_node_up", "node")
    assert len(nodes) == sum(1 for p in inv.nodes() if p.role in PROBED_ROLES)
    assert set(nodes.values()) == {1.0}
    assert set(prom.values("zpctl_collector_success", "collector").values()) == {1.0}
    certs = prom.values("zpctl_certificate_expiry_timestamp_seconds", "subject")
    assert ("zpctl lab CA",) in certs
    assert min(certs.values()) > time.time() + 14 * 86400  # fresh lab PKI: no expiry alert


# --- registrations --------------------------------------------------------------------------

def _unregister_all(zpctl_lab: Lab) -> None:
    """Remove every contact from the first data center's proxies (earlier tests in the
    session, load tests included, leave phones registered for 10 minutes)."""
    for proxy in _first_dc_nodes(zpctl_lab.inventory(), Role.PROXY):
        rpc = _rpc(proxy)
        for aor in sorted({a for a, _ in contacts(rpc.call("ul.dump"))}):
            with contextlib.suppress(RemoteFailure):  # already gone (DMQ from the sister)
                rpc.call("ul.rm", "location", aor)


def test_registrations_equal_what_sipp_registered(prom: Prom, zpctl_lab: Lab,
                                                  zpctl_phones: Phones) -> None:
    inv = zpctl_lab.inventory()
    dc = inv.model.datacenters[0].id
    _unregister_all(zpctl_lab)  # earlier tests in the session left phones registered
    wait_for("registrations to drop to zero",
             lambda: prom.scalar(f'sum(zpctl_registrations{{dc="{dc}"}})') == 0)
    # The lab's named users (not the 1,000 of the load-test account).
    users = sorted(k for k in zpctl_phones.users if not k.endswith("@loadco"))
    accounts = [a.id for a in inv.model.accounts]
    expected_contacts: dict[str, int] = dict.fromkeys(accounts, 0)
    expected_users: dict[str, set[str]] = {a: set() for a in accounts}
    try:
        # Every lab user once, and the first user from two more phones: contacts != users.
        for key in [*users, users[0], users[0]]:
            run = zpctl_phones.register(key, next(PHONE_IPS))
            assert run.returncode == 0, run.errors.read_text()[-500:]
            account = zpctl_phones.user(key).account
            expected_contacts[account] += 1
            expected_users[account].add(key)
        want = {(a,): float(n) for a, n in expected_contacts.items()}
        got = wait_for(
            "Prometheus to show what SIPp registered",
            lambda: (v if (v := prom.values(f'zpctl_registrations{{dc="{dc}"}}', "account"))
                     == want else None), 15)
        assert got == want
        assert prom.values(f'zpctl_registered_users{{dc="{dc}"}}', "account") == \
            {(a,): float(len(u)) for a, u in expected_users.items()}
        # Both proxies of the data center hold every contact (DMQ), as Kamailio itself says.
        total = float(sum(expected_contacts.values()))
        native = wait_for("both proxies' native usrloc counters", lambda: (
            v if set((v := prom.values(f'kamailio_usrloc_location_contacts{{dc="{dc}"}}',
                                      "node")).values()) == {total} else None), 10)
        assert len(native) == len(_first_dc_nodes(inv, Role.PROXY))
    finally:
        _unregister_all(zpctl_lab)


# --- calls ----------------------------------------------------------------------------------

def test_call_counters_rise_during_sipp_load(prom: Prom, zpctl_lab: Lab,
                                             zpctl_phones: Phones) -> None:
    inv = zpctl_lab.inventory()
    dc = inv.model.datacenters[0].id
    sel = f'dc="{dc}"'
    proxies = len(_first_dc_nodes(inv, Role.PROXY))

    def total(metric: str) -> tuple[float] | None:
        """The data center's sum, only from a scrape where every proxy answered."""
        v = prom.values(f"{metric}{{{sel}}}", "node")
        return (sum(v.values()),) if len(v) == proxies else None

    zpctl_phones.answer("1002@acme", next(PHONE_IPS))
    before = wait_for("call counters", lambda: total("zpctl_call_attempts_total"))[0]
    failed_before = wait_for("failure counters", lambda: total("zpctl_calls_failed_total"))[0]
    calls = 60
    result: list[SippRun] = []
    load = threading.Thread(target=lambda: result.append(zpctl_phones.call(
        "1001@acme", "1002", hold_ms=1500, calls=calls, rate=10, wait_s=60, ip=next(PHONE_IPS))))
    load.start()
    seen: list[float] = []
    active_seen, sessions_seen = 0.0, 0.0
    while load.is_alive():
        value = total("zpctl_call_attempts_total")
        if value is not None and (not seen or value[0] != seen[-1]):
            seen.append(value[0])
        active_seen = max(active_seen, prom.scalar(f"sum(zpctl_calls_active{{{sel}}})") or 0)
        sessions_seen = max(sessions_seen,
                            prom.scalar(f'sum(rtpengine_sessions{{type="own", {sel}}})') or 0)
        time.sleep(0.5)
    load.join()
    assert result and result[0].returncode == 0, result[0].errors.read_text()[-800:]
    # Rising while the load ran: several distinct, increasing values before it ended.
    assert len(seen) >= 3, seen
    assert seen == sorted(seen)
    assert active_seen >= 2 and sessions_seen >= 2, (active_seen, sessions_seen)
    # Each call is two dialogs at the zone proxies: the phone's leg to the switch and the
    # switch's leg to the callee.
    attempts = before + 2 * calls
    after = wait_for(f"{2 * calls} more call attempts (two legs per call)", lambda: (
        v if (v := total("zpctl_call_attempts_total")) == (attempts,) else None), 15)
    assert after == (attempts,)
    assert total("zpctl_calls_failed_total") == (failed_before,)
    # Every call answered: ASR 1 in both zones (both took calls from the lb).
    zones = sorted(inv.model.datacenters[0].zones)
    asr = wait_for("the ASR recording rule", lambda: (
        v if len(v := prom.values(f"zpctl:answer_seizure_ratio:ratio_rate5m{{{sel}}}", "zone"))
        == len(zones) else None), 10)
    assert asr == {(z,): 1.0 for z in zones}


# --- call quality ---------------------------------------------------------------------------

def test_call_quality_from_rtcp(prom: Prom, zpctl_lab: Lab) -> None:
    media = _first_dc_nodes(zpctl_lab.inventory(), Role.MEDIA)[0]
    ng = (media.mgmt, media.ports.rtpengine_ng)
    node = next(p.name for p in zpctl_lab.inventory().nodes() if p.node == media)
    samples_before = prom.scalar(f'rtpengine_mos_samples_total{{node="{node}"}}') or 0
    good = RtcpCall(ng, ("127.0.8.230", "127.0.8.231"), loss=0.05, jitter_ms=50,
                    duration_s=25, base_port=40000).start()
    bad = RtcpCall(ng, ("127.0.8.232", "127.0.8.233"), loss=0.20, jitter_ms=150,
                   duration_s=25, base_port=40100).start()
    try:
        def mos() -> dict[tuple[str, ...], float] | None:
            v = prom.values(f'zpctl_call_mos{{node="{node}"}}', "call_id")
            return v if {(good.call_id,), (bad.call_id,)} <= set(v) else None

        per_call = wait_for("per-call MOS of both RTCP calls", mos, 15)
        # What rtpengine itself reports for the calls (MOS x10, worst direction).
        for call, lo, hi in ((good, 3.9, 4.2), (bad, 1.0, 2.0)):
            q: dict[str, Any] = ng_command(ng[0], ng[1], "query", 2.0, **{"call-id": call.call_id})
            direct = min(e["average MOS"]["MOS"] / 10 for e in q["SSRC"].values()
                         if e.get("average MOS", {}).get("MOS"))
            assert lo <= per_call[(call.call_id,)] <= hi, per_call
            assert per_call[(call.call_id,)] == pytest.approx(direct, abs=0.15)
        loss = prom.values(f'zpctl_call_packet_loss_ratio{{node="{node}"}}', "call_id")
        assert loss[(bad.call_id,)] == pytest.approx(0.19, abs=0.01)  # 20 % as an 8-bit fraction
        jitter = prom.values(f'zpctl_call_jitter_seconds{{node="{node}"}}', "call_id")
        assert jitter[(good.call_id,)] == pytest.approx(0.050, abs=0.002)
        assert prom.scalar(f'zpctl_media_mos_min{{node="{node}"}}') == per_call[(bad.call_id,)]
        # Mean MOS below 3.5: the quality alert goes pending (it fires after 2 minutes).
        alert = wait_for("ZpctlCallQualityLow to go pending", lambda: [
            a for a in prom.alerts("ZpctlCallQualityLow") if a["labels"].get("node") == node], 10)
        assert alert[0]["state"] in ("pending", "firing")
    finally:
        good.stop()
        bad.stop()
    # rtpengine's own counters took the RTCP samples too.
    wait_for("rtpengine_mos_samples_total to rise", lambda: (
        prom.scalar(f'rtpengine_mos_samples_total{{node="{node}"}}') or 0) > samples_before, 10)


# --- a zone out of service ------------------------------------------------------------------

def test_zone_taken_out_of_service_is_seen_and_alerted(prom: Prom, zpctl_lab: Lab) -> None:
    inv = zpctl_lab.inventory()
    dc = inv.model.datacenters[0]
    lb = next(n for n in dc.nodes if n.role == Role.LB)
    zone = sorted(dc.zones)[-1]
    proxy = inv.zone_node(dc, zone, Role.PROXY)
    assert proxy is not None
    uri = f"sip:{proxy.address}:{proxy.ports.sip}"
    sel = f'dc="{dc.id}", zone="{zone}"'
    _rpc(lb).call("dispatcher.set_state", "d", 1, uri)  # disabled: the probes do not undo it
    try:
        wait_for("zpctl_zone_up to drop", lambda: prom.scalar(f"zpctl_zone_up{{{sel}}}") == 0, 10)
        assert prom.scalar(f'zpctl_lb_zone_active{{{sel}, lb="{lb.name}"}}') == 0
        assert prom.scalar(f'zpctl_datacenter_up{{dc="{dc.id}"}}') == 1  # the other zone serves
        alert = wait_for("ZpctlZoneDown to go pending", lambda: [
            a for a in prom.alerts("ZpctlZoneDown") if a["labels"].get("zone") == zone
            and a["labels"].get("dc") == dc.id], 10)
        assert alert[0]["state"] == "pending"  # for: 1m
    finally:
        _rpc(lb).call("dispatcher.set_state", "ap", 1, uri)
    wait_for("the zone to come back", lambda: prom.scalar(f"zpctl_zone_up{{{sel}}}") == 1, 10)


def test_prometheus_rejects_nothing_it_was_given(prom: Prom) -> None:
    """The rendered rules loaded: every group evaluated without error."""
    doc = _get(f"{prom.url}/api/v1/rules")
    groups = {g["name"]: g for g in doc["data"]["groups"]}
    assert set(groups) == {"zpctl-recording", "zpctl-alerts"}
    for g in groups.values():
        for r in g["rules"]:
            assert r["health"] in ("ok", "unknown"), r
