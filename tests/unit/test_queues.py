"""zpctl.freeswitch.queues: mod_callcenter's replies as the real switch prints them."""

from __future__ import annotations

import pytest

from zpctl.errors import RemoteFailure
from zpctl.freeswitch.queues import parse_count, parse_table
from zpctl.model.pbx import callcenter_name, parse_callcenter_name

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
