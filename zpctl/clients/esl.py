"""An asyncio ESL client: a thin transport over the sans-IO codec in zpctl.protocols.esl.

One :class:`EslConnection` per switch: connect and ``auth``, ``api``, ``bgapi`` with Job-UUID
correlation, event subscription and filters, ``sendmsg``, and reconnect with backoff.
:class:`EslPool` holds one connection per switch of an inventory.

How replies are matched: commands are written in order and the codec's FIFO gives each
``command/reply`` / ``api/response`` to the oldest unanswered command; a future per command
sits in a deque beside it.  A command that times out keeps its slot (its late reply is
read and dropped), so the FIFO never slips.  Everything else that arrives - events, log
lines, disconnect notices, possibly between a command and its reply - goes apart:
BACKGROUND_JOB events whose Job-UUID we chose complete that ``bgapi`` call, the rest go to
the event queue and callbacks.  The client always subscribes to BACKGROUND_JOB, and when
it sets filters it also adds ``filter Event-Name BACKGROUND_JOB`` (with a filter on another
header the switch would drop the job events otherwise).

Errors: a refused password, an ACL rejection or an ``-ERR`` answer raise RemoteFailure
(exit 6); a refused or lost connection or a reply that does not come in time raise
Unreachable (exit 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid as uuidlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from zpctl.errors import ExitCode, RemoteFailure, Unreachable, ZpctlError
from zpctl.protocols import esl

log = logging.getLogger(__name__)

EventCallback = Callable[[esl.Event], None]


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial`` doubling up to ``cap``, each +/- ``jitter`` (a fraction)."""

    initial: float = 0.2
    factor: float = 2.0
    cap: float = 15.0
    jitter: float = 0.1

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        delay = self.initial
        while True:
            spread = delay * self.jitter
            yield max(0.0, delay + rng.uniform(-spread, spread))
            delay = min(self.cap, delay * self.factor)


@dataclass
class _Subscription:
    fmt: str = "plain"
    names: list[str] = field(default_factory=list)  # without CUSTOM and its subclasses
    subclasses: list[str] = field(default_factory=list)
    filters: list[tuple[str, str]] = field(default_factory=list)

    def event_command(self) -> esl.Command:
        names = sorted({"BACKGROUND_JOB", *self.names} - {"CUSTOM"})
        if self.subclasses:
            names += ["CUSTOM", *self.subclasses]  # CUSTOM last: every later token is a subclass
        return esl.event(names, self.fmt)


class EslConnection:
    """One inbound ESL connection to a switch."""

    def __init__(self, host: str, port: int, password: str, *, name: str = "",
                 timeout: float = 5.0, reconnect: bool = False, backoff: Backoff = Backoff(),
                 max_queued_events: int = 10000) -> None:
        self.host, self.port, self.password = host, port, password
        self.name = name or f"{host}:{port}"
        self.timeout = timeout
        self.reconnect = reconnect
        self.backoff = backoff
        self.reconnects = 0
        self.dropped_events = 0
        self._sub = _Subscription()
        self._callbacks: list[EventCallback] = []
        self._events: asyncio.Queue[esl.Event] = asyncio.Queue(max_queued_events)
        self._replies: deque[asyncio.Future[esl.CommandReply | esl.ApiResponse]] = deque()
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._conn = esl.ClientConnection()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._greeting: asyncio.Future[esl.ServerEvent] | None = None
        self._up = asyncio.Event()
        self._closing = False
        self.last_disconnect: str | None = None

    def __repr__(self) -> str:
        return f"EslConnection({self.name}, {'up' if self.connected else 'down'})"

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    # -- connecting ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket, wait for ``auth/request``, authenticate, restore subscriptions."""
        self._closing = False
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"switch {self.name}: cannot connect to ESL at "
                              f"{self.host}:{self.port}: {exc or 'timeout'}") from None
        self._conn = esl.ClientConnection()
        self._writer = writer
        loop = asyncio.get_running_loop()
        self._greeting = loop.create_future()
        self._reader_task = asyncio.create_task(self._read_loop(reader), name=f"esl-{self.name}")
        try:
            greeting = await asyncio.wait_for(asyncio.shield(self._greeting), self.timeout)
            if isinstance(greeting, esl.RudeRejection):
                raise RemoteFailure(f"switch {self.name}: ESL access denied by the switch's ACL "
                                    f"(apply-inbound-acl): {greeting.message.strip()}")
            reply = await self._send(esl.auth(self.password))
            if not (isinstance(reply, esl.CommandReply) and reply.ok):
                raise RemoteFailure(f"switch {self.name}: ESL password refused "
                                    f"({_reply_text(reply)}); check the esl_password secret")
            self._up.set()
            await self._apply_subscription()
        except TimeoutError:
            await self._drop()
            raise Unreachable(f"switch {self.name}: no ESL greeting within {self.timeout}s") \
                from None
        except BaseException:  # a ZpctlError, or the caller's deadline cancelled us
            await self._drop()
            raise

    async def close(self) -> None:
        """Say ``exit``, wait briefly for the goodbye, and close; no reconnect after this."""
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        try:
            if self._writer is not None and self.connected:
                with contextlib.suppress(ZpctlError, OSError):
                    await self._send(esl.exit_(), timeout=min(self.timeout, 2.0))
        finally:  # cancelled while saying goodbye (a deadline): still close the socket
            await self._drop()

    async def abort(self) -> None:
        """Close at once, without the ``exit`` goodbye (a deadline passed); no reconnect."""
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        await self._drop()

    async def __aenter__(self) -> EslConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drop(self) -> None:
        self._up.clear()
        # Nobody waits for the greeting any more: a late error set on it by the reader
        # would be logged as "Future exception was never retrieved".
        if self._greeting is not None and not self._greeting.done():
            self._greeting.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
            self._writer = None
        task = self._reader_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._reader_task = None

    # -- commands -------------------------------------------------------------------------

    async def _send(self, cmd: esl.Command, timeout: float | None = None
                    ) -> esl.CommandReply | esl.ApiResponse:
        if self._writer is None:
            raise Unreachable(f"switch {self.name}: not connected")
        try:
            data = self._conn.send(cmd)
        except esl.LocalProtocolError as exc:  # e.g. a newline in a user-given argument
            raise ZpctlError(f"switch {self.name}: cannot send {_shown(cmd.line)!r}: {exc}",
                             ExitCode.USAGE) from None
        fut: asyncio.Future[esl.CommandReply | esl.ApiResponse] = \
            asyncio.get_running_loop().create_future()
        self._replies.append(fut)
        self._writer.write(data)
        try:
            await self._writer.drain()
            return await asyncio.wait_for(asyncio.shield(fut), timeout or self.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            fut.cancel()  # keeps its FIFO slot: the late reply is read and dropped
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise Unreachable(f"switch {self.name}: no reply to {_shown(cmd.line)!r} within "
                              f"{timeout or self.timeout}s") from None
        except (ConnectionError, OSError) as exc:
            raise Unreachable(f"switch {self.name}: connection lost: {exc}") from None

    async def command(self, cmd: esl.Command, *, timeout: float | None = None
                      ) -> esl.CommandReply | esl.ApiResponse:
        """Send any command and return its reply, whatever it says."""
        await self._wait_up()
        return await self._send(cmd, timeout)

    async def api(self, command: str, *, check: bool = True, timeout: float | None = None) -> str:
        """Run ``api <command>``; its output.  ``-ERR``/``-USAGE`` raise RemoteFailure."""
        reply = await self.command(esl.api(command), timeout=timeout)
        text = reply.body if isinstance(reply, esl.ApiResponse) else reply.reply_text
        if check and (not reply.ok):
            raise RemoteFailure(f"switch {self.name}: api {_shown(command)}: {text.strip()}")
        return text

    async def bgapi(self, command: str, *, check: bool = True, timeout: float | None = None,
                    job_uuid: str | None = None) -> str:
        """Run ``bgapi <command>`` and wait for its BACKGROUND_JOB; the job's output."""
        job = job_uuid or str(uuidlib.uuid4())
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._jobs[job] = fut  # registered before sending: the job event cannot be missed
        try:
            reply = await self.command(esl.bgapi(command, job), timeout=timeout)
            if not (isinstance(reply, esl.CommandReply) and reply.ok):
                raise RemoteFailure(f"switch {self.name}: bgapi {_shown(command)}: "
                                    f"{_reply_text(reply)}")
            if reply.job_uuid not in (None, job):
                raise RemoteFailure(f"switch {self.name}: bgapi answered with Job-UUID "
                                    f"{reply.job_uuid}, asked for {job}")
            try:
                out = await asyncio.wait_for(asyncio.shield(fut), timeout or self.timeout)
            except TimeoutError:
                raise Unreachable(f"switch {self.name}: background job {job} "
                                  f"({_shown(command)}) did not finish in "
                                  f"{timeout or self.timeout}s") from None
        finally:
            self._jobs.pop(job, None)
        if check and out.startswith(("-ERR", "-USAGE")):
            raise RemoteFailure(f"switch {self.name}: {_shown(command)}: {out.strip()}")
        return out

    async def _checked(self, cmd: esl.Command) -> str:
        reply = await self.command(cmd)
        text = _reply_text(reply)
        if not reply.ok:
            raise RemoteFailure(f"switch {self.name}: {_shown(cmd.line)}: {text}")
        return text

    async def subscribe(self, names: Iterable[str], fmt: str = "plain") -> None:
        """Listen to events by name; ``CUSTOM`` subclasses as ``sofia::register`` etc."""
        for n in names:
            if "::" in n:
                if n not in self._sub.subclasses:
                    self._sub.subclasses.append(n)
            elif n.upper() not in self._sub.names:
                self._sub.names.append(n.upper())
        self._sub.fmt = fmt
        await self._checked(self._sub.event_command())

    async def add_filter(self, header: str, value: str) -> None:
        """Pass only events matching a filter (``-value`` drops, ``/re/`` is a regex)."""
        if not self._sub.filters and header.lower() != "event-name":
            await self._checked(esl.filter_add("Event-Name", "BACKGROUND_JOB"))
            self._sub.filters.append(("Event-Name", "BACKGROUND_JOB"))
        await self._checked(esl.filter_add(header, value))
        self._sub.filters.append((header, value))

    async def delete_filter(self, header: str, value: str | None = None) -> None:
        await self._checked(esl.filter_delete(header, value))
        self._sub.filters = [f for f in self._sub.filters
                             if not (f[0] == header and (value is None or f[1] == value))
                             and header != "all"]

    async def sendmsg(self, uuid: str, headers: Mapping[str, str] | Sequence[tuple[str, str]],
                      body: bytes = b"") -> None:
        await self._checked(esl.sendmsg(uuid, headers, body))

    async def execute(self, uuid: str, app: str, arg: str = "", *, event_lock: bool = False) -> None:
        """Run dialplan application ``app`` on channel ``uuid`` (sendmsg execute)."""
        await self._checked(esl.execute(uuid, app, arg, event_lock=event_lock))

    async def _apply_subscription(self) -> None:
        await self._checked(self._sub.event_command())
        for header, value in self._sub.filters:
            await self._checked(esl.filter_add(header, value))

    async def _wait_up(self) -> None:
        if self.connected:
            return
        if self._reconnect_task is None or self._closing:
            raise Unreachable(f"switch {self.name}: not connected"
                              + (f" ({self.last_disconnect})" if self.last_disconnect else ""))
        try:
            await asyncio.wait_for(self._up.wait(), self.timeout)
        except TimeoutError:
            raise Unreachable(f"switch {self.name}: still reconnecting after {self.timeout}s") \
                from None

    # -- events -------------------------------------------------------------------------

    def on_event(self, callback: EventCallback) -> None:
        """Call ``callback(event)`` for every event that is not one of our job results."""
        self._callbacks.append(callback)

    async def next_event(self, timeout: float | None = None) -> esl.Event:
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            raise Unreachable(f"switch {self.name}: no event within {timeout}s") from None

    @property
    def queued_events(self) -> int:
        """Events received and not yet taken (they outlive a lost connection)."""
        return self._events.qsize()

    async def events(self) -> AsyncIterator[esl.Event]:
        while True:
            yield await self._events.get()

    # -- the reader -----------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        reason = "connection closed by the switch"
        err_class: type[ZpctlError] = Unreachable
        try:
            while True:
                data = await reader.read(65536)
                self._conn.receive_data(data)
                for ev in self._conn.events():
                    self._dispatch(ev)
                if not data:
                    self._conn.next_event()  # raises if the stream ended inside a frame
                    break
        except esl.RemoteProtocolError as exc:
            reason = f"protocol error from the switch: {exc}"
            err_class = RemoteFailure
            log.warning("switch %s: %s", self.name, reason)
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        self._lost(reason, err_class)

    def _dispatch(self, ev: esl.ServerEvent) -> None:
        if isinstance(ev, esl.CommandReply | esl.ApiResponse):
            fut = self._replies.popleft()
            if not fut.done():
                fut.set_result(ev)
        elif isinstance(ev, esl.AuthRequest | esl.RudeRejection):
            if self._greeting is not None and not self._greeting.done():
                self._greeting.set_result(ev)
        elif isinstance(ev, esl.Event):
            job = ev.job_uuid if ev.name == "BACKGROUND_JOB" else None
            if job is not None and job in self._jobs:
                if not self._jobs[job].done():
                    self._jobs[job].set_result(ev.body)
                return
            for cb in self._callbacks:
                try:
                    cb(ev)
                except Exception:  # a broken callback must not kill the connection
                    log.exception("switch %s: event callback failed", self.name)
            if self._events.full():
                self._events.get_nowait()
                self.dropped_events += 1
            self._events.put_nowait(ev)
        elif isinstance(ev, esl.DisconnectNotice):
            self.last_disconnect = ev.message.strip().splitlines()[0] if ev.message else "goodbye"
        elif isinstance(ev, esl.LogData):
            log.debug("switch %s log: %s", self.name, ev.text.rstrip())

    def _lost(self, reason: str, err_class: type[ZpctlError] = Unreachable) -> None:
        was_up = self.connected
        self._up.clear()
        self.last_disconnect = self.last_disconnect or reason
        err = err_class(f"switch {self.name}: {reason}")
        while self._replies:
            fut = self._replies.popleft()
            if not fut.done():
                fut.set_exception(err)
        for fut2 in self._jobs.values():
            if not fut2.done():
                fut2.set_exception(err)
        if self._greeting is not None and not self._greeting.done():
            self._greeting.set_exception(err)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if was_up and self.reconnect and not self._closing and self._reconnect_task is None:
            self._reconnect_task = asyncio.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        try:
            for delay in self.backoff.delays():
                await asyncio.sleep(delay)
                if self._closing:
                    return
                try:
                    await self.connect()
                except Unreachable as exc:
                    log.info("switch %s: reconnect failed: %s", self.name, exc.message)
                    continue
                except RemoteFailure as exc:  # refused password or ACL: retrying will not help
                    log.error("switch %s: giving up reconnecting: %s", self.name, exc.message)
                    return
                self.reconnects += 1
                self.last_disconnect = None
                log.info("switch %s: reconnected", self.name)
                return
        finally:
            self._reconnect_task = None


def _reply_text(reply: esl.CommandReply | esl.ApiResponse) -> str:
    return (reply.reply_text if isinstance(reply, esl.CommandReply) else reply.body).strip()


def _shown(line: str) -> str:
    """A command for messages: never the password."""
    return "auth ***" if line.lower().startswith("auth") else line


@dataclass(frozen=True)
class SwitchTarget:
    """Where one switch's ESL listens."""

    name: str
    host: str
    port: int
    dc: str = ""
    zone: str = ""


async def listen(t: SwitchTarget, password: str, *, timeout: float, backoff: Backoff,
                 subscribe: Callable[[EslConnection], Awaitable[None]],
                 on_event: EventCallback, say: Callable[[str], None],
                 refused: dict[str, str], reconnects: dict[str, int], verb: str = "watching",
                 on_lost: Callable[[str], None] | None = None,
                 stop: asyncio.Event | None = None) -> None:
    """Hear one switch's events for as long as it runs, and again after it comes back.

    Connect, ``subscribe(conn)`` (events and filters), then hand every event to
    ``on_event``.  A refused or lost connection is tried again after ``backoff``'s delays
    (reset once connected); a refusal that retrying cannot mend (wrong password, ACL) is put
    in ``refused`` and ends this switch's watch.  ``reconnects`` counts the connections
    after the first; ``on_lost`` hears of each loss.  Returns when ``stop`` is set."""
    delays: Iterator[float] | None = None
    ever_up = False

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    while not stopped():
        conn = EslConnection(t.host, t.port, password, name=t.name, timeout=timeout)
        try:
            await conn.connect()
            await subscribe(conn)
        except RemoteFailure as exc:  # wrong password, ACL: retrying will not help
            await conn.close()
            refused[t.name] = exc.message
            say(f"{t.name}: {exc.message}; given up (trying again cannot help)")
            return
        except Unreachable as exc:
            await conn.close()
            delays = delays or backoff.delays()
            delay = next(delays)
            say(f"{t.name}: {exc.message}; trying again in {delay:.1f} s")
            await asyncio.sleep(delay)
            continue
        if ever_up:
            reconnects[t.name] = reconnects.get(t.name, 0) + 1
        say(f"{t.name}: {'reconnected' if ever_up else verb} ({t.host}:{t.port})")
        ever_up, delays = True, None
        try:
            while (conn.connected or conn.queued_events) and not stopped():
                try:
                    ev = await conn.next_event(0.5)
                except Unreachable:
                    continue  # nothing within 0.5 s: look at the connection again
                on_event(ev)
        finally:
            why = conn.last_disconnect or "connection closed"
            await conn.close()
        if stopped():
            return
        if on_lost is not None:
            on_lost(t.name)
        delays = backoff.delays()
        delay = next(delays)
        say(f"{t.name}: lost ({why}); reconnecting in {delay:.1f} s")
        await asyncio.sleep(delay)


class EslPool:
    """One connection per switch; switches that cannot be reached are kept as errors."""

    def __init__(self, targets: Sequence[SwitchTarget], password: str, *, timeout: float = 5.0,
                 reconnect: bool = False) -> None:
        self.targets = list(targets)
        self.password = password
        self.timeout = timeout
        self.reconnect = reconnect
        self.connections: dict[str, EslConnection] = {}
        self.errors: dict[str, ZpctlError] = {}

    async def connect(self) -> None:
        async def one(t: SwitchTarget) -> None:
            conn = EslConnection(t.host, t.port, self.password, name=t.name,
                                 timeout=self.timeout, reconnect=self.reconnect)
            try:
                await conn.connect()
            except ZpctlError as exc:
                self.errors[t.name] = exc
                return
            self.connections[t.name] = conn

        await asyncio.gather(*(one(t) for t in self.targets))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections.values()))

    async def __aenter__(self) -> EslPool:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def get(self, name: str) -> EslConnection:
        if name in self.connections:
            return self.connections[name]
        if name in self.errors:
            raise self.errors[name]
        raise KeyError(name)

    async def api_each(self, command: str, *, check: bool = True) -> dict[str, str | ZpctlError]:
        """``api <command>`` on every connected switch at once; output or error per switch."""
        async def one(name: str, conn: EslConnection) -> tuple[str, str | ZpctlError]:
            try:
                return name, await conn.api(command, check=check)
            except ZpctlError as exc:
                return name, exc

        pairs = await asyncio.gather(*(one(n, c) for n, c in self.connections.items()))
        out: dict[str, str | ZpctlError] = dict(pairs)
        out.update(self.errors)
        return {t.name: out[t.name] for t in self.targets if t.name in out}
