"""The asyncio ESL client against a scripted ESL peer over real loopback TCP (127.0.0.1,
ephemeral ports): auth, api, bgapi correlation, race events, subscriptions and filters,
sendmsg framing, timeouts that keep the reply FIFO aligned, reconnect, and the pool.  The
peer answers with what a real switch said (tests/unit/fixtures/esl); the client against
the lab's real switches is tests/integration/test_call_control.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.esl_peer import EslPeer, recorded, recorded_events
from zpctl.clients.esl import Backoff, EslConnection, EslPool, SwitchTarget
from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError

# What the peer answers in these tests: a real switch's words, and an echo for correlation.
ANSWERS = {"status": recorded("status-idle"), "echo": lambda args: args,
           "uuid_kill 5c0": recorded("uuid-kill-unknown"),
           "uuid_hold": recorded("uuid-hold")}


def run(body: Callable[[EslPeer], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with EslPeer("s3cret", answers=ANSWERS, **kw) as sw:
            await asyncio.wait_for(body(sw), 10)

    asyncio.run(main())


def conn(sw: EslPeer, **kw: Any) -> EslConnection:
    return EslConnection(sw.host, sw.port, "s3cret", name="sw1", timeout=2, **kw)


def test_connect_auth_api_and_exit() -> None:
    async def body(sw: EslPeer) -> None:
        async with conn(sw) as c:
            assert c.connected
            out = await c.api("status")
            assert out == recorded("status-idle")
            assert await c.api("echo hello") == "hello"
        assert not c.connected
        assert sw.commands[0] == "auth ***"
        assert sw.commands[1] == "event plain BACKGROUND_JOB"
        assert sw.commands[-1] == "exit"
    run(body)


def test_api_error_is_a_remote_failure() -> None:
    async def body(sw: EslPeer) -> None:
        async with conn(sw) as c:
            with pytest.raises(RemoteFailure, match="No such channel") as info:
                await c.api("uuid_kill 5c0")
            assert info.value.exit_code == ExitCode.REMOTE_ERROR == 6
            assert (await c.api("uuid_kill 5c0", check=False)) == recorded("uuid-kill-unknown")
    run(body)


def test_wrong_password_is_remote_failure_and_hides_the_password() -> None:
    async def body(sw: EslPeer) -> None:
        c = EslConnection(sw.host, sw.port, "guess", name="sw1", timeout=2)
        with pytest.raises(RemoteFailure, match="password refused") as info:
            await c.connect()
        assert "guess" not in info.value.message
        assert not c.connected
    run(body)


def test_acl_rejection_is_reported_as_such() -> None:
    async def body(sw: EslPeer) -> None:
        with pytest.raises(RemoteFailure, match="access denied by the switch's ACL"):
            await conn(sw).connect()
    run(body, allow=("10.200.0.0/16",))


def test_nothing_listening_is_unreachable() -> None:
    async def body(sw: EslPeer) -> None:
        port = sw.port
        await sw.stop()
        c = EslConnection("127.0.0.1", port, "s3cret", name="gone", timeout=1)
        with pytest.raises(Unreachable, match="cannot connect") as info:
            await c.connect()
        assert info.value.exit_code == ExitCode.UNREACHABLE == 7
    run(body)


def test_bgapi_jobs_are_matched_by_job_uuid_when_run_concurrently() -> None:
    async def body(sw: EslPeer) -> None:
        async with conn(sw) as c:
            words = [f"w{i}" for i in range(20)]
            outs = await asyncio.gather(*(c.bgapi(f"echo {w}") for w in words))
            assert outs == words
            # A job that fails says so in its BACKGROUND_JOB body (-ERR ...).
            sw.answers["originate"] = "-ERR USER_BUSY\n"
            with pytest.raises(RemoteFailure, match="USER_BUSY"):
                await c.bgapi("originate user/1001 &park()")
    run(body, job_delay=0.01)


def test_race_event_between_command_and_reply_goes_to_the_event_queue() -> None:
    async def body(sw: EslPeer) -> None:
        async with conn(sw) as c:
            await c.subscribe(["HEARTBEAT"])
            sw.race_next_reply("HEARTBEAT", [("Session-Count", "7")])
            assert await c.api("echo after-the-race") == "after-the-race"
            ev = await c.next_event(1)
            assert (ev.name, ev.get("Session-Count")) == ("HEARTBEAT", "7")
    run(body)


def test_subscription_filters_and_background_jobs_still_arrive() -> None:
    hold = next(e for e in recorded_events() if e.name == "CHANNEL_HOLD")

    async def body(sw: EslPeer) -> None:
        async with conn(sw) as c:
            await c.subscribe(["CHANNEL_HOLD", "CHANNEL_UNHOLD", "CUSTOM", "zpctl::note"],
                              fmt="json")
            await c.add_filter("Unique-ID", "ours")
            assert sw.commands[-2:] == ["filter Event-Name BACKGROUND_JOB", "filter Unique-ID ours"]
            sw.replay(hold, Unique_ID="theirs")  # filtered out
            sw.replay(hold, Unique_ID="ours")
            ev = await c.next_event(1)
            assert (ev.name, ev.unique_id, ev.format) == ("CHANNEL_HOLD", "ours", "json")
            assert ev.get("Channel-Call-State") == hold.get("Channel-Call-State")
            # A bgapi still completes although the filter is on Unique-ID.
            assert await c.bgapi("echo job") == "job"
            await c.delete_filter("all")
            sw.fire("CUSTOM", [("x", "1")], subclass="zpctl::note")
            assert (await c.next_event(1)).subclass == "zpctl::note"
    run(body)


def test_sendmsg_frames_execute_and_hangup_as_the_protocol_says() -> None:
    """What the session then does is FreeSWITCH's (the lab's switches); here: the frames."""
    async def body(sw: EslPeer) -> None:
        async with conn(sw) as c:
            await c.execute("a-uuid", "set", "zp_note=hello", event_lock=True)
            await c.sendmsg("a-uuid", {"call-command": "hangup", "hangup-cause": "CALL_REJECTED"})
        assert sw.commands[-3:-1] == ["sendmsg a-uuid", "sendmsg a-uuid"]
        frames = [f for f in sw.frames if f.line == "sendmsg a-uuid"]
        execute, hangup = (dict(f.headers) for f in frames)
        assert execute["call-command"] == "execute"
        assert (execute["execute-app-name"], execute["execute-app-arg"]) == ("set", "zp_note=hello")
        assert execute["event-lock"] == "true"
        assert hangup == {"call-command": "hangup", "hangup-cause": "CALL_REJECTED"}
    run(body)


def test_a_newline_in_an_argument_is_refused_before_sending() -> None:
    async def body(sw: EslPeer) -> None:
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
    async def body(sw: EslPeer) -> None:
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
        sw.replay(next(e for e in recorded_events() if e.name == "HEARTBEAT"))
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
        async with EslPeer("pw", hostname="a", answers={"show": recorded("show-calls-idle")}) \
                as s1, EslPeer("pw", hostname="b", answers={"show": recorded("show-calls-call")}) \
                as s2:
            dead = EslPeer("pw")
            await dead.start()
            dead_port = dead.port
            await dead.stop()
            targets = [SwitchTarget("sw-a", s1.host, s1.port), SwitchTarget("sw-b", s2.host, s2.port),
                       SwitchTarget("sw-dead", "127.0.0.1", dead_port)]
            async with EslPool(targets, "pw", timeout=1) as pool:
                out = await pool.api_each("show calls as json")
                assert list(out) == ["sw-a", "sw-b", "sw-dead"]
                assert out["sw-a"] == recorded("show-calls-idle")
                assert out["sw-b"] == recorded("show-calls-call")
                assert isinstance(out["sw-dead"], Unreachable)
                with pytest.raises(Unreachable):
                    pool.get("sw-dead")
                assert pool.get("sw-a").connected

    asyncio.run(main())
