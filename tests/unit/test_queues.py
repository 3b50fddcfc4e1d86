"""zpctl.freeswitch.queues: mod_callcenter's replies as the real switch prints them."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from zpctl.clients.esl import EslConnection
from zpctl.errors import RemoteFailure
from zpctl.freeswitch.queues import (
    Agent,
    CallcenterSnapshot,
    Member,
    QueueRef,
    Tier,
    parse_count,
    parse_queue,
    parse_table,
    queue_commands,
    queue_states,
    read_snapshot,
    snapshot_commands,
)
from zpctl.model.pbx import Queue, QueueAgent, callcenter_name, parse_callcenter_name

# `callcenter_config queue list agents <queue>` from the lab's FreeSWITCH 1.11.2-dev (an
# agent's contact is a dial string with '|' between its legs; columns cut after state).
AGENTS = (
    "name|instance_id|uuid|type|contact|status|state|max_no_answer\n"
    "1002@acme.lab.zpctl.test|single_box||callback|[leg_timeout=15]sofia/zpctl/1002@a"
    "|[leg_timeout=15]sofia/zpctl/1002@b|Available|Waiting|3\n"
    "1004@acme.lab.zpctl.test|single_box||callback|user/1004@a|On Break|Idle|3\n"
    "+OK\n")


def test_agents_table_keeps_a_contact_with_pipes_whole() -> None:
    rows = parse_table(AGENTS)
    assert [r["name"] for r in rows] == ["1002@acme.lab.zpctl.test", "1004@acme.lab.zpctl.test"]
    assert rows[0]["contact"] == ("[leg_timeout=15]sofia/zpctl/1002@a|"
                                  "[leg_timeout=15]sofia/zpctl/1002@b")
    assert (rows[0]["status"], rows[0]["state"]) == ("Available", "Waiting")
    assert (rows[1]["status"], rows[1]["state"]) == ("On Break", "Idle")


def test_empty_table_and_errors() -> None:
    assert parse_table("+OK\n") == []
    with pytest.raises(RemoteFailure, match="mod_callcenter"):
        parse_table("-ERR callcenter_config Command not found!\n", "sw1", "queue list")
    assert parse_count("3\n") == 3
    with pytest.raises(RemoteFailure, match="sw1"):
        parse_count("-ERR Invalid!", "sw1", "queue count members")


def test_callcenter_name_and_its_inverse() -> None:
    name = callcenter_name("support", "acme.lab.zpctl.test")
    assert name == "support@acme.lab.zpctl.test"
    assert parse_callcenter_name(name) == ("support", "acme.lab.zpctl.test")
    assert parse_callcenter_name("orphan") == ("orphan", "")


# The other replies of a snapshot, in mod_callcenter's formats (header columns as its
# `callcenter_config` prints them; rows made up for the cases below).
Q = "support@acme.lab.zpctl.test"
QUEUE_LIST = (
    "name|strategy|moh_sound|time_base_score|tier_rules_apply|tier_rule_wait_second|"
    "tier_rule_wait_multiply_level|tier_rule_no_agent_no_wait|discard_abandoned_after|"
    "abandoned_resume_allowed|max_wait_time|max_wait_time_with_no_agent|"
    "max_wait_time_with_no_agent_time_reached|record_template|calls_answered|"
    "calls_abandoned|ring_progressively_delay\n"
    f"{Q}|ring-all|local_stream://default|system|false|0|false|true|60|false|600|0|5||7|2|10\n"
    "sales@beta.example|top-down|local_stream://default|system|false|0|false|true|60|false"
    "|600|0|5||0|0|10\n"
    "+OK\n")
MEMBERS = (
    "queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|"
    "rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|"
    "serving_system|state|score\n"
    f"{Q}|single_box|m1|s1|1001|Alice|1700000000|1700000000|0|0|0|0|0|||Waiting|100\n"
    f"{Q}|single_box|m2|s2|1003|Carol|1700000040|1700000040|0|1700000060|0|0|0|"
    "1002@acme.lab.zpctl.test|single_box|Answered|60\n"
    "+OK\n")
TIERS = ("queue|agent|state|level|position\n"
         f"{Q}|1002@acme.lab.zpctl.test|Ready|1|1\n"
         "+OK\n")


class _Conn:
    """An ESL connection's ``api``, answering from ``replies`` and noting each command."""

    def __init__(self, replies: dict[str, str], name: str = "sw1") -> None:
        self.replies = replies
        self.name = name
        self.sent: list[str] = []

    async def api(self, command: str, *, check: bool = True) -> str:
        self.sent.append(command)
        return self.replies.get(command, "-ERR callcenter_config Command not found!\n")


def _replies(name: str = Q, count: str = "2\n") -> dict[str, str]:
    return {"callcenter_config queue list": QUEUE_LIST,
            f"callcenter_config queue count members {name}": count,
            f"callcenter_config queue list members {name}": MEMBERS,
            f"callcenter_config queue list tiers {name}": TIERS,
            f"callcenter_config queue list agents {name}": AGENTS}


def _snapshot(conn: _Conn, names: list[str] | None = None) -> CallcenterSnapshot:
    return asyncio.run(read_snapshot(cast(EslConnection, conn), names))


def test_parse_queue_types_every_reply() -> None:
    row = parse_table(QUEUE_LIST)[0]
    replies = [_replies()[c] for c in queue_commands(Q)]
    q = parse_queue(row, replies, "sw1")
    assert (q.name, q.strategy, q.answered, q.abandoned, q.member_count) == (
        Q, "ring-all", 7, 2, 2)
    assert q.members == (Member("Waiting", 1700000000.0), Member("Answered", 1700000040.0))
    assert q.tiers == (Tier("1002@acme.lab.zpctl.test", "Ready"),)
    assert q.agents == (Agent("1002@acme.lab.zpctl.test", "Available", "Waiting", 0),
                        Agent("1004@acme.lab.zpctl.test", "On Break", "Idle", 0))


def test_parse_queue_refuses_a_cell_that_is_not_a_number() -> None:
    row = dict(parse_table(QUEUE_LIST)[0], calls_answered="many")
    with pytest.raises(RemoteFailure, match=r"sw1.*calls_answered is not a number"):
        parse_queue(row, [_replies()[c] for c in queue_commands(Q)], "sw1")
    members = MEMBERS.replace("|1700000000|0|0|0|", "|soon|0|0|0|", 1)
    with pytest.raises(RemoteFailure, match="joined_epoch is not a number"):
        parse_queue(parse_table(QUEUE_LIST)[0], ["2", members, TIERS, AGENTS], "sw1")


def test_read_snapshot_sends_the_planned_commands_for_the_queues_asked() -> None:
    conn = _Conn(_replies())
    snap = _snapshot(conn, [Q, "nosuch@acme.lab.zpctl.test"])
    assert conn.sent == snapshot_commands([Q])  # a queue the switch lacks: nothing asked
    assert snap.switch == "sw1"
    assert [q.name for q in snap.queues] == [Q]
    assert snap.get("nosuch@acme.lab.zpctl.test") is None


def test_read_snapshot_of_every_queue_and_its_errors() -> None:
    replies = _replies() | {k.replace(Q, "sales@beta.example"): v.replace(Q, "sales@beta.example")
                            for k, v in _replies().items() if k.endswith(Q)}
    conn = _Conn(replies)
    assert [q.name for q in _snapshot(conn).queues] == [Q, "sales@beta.example"]
    assert conn.sent == snapshot_commands([Q, "sales@beta.example"])
    with pytest.raises(RemoteFailure, match="mod_callcenter loaded"):
        _snapshot(_Conn({}))
    with pytest.raises(RemoteFailure, match="queue count members"):
        _snapshot(_Conn(_replies(count="-ERR Invalid!\n")), [Q])


def _ref(*users: str) -> QueueRef:
    queue = Queue(id="support", name="Support", extension="8600", site="hq",
                  agents=[QueueAgent(user=u) for u in users])
    return QueueRef("acme", queue, "acme.lab.zpctl.test", "lab1")


def test_queue_states_names_every_inventory_agent_in_or_out() -> None:
    snap = _snapshot(_Conn(_replies()), [Q])
    (state,) = queue_states([_ref("1002", "1004", "1005")], snap)
    assert state.as_dict() == {
        "account": "acme", "queue": "support", "extension": "8600", "strategy": "ring-all",
        # one Waiting member; the Answered one talks with an agent (queue count members: 2)
        "waiting": 1, "answered": 7, "abandoned": 2, "switch": "sw1",
        "agents": [
            {"agent": "1002", "opted_in": True, "tier_state": "Ready", "status": "Available",
             "state": "Waiting", "calls_answered": 0},
            # an agent row without a tier (as the switch may print): still opted out
            {"agent": "1004", "opted_in": False, "tier_state": "", "status": "On Break",
             "state": "Idle", "calls_answered": 0},
            {"agent": "1005", "opted_in": False, "tier_state": "", "status": "", "state": "",
             "calls_answered": 0}]}
    with pytest.raises(RemoteFailure, match=r"sw1 has no queue support@other\.example"):
        queue_states([QueueRef("acme", _ref("1002").queue, "other.example", "lab1")], snap)
