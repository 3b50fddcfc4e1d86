"""The asyncio ESL client against the in-process simulator over real loopback TCP
(127.0.0.1, ephemeral ports): auth, api, bgapi correlation, race events, subscriptions and
filters, sendmsg, timeouts that keep the reply FIFO aligned, reconnect, and the pool."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.fakeswitch import FakeSwitch
from zpctl.clients.esl import Backoff, EslConnection, EslPool, SwitchTarget
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError


def run(body: Callable[[FakeSwitch], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with FakeSwitch("s3cret", **kw) as sw:
            await asyncio.wait_for(body(sw), 10)

    asyncio.run(main())


def conn(sw: FakeSwitch, **kw: Any) -> EslConnection:
    return EslConnection(sw.host, sw.port, "s3cret", name="sw1", timeout=2, **kw)


def test_connect_auth_api_and_exit() -> None:
    async def body(sw: FakeSwitch) -> None:
        async with conn(sw) as c:
            assert c.connected
            out = await c.api("status")
            assert "0 session(s) - peak" in out
            assert await c.api("echo hello") == "hello"
        assert not c.connected
        assert sw.commands[0] == "auth ***"
        assert sw.commands[1] == "event plain BACKGROUND_JOB"
        assert sw.commands[-1] == "exit"
    run(body)


def test_api_error_is_a_remote_failure() -> None:
    async def body(sw: FakeSwitch) -> None:
        async with conn(sw) as c:
            with pytest.raises(RemoteFailure, match="No such channel") as info:
                await c.api("uuid_kill 5c0")
            assert info.value.exit_code == ExitCode.REMOTE_ERROR == 6
            assert (await c.api("uuid_kill 5c0", check=False)) == "-ERR No such channel!\n"
    run(body)


def test_wrong_password_is_remote_failure_and_hides_the_password() -> None:
    async def body(sw: FakeSwitch) -> None:
        c = EslConnection(sw.host, sw.port, "guess", name="sw1", timeout=2)
        with pytest.raises(RemoteFailure, match="password refused") as info:
            await c.connect()
        assert "guess" not in info.value.message
        assert not c.connected
    run(body)


def test_acl_rejection_is_reported_as_such() -> None:
    async def body(sw: FakeSwitch) -> None:
        with pytest.raises(RemoteFailure, match="access denied by the switch's ACL"):
            await conn(sw).connect()
    run(body, allow=("10.200.0.0/16",))


def test_nothing_listening_is_unreachable() -> None:
    async def body(sw: FakeSwitch) -> None:
        port = sw.port
        await sw.stop()
        c = EslConnection("127.0.0.1", port, "s3cret", name="gone", timeout=1)
        with pytest.raises(Unreachable, match="cannot connect") as info:
            await c.connect()
        assert info.value.exit_code == ExitCode.UNREACHABLE == 7
    run(body)


def test_bgapi_jobs_are_matched_by_job_uuid_when_run_concurrently() -> None:
    async def body(sw: FakeSwitch) -> None:
        async with conn(sw) as c:
            words = [f"w{i}" for i in range(20)]
            outs = await asyncio.gather(*(c.bgapi(f"echo {w}") for w in words))
            assert outs == words
            out = await c.bgapi("originate {origination_uuid=abc}user/1001 &park()")
            assert out == "+OK abc\n"
            assert sw.channels["abc"].parked
            with pytest.raises(RemoteFailure, match="USER_BUSY"):
                await c.bgapi("originate error/USER_BUSY &park()")
    run(body, job_delay=0.01)


def test_race_event_between_command_and_reply_goes_to_the_event_queue() -> None:
    async def body(sw: FakeSwitch) -> None:
        async with conn(sw) as c:
            await c.subscribe(["HEARTBEAT"])
            sw.race_next_reply("HEARTBEAT", [("Session-Count", "7")])
            assert await c.api("echo after-the-race") == "after-the-race"
            ev = await c.next_event(1)
            assert (ev.name, ev.get("Session-Count")) == ("HEARTBEAT", "7")
    run(body)


def test_subscription_filters_and_background_jobs_still_arrive() -> None:
    async def body(sw: FakeSwitch) -> None:
        a, _ = sw.inbound_call("1001", "1002", bridge_to="1002")
        other, _ = sw.inbound_call("1003", "1004", bridge_to="1004")
        async with conn(sw) as c:
            await c.subscribe(["CHANNEL_HOLD", "CHANNEL_UNHOLD", "CUSTOM", "zpctl::note"],
                              fmt="json")
            await c.add_filter("Unique-ID", a)
            assert sw.commands[-2:] == ["filter Event-Name BACKGROUND_JOB", f"filter Unique-ID {a}"]
            await c.api(f"uuid_hold {other}")
            await c.api(f"uuid_hold {a}")
            ev = await c.next_event(1)
            assert (ev.name, ev.unique_id, ev.format) == ("CHANNEL_HOLD", a, "json")
            # A bgapi still completes although the filter is on Unique-ID.
            assert await c.bgapi("echo job") == "job"
            await c.delete_filter("all")
            sw.fire("CUSTOM", [("x", "1")], subclass="zpctl::note")
            assert (await c.next_event(1)).subclass == "zpctl::note"
    run(body)


def test_sendmsg_execute_and_hangup_have_effects() -> None:
    async def body(sw: FakeSwitch) -> None:
        a, b = sw.inbound_call("1001", "1002", bridge_to="1002")
        async with conn(sw) as c:
            await c.subscribe(["CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP_COMPLETE"])
            await c.execute(a, "set", "zp_note=hello", event_lock=True)
            ev = await c.next_event(1)
            assert (ev.name, ev.get("Application")) == ("CHANNEL_EXECUTE_COMPLETE", "set")
            assert sw.channels[a].variables["zp_note"] == "hello"
            await c.sendmsg(a, {"call-command": "hangup", "hangup-cause": "CALL_REJECTED"})
            causes = {(await c.next_event(1)).get("Hangup-Cause") for _ in range(2)}
            assert causes == {"CALL_REJECTED"}
            assert a not in sw.channels
            assert b not in sw.channels
            with pytest.raises(RemoteFailure, match="invalid session id"):
                await c.execute(a, "park")
    run(body)


def test_a_newline_in_an_argument_is_refused_before_sending() -> None:
    async def body(sw: FakeSwitch) -> None:
        async with conn(sw) as c:
            with pytest.raises(ZpctlError) as info:
                await c.api("uuid_kill x\nexit")
            assert info.value.exit_code == ExitCode.USAGE
            assert await c.api("echo still-fine") == "still-fine"
    run(body)


def test_timeout_keeps_the_reply_fifo_aligned() -> None:
    """A slow reply times out; the next command must get its own reply, not the late one."""
    async def main() -> None:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"Content-Type: auth/request\n\n")
            n = 0
            while line := await r.readuntil(b"\n\n"):
                n += 1
                cmd = line.decode().strip()
                if cmd.startswith("api echo "):
                    word = cmd[len("api echo "):]
                    if word == "slow":
                        await asyncio.sleep(0.4)
                    body = word.encode()
                    w.write(b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body)
                            + body)
                else:
                    w.write(b"Content-Type: command/reply\nReply-Text: +OK\n\n")
                await w.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        c = EslConnection("127.0.0.1", port, "x", timeout=0.2)
        await c.connect()
        with pytest.raises(Unreachable, match="no reply"):
            await c.api("echo slow")
        assert await c.api("echo fast", timeout=2) == "fast"
        await c.close()
        server.close()

    asyncio.run(main())


def test_protocol_error_from_the_switch_fails_pending_commands() -> None:
    async def main() -> None:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"Content-Type: auth/request\n\n")
            await r.readuntil(b"\n\n")
            w.write(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
            await r.readuntil(b"\n\n")
            w.write(b"Content-Type: command/reply\nReply-Text: +OK\n\n")
            await r.readuntil(b"\n\n")
            w.write(b"Content-Type: api/response\nContent-Length: -5\n\n")
            await w.drain()
            await asyncio.sleep(1)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        c = EslConnection("127.0.0.1", server.sockets[0].getsockname()[1], "x", timeout=2)
        await c.connect()
        with pytest.raises(RemoteFailure, match=r"protocol error.*Content-Length"):
            await c.api("status")
        assert not c.connected
        await c.close()
        server.close()

    asyncio.run(main())


def test_reconnect_with_backoff_restores_subscriptions_and_filters() -> None:
    async def body(sw: FakeSwitch) -> None:
        c = conn(sw, reconnect=True, backoff=Backoff(initial=0.05, cap=0.2))
        await c.connect()
        await c.subscribe(["HEARTBEAT"])
        await c.add_filter("Event-Name", "HEARTBEAT")
        await sw.drop_connections()
        for _ in range(100):
            if c.reconnects:
                break
            await asyncio.sleep(0.02)
        assert c.reconnects == 1
        assert c.connected
        assert sw.commands[-2:] == ["event plain BACKGROUND_JOB HEARTBEAT",
                                    "filter Event-Name HEARTBEAT"]
        sw.heartbeat()
        assert (await c.next_event(1)).name == "HEARTBEAT"
        assert await c.api("echo back") == "back"
        await c.close()
    run(body)


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    delays = Backoff(initial=0.5, factor=2, cap=4, jitter=0.1).delays(random.Random(1))
    got = [next(delays) for _ in range(6)]
    for d, nominal in zip(got, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert nominal * 0.9 <= d <= nominal * 1.1


def test_pool_over_several_switches_keeps_unreachable_ones_as_errors() -> None:
    async def main() -> None:
        async with FakeSwitch("pw", hostname="a") as s1, FakeSwitch("pw", hostname="b") as s2:
            s2.inbound_call("1001", "1002")
            dead = FakeSwitch("pw")
            await dead.start()
            dead_port = dead.port
            await dead.stop()
            targets = [SwitchTarget("sw-a", s1.host, s1.port), SwitchTarget("sw-b", s2.host, s2.port),
                       SwitchTarget("sw-dead", "127.0.0.1", dead_port)]
            async with EslPool(targets, "pw", timeout=1) as pool:
                out = await pool.api_each("show calls count as json")
                assert list(out) == ["sw-a", "sw-b", "sw-dead"]
                assert out["sw-a"] == '{"row_count": 0}\n'
                assert out["sw-b"] == '{"row_count": 1}\n'
                assert isinstance(out["sw-dead"], Unreachable)
                with pytest.raises(Unreachable):
                    pool.get("sw-dead")
                assert pool.get("sw-a").connected

    asyncio.run(main())
