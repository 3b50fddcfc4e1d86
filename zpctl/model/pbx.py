"""PBX features of an account (the seed's user and administration features), as run by
the FreeSWITCH switch tier: auto receptionists and their menus, call queues, voicemail
policy, hold music, call park lots, conferences, shared line groups, paging groups, call
blocking and spam lists, call monitoring grants, recording policy, and per-user call
handling (forwarding rules, personal business and holiday hours, caller-ID choices).

Everything is referenced by id or extension; :func:`check` is the cross-check that every
reference resolves and that each feature is allowed by the user's license
(``catalog.LICENSES`` plus add-ons).  Routes are strings such as ``user:1001``,
``voicemail:1001``, ``queue:sales``, ``menu:support``, ``receptionist:main``,
``shared_line:front-desk``, ``conference:all-hands``, ``paging:warehouse``,
``park:lot1``, ``external:+12125550100``, ``directory`` (dial by name) or ``hangup``; menu
keys may also use ``repeat``, ``back`` and ``top``.

This module imports nothing from :mod:`zpctl.model.schema` at run time (the schema
imports it); the value types both use live in :mod:`zpctl.model.types`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from zpctl.model import catalog
from zpctl.model.types import E164, Date, Ext, Hours, Ident, Language

if TYPE_CHECKING:
    from zpctl.model.schema import Account, Inventory, User

Finding = tuple[tuple[str | int, ...], str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)








ROUTE_KINDS = ("user", "voicemail", "queue", "menu", "receptionist", "shared_line", "conference",
               "paging", "park", "external")
MENU_ONLY_ROUTES = ("repeat", "back", "top")
_ROUTE = re.compile(r"(?P<kind>user|voicemail|queue|menu|receptionist|shared_line|conference|"
                    r"paging|park):(?P<ref>[a-z0-9][a-z0-9-]{0,30})"
                    r"|external:(?P<num>\+[1-9][0-9]{6,14})"
                    r"|(?P<word>directory|hangup|repeat|back|top)")


def _route(value: str) -> str:
    if not _ROUTE.fullmatch(value):
        raise ValueError(f"not a route: {value!r}; use KIND:REF with KIND one of "
                         f"{', '.join(ROUTE_KINDS)} (external:+E164), or directory / hangup "
                         "(menus also: repeat, back, top)")
    return value


def parse_route(value: str) -> tuple[str, str]:
    """``"queue:sales"`` -> ``("queue", "sales")``; ``"hangup"`` -> ``("hangup", "")``."""
    kind, _, ref = value.partition(":")
    return kind, ref


def _number_pattern(value: str) -> str:
    if value != "anonymous" and not re.fullmatch(r"\+?[0-9]{2,15}\*?", value):
        raise ValueError(f"not a number or prefix: {value!r}; use +E164, digits, a prefix "
                         "ending in * (e.g. +1900*), or anonymous")
    return value


Route = Annotated[str, AfterValidator(_route)]
NumberPattern = Annotated[str, AfterValidator(_number_pattern)]
Key = Annotated[str, Field(pattern=r"^[0-9*#]$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# mod_callcenter's strategies (reference, callcenter.conf); anything else is refused here
# instead of FreeSWITCH's silent fallback.
QUEUE_STRATEGIES = ("ring-all", "longest-idle-agent", "round-robin", "top-down",
                    "agent-with-least-talk-time", "agent-with-fewest-calls",
                    "sequentially-by-agent-order", "random", "ring-progressively")
MONITOR_MODES = ("listen", "whisper", "barge", "takeover")

# Prompts the rendered configs use from the provisioned sound set of every language (paths
# under the language's sound prefix).  Accounts add their own recordings as `prompts`.
STANDARD_PROMPTS = (
    "ivr/ivr-welcome.wav", "ivr/ivr-that_was_an_invalid_entry.wav",
    "ivr/ivr-please_try_again.wav", "ivr/ivr-call_being_transferred.wav",
    "ivr/ivr-thank_you_for_calling.wav", "ivr/ivr-not_available.wav",
    "ivr/ivr-you_will_be_called_back.wav", "ivr/ivr-this_call_may_be_recorded.wav",
    "ivr/ivr-your_call_is_being_placed_in_queue.wav", "ivr/ivr-closed.wav",
    "ivr/ivr-holiday.wav", "ivr/ivr-call_rejected.wav", "ivr/ivr-you_are_now_logged_in.wav",
    "ivr/ivr-you_are_now_logged_out.wav", "voicemail/vm-goodbye.wav",
    "conference/conf-pin.wav", "conference/conf-bad-pin.wav",
)


# --- per user -----------------------------------------------------------------------------

class ForwardRule(_Strict):
    """Call forwarding / call handling: where a call goes in a situation."""

    when: Literal["always", "busy", "no_answer", "unavailable", "after_hours", "holiday"]
    to: Route


class Holiday(_Strict):
    name: str
    date: Date


class UserPbx(_Strict):
    """One user's call handling, keyed by extension under ``pbx.users``."""

    ring_seconds: Annotated[int, Field(ge=5, le=120)] = 25
    forwarding: list[ForwardRule] = Field(default_factory=list)
    # Personal business and holiday hours (feature business_hours); default: the site's.
    business_hours: dict[Weekday, list[Hours]] | None = None
    holidays: list[Holiday] | None = None
    hold_music: Ident | None = None  # one of pbx.music
    # outbound caller IDs the user may select; the first is the default
    caller_ids: list[E164] = Field(default_factory=list)
    blocked: list[NumberPattern] = Field(default_factory=list)  # personal block list (feature call_blocking)

    @model_validator(mode="after")
    def _one_rule_per_situation(self) -> UserPbx:
        seen = [r.when for r in self.forwarding]
        dup = sorted({w for w in seen if seen.count(w) > 1})
        if dup:
            raise ValueError(f"more than one forwarding rule for: {', '.join(dup)}")
        return self


# --- account level ------------------------------------------------------------------------

class PinPolicy(_Strict):
    """Voicemail PIN rules (the seed's "PIN Code Requirements and Protections")."""

    min_length: Annotated[int, Field(ge=4, le=12)] = 6
    # Wrong PINs before the session is ended (voicemail max-login-attempts): brute-force
    # protection per call.
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    forbid_trivial: bool = True  # generated PINs avoid repeated and sequential digits


class VoicemailPolicy(_Strict):
    pin: PinPolicy = Field(default_factory=PinPolicy)
    max_message_seconds: Annotated[int, Field(ge=10, le=900)] = 180
    # Where the account's transcriber is told about new messages of users with
    # voicemail_transcription; unset: the platform's transcriber (it follows vm::maintenance
    # events over ESL).
    transcription_hook: Annotated[str, Field(pattern=r"^https://[^\s]+$")] | None = None


class RecordingPolicy(_Strict):
    announce: bool = True  # play "this call may be recorded" before an automatic recording
    file_format: Literal["wav", "mp3"] = "wav"


class Menu(_Strict):
    """An auto receptionist menu (FreeSWITCH ivr.conf menu)."""

    id: Ident
    greeting: str  # one of pbx.prompts, or a standard prompt path
    keys: Annotated[dict[Key, Route], Field(min_length=1)]
    timeout_seconds: Annotated[int, Field(ge=1, le=60)] = 10
    max_failures: Annotated[int, Field(ge=1, le=10)] = 3
    on_failure: Route = "hangup"


class AutoReceptionist(_Strict):
    id: Ident
    name: str
    extension: Ext
    number: E164 | None = None  # an account number that rings it
    site: Ident  # business hours, holidays, time zone and language come from the site
    menu: Ident  # during business hours
    after_hours: Route = "hangup"
    holiday: Route | None = None  # default: after_hours
    language: Language | None = None  # default: the site's


class QueueAgent(_Strict):
    user: Ext
    level: Annotated[int, Field(ge=1, le=9)] = 1
    position: Annotated[int, Field(ge=1, le=99)] = 1
    opted_in: bool = True  # the agent may opt in and out with *75<queue> / *76<queue>


class Queue(_Strict):
    id: Ident
    name: str
    extension: Ext
    number: E164 | None = None
    site: Ident
    strategy: Literal["ring-all", "longest-idle-agent", "round-robin", "top-down",
                      "agent-with-least-talk-time", "agent-with-fewest-calls",
                      "sequentially-by-agent-order", "random", "ring-progressively"] = \
        "longest-idle-agent"
    agents: Annotated[list[QueueAgent], Field(min_length=1)]
    max_wait_seconds: Annotated[int, Field(ge=0, le=86400)] = 600
    overflow: Route = "hangup"  # after max_wait_seconds
    hold_music: Ident | None = None
    announce: str | None = None  # a prompt repeated every announce_seconds
    announce_seconds: Annotated[int, Field(ge=0, le=86400)] = 60
    wrap_up_seconds: Annotated[int, Field(ge=0, le=600)] = 10
    callbacks: bool = False  # the caller may press callback_key to be called back
    callback_key: Key = "1"
    record: bool = False


class ParkLot(_Strict):
    id: Ident
    extension: Ext  # dial (or transfer to) this to park in the next free slot
    first_slot: Ext
    slots: Annotated[int, Field(ge=1, le=100)] = 9
    timeout_seconds: Annotated[int, Field(ge=30, le=3600)] = 180
    return_to: Route = "hangup"  # where a call goes when nobody retrieves it
    hold_music: Ident | None = None

    def slot_numbers(self) -> list[str]:
        start = int(self.first_slot)
        return [str(n).zfill(len(self.first_slot)) for n in range(start, start + self.slots)]


class Conference(_Strict):
    id: Ident
    extension: Ext
    max_members: Annotated[int, Field(ge=2, le=500)] = 50
    pin: bool = True  # a PIN (from secrets) is asked of callers
    moderators: list[Ext] = Field(default_factory=list)
    record: bool = False


class SharedLine(_Strict):
    id: Ident
    name: str
    extension: Ext
    number: E164 | None = None
    members: Annotated[list[Ext], Field(min_length=2)]
    ring_seconds: Annotated[int, Field(ge=5, le=120)] = 30
    overflow: Route = "hangup"


class PagingGroup(_Strict):
    id: Ident
    extension: Ext
    members: Annotated[list[Ext], Field(min_length=1)]
    senders: list[Ext] = Field(default_factory=list)  # who may page; empty: the members


class MonitorGrant(_Strict):
    """A supervisor allowed to monitor some users or queues' agents, in some modes."""

    supervisor: Ext
    modes: Annotated[list[Literal["listen", "whisper", "barge", "takeover"]],
                     Field(min_length=1)]
    targets: Annotated[list[Annotated[str, Field(pattern=r"^(user|queue):[a-z0-9][a-z0-9-]{0,30}$")]],
                       Field(min_length=1)]


class Blocking(_Strict):
    blocked: list[NumberPattern] = Field(default_factory=list)  # rejected (CALL_REJECTED)
    spam: list[NumberPattern] = Field(default_factory=list)  # rejected as unwanted (UNWANTED)


class Pbx(_Strict):
    """Every PBX feature of one account (all optional)."""

    # the account's own recordings: <recordings>/<account>/<id>.wav
    prompts: list[Ident] = Field(default_factory=list)
    music: list[Ident] = Field(default_factory=list)  # hold-music folders of the account
    hold_music: Ident | None = None  # the account default; else the platform's
    voicemail: VoicemailPolicy = Field(default_factory=VoicemailPolicy)
    recording: RecordingPolicy = Field(default_factory=RecordingPolicy)
    menus: list[Menu] = Field(default_factory=list)
    auto_receptionists: list[AutoReceptionist] = Field(default_factory=list)
    queues: list[Queue] = Field(default_factory=list)
    park_lots: list[ParkLot] = Field(default_factory=list)
    conferences: list[Conference] = Field(default_factory=list)
    shared_lines: list[SharedLine] = Field(default_factory=list)
    paging_groups: list[PagingGroup] = Field(default_factory=list)
    monitoring: list[MonitorGrant] = Field(default_factory=list)
    blocking: Blocking = Field(default_factory=Blocking)
    users: dict[Ext, UserPbx] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return self == Pbx()


# --- cross-checks -------------------------------------------------------------------------

def allowed_features(user: User) -> frozenset[str]:
    """What the user's license and add-ons allow."""
    out = set(catalog.LICENSES[user.license])
    for addon in user.addons:
        out |= catalog.ADDONS[addon]
    return frozenset(out)


def has_feature(user: User, feature: str) -> bool:
    """The user has ``feature`` configured (and checks.py made sure the license allows it)."""
    return feature in user.features and feature in allowed_features(user)


def monitor_permitted(acct: Account, supervisor: str, mode: str, target_ext: str | None = None
                      ) -> str | None:
    """None if ``supervisor`` may monitor ``target_ext`` in ``mode``; else the reason not."""
    users = {u.extension: u for u in acct.users}
    sup = users.get(supervisor)
    if sup is None:
        return f"{supervisor} is not a user of account {acct.id}"
    if "call_monitoring" not in allowed_features(sup):
        return f"the {sup.license} license of {supervisor} does not allow call monitoring"
    if "call_monitoring" not in sup.features:
        return f"{supervisor} does not have the call_monitoring feature"
    grants = [g for g in acct.pbx.monitoring if g.supervisor == supervisor and mode in g.modes]
    if not grants:
        return f"{supervisor} has no monitoring grant for mode {mode} in account {acct.id}"
    if target_ext is None:
        return None
    if any(target_ext in monitor_targets(acct, g) for g in grants):
        return None
    return f"{supervisor} may not monitor {target_ext} ({mode})"


def monitor_targets(acct: Account, grant: MonitorGrant) -> list[str]:
    """The extensions a grant covers (users, and the agents of queues)."""
    out: list[str] = []
    queues = {q.id: q for q in acct.pbx.queues}
    for t in grant.targets:
        kind, ref = t.split(":", 1)
        if kind == "user":
            out.append(ref)
        elif ref in queues:
            out += [a.user for a in queues[ref].agents]
    return sorted(set(out) - {grant.supervisor})


def check(inv: Inventory) -> Iterator[Finding]:
    """Cross-checks of every account's ``pbx`` block."""
    for ai, acct in enumerate(inv.accounts):
        yield from _account(acct, ("accounts", ai, "pbx"))


def _account(acct: Account, p: tuple[str | int, ...]) -> Iterator[Finding]:
    pbx = acct.pbx
    users = {u.extension: u for u in acct.users}
    sites = {s.id for s in acct.sites}
    numbers = {n.number for n in acct.numbers}
    dids = {d for u in acct.users for d in u.dids}
    objects: dict[str, set[str]] = {
        "menu": {m.id for m in pbx.menus}, "receptionist": {r.id for r in pbx.auto_receptionists},
        "queue": {q.id for q in pbx.queues}, "park": {lot.id for lot in pbx.park_lots},
        "conference": {c.id for c in pbx.conferences},
        "shared_line": {s.id for s in pbx.shared_lines},
        "paging": {g.id for g in pbx.paging_groups},
    }
    prompts = set(pbx.prompts)
    music = set(pbx.music)

    def route(path: tuple[str | int, ...], value: str, in_menu: bool = False) -> Iterator[Finding]:
        kind, ref = parse_route(value)
        if kind in MENU_ONLY_ROUTES and not in_menu:
            yield path, f"{kind} is only meaningful as a menu key"
        elif kind in ("user", "voicemail"):
            if ref not in users:
                yield path, f"{value}: no user with extension {ref}"
            elif kind == "voicemail" and not has_feature(users[ref], "voicemail"):
                yield path, f"{value}: user {ref} has no voicemail feature"
        elif kind in objects and ref not in objects[kind]:
            known = ", ".join(sorted(objects[kind])) or "none"
            yield path, f"{value}: no {kind.replace('_', ' ')} {ref!r} (known: {known})"

    def prompt(path: tuple[str | int, ...], value: str) -> Iterator[Finding]:
        if value not in prompts and value not in STANDARD_PROMPTS:
            yield path, (f"unknown prompt {value!r}: add it to pbx.prompts or use a standard "
                         f"prompt ({STANDARD_PROMPTS[0]}, ...)")

    def moh(path: tuple[str | int, ...], value: str | None) -> Iterator[Finding]:
        if value is not None and value not in music:
            yield path, f"unknown hold music {value!r}; known: {', '.join(sorted(music)) or 'none'}"

    def user_ref(path: tuple[str | int, ...], ext: str, feature: str | None = None
                 ) -> Iterator[Finding]:
        if ext not in users:
            yield path, f"no user with extension {ext}"
        elif feature and feature not in allowed_features(users[ext]):
            yield path, (f"the {users[ext].license} license of {ext} does not allow {feature}")

    def number(path: tuple[str | int, ...], value: str | None, owner: str) -> Iterator[Finding]:
        if value is None:
            return
        if value not in numbers:
            yield path, f"{value} is not one of the account's numbers"
        elif value in dids:
            yield path, f"{value} is a user's DID; {owner} needs a number of its own"

    # ids unique per kind; extensions unique across users and every object
    # (kind, index, id, extension, number) of every object, for uniqueness checks
    table: list[tuple[str, int, str, str | None, str | None]] = []
    table += [("menus", i, m.id, None, None) for i, m in enumerate(pbx.menus)]
    table += [("auto_receptionists", i, r.id, r.extension, r.number)
              for i, r in enumerate(pbx.auto_receptionists)]
    table += [("queues", i, q.id, q.extension, q.number) for i, q in enumerate(pbx.queues)]
    table += [("park_lots", i, lot.id, lot.extension, None) for i, lot in enumerate(pbx.park_lots)]
    table += [("conferences", i, c.id, c.extension, None) for i, c in enumerate(pbx.conferences)]
    table += [("shared_lines", i, sl.id, sl.extension, sl.number)
              for i, sl in enumerate(pbx.shared_lines)]
    table += [("paging_groups", i, g.id, g.extension, None)
              for i, g in enumerate(pbx.paging_groups)]
    seen_ids: set[tuple[str, str]] = set()
    owners: dict[str, str] = {u.extension: f"user {u.extension}" for u in acct.users}
    used_numbers: dict[str, str] = {}
    for kind, i, oid, ext, num in table:
        if (kind, oid) in seen_ids:
            yield (*p, kind, i, "id"), f"{kind} id {oid!r} is defined twice"
        seen_ids.add((kind, oid))
        owner = f"{kind}[{oid}]"
        if ext is not None:
            if ext in owners:
                yield (*p, kind, i, "extension"), f"extension {ext} of {owner} is also {owners[ext]}"
            owners.setdefault(ext, owner)
        yield from number((*p, kind, i, "number"), num, owner)
        if num is not None:
            if num in used_numbers:
                yield (*p, kind, i, "number"), f"{num} also rings {used_numbers[num]}"
            used_numbers.setdefault(num, owner)
    for i, lot in enumerate(pbx.park_lots):
        for slot in lot.slot_numbers():
            if slot in owners:
                yield (*p, "park_lots", i, "first_slot"), \
                    f"slot {slot} of park lot {lot.id} is also {owners[slot]}"
            owners.setdefault(slot, f"park lot {lot.id}")

    for v in pbx.prompts:
        if pbx.prompts.count(v) > 1:
            yield (*p, "prompts"), f"prompt {v!r} listed twice"
            break
    yield from moh((*p, "hold_music"), pbx.hold_music)

    for i, m in enumerate(pbx.menus):
        mp = (*p, "menus", i)
        yield from prompt((*mp, "greeting"), m.greeting)
        for key, target in sorted(m.keys.items()):
            yield from route((*mp, "keys", key), target, in_menu=True)
            if target == f"menu:{m.id}":
                yield (*mp, "keys", key), "a menu cannot open itself; use repeat"
        yield from route((*mp, "on_failure"), m.on_failure)
    for i, ar in enumerate(pbx.auto_receptionists):
        rp = (*p, "auto_receptionists", i)
        if ar.site not in sites:
            yield (*rp, "site"), f"unknown site {ar.site!r}"
        if ar.menu not in objects["menu"]:
            yield (*rp, "menu"), f"no menu {ar.menu!r}"
        yield from route((*rp, "after_hours"), ar.after_hours)
        if ar.holiday:
            yield from route((*rp, "holiday"), ar.holiday)
    for i, q in enumerate(pbx.queues):
        qp = (*p, "queues", i)
        if q.site not in sites:
            yield (*qp, "site"), f"unknown site {q.site!r}"
        agents: set[str] = set()
        for j, a in enumerate(q.agents):
            yield from user_ref((*qp, "agents", j, "user"), a.user, "call_queue")
            if a.user in agents:
                yield (*qp, "agents", j, "user"), f"agent {a.user} is listed twice"
            agents.add(a.user)
        yield from route((*qp, "overflow"), q.overflow)
        yield from moh((*qp, "hold_music"), q.hold_music)
        if q.announce is not None:
            yield from prompt((*qp, "announce"), q.announce)
    for i, lot in enumerate(pbx.park_lots):
        yield from route((*p, "park_lots", i, "return_to"), lot.return_to)
        yield from moh((*p, "park_lots", i, "hold_music"), lot.hold_music)
    for i, c in enumerate(pbx.conferences):
        for j, ext in enumerate(c.moderators):
            yield from user_ref((*p, "conferences", i, "moderators", j), ext, "conference")
    for i, s in enumerate(pbx.shared_lines):
        for j, ext in enumerate(s.members):
            yield from user_ref((*p, "shared_lines", i, "members", j), ext, "shared_line")
        if len(set(s.members)) != len(s.members):
            yield (*p, "shared_lines", i, "members"), "a member is listed twice"
        yield from route((*p, "shared_lines", i, "overflow"), s.overflow)
    for i, g in enumerate(pbx.paging_groups):
        for field_name, exts in (("members", g.members), ("senders", g.senders)):
            for j, ext in enumerate(exts):
                yield from user_ref((*p, "paging_groups", i, field_name, j), ext, "paging")
    for i, grant in enumerate(pbx.monitoring):
        gp = (*p, "monitoring", i)
        sup = users.get(grant.supervisor)
        if sup is None:
            yield (*gp, "supervisor"), f"no user with extension {grant.supervisor}"
        elif "call_monitoring" not in allowed_features(sup):
            yield (*gp, "supervisor"), (
                f"the {sup.license} license of {grant.supervisor} (add-ons: "
                f"{', '.join(sup.addons) or 'none'}) does not allow call monitoring; only "
                "pro users or users with the power-pack add-on may supervise")
        elif "call_monitoring" not in sup.features:
            yield (*gp, "supervisor"), \
                f"user {grant.supervisor} needs call_monitoring in its features"
        for j, t in enumerate(grant.targets):
            kind, ref = t.split(":", 1)
            if kind == "user" and ref not in users:
                yield (*gp, "targets", j), f"{t}: no user with extension {ref}"
            elif kind == "queue" and ref not in objects["queue"]:
                yield (*gp, "targets", j), f"{t}: no queue {ref!r}"
            elif t == f"user:{grant.supervisor}":
                yield (*gp, "targets", j), "a supervisor does not monitor themselves"
    for ext, up in sorted(pbx.users.items()):
        upp = (*p, "users", ext)
        u = users.get(ext)
        if u is None:
            yield upp, f"no user with extension {ext}"
            continue
        for j, rule in enumerate(up.forwarding):
            rp2 = (*upp, "forwarding", j)
            feature = "call_forwarding" if rule.when == "always" else "call_handling"
            if not has_feature(u, feature) and not has_feature(u, "call_forwarding"):
                yield (*rp2, "when"), f"user {ext} needs the {feature} feature for this rule"
            yield from route((*rp2, "to"), rule.to)
            if rule.to in (f"user:{ext}",):
                yield (*rp2, "to"), "a user cannot forward to themselves"
            if rule.to.startswith("external:") and acct.offering == "native" \
                    and u.calling_plan == "none":
                yield (*rp2, "to"), f"forwarding to the PSTN needs a calling plan; {ext} has none"
            if rule.when in ("after_hours", "holiday") and up.business_hours is None \
                    and not any(s.business_hours for s in acct.sites if s.id == u.site):
                yield (*rp2, "when"), "no business hours (personal or the site's) to apply"
        if (up.business_hours is not None or up.holidays is not None) \
                and not has_feature(u, "business_hours"):
            yield upp, f"personal business or holiday hours need the business_hours feature ({ext})"
        yield from moh((*upp, "hold_music"), up.hold_music)
        for j, num in enumerate(up.caller_ids):
            if num not in numbers:
                yield (*upp, "caller_ids", j), f"{num} is not one of the account's numbers"
        if len(up.caller_ids) > 1 and not has_feature(u, "caller_id_select"):
            yield (*upp, "caller_ids"), \
                f"choosing among caller IDs needs the caller_id_select feature ({ext})"
        if up.blocked and not has_feature(u, "call_blocking"):
            yield (*upp, "blocked"), f"a personal block list needs the call_blocking feature ({ext})"
    for ui, u in enumerate(acct.users):
        if has_feature(u, "video_mail") and not has_feature(u, "voicemail"):
            yield (*p[:-1], "users", ui, "features"), \
                f"user {u.extension}: video_mail needs the voicemail feature too"
