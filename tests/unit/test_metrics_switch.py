"""The switch collector behind its source interface, and the HEARTBEAT / channel-event helpers
an ESL source is built from.  No FreeSWITCH here: the HEARTBEAT is the header set FreeSWITCH
1.10 fires (fixtures/metrics/heartbeat-event.json, not recorded), the rest synthetic."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import INVENTORIES
from zpctl.errors import Unreachable
from zpctl.metrics.exporter import ExporterOptions, build_registry, scrape
from zpctl.metrics.sources import Clients
from zpctl.metrics.switch import (
    ChannelTally,
    QueueStats,
    SwitchCollector,
    SwitchStats,
    stats_from_heartbeat,
)
from zpctl.model import LoadedInventory, PlacedNode, load_inventory

FIX = Path(__file__).parent / "fixtures" / "metrics"


def heartbeat() -> dict[str, str]:
    data: dict[str, str] = json.loads((FIX / "heartbeat-event.json").read_text())
    return data


@pytest.fixture(scope="module")
def with_switches(tmp_path_factory: pytest.TempPathFactory) -> LoadedInventory:
    """inventories/lab with the switch tier on: one switch per zone (x.x.x.14 / .24)."""
    root = tmp_path_factory.mktemp("sw") / "lab"
    shutil.copytree(INVENTORIES / "lab", root)  # the lab has a switch tier
    inv = load_inventory(root)
    assert sum(p.role.value == "switch" for p in inv.nodes()) == 5
    return inv


def test_heartbeat_to_stats_in_base_units() -> None:
    st = stats_from_heartbeat(heartbeat())
    assert (st.sessions, st.sessions_total) == (42, 14960)
    assert st.sessions_per_second == 3  # Session-Per-Sec-Last: measured
    assert st.sessions_per_second_limit == 30  # Session-Per-Sec: the configured limit
    assert st.sessions_limit == 1000
    assert st.idle_cpu_ratio == pytest.approx(0.96733333)
    assert st.uptime_seconds == pytest.approx(183845.006)
    assert st.calls is None and st.calls_total is None
    assert not st.paused


def test_heartbeat_of_an_older_freeswitch_without_the_last_rate() -> None:
    hb = heartbeat()
    del hb["Session-Per-Sec-Last"]
    del hb["Idle-CPU"]
    st = stats_from_heartbeat(hb)
    assert st.sessions_per_second is None and st.idle_cpu_ratio is None


@pytest.mark.parametrize("change", [{"Event-Name": "CHANNEL_CREATE"}, {"Session-Count": ""}])
def test_not_a_usable_heartbeat(change: dict[str, str]) -> None:
    hb = heartbeat() | change
    with pytest.raises(ValueError, match="HEARTBEAT"):
        stats_from_heartbeat(hb)


def _ev(name: str, uuid: str, direction: str = "inbound") -> dict[str, str]:
    return {"Event-Name": name, "Unique-ID": uuid, "Call-Direction": direction}


def test_channel_tally_counts_inbound_channels_once() -> None:
    t = ChannelTally()
    t.feed(_ev("CHANNEL_CREATE", "a1"))
    t.feed(_ev("CHANNEL_CREATE", "b1", "outbound"))  # the switch's leg to the user: same call
    t.feed(_ev("CHANNEL_CREATE", "a2"))
    t.feed(_ev("CHANNEL_CREATE", "a2"))  # duplicate event
    t.feed({"Event-Name": "HEARTBEAT"})
    assert (t.calls, t.calls_total) == (2, 2)
    t.feed(_ev("CHANNEL_HANGUP_COMPLETE", "a1"))
    t.feed(_ev("CHANNEL_DESTROY", "a1"))
    t.feed(_ev("CHANNEL_HANGUP_COMPLETE", "b1", "outbound"))
    assert (t.calls, t.calls_total) == (1, 2)
    st = stats_from_heartbeat(heartbeat(), tally=t)
    assert (st.calls, st.calls_total) == (1, 2)
    t.reset()
    assert (t.calls, t.calls_total) == (0, 0)


QUEUE = QueueStats(account="acme", queue="support", waiting=3, longest_wait_seconds=95.0,
                   answered_total=120, abandoned_total=7,
                   agents={"available": 2, "on_call": 4, "logged_out": 1})


def source_for(stats: dict[str, SwitchStats]):  # type: ignore[no-untyped-def]
    def source(node: PlacedNode) -> SwitchStats:
        if node.name not in stats:
            raise Unreachable(f"no ESL connection to {node.name}")
        return stats[node.name]
    return source


def test_switch_collector(with_switches: LoadedInventory) -> None:
    tally = ChannelTally()
    tally.feed(_ev("CHANNEL_CREATE", "x"))
    paused = SwitchStats(sessions=0, sessions_total=10, paused=True, paused_since=1_790_000_000.0)
    stats = {"lab1-a-switch1": stats_from_heartbeat(heartbeat(), tally=tally, queues=(QUEUE,)),
             "lab1-b-switch1": paused}
    reg = CollectorRegistry()
    c = SwitchCollector(with_switches, source_for(stats), reg)
    a = {"dc": "lab1", "zone": "a", "node": "lab1-a-switch1"}
    b = {"dc": "lab1", "zone": "b", "node": "lab1-b-switch1"}
    g = reg.get_sample_value
    assert g("zpctl_switch_up", a) == 1
    assert g("zpctl_switch_sessions", a) == 42
    assert g("zpctl_switch_sessions_total", a) == 14960
    assert g("zpctl_switch_sessions_per_second", a) == 3
    assert g("zpctl_switch_sessions_per_second_limit", a) == 30
    assert g("zpctl_switch_calls", a) == 1
    assert g("zpctl_switch_calls_total", a) == 1
    assert g("zpctl_switch_paused", a) == 0
    assert g("zpctl_switch_paused_since_timestamp_seconds", a) is None
    assert g("zpctl_switch_paused", b) == 1
    assert g("zpctl_switch_paused_since_timestamp_seconds", b) == 1_790_000_000
    assert g("zpctl_switch_calls", b) is None  # the source did not track calls
    q = a | {"account": "acme", "queue": "support"}
    assert g("zpctl_queue_calls_waiting", q) == 3
    assert g("zpctl_queue_longest_wait_seconds", q) == 95
    assert g("zpctl_queue_calls_answered_total", q) == 120
    assert g("zpctl_queue_calls_abandoned_total", q) == 7
    assert g("zpctl_queue_agents", q | {"status": "on_call"}) == 4
    # lab2's switches have no ESL connection: down, and the collector says it failed
    assert g("zpctl_switch_up", {"dc": "lab2", "zone": "a", "node": "lab2-a-switch1"}) == 0
    assert not c.last_success


def _no_clients() -> Clients:
    def nope(*_: object) -> object:
        raise Unreachable("not in this test")
    return Clients(nope, nope, nope)  # type: ignore[arg-type]


def test_exporter_without_an_esl_source_says_so(with_switches: LoadedInventory,
                                                caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # No ESL password to be had (no secrets file, no environment): no live source.
    monkeypatch.setenv("ZPCTL_SECRETS", "/nonexistent/dir/secrets.yml")
    monkeypatch.delenv("ZPCTL_SECRET_ESL_PASSWORD", raising=False)
    import zpctl.metrics.exporter as exporter_mod  # noqa: PLC0415

    monkeypatch.setattr(exporter_mod, "esl_switch_source", lambda inv: None)
    with caplog.at_level(logging.WARNING, "zpctl.metrics"):
        reg = build_registry(with_switches, _no_clients())
    assert "no ESL source" in caplog.text
    assert "zpctl_switch_up" not in scrape(reg)


def test_exporter_with_a_switch_source(with_switches: LoadedInventory) -> None:
    stats = {p.name: SwitchStats(sessions=1, sessions_total=2) for p in with_switches.nodes()
             if p.role.value == "switch"}
    reg = build_registry(with_switches, _no_clients(),
                         ExporterOptions(switch_source=source_for(stats)))
    assert reg.get_sample_value("zpctl_switch_sessions",
                                {"dc": "lab2", "zone": "b", "node": "lab2-b-switch1"}) == 1
    assert reg.get_sample_value("zpctl_collector_success", {"collector": "switch"}) == 1
