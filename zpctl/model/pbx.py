"""PBX features of an account (the seed's user and administration features), as run by
the FreeSWITCH switch tier: auto receptionists and their menus, call queues, voicemail
policy, hold music, call park lots, conferences, shared line groups, paging groups, call
blocking and spam lists, call monitoring grants, recording policy, and per-user call
handling (forwarding rules, personal business and holiday hours, caller-ID choices).

Everything is referenced by id or extension; :func:`zpctl.model.pbx_checks.check` is the
cross-check that every reference resolves and that each feature is allowed by the user's
license (``catalog.LICENSES`` plus add-ons).  Routes are strings such as ``user:1001``,
``voicemail:1001``, ``queue:sales``, ``menu:support``, ``receptionist:main``,
``shared_line:front-desk``, ``conference:all-hands``, ``paging:warehouse``,
``park:lot1``, ``external:+12125550100``, ``directory`` (dial by name) or ``hangup``; menu
keys may also use ``repeat``, ``back`` and ``top``.

The schema imports this module (an account's ``pbx`` block), so this module imports
nothing from :mod:`zpctl.model.schema`: the value types both use live in
:mod:`zpctl.model.types`, and what needs the schema's accounts and users (the cross-check,
license and monitoring rules) lives in :mod:`zpctl.model.pbx_checks`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from zpctl.model.types import E164, Date, Ext, Hours, Ident, Language


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
    # voicemail's phrase macros (rendered into the switch's languages section)
    "voicemail/vm-not_available.wav", "voicemail/vm-record_message.wav",
    "voicemail/vm-enter_pass.wav", "voicemail/vm-fail_auth.wav", "voicemail/vm-you_have.wav",
    "voicemail/vm-new_messages.wav", "voicemail/vm-main_menu.wav",
    "voicemail/vm-message_saved.wav", "voicemail/vm-locked.wav", "voicemail/vm-enter_id.wav",
    # the dial-by-name directory's phrase macros
    "directory/dir-enter_person.wav", "directory/dir-min_digits.wav",
    "directory/dir-no_matching_results.wav", "directory/dir-too_many_results.wav",
    "directory/dir-to_select_entry.wav", "directory/dir-last_entry.wav",
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
    # Do not disturb: the user's phones never ring; calls go to voicemail (with the
    # feature), else are answered busy.  Emergency services calling back still ring.
    do_not_disturb: bool = False
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
    # Wrong PINs in a row, across calls, before the box locks until an administrator
    # unlocks it (`zpctl voicemail unlock`): the seed's PIN brute-force protection.
    lockout_after: Annotated[int, Field(ge=2, le=50)] = 6
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


def callcenter_name(ident: str, domain: str) -> str:
    """mod_callcenter's name of an account's queue or agent: ``<id>@<domain>``.

    Queues (by queue id) and agents (by extension) of every account share one
    mod_callcenter per switch, so the account's SIP domain keeps their names apart."""
    return f"{ident}@{domain}"


def parse_callcenter_name(name: str) -> tuple[str, str]:
    """``"sales@acme.example"`` -> ``("sales", "acme.example")``: the inverse of
    :func:`callcenter_name` (an id or extension never holds ``@``)."""
    ident, _, domain = name.partition("@")
    return ident, domain


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
