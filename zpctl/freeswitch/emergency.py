"""Emergency-call notices: from the zone proxies, through the switches, to each account's
security desk (docs/EMERGENCY.md, "The security desk's notice").

How it works: an emergency call never goes through a switch (it must get out even when
every switch is at its session limit).  As a zone proxy sends one to its SBC, it also sends
a SIP MESSAGE to ``zp-emergency`` at one switch of its zone and one of the sister zone, with
a JSON body (:class:`Notice`).  A MESSAGE creates no session, so a full switch still takes
it; the switches' profile fires a ``RECV_MESSAGE`` event for it (``fire-message-events``),
and :func:`parse_event` turns that event into a notice.

:func:`watch` holds one ESL connection per switch (reconnecting with a growing delay) and
hands each notice to a :class:`Notifier`.  The notifier writes it to its :class:`Spool`, a
sqlite file, before anything else, once per Call-ID (both switches relay the same call),
then posts :func:`payload` to the account's ``security_desk.webhook``.  A desk that is down,
times out or answers 5xx, 408 or 429 is tried again after 1 s, 2 s, 4 s ... up to 60 s
between attempts, for up to 24 h (:class:`RetryPolicy`); any other answer fails the notice
(it stays in the spool, with the reason).  Delivery is at least once: a notice whose post
was cut short by a restart is posted again, with the same ``X-ZP-Delivery`` key.  A new
notifier on the same spool resumes every pending notice.  Nothing here prints: the caller
gets a :class:`Report` per notice event and a line per connection change.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import json
import logging
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

from zpctl.clients.esl import Backoff, EslConnection, SwitchTarget, listen
from zpctl.errors import EnvironmentProblem, Unreachable
from zpctl.freeswitch.control import Step
from zpctl.model import emergency
from zpctl.model.schema import Inventory
from zpctl.protocols import esl

log = logging.getLogger(__name__)

# What the proxies send: the MESSAGE's To (and Request-URI) user, and its Content-Type.
NOTICE_USER = "zp-emergency"
MAX_EPOCH = 4_102_444_800  # 2100-01-01: a notice's time beyond it is not a time
NOTICE_TYPE = "application/json"
EVENT = "RECV_MESSAGE"
# The RECV_MESSAGE headers read here (sofia_presence_handle_sip_i_message): the To user,
# the Content-Type ("type", text/plain when the MESSAGE had none); the body is the event's.
TO_USER_HEADER = "to_user"
TYPE_HEADER = "type"
# The spool's file name, in the lab's state folder or the platform's paths.state_dir.
SPOOL_FILE = "emergency-notices.sqlite"
# The notice's event name in the payload, and the request headers of each post.
PAYLOAD_EVENT = "emergency_call"
EVENT_HEADER = "X-ZP-Event"
EVENT_HEADER_VALUE = "emergency-call"
DELIVERY_HEADER = "X-ZP-Delivery"
USER_AGENT = "zpctl-emergency-notifier"

State = Literal["pending", "delivered", "failed"]
STATES: tuple[State, ...] = ("pending", "delivered", "failed")
SPOOL_COLUMNS = ["call", "received", "account", "site", "user", "state", "attempts",
                 "last_error"]


class BadNotice(ValueError):
    """A MESSAGE to ``zp-emergency`` whose body is not a notice (a proxy's bug)."""


# --- the notice ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    """One emergency call, as the proxy that routed it told a switch."""

    call_id: str
    account: str  # the account's id
    site: str  # "<account id>/<site id>" (emergency.site_key)
    user: str  # the caller's extension
    domain: str  # the caller's SIP domain
    number: str  # what the caller dialled
    country: str  # the country whose emergency services take the call
    callback: str  # the callback number the call carried ("" when none)
    at: int  # when the proxy routed it, epoch seconds
    proxy: str  # the zone proxy's node name
    switch: str = ""  # the switch that relayed it (not in the MESSAGE's body)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def site_id(self) -> str:
        """The site's id inside its account (the notice carries "<account>/<site>")."""
        return self.site.partition("/")[2] if "/" in self.site else self.site

    @classmethod
    def from_body(cls, body: str, switch: str = "", *, default_at: int | None = None) -> Notice:
        """A notice from the MESSAGE's JSON body; BadNotice when it is not one.  Fields
        other than ``call_id`` that are missing are left empty (a notice is never dropped
        for what it lacks); ``at`` falls back to ``default_at`` (the event's time)."""
        try:
            doc = json.loads(body)
        except ValueError as exc:
            try:  # the proxy escapes a ' in a Call-ID as \' (Kamailio's s.escape.common)
                doc = json.loads(body.replace("\\'", "'"))
            except ValueError:
                raise BadNotice(f"the body is not JSON ({exc}): {body[:120]!r}") from None
        if not isinstance(doc, dict):
            raise BadNotice(f"the body is not a JSON object: {body[:120]!r}")
        call_id = _text(doc.get("call_id"))
        if not call_id:
            raise BadNotice(f"no call_id in the notice: {body[:200]!r}")
        at = doc.get("at")
        try:
            when = int(float(at)) if isinstance(at, int | float | str) and at != "" else None
        except (ValueError, OverflowError):
            when = None
        if when is not None and not 0 < when < MAX_EPOCH:
            when = None
        if when is None:
            when = default_at if default_at is not None else int(time.time())
        return cls(call_id=call_id[:512], account=_text(doc.get("account")),
                   site=_text(doc.get("site")), user=_text(doc.get("user")),
                   domain=_text(doc.get("domain")), number=_text(doc.get("number")),
                   country=_text(doc.get("country")), callback=_text(doc.get("callback")),
                   at=when, proxy=_text(doc.get("proxy")), switch=switch)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Notice:
        """A notice as :meth:`as_dict` wrote it (the spool's copy)."""
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def parse_event(ev: esl.Event, switch: str = "") -> Notice | None:
    """The notice a ``RECV_MESSAGE`` event carries, or None for any other event or message
    (another To user).  BadNotice for a MESSAGE to ``zp-emergency`` that is not a notice,
    or one that did not come from a proxy: the proxies send it out of any dialog, from
    ``zp-emergency``; a MESSAGE inside a call (the event then carries the channel's data)
    is a phone's, forged."""
    if ev.name != EVENT or (ev.get(TO_USER_HEADER) or "") != NOTICE_USER:
        return None
    if ev.get("Unique-ID") or (ev.get("from_user") or "") != NOTICE_USER:
        raise BadNotice(f"a MESSAGE to {NOTICE_USER} from {ev.get('from_user')!r}"
                        f"{' inside call ' + str(ev.get('Unique-ID')) if ev.get('Unique-ID') else ''}:"
                        " not a proxy's notice, ignored")
    kind = (ev.get(TYPE_HEADER) or "").split(";")[0].strip().lower()
    if kind and kind != NOTICE_TYPE:
        # Read anyway: a notice sent with the wrong Content-Type is still an emergency call.
        log.warning("switch %s: a %s MESSAGE has Content-Type %s, not %s", switch, NOTICE_USER,
                    kind, NOTICE_TYPE)
    micros = ev.get("Event-Date-Timestamp") or ""
    default_at = int(micros) // 1_000_000 if micros.isdigit() else None
    return Notice.from_body(ev.body, switch, default_at=default_at)


# --- the payload -----------------------------------------------------------------------------

def iso_utc(epoch: float) -> str:
    """``2026-03-01T14:05:09Z``."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")


def payload(notice: Notice, inv: Inventory) -> dict[str, Any]:
    """What the security desk is posted: the notice with names and the site's address from
    the inventory.  What the inventory does not know (a removed site or user) is null."""
    account = inv.account(notice.account)
    user = account.user(notice.user) if account else None
    site_id = notice.site_id or (user.site if user else "")
    site = account.site(site_id) if account else None
    return {
        "event": PAYLOAD_EVENT,
        "call_id": notice.call_id,
        "at": iso_utc(notice.at),
        "account": {"id": notice.account, "name": account.name if account else None},
        "site": {"id": site_id or None, "name": site.name if site else None,
                 "location": emergency.location(site) if site else None},
        "user": {"extension": notice.user or None, "name": user.name if user else None},
        "number": notice.number,
        "country": notice.country or (site.country if site else ""),
        "callback": notice.callback or None,
        "switch": notice.switch,
    }


def webhook(inv: Inventory, account_id: str) -> tuple[str | None, str]:
    """The account's security-desk webhook, or None and why there is none."""
    account = inv.account(account_id)
    if account is None:
        return None, (f"account {account_id!r} is not in the inventory: no security desk to "
                      "notify" if account_id else "the notice names no account")
    if account.security_desk is None:
        return None, (f"account {account_id} has no security_desk.webhook in the inventory: "
                      "nobody to notify")
    return account.security_desk.webhook, ""


# --- delivery ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """When to post again: ``initial`` doubling to ``cap`` seconds, for ``give_up_after``
    seconds after the notice arrived; each post waits ``timeout`` seconds for the desk."""

    initial: float = 1.0
    cap: float = 60.0
    give_up_after: float = 24 * 3600.0
    timeout: float = 5.0

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed post (1, 2, 3 ...)."""
        return float(min(self.cap, self.initial * 2.0 ** min(max(attempts - 1, 0), 60)))


@dataclass(frozen=True)
class PostResult:
    """How one post went: delivered, worth another try, or failed for good."""

    ok: bool
    retry: bool
    status: int | None = None
    error: str = ""
    retry_after: float | None = None  # the desk's Retry-After, in seconds


def retryable(status: int) -> bool:
    """A status worth posting again: the desk is overloaded or broken (5xx, 408, 429)."""
    return status >= 500 or status in (408, 429)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is: following it would turn the POST into a GET."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> None:
        return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def post_json(url: str, body: bytes, call_id: str, timeout: float = 5.0) -> PostResult:
    """POST ``body`` (JSON) to ``url``: blocking, for a worker thread."""
    req = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 - http(s) only (schema)
        "Content-Type": "application/json", EVENT_HEADER: EVENT_HEADER_VALUE,
        DELIVERY_HEADER: call_id, "User-Agent": USER_AGENT})
    try:
        # An opener per post: the proxy settings ($https_proxy, $no_proxy) of now.
        with urllib.request.build_opener(_NoRedirect()).open(req, timeout=timeout) as resp:
            resp.read(65536)
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        detail = ""
        with contextlib.suppress(OSError, http.client.HTTPException):
            detail = exc.read(300).decode("utf-8", "replace").strip()
        text = f"HTTP {status} {exc.reason}" + (f": {detail}" if detail else "")
        if 300 <= status < 400:
            text += f" (redirected to {exc.headers.get('Location')}: set the webhook to it)"
        return PostResult(False, retryable(status), status, text,
                          _retry_after(exc.headers.get("Retry-After")))
    except urllib.error.URLError as exc:
        return PostResult(False, True, None, f"cannot reach {url}: {exc.reason}")
    except TimeoutError:
        return PostResult(False, True, None, f"{url}: no answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:  # reset, closed without an answer
        return PostResult(False, True, None, f"{url}: {exc!r}")
    except ValueError as exc:  # not a URL urllib can post to
        return PostResult(False, False, None, f"{url}: {exc}")
    if 200 <= status < 300:
        return PostResult(True, False, status)
    return PostResult(False, retryable(status), status, f"HTTP {status}")


# --- the spool -----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notices (
    call_id      TEXT PRIMARY KEY,
    received     REAL NOT NULL,     -- when the first switch relayed it (epoch seconds)
    account      TEXT NOT NULL,
    site         TEXT NOT NULL,     -- "<account>/<site>"
    user         TEXT NOT NULL,
    switch       TEXT NOT NULL,     -- the first switch that relayed it
    relays       INTEGER NOT NULL DEFAULT 1,
    notice       TEXT NOT NULL,     -- the notice, JSON
    payload      TEXT NOT NULL,     -- what is posted, JSON
    webhook      TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    last_error   TEXT NOT NULL DEFAULT '',
    status       INTEGER,           -- the desk's last HTTP status
    done_at      REAL               -- delivered or failed at
);
CREATE INDEX IF NOT EXISTS notices_due ON notices (state, next_attempt);
"""
SPOOL_VERSION = 1


@dataclass(frozen=True)
class SpoolRow:
    """One notice in the spool."""

    call_id: str
    received: float
    account: str
    site: str
    user: str
    switch: str
    relays: int
    notice: str
    payload: str
    webhook: str
    state: State
    attempts: int
    next_attempt: float | None
    last_error: str
    status: int | None
    done_at: float | None

    def as_dict(self) -> dict[str, Any]:
        """For ``emergency ls``: times as ISO 8601, the payload as data."""
        return {"call": self.call_id, "received": iso_utc(self.received),
                "account": self.account, "site": self.site, "user": self.user,
                "state": self.state, "attempts": self.attempts, "last_error": self.last_error,
                "switch": self.switch, "relays": self.relays, "webhook": self.webhook,
                "status": self.status,
                "next_attempt": iso_utc(self.next_attempt)
                if self.state == "pending" and self.next_attempt is not None else None,
                "done_at": iso_utc(self.done_at) if self.done_at is not None else None,
                "payload": json.loads(self.payload)}


class Spool:
    """The notices received, in a sqlite file (0600: names and addresses of people): each
    is committed before it is posted, so a crash loses none."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not create and not path.exists():
            raise EnvironmentProblem(f"no spool at {path}")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
            self.db = sqlite3.connect(path, timeout=10.0)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA synchronous = FULL")
            if create:
                with self.db:
                    self.db.executescript(_SCHEMA)
                    self.db.execute(f"PRAGMA user_version = {SPOOL_VERSION}")
            else:
                self.db.execute("SELECT 1 FROM notices LIMIT 1")
        except (OSError, sqlite3.Error) as exc:
            raise EnvironmentProblem(f"cannot open the emergency notice spool {path}: {exc} "
                                     "(give another with --spool)") from None

    def close(self) -> None:
        self.db.close()

    def broken(self, exc: Exception) -> EnvironmentProblem:
        """The error that ends a notifier whose spool fails (a full disk, a removed file)."""
        return EnvironmentProblem(f"the emergency notice spool {self.path} failed: {exc}")

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, notice: Notice, body: Mapping[str, Any], hook: str | None, reason: str = "",
            now: float | None = None) -> bool:
        """Store ``notice`` (pending, due now; failed with ``reason`` when ``hook`` is
        None).  False when its Call-ID is already there: another switch relayed it first."""
        now = time.time() if now is None else now
        state: State = "pending" if hook else "failed"
        with self.db:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO notices (call_id, received, account, site, user, switch, "
                "notice, payload, webhook, state, next_attempt, last_error, done_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (notice.call_id, now, notice.account, notice.site, notice.user, notice.switch,
                 json.dumps(notice.as_dict()), json.dumps(body), hook or "", state,
                 now if hook else None, reason, None if hook else now))
            if cur.rowcount == 0:
                self.db.execute("UPDATE notices SET relays = relays + 1 WHERE call_id = ?",
                                (notice.call_id,))
                return False
        return True

    def get(self, call_id: str) -> SpoolRow | None:
        row = self.db.execute("SELECT * FROM notices WHERE call_id = ?", (call_id,)).fetchone()
        return _row(row) if row is not None else None

    def rows(self, state: str | None = None) -> list[SpoolRow]:
        """Every notice (or those in ``state``), oldest first."""
        if state:
            cur = self.db.execute("SELECT * FROM notices WHERE state = ? ORDER BY received",
                                  (state,))
        else:
            cur = self.db.execute("SELECT * FROM notices ORDER BY received")
        return [_row(r) for r in cur.fetchall()]

    def pending(self) -> list[SpoolRow]:
        """The notices still to deliver, the soonest due first."""
        cur = self.db.execute("SELECT * FROM notices WHERE state = 'pending' "
                              "ORDER BY next_attempt, received")
        return [_row(r) for r in cur.fetchall()]

    def delivered(self, call_id: str, attempts: int, status: int | None, hook: str,
                  now: float) -> None:
        self._set(call_id, state="delivered", attempts=attempts, status=status, webhook=hook,
                  next_attempt=None, done_at=now)

    def again(self, call_id: str, attempts: int, status: int | None, error: str,
              when: float) -> None:
        self._set(call_id, attempts=attempts, status=status, last_error=error,
                  next_attempt=when)

    def failed(self, call_id: str, attempts: int, status: int | None, error: str,
               now: float) -> None:
        self._set(call_id, state="failed", attempts=attempts, status=status, last_error=error,
                  next_attempt=None, done_at=now)

    def _set(self, call_id: str, **columns: Any) -> None:
        """Update one notice's ``columns`` (names from this module, never from input)."""
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self.db:
            self.db.execute(f"UPDATE notices SET {assignments} WHERE call_id = ?",  # noqa: S608
                            (*columns.values(), call_id))


def _row(r: sqlite3.Row) -> SpoolRow:
    return SpoolRow(**{k: r[k] for k in r.keys()})  # noqa: SIM118 - sqlite3.Row has no iteration by key


def spool_path(state_dir: Path | str) -> Path:
    """The spool in a state folder (the lab's ``state/``, or ``paths.state_dir``)."""
    return Path(state_dir) / SPOOL_FILE


# --- the notifier --------------------------------------------------------------------------

ReportKind = Literal["received", "duplicate", "delivered", "retry", "failed", "bad"]


@dataclass(frozen=True)
class Report:
    """One thing that happened to a notice, for the operator."""

    kind: ReportKind
    call_id: str
    account: str = ""
    site: str = ""
    user: str = ""
    switch: str = ""
    attempts: int = 0
    status: int | None = None
    detail: str = ""
    retry_in: float | None = None
    time: str = field(default_factory=lambda: iso_utc(time.time()))

    @classmethod
    def of(cls, kind: ReportKind, about: Notice | SpoolRow, **more: Any) -> Report:
        """A report on the notice ``about`` (as received, or its spool row)."""
        return cls(kind, about.call_id, about.account, about.site, about.user, about.switch,
                   **more)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for people."""
        who = " ".join(x for x in (self.account and f"account {self.account}",
                                   self.site and f"site {self.site}",
                                   self.user and f"user {self.user}") if x)
        text = f"{self.time}  {self.kind:<9} {self.call_id}"
        if who:
            text += f"  {who}"
        if self.switch:
            text += f"  via {self.switch}"
        if self.kind in ("delivered", "retry", "failed") and self.attempts:
            text += f"  attempt {self.attempts}"
        if self.retry_in is not None:
            text += f", again in {self.retry_in:g} s"
        if self.detail:
            text += f": {self.detail}"
        return text


Post = Callable[[str, bytes, str, float], PostResult]


class Notifier:
    """Store every notice, deliver it to its account's security desk, retry until it is
    delivered or the retry window ends.  One asyncio task (:meth:`run`) delivers."""

    def __init__(self, inv: Inventory, spool: Spool, *, policy: RetryPolicy | None = None,
                 report: Callable[[Report], None] = lambda r: None, post: Post = post_json,
                 clock: Callable[[], float] = time.time, concurrency: int = 16) -> None:
        self.inv = inv
        self.spool = spool
        self.policy = policy or RetryPolicy()
        self.report = report
        self.post = post
        self.clock = clock
        self.concurrency = concurrency
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None  # made by run(), on its own event loop
        self._error: EnvironmentProblem | None = None  # the spool failed during a post
        # The posts' own threads: a desk that hangs (its name slow to resolve, a connection
        # that never opens) holds one of these past its timeout, never one of the event
        # loop's default pool, which the ESL connections need to resolve the switches.
        # Twice the concurrency: room for as many abandoned posts as live ones.
        self._posts: ThreadPoolExecutor | None = None

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, notice: Notice) -> bool:
        """Store ``notice`` and wake delivery; False for a Call-ID already received.
        EnvironmentProblem when the spool cannot be written (the notice is not taken)."""
        hook, reason = webhook(self.inv, notice.account)
        try:
            new = self.spool.add(notice, payload(notice, self.inv), hook, reason, self.clock())
        except sqlite3.Error as exc:
            log.error("emergency call %s (account %s, site %s, user %s) NOT stored: %s",
                      notice.call_id, notice.account, notice.site, notice.user, exc)
            raise self.spool.broken(exc) from None
        if not new:
            self.report(Report.of("duplicate", notice, detail="also relayed by this switch"))
            return False
        self.report(Report.of("received", notice, detail=f"{notice.number} ({notice.country}) "
                                                         f"from {notice.proxy or '?'}"))
        if hook is None:
            log.error("emergency call %s: not delivered: %s", notice.call_id, reason)
            self.report(Report.of("failed", notice, detail=reason))
        self._poke()
        return True

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def reject(self, switch: str, error: Exception) -> None:
        """A MESSAGE to zp-emergency that is not a notice: said loudly, nothing stored."""
        log.error("switch %s: an emergency notice that cannot be read: %s", switch, error)
        self.report(Report("bad", "", switch=switch, detail=str(error)))

    # -- delivering ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver what is due, as it falls due, until cancelled (pending notices of the
        spool first: those an earlier run left).  EnvironmentProblem when the spool cannot
        be read or written any more."""
        wake = self._wake = asyncio.Event()
        self._posts = ThreadPoolExecutor(max_workers=2 * self.concurrency,
                                         thread_name_prefix="emergency-post")
        try:
            while True:
                if self._error is not None:
                    raise self._error
                wake.clear()
                now = self.clock()
                wait: float | None = None
                try:
                    rows = self.spool.pending()
                except sqlite3.Error as exc:
                    raise self.spool.broken(exc) from None
                for row in rows:
                    if row.call_id in self._inflight:
                        continue
                    due = row.next_attempt if row.next_attempt is not None else now
                    if due > now:
                        wait = due - now if wait is None else min(wait, due - now)
                        break  # sorted by next_attempt: the rest are later
                    if len(self._inflight) >= self.concurrency:
                        break  # a finished post wakes us
                    task = asyncio.create_task(self._attempt(row), name=f"notify-{row.call_id}")
                    self._inflight[row.call_id] = task
                # asyncio.timeout, not wait_for: wait_for (3.11) can swallow a cancel that
                # comes as the event is set, and this loop would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await wake.wait()
        finally:
            self._wake = None
            tasks = list(self._inflight.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            posts, self._posts = self._posts, None
            posts.shutdown(wait=False, cancel_futures=True)  # a hung post ends on its own

    async def drain(self, deadline: float = 10.0) -> None:
        """Deliver until nothing is pending or in flight, or ``deadline`` seconds passed."""
        task = asyncio.create_task(self.run())
        try:
            end = time.monotonic() + deadline
            while time.monotonic() < end:
                if not self._inflight and not self.spool.pending():
                    return
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _attempt(self, row: SpoolRow) -> None:
        try:
            hook, reason = webhook(self.inv, row.account)
            hook = hook or row.webhook or None  # the desk's address when the notice arrived
            attempts = row.attempts + 1
            if hook is None:
                self.spool.failed(row.call_id, row.attempts, None, reason, self.clock())
                self.report(Report.of("failed", row, attempts=row.attempts, detail=reason))
                return
            try:
                async with asyncio.timeout(self.policy.timeout + 2.0):
                    result = await asyncio.get_running_loop().run_in_executor(
                        self._posts, self.post, hook, row.payload.encode("utf-8"),
                        row.call_id, self.policy.timeout)
            except TimeoutError:
                result = PostResult(False, True, None,
                                    f"{hook}: no answer within {self.policy.timeout:g} s")
            now = self.clock()
            if result.ok:
                self.spool.delivered(row.call_id, attempts, result.status, hook, now)
                self.report(Report.of("delivered", row, attempts=attempts, status=result.status,
                                      detail=hook))
                return
            if result.retry:
                delay = self.policy.delay(attempts)
                if result.retry_after is not None:
                    delay = max(delay, min(result.retry_after, self.policy.cap))
                if now + delay - row.received <= self.policy.give_up_after:
                    self.spool.again(row.call_id, attempts, result.status, result.error,
                                     now + delay)
                    self.report(Report.of("retry", row, attempts=attempts,
                                          status=result.status, detail=result.error,
                                          retry_in=delay))
                    return
                error = (f"gave up after {attempts} attempts in "
                         f"{_duration(now - row.received)}: {result.error}")
            else:
                error = result.error
            log.error("emergency call %s: the security desk of %s refused it: %s",
                      row.call_id, row.account, error)
            self.spool.failed(row.call_id, attempts, result.status, error, now)
            self.report(Report.of("failed", row, attempts=attempts, status=result.status,
                                  detail=error))
        except sqlite3.Error as exc:
            self._error = self.spool.broken(exc)
        finally:
            self._inflight.pop(row.call_id, None)
            self._poke()


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


# --- the switches ----------------------------------------------------------------------------

@dataclass
class WatchStats:
    notices: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def plan(targets: Sequence[SwitchTarget]) -> list[Step]:
    """The ESL commands :func:`watch` sends each switch (for --dry-run)."""
    return [Step(t.name, f"{t.host}:{t.port}", c) for t in targets
            for c in (f"event plain BACKGROUND_JOB {EVENT}", "filter Event-Name BACKGROUND_JOB",
                      f"filter {TO_USER_HEADER} {NOTICE_USER}")]


async def watch(targets: Sequence[SwitchTarget], password: str, notifier: Notifier, *,
                say: Callable[[str], None], duration: float | None = None,
                timeout: float = 5.0, backoff: Backoff | None = None) -> WatchStats:
    """Listen for notices on every switch of ``targets`` and deliver them, until
    ``duration`` seconds passed (None: until cancelled) or every switch refused us (its
    ESL password or ACL).  ``say`` gets one line per connection change."""
    stats = WatchStats()
    pending = notifier.spool.pending()
    if pending:
        say(f"resuming {len(pending)} pending notice(s) from {notifier.spool.path}")
    stop = asyncio.Event()  # besides cancelling: a cancel can be lost in the ESL client's waits
    deliver = asyncio.create_task(notifier.run(), name="emergency-deliver")
    listeners = [asyncio.create_task(_listen(t, password, timeout, backoff or Backoff(), notifier,
                                             say, stats, stop), name=f"emergency-{t.name}")
                 for t in targets]
    end = None if duration is None else time.monotonic() + duration
    running: set[asyncio.Task[None]] = {deliver, *listeners}
    try:
        # Until the end, or until no switch is listened to (each refused us); a switch that
        # refused is waited for no more.
        while running - {deliver} and (end is None or time.monotonic() < end):
            left = None if end is None else max(0.0, end - time.monotonic())
            done, _ = await asyncio.wait(running, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # an error (the spool failed ...) ends the watch
            running -= done
    finally:
        stop.set()
        for task in [*listeners, deliver]:
            task.cancel()
        await asyncio.gather(*listeners, deliver, return_exceptions=True)
    return stats


async def _listen(t: SwitchTarget, password: str, timeout: float, backoff: Backoff,
                  notifier: Notifier, say: Callable[[str], None], stats: WatchStats,
                  stop: asyncio.Event) -> None:
    def heard(ev: esl.Event) -> None:
        try:
            notice = parse_event(ev, t.name)
        except Exception as exc:  # BadNotice, or anything else a forged event provokes
            notifier.reject(t.name, exc)
            return
        if notice is not None:
            stats.notices += 1
            notifier.receive(notice)

    async def subscribe(conn: EslConnection) -> None:
        await conn.subscribe([EVENT])
        await conn.add_filter(TO_USER_HEADER, NOTICE_USER)

    await listen(t, password, timeout=timeout, backoff=backoff, subscribe=subscribe,
                 on_event=heard, say=say, refused=stats.refused, reconnects=stats.reconnects,
                 verb="listening", stop=stop)


# --- running it as a service -----------------------------------------------------------------

def zpctl_executable() -> str:
    """The zpctl script beside this Python (the virtualenv's), else the one on PATH."""
    here = Path(sys.executable).parent / "zpctl"
    return str(here) if here.exists() else "zpctl"


def watch_argv(inventory: Path, spool: Path, *, secrets: Path | None = None,
               esl_address: str | None = None, lab_dir: Path | None = None,
               zone: str | None = None) -> list[str]:
    """The command line of the notifier as a long-running service (JSON lines on stdout,
    connection changes on stderr): ``zpctl -o json emergency watch INVENTORY --spool ...``."""
    argv = [zpctl_executable(), "-o", "json", "emergency", "watch", str(inventory),
            "--spool", str(spool)]
    if secrets is not None:
        argv += ["--secrets", str(secrets)]
    if esl_address:
        argv += ["--esl-address", esl_address]
    if lab_dir is not None:
        argv += ["--lab-dir", str(lab_dir)]
    if zone:
        argv += ["--zone", zone]
    return argv


def spool_ready(path: Path) -> None:
    """A health check for a service: Unreachable until the notifier has opened its spool."""
    if not path.exists():
        raise Unreachable(f"the emergency notifier has not opened its spool {path} yet")
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=2.0)) as db:
            db.execute("SELECT 1 FROM notices LIMIT 1")
    except sqlite3.Error as exc:
        raise Unreachable(f"the emergency notice spool {path} is not ready: {exc}") from None
