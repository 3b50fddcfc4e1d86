"""Render one switch node's FreeSWITCH configuration: a complete conf tree under
``<host>/freeswitch/`` (the directory FreeSWITCH is started with as ``-conf``).

How it works: everything that needs a decision (which accounts a switch serves, the
dialplan of each feature, regexes, time conditions, dial strings) is computed here into
plain lists and dicts, sorted, so the templates in ``freeswitch/*.j2`` only loop and print.
The dialplan is a list of extensions (conditions and actions) per account context, printed
by one generic template; :mod:`zpctl.render.freeswitch_validate` checks the result.

A switch serves the accounts with a site in its data center or in that data center's
pair (the secondary takes over the primary's sites).  Calls arrive from the zone proxies
over TLS in context ``zpctl-in``, which hands each call to its account's context
(``acct-<id>``) by the Request-URI host (the account's SIP domain; the proxy keeps it and
reaches the switch through the destination URI).  Calls the switch places to users or the
PSTN go back through the zone's proxy (``sip_route_uri``: sent to it, the Request-URI
kept), the sister zone's as fallback.

Secrets (ESL password, voicemail and conference PINs) are global variables in
``secrets.xml`` (mode 0600), referenced as ``$${name}``; every other file is secret-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from zpctl.errors import RenderError
from zpctl.model import LoadedInventory, PlacedNode, catalog
from zpctl.model.pbx import STANDARD_PROMPTS, Pbx, callcenter_name, parse_route
from zpctl.model.pbx_checks import has_feature, monitor_targets
from zpctl.model.schema import Account, DataCenter, Inventory, Role, Site, User
from zpctl.render.paths import NodePaths
from zpctl.secrets import DB_PASSWORD_KEY, ESL_PASSWORD_KEY, Secrets

FS = "freeswitch"
PROFILE = "zpctl"  # the one sofia profile, facing the zone proxies
ENTRY_CONTEXT = "zpctl-in"
# One secret from which every initial voicemail and conference PIN is derived (per account
# and box), so the secrets file holds one value, not one per user.
PIN_SEED_KEY = "pin_seed"
# Who may send this switch calls without digest auth: the data center's zone proxies, and its
# other switches (an attended transfer whose two calls are on different switches: the
# first switch sends the INVITE with Replaces straight to the second).
PEER_ACL = "zpctl-peers"
VM_PROFILE_PREFIX = "acct-"
WEEKDAYS = {"sun": 1, "mon": 2, "tue": 3, "wed": 4, "thu": 5, "fri": 6, "sat": 7}  # FreeSWITCH wday
ISO_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}  # %u


def _minutes_regex(lo: int, hi: int) -> str:
    """Two-digit minutes lo..hi (inclusive) as a regex."""
    parts = []
    m = lo
    while m <= hi:
        if m % 10 == 0 and m + 9 <= hi:
            parts.append(f"{m // 10}[0-9]")
            m += 10
        else:
            parts.append(f"{m:02d}")
            m += 1
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def time_span_regex(span: str) -> str:
    """``HH:MM-HH:MM`` as a regex over ``HH:MM``, the start in, the end out (09:00-17:00
    takes 09:00 to 16:59)."""
    a, b = span.split("-")
    start = int(a[:2]) * 60 + int(a[3:])
    end = int(b[:2]) * 60 + int(b[3:])
    alts = []
    for hour in range(start // 60, (end - 1) // 60 + 1):
        lo = max(start, hour * 60) - hour * 60
        hi = min(end - 1, hour * 60 + 59) - hour * 60
        minutes = "[0-5][0-9]" if (lo, hi) == (0, 59) else _minutes_regex(lo, hi)
        alts.append(f"{hour:02d}:{minutes}")
    return "|".join(alts)
FEATURE_CODES = {"voicemail_own": "*97", "voicemail_any": "*98", "voicemail_direct": "*99",
                 "queue_in": "*75", "queue_out": "*76", "listen": "*30", "whisper": "*31",
                 "barge": "*32", "caller_id": "*5", "adhoc_record": "*2"}
# No mod_console: switches run without a console (-nc); mod_logfile writes the log.
# The voicemail index and mod_db's store (the voicemail locks) on the shared storage.
VOICEMAIL_DSN = "sqlite://$${zp_shared}/voicemail.db"
DB_DSN = "sqlite://$${zp_shared}/zpctl.db"
RECORDINGS_DSN = "sqlite://$${zp_shared}/recordings.db"  # the call-recording index
# The phrase macros mod_voicemail plays (name -> [(input pattern, prompt files)], first
# match wins; no files: plays nothing).  Numbers and dates are not spoken.
_ANY = "^(.*)$"
VOICEMAIL_MACROS: tuple[tuple[str, list[tuple[str, list[str]]]], ...] = (
    ("voicemail_play_greeting", [(_ANY, ["voicemail/vm-not_available.wav"])]),
    ("voicemail_record_message", [(_ANY, ["voicemail/vm-record_message.wav"])]),
    ("voicemail_ack", [("^saved$", ["voicemail/vm-message_saved.wav"]), (_ANY, [])]),
    ("voicemail_record_file_check", [(_ANY, [])]),
    ("voicemail_record_urgent_check", [(_ANY, [])]),
    ("voicemail_goodbye", [(_ANY, ["voicemail/vm-goodbye.wav"])]),
    ("voicemail_hello", [(_ANY, [])]),
    ("voicemail_enter_id", [(_ANY, ["voicemail/vm-enter_id.wav"])]),
    ("voicemail_enter_pass", [(_ANY, ["voicemail/vm-enter_pass.wav"])]),
    ("voicemail_fail_auth", [(_ANY, ["voicemail/vm-fail_auth.wav"])]),
    ("voicemail_invalid_extension", [(_ANY, ["voicemail/vm-fail_auth.wav"])]),
    ("voicemail_abort", [(_ANY, [])]),
    ("voicemail_message_count", [
        (r"^[1-9][0-9]*:(urgent-)?new$", ["voicemail/vm-you_have.wav",
                                          "voicemail/vm-new_messages.wav"]), (_ANY, [])]),
    ("voicemail_say_message_number", [(_ANY, [])]),
    ("voicemail_say_date", [(_ANY, [])]),
    ("voicemail_listen_file_check", [(_ANY, [])]),
    ("voicemail_menu", [(_ANY, ["voicemail/vm-main_menu.wav"])]),
    ("voicemail_disk_quota_exceeded", [(_ANY, [])]),
)
# The dial-by-name directory's phrase macros (mod_directory).  Its result menu must play
# (with no prompt, mod_directory reads no key and the caller is never transferred); each
# name is its own prompt, names/<name>.wav, spoken from the user's directory name.
NAMES_FOLDER = "names"
DIRECTORY_MACROS: tuple[tuple[str, list[tuple[str, list[str]]]], ...] = (
    ("directory_intro", [(_ANY, ["directory/dir-enter_person.wav"])]),
    ("directory_min_search_digits", [(_ANY, ["directory/dir-min_digits.wav"])]),
    ("directory_result_count", [("^0$", ["directory/dir-no_matching_results.wav"]), (_ANY, [])]),
    ("directory_result_count_too_large", [(_ANY, ["directory/dir-too_many_results.wav"])]),
    ("directory_result_item", [(_ANY, [])]),
    ("directory_result_say_name", [(_ANY, [f"$${{zp_sounds}}/{NAMES_FOLDER}/$1.wav"])]),
    ("directory_result_at", [(_ANY, [])]),
    ("directory_result_menu", [(_ANY, ["directory/dir-to_select_entry.wav"])]),
    ("directory_result_last", [(_ANY, ["directory/dir-last_entry.wav"])]),
)


def directory_name(name: str) -> str:
    """A user's name as the dial-by-name directory files and says it: no parenthesised
    notes ("Dave Dunn (supervisor)" is "Dave Dunn"), letters, digits, spaces, dots,
    apostrophes and hyphens only (it names the prompt file names/<name>.wav)."""
    plain = re.sub(r"\([^)]*\)", " ", name)
    plain = re.sub(r"[^\w .'-]", " ", plain)
    return " ".join(plain.split())


def uses_directory(pbx: Pbx) -> bool:
    """Some route of the account's PBX is the dial-by-name directory."""
    def walk(v: object) -> bool:
        if isinstance(v, dict):
            return any(walk(x) for x in v.values())
        if isinstance(v, list):
            return any(walk(x) for x in v)
        return v == "directory"
    return walk(pbx.model_dump())


MODULES = ("mod_logfile", "mod_event_socket", "mod_sofia", "mod_loopback",
           "mod_commands", "mod_dptools", "mod_db", "mod_hash", "mod_expr", "mod_dialplan_xml",
           "mod_voicemail", "mod_callcenter", "mod_valet_parking", "mod_conference",
           "mod_directory", "mod_sndfile", "mod_native_file", "mod_local_stream",
           "mod_tone_stream", "mod_say_en", "mod_lua")
CODEC_MODULES = {"opus": "mod_opus", "g729": "mod_g729"}


class RendererLike(Protocol):
    """What the main renderer (zpctl.render._Renderer) offers this module."""

    loaded: LoadedInventory
    secrets: Secrets

    @property
    def build(self) -> Any: ...

    def tpl(self, name: str, **ctx: Any) -> str: ...

    def paths(self, node: str) -> NodePaths: ...


def xa(value: object) -> str:
    """Escape for an XML attribute value in double quotes (what saxutils.escape with
    ``{'"': "&quot;"}`` does, without its dictionary walk: a large account's dialplan has
    tens of thousands of attributes)."""
    return (str(value).replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
            .replace('"', "&quot;"))


def var_name(*parts: str) -> str:
    """A global variable name from ids: letters, digits and underscores only."""
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def language_actions(language: str) -> list[tuple[str, str]]:
    """Set a channel's prompt language: its sound folder, and the phrase language whose
    macros voicemail plays (the languages section names each language by its code)."""
    return [("set", f"sound_prefix={sound_prefix(language)}"),
            ("set", f"default_language={language}")]


def sound_prefix(language: str) -> str:
    """The sound folder of one of the 40 prompt languages (the code is the folder)."""
    if language not in catalog.LANGUAGES:
        raise KeyError(language)
    return f"$${{zp_sounds}}/{language}"


def rx(value: str) -> str:
    """Escape regex metacharacters (PCRE and Python alike); '-' and letters stay readable."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", value)


# Every call the switch places goes to a zone proxy, the sister zone's after '|' only when
# this one could not take the call (down, timed out, overloaded): FreeSWITCH tries the next
# leg after any failure unless the failed leg's cause is in fail_on_single_reject ('!': any
# cause but these).  Without it a busy or declining user, a declining carrier, or a queue
# agent that lost a ring-all race got the INVITE a second time through the sister proxy
# (found by the queue flow: the agent rang again for its whole ring).
# With a cause list FreeSWITCH's originate no longer ends at its timeout (call_timeout)
# while a leg rings (switch_ivr_originate.c: the timeout check is skipped unless a failed
# leg's cause matches), so every such dial carries a per-leg leg_timeout, which still
# applies: ``ring_for(...)``.
PROXY_DOWN_CAUSES = ("NORMAL_TEMPORARY_FAILURE", "RECOVERY_ON_TIMER_EXPIRE",
                     "DESTINATION_OUT_OF_ORDER", "NETWORK_OUT_OF_ORDER", "SWITCH_CONGESTION")
NEXT_PROXY_ONLY_IF_DOWN = f"fail_on_single_reject=!{','.join(PROXY_DOWN_CAUSES)}"
PSTN_RING_SECONDS = 60  # a PSTN or rendezvous leg's ring before it is given up
PAGE_RING_SECONDS = 10  # a paging group member that does not auto-answer by then is left out


def ring_for(dial: str, seconds: int) -> str:
    """``dial`` (one leg, or ',' simultaneous legs) ringing ``seconds`` at most: the
    per-leg ``leg_timeout`` reaches the legs a ``user/`` endpoint places through the
    proxies (they inherit the leg's variables)."""
    return ",".join(f"[leg_timeout={seconds}]{leg}" for leg in dial.split(","))


def proxy_legs(proxies: Sequence[str], dest: str, leg_vars: str = "",
               seconds: int | None = None) -> str:
    """``sofia/<profile>/<dest>`` through each zone proxy in turn, the next only when the
    one before is down; ``leg_vars`` (``a=b,c=d``) and a ``leg_timeout`` on each leg."""
    extra = (f"leg_timeout={seconds}," if seconds is not None else "") + \
        (f"{leg_vars}," if leg_vars else "")
    return f"{{^^:{NEXT_PROXY_ONLY_IF_DOWN}}}" + "|".join(
        f"[{extra}{via_proxy(p)}]sofia/{PROFILE}/{dest}" for p in proxies)


def via_proxy(uri: str) -> str:
    """The per-leg variables of a call the switch places through the zone proxy ``uri``.
    Over TLS, ``sip_transport=tls`` too: FreeSWITCH picks the transport of its Contact
    from the Request-URI or that variable, never from ``sip_route_uri``, so without it the
    Contact named the UDP port and a BYE from the callee, relayed by the proxy over TLS to
    that port, never arrived (found by the queue flow: the agent hung up, the call stayed)."""
    tls = ",sip_transport=tls" if "transport=tls" in uri else ""
    return f"sip_route_uri={uri}{tls}"


def alternation(values: Iterable[str]) -> str:
    """``^(a|b)$`` for literal values (sorted, escaped)."""
    vals = sorted(set(values))
    return "^(" + "|".join(rx(v) for v in vals) + ")$"


def number_regex(patterns: Iterable[str]) -> str | None:
    """A regex matching caller numbers: E.164 exact, ``+1900*`` prefixes, ``anonymous``."""
    alts = []
    for p in sorted(set(patterns)):
        if p == "anonymous":
            alts.append("(?i:anonymous)")
        elif p.endswith("*"):
            alts.append(rx(p[:-1]) + "[0-9]*")
        else:
            alts.append(rx(p))
    return "^(" + "|".join(alts) + ")$" if alts else None


def voicemail_pin(secrets: Secrets, acct: Account, extension: str) -> str:
    """The voicemail PIN of ``extension``'s box, derived from the platform's PIN seed (what
    the switches are given; the user changes it on the phone)."""
    pol = acct.pbx.voicemail.pin
    return pin_digits(f"{secrets.get(PIN_SEED_KEY)}:vm:{acct.id}:{extension}",
                      pol.min_length, pol.forbid_trivial)


def conference_pin(secrets: Secrets, acct: Account, conference: str) -> str:
    """The PIN callers of one of the account's conferences enter."""
    return pin_digits(f"{secrets.get(PIN_SEED_KEY)}:conference:{acct.id}:{conference}", 6, True)


def pin_digits(seed: str, length: int, forbid_trivial: bool) -> str:
    """A PIN of ``length`` digits derived from a secret; never all-same or a straight run."""
    for n in range(1000):
        h = hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()
        pin = str(int(h, 16))[-length:].zfill(length)
        if not forbid_trivial or not _trivial(pin):
            return pin
    raise AssertionError("no acceptable PIN")  # pragma: no cover - 1000 tries never all fail


def _trivial(pin: str) -> bool:
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    return len(set(pin)) == 1 or steps in ({1}, {-1})


# --- dialplan as data ----------------------------------------------------------------------

@dataclass
class Cond:
    var: str = ""  # the condition's `field` attribute
    expression: str = ""
    time: dict[str, str] = dc_field(default_factory=dict)  # wday, time-of-day, year, mon, mday


@dataclass
class Ext:
    name: str
    conditions: list[Cond]
    actions: list[tuple[str, str]]  # (application, data)
    cont: bool = False
    inline: frozenset[str] = frozenset()  # apps whose actions run inline (set only)


def _cond_attrs(c: Cond) -> str:
    attrs = f' field="{xa(c.var)}" expression="{xa(c.expression)}"' if c.var else ""
    return attrs + "".join(f' {k}="{xa(v)}"' for k, v in c.time.items())


_RUNTIME_VAR = re.compile(r"(?<!\$)\$\{")


def _multiset(actions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Runs of two or more ``set`` actions as one ``multiset`` (a later value of the same
    variable replaces an earlier one).  Every application FreeSWITCH runs fires two events
    carrying all the channel's variables (CHANNEL_EXECUTE and _COMPLETE): a call through an
    account's context ran some twenty sets, and one multiset cut the switch's CPU per call
    by about an eighth (docs/PERFORMANCE.md).  A value that expands a channel variable at
    run time, or holds the separator, keeps its own ``set``: a multiset expands its whole
    argument before it sets anything."""
    out: list[tuple[str, str]] = []
    run: dict[str, str] = {}

    def flush() -> None:
        if len(run) == 1:
            out.append(("set", "=".join(next(iter(run.items())))))
        elif run:
            out.append(("multiset", "^^|" + "|".join(f"{k}={v}" for k, v in run.items())))
        run.clear()

    for app, data in actions:
        name, eq, value = data.partition("=")
        if app == "set" and eq and "|" not in data and not _RUNTIME_VAR.search(data):
            run.pop(name, None)
            run[name] = value
            continue
        flush()
        out.append((app, data))
    flush()
    return out


def extensions_xml(exts: Sequence[Ext]) -> str:
    """A context's ``<extension>`` elements (built here, not in the template: an account of
    a thousand users has tens of thousands of them, rendered for every switch and sync)."""
    out = []
    for e in exts:
        cont = ' continue="true"' if e.cont else ""
        out.append(f'    <extension name="{xa(e.name)}"{cont}>\n')
        last = len(e.conditions) - 1
        for i, c in enumerate(e.conditions):
            if i < last:
                out.append(f"      <condition{_cond_attrs(c)}/>\n")
                continue
            out.append(f"      <condition{_cond_attrs(c)}>\n")
            actions = _multiset(e.actions) if "set" in e.inline else e.actions
            for app, data in actions:
                value = f' data="{xa(data)}"' if data else ""
                inline = ' inline="true"' if app in e.inline or app == "multiset" else ""
                out.append(f'        <action application="{app}"{value}{inline}/>\n')
            out.append("      </condition>\n")
        out.append("    </extension>\n")
    return "".join(out)


def users_xml(users: Sequence[dict[str, Any]]) -> str:
    """A directory domain's ``<user>`` elements (built here for the same reason as
    :func:`extensions_xml`)."""
    out = []
    for u in users:
        out.append(f'          <user id="{u["id"]}">\n            <params>\n')
        out += [f'              <param name="{k}" value="{xa(v)}"/>\n' for k, v in u["params"]]
        out.append("            </params>\n            <variables>\n")
        out += [f'              <variable name="{k}" value="{xa(v)}"/>\n'
                for k, v in u["variables"]]
        out.append("            </variables>\n          </user>\n")
    return "".join(out)


class _Account:
    """The dialplan, directory and module configs of one account on one switch."""

    def __init__(self, inv: Inventory, acct: Account, node: PlacedNode, proxies: list[str],
                 secrets: Secrets) -> None:
        self.inv, self.acct, self.node, self.proxies, self.secrets = inv, acct, node, proxies, secrets
        self.pbx: Pbx = acct.pbx
        self.domain = inv.account_domain(acct)
        self.ctx = f"acct-{acct.id}"
        self.users = {u.extension: u for u in acct.users}
        self.sites = {s.id: s for s in acct.sites}
        self.exts: list[Ext] = []
        self.secret_vars: dict[str, str] = {}
        self.menus = {m.id: m for m in self.pbx.menus}

    # -- helpers ------------------------------------------------------------------------

    def moh(self, name: str | None) -> str:
        if name is not None:
            return f"local_stream://{self.acct.id}-{name}"
        if self.pbx.hold_music is not None:
            return f"local_stream://{self.acct.id}-{self.pbx.hold_music}"
        return "local_stream://default"

    def prompt(self, name: str) -> str:
        if name in STANDARD_PROMPTS:
            return name  # relative: resolved under the channel's sound_prefix
        return f"$${{zp_sounds}}/accounts/{self.acct.id}/{name}.wav"

    def user_lang(self, u: User) -> str:
        return u.language or self.sites[u.site].language

    def queue_name(self, qid: str) -> str:
        return callcenter_name(qid, self.domain)

    def agent_name(self, ext: str) -> str:
        return callcenter_name(ext, self.domain)

    def menu_name(self, mid: str) -> str:
        return f"{self.acct.id}-{mid}"

    def user_dial(self, ext: str) -> str:
        """The user's phones (the directory's dial string: through the zone proxies).  Ring
        it with :func:`ring_for`: the proxy failover needs a leg timeout."""
        return f"user/{ext}@{self.domain}"

    def agent_dial(self, ext: str) -> str:
        """A queue agent's contact: its sofia legs through the zone proxies, with the same
        variables as the user's dial string and a 15 s ring."""
        return proxy_legs(self.proxies, f"{ext}@{self.domain}",
                          f"sip_invite_domain={self.domain},presence_id={ext}@{self.domain}", 15)

    def pstn_dial(self, number: str) -> str:
        return proxy_legs(self.proxies, f"{number}@{self.domain}", seconds=PSTN_RING_SECONDS)

    def dest(self, route: str) -> tuple[str, str]:
        """(application, data) that sends a call along ``route``."""
        kind, ref = parse_route(route)
        if kind == "hangup":
            return "hangup", "NORMAL_CLEARING"
        if kind == "directory":
            return "directory", f"{PROFILE} {self.domain} {self.ctx}"
        target = {
            "user": ref,
            "voicemail": f"{FEATURE_CODES['voicemail_direct']}{ref}",
            "queue": next((q.extension for q in self.pbx.queues if q.id == ref), ""),
            "menu": f"ivr-{ref}",
            "receptionist": next((r.extension for r in self.pbx.auto_receptionists
                                  if r.id == ref), ""),
            "shared_line": next((s.extension for s in self.pbx.shared_lines if s.id == ref), ""),
            "conference": next((c.extension for c in self.pbx.conferences if c.id == ref), ""),
            "paging": next((g.extension for g in self.pbx.paging_groups if g.id == ref), ""),
            "park": next((lot.extension for lot in self.pbx.park_lots if lot.id == ref), ""),
            "external": ref,
        }[kind]
        return "transfer", f"{target} XML {self.ctx}"

    def site_actions(self, site: Site, language: str | None = None) -> list[tuple[str, str]]:
        return [("set", f"timezone={site.timezone}"),
                *language_actions(language or site.language),
                ("set", f"zp_site={site.id}")]

    def hours_exts(self, name: str, dest: str, timezone: str, hours: dict[str, list[str]],
                   holidays: Sequence[tuple[str, str]], holiday_route: tuple[str, str] | None,
                   open_action: tuple[str, str], closed: tuple[str, str],
                   language: str) -> None:
        """Holiday, open-hours and after-hours extensions for destination ``dest``, whose
        prompts are in ``language`` (set again here: a transfer hunts the dialplan anew, and
        the caller's own language would win)."""
        dcond = Cond("destination_number", f"^{rx(dest)}$")
        # The site's local time, "<weekday 1-7, Monday 1> <HH:MM> <YYYY-MM-DD>", set inline
        # in this same hunting pass, from the clock plus the global zp_clock_shift (seconds;
        # 0 unless a lab shifts it with `global_setvar` to try after-hours or a holiday
        # without waiting for one).
        self.exts.append(Ext(f"{name}-tz", [dcond], [
            ("set", f"timezone={timezone}"), *language_actions(language),
            ("set", f"zp_local_time=${{strftime_tz({timezone} "
                    "${expr(${strepoch()}+${zp_clock_shift})}|%u %H:%M %Y-%m-%d)}")],
            cont=True, inline=frozenset({"set"})))
        now = Cond("${zp_local_time}", "")
        if holiday_route is not None:
            for i, (hname, date) in enumerate(holidays):
                self.exts.append(Ext(f"{name}-holiday-{i + 1}", [
                    dcond, Cond(now.var, f"^[1-7] [0-9]{{2}}:[0-9]{{2}} {rx(date)}$")],
                    [("set", f"zp_holiday={hname}"), holiday_route]))
        for day in sorted(hours, key=lambda d: WEEKDAYS[d]):
            for span in hours[day]:
                self.exts.append(Ext(f"{name}-open-{day}-{span.replace(':', '')}", [
                    dcond, Cond(now.var, f"^{ISO_WEEKDAYS[day]} ({time_span_regex(span)}) ")],
                    [open_action]))
        self.exts.append(Ext(f"{name}-closed", [dcond], [("set", "zp_closed=true"), closed]))

    # -- the dialplan -------------------------------------------------------------------

    def dialplan(self) -> list[Ext]:
        acct, pbx = self.acct, self.pbx
        srtp = srtp_value(self.inv, self.node.dc)
        first_site = acct.sites[0]
        self.exts.append(Ext("zp-init", [Cond("destination_number", "^(.*)$")], [
            ("set", f"zp_account={acct.id}"), ("set", f"domain_name={self.domain}"),
            ("set", f"rtp_secure_media_inbound={srtp}"),
            ("export", f"nolocal:rtp_secure_media_outbound={srtp}"),
            ("set", f"hold_music={self.moh(None)}"),
            ("set", "hangup_after_bridge=true"), ("set", "continue_on_fail=true"),
            *self.site_actions(first_site)], cont=True, inline=frozenset({"set"})))
        # The caller's own site and language, caller ID, personal block lists.
        for site in acct.sites:
            exts = [u.extension for u in acct.users if u.site == site.id]
            if exts:
                self.exts.append(Ext(f"zp-caller-site-{site.id}",
                                     [Cond("caller_id_number", alternation(exts))],
                                     self.site_actions(site), cont=True, inline=frozenset({"set"})))
        for u in acct.users:
            up = pbx.users.get(u.extension)
            cid = (up.caller_ids[0] if up and up.caller_ids else
                   (u.dids[0] if u.dids else self.main_number(u.site)))
            # The default caller ID, unless one was picked already (*5<n>: that extension
            # sets it and transfers, and the transfer hunts the dialplan anew).
            self.exts.append(Ext(f"zp-caller-{u.extension}", [
                Cond("caller_id_number", f"^{u.extension}$"), Cond("${zp_caller_id}", "^$")],
                [("set", f"zp_caller_id={cid or u.extension}")], cont=True,
                inline=frozenset({"set"})))
            if u.language:
                self.exts.append(Ext(f"zp-caller-{u.extension}-language",
                                     [Cond("caller_id_number", f"^{u.extension}$")],
                                     language_actions(u.language), cont=True,
                                     inline=frozenset({"set"})))
        blocked = number_regex(pbx.blocking.blocked)
        if blocked:
            self.exts.append(Ext("zp-blocked", [Cond("caller_id_number", blocked)],
                                 [("hangup", "CALL_REJECTED")]))
        spam = number_regex(pbx.blocking.spam)
        if spam:
            self.exts.append(Ext("zp-spam", [Cond("caller_id_number", spam)],
                                 [("hangup", "UNWANTED")]))
        for ext, up in sorted(pbx.users.items()):
            personal = number_regex(up.blocked)
            if personal:
                self.exts.append(Ext(f"zp-blocked-{ext}", [
                    Cond("caller_id_number", personal),
                    Cond("destination_number", alternation([ext, *self.users[ext].dids]))],
                    [("hangup", "CALL_REJECTED")]))
        self.emergency()
        self.rendezvous()
        self.feature_codes()
        for r in pbx.auto_receptionists:
            self.receptionist(r.id)
        for m in pbx.menus:
            self.exts.append(Ext(f"ivr-{m.id}", [Cond("destination_number", f"^ivr-{m.id}$")],
                                 [("answer", ""), ("ivr", self.menu_name(m.id)),
                                  self.dest(m.on_failure)]))
        for q in pbx.queues:
            self.queue(q.id)
        for lot in pbx.park_lots:
            self.park(lot.id)
        for c in pbx.conferences:
            self.conference(c.id)
        for s in pbx.shared_lines:
            nums = [s.extension] + ([s.number] if s.number else [])
            self.exts.append(Ext(f"shared-{s.id}", [Cond("destination_number", alternation(nums))], [
                ("set", f"call_timeout={s.ring_seconds}"),
                ("set", f"effective_caller_id_name={s.name}: ${{caller_id_name}}"),
                ("bridge", ring_for(",".join(self.user_dial(m) for m in s.members), s.ring_seconds)),
                self.dest(s.overflow)]))
        for g in pbx.paging_groups:
            self.paging(g.id)
        for u in acct.users:
            self.user(u)
        self.exts.append(Ext("zp-pstn", [Cond("destination_number", r"^(\+[1-9][0-9]{6,14})$")], [
            ("set", "effective_caller_id_number=${zp_caller_id}"),
            ("set", f"sip_h_X-ZP-Account={acct.id}"),
            # the caller ID the proxies put on the PSTN leg: the user's pick (*5<n>)
            ("set", "sip_h_X-ZP-Caller=${zp_caller_id}"),
            ("bridge", self.pstn_dial("$1")), ("hangup", "${originate_disposition}")]))
        self.exts.append(Ext("zp-unknown", [Cond("destination_number", "^(.*)$")],
                             [("hangup", "UNALLOCATED_NUMBER")]))
        return self.exts

    def main_number(self, site_id: str) -> str | None:
        nums = [n.number for n in self.acct.numbers if n.site == site_id and n.kind == "main"]
        return nums[0] if nums else None

    def emergency(self) -> None:
        for site in self.acct.sites:
            codes = catalog.EMERGENCY_NUMBERS.get(site.country)
            exts = [u.extension for u in self.acct.users if u.site == site.id]
            if not codes or not exts:
                continue
            a = site.emergency_address
            addr = ", ".join(x for x in (a.street, a.city, a.state, a.postal_code, a.country) if x)
            cid = self.main_number(site.id)
            acts = [("set", f"sip_h_X-ZP-Emergency-Site={site.id}"),
                    ("set", f"sip_h_X-ZP-Emergency-Address={addr}"),
                    ("set", f"sip_h_X-ZP-Account={self.acct.id}"),
                    # the zone proxy adds the site's location and notifies (EMERGENCY.md)
                    ("set", f"sip_h_X-ZP-Site={self.acct.id}/{site.id}")]
            if cid:
                acts.append(("set", f"sip_h_X-ZP-Callback={cid}"))
            if cid:
                acts.append(("set", f"effective_caller_id_number={cid}"))
            acts += [("bridge", self.pstn_dial("$1")), ("hangup", "${originate_disposition}")]
            self.exts.append(Ext(f"emergency-{site.id}", [
                Cond("caller_id_number", alternation(exts)),
                Cond("destination_number", alternation(codes))], acts))

    def rendezvous(self) -> None:
        """A call for a conference, park lot or slot, or paging group that did not come
        through the proxies' rendezvous route (a transfer inside this switch) goes out to
        the zone proxy, which sends it to the data center's rendezvous switch: such a room
        lives on one switch, and every party must meet there."""
        numbers = rendezvous_numbers(self.acct)
        if not numbers:
            return
        dial = proxy_legs(self.proxies, f"$1@{self.domain}", seconds=PSTN_RING_SECONDS)
        self.exts.append(Ext("zp-rendezvous", [
            Cond(f"${{sip_h_{RENDEZVOUS_HEADER}}}", "^$"),
            # a call this switch placed itself for the room (a queue's callback) stays here
            Cond("${zp_rendezvous_here}", "^$"),
            Cond("destination_number", alternation(numbers))],
            [("bridge", dial), ("hangup", "${originate_disposition}")]))

    def feature_codes(self) -> None:
        acct, pbx, fc = self.acct, self.pbx, FEATURE_CODES
        vm_users = [u.extension for u in acct.users if has_feature(u, "voicemail")]
        vmp = f"{VM_PROFILE_PREFIX}{acct.id}"
        if vm_users:
            own = f"^{rx(fc['voicemail_own'])}$"
            # A box locked after too many wrong PINs (scripts/zp_vm_auth.lua) says so.
            self.exts.append(Ext("vm-own-locked", [
                Cond("caller_id_number", alternation(vm_users)), Cond("destination_number", own),
                Cond(f"${{db(select/zp_vmlock/${{caller_id_number}}@{self.domain})}}",
                     "^locked$")],
                [("answer", ""), ("playback", "voicemail/vm-locked.wav"),
                 ("hangup", "CALL_REJECTED")]))
            self.exts.append(Ext("vm-own", [Cond("caller_id_number", alternation(vm_users)),
                                            Cond("destination_number", own)],
                                 [("answer", ""),
                                  ("voicemail", f"check {vmp} {self.domain} ${{caller_id_number}}")]))
            self.exts.append(Ext("vm-any", [Cond("destination_number",
                                                 f"^{rx(fc['voicemail_any'])}$")],
                                 [("answer", ""), ("voicemail", f"check {vmp} {self.domain}")]))
            # Leaving a message: no "press 1 to listen, 3 to re-record" and no urgent
            # question after it (the caller hangs up or presses # and the message is kept);
            # the prompts in the box owner's language (the caller's may have been set).
            for u in sorted(acct.users, key=lambda x: x.extension):
                if has_feature(u, "voicemail"):
                    self.exts.append(Ext(f"vm-direct-{u.extension}", [Cond(
                        "destination_number", f"^{rx(fc['voicemail_direct'] + u.extension)}$")],
                        [("answer", ""), ("set", "skip_record_check=true"),
                         ("set", "skip_record_urgent_check=true"),
                         *language_actions(self.user_lang(u)),
                         ("voicemail", f"{vmp} {self.domain} {u.extension}")]))
        for q in pbx.queues:
            for a in q.agents:
                for code, cmd, sound in (
                        (fc["queue_in"], f"tier add {self.queue_name(q.id)} {self.agent_name(a.user)} "
                                         f"{a.level} {a.position}", "ivr/ivr-you_are_now_logged_in.wav"),
                        (fc["queue_out"], f"tier del {self.queue_name(q.id)} {self.agent_name(a.user)}",
                         "ivr/ivr-you_are_now_logged_out.wav")):
                    self.exts.append(Ext(f"queue-{q.id}-{code[1:]}-{a.user}", [
                        Cond("caller_id_number", f"^{a.user}$"),
                        Cond("destination_number", f"^{rx(code)}{q.extension}$")],
                        [("answer", ""), ("set", f"zp_cc=${{callcenter_config({cmd})}}"),
                         ("playback", sound), ("hangup", "NORMAL_CLEARING")]))
        for i, grant in enumerate(pbx.monitoring):
            targets = monitor_targets(acct, grant)
            if not targets:
                continue
            for mode in grant.modes:
                if mode == "takeover":
                    continue  # over ESL only: zpctl calls monitor --mode takeover
                acts = [("answer", ""), ("set", f"eavesdrop_require_group={acct.id}-$1"),
                        ("set", "eavesdrop_enable_dtmf=true")]
                if mode in ("whisper", "barge"):
                    acts.append(("set", "eavesdrop_whisper_bleg=true"))
                if mode == "barge":
                    acts.append(("set", "eavesdrop_whisper_aleg=true"))
                acts.append(("eavesdrop", "all"))
                self.exts.append(Ext(f"monitor-{grant.supervisor}-{i + 1}-{mode}", [
                    Cond("caller_id_number", f"^{grant.supervisor}$"),
                    Cond("destination_number", "^" + rx(fc[mode]) + alternation(targets)[1:])],
                    acts))
        for u in acct.users:
            up = pbx.users.get(u.extension)
            if up is None or len(up.caller_ids) < 2:
                continue
            for n, num in enumerate(up.caller_ids, start=1):
                self.exts.append(Ext(f"callerid-{u.extension}-{n}", [
                    Cond("caller_id_number", f"^{u.extension}$"),
                    Cond("destination_number", f"^{rx(fc['caller_id'])}{n}(.+)$")],
                    [("set", f"zp_caller_id={num}"), ("transfer", f"$1 XML {self.ctx}")]))

    def receptionist(self, rid: str) -> None:
        r = next(x for x in self.pbx.auto_receptionists if x.id == rid)
        site = self.sites[r.site]
        nums = [r.extension] + ([r.number] if r.number else [])
        route = f"ar-{r.id}"
        self.exts.append(Ext(f"receptionist-{r.id}", [Cond("destination_number", alternation(nums))],
                             [*self.site_actions(site, r.language), ("answer", ""),
                              ("transfer", f"{route} XML {self.ctx}")]))
        holiday = self.dest(r.holiday or r.after_hours)
        self.hours_exts(route, route, site.timezone,
                        {str(k): v for k, v in site.business_hours.items()},
                        [(h.name, h.date) for h in site.holidays], holiday,
                        ("ivr", self.menu_name(r.menu)), self.dest(r.after_hours),
                        r.language or site.language)

    def queue(self, qid: str) -> None:
        q = next(x for x in self.pbx.queues if x.id == qid)
        nums = [q.extension] + ([q.number] if q.number else [])
        acts = [*self.site_actions(self.sites[q.site]), ("answer", ""),
                ("playback", "ivr/ivr-your_call_is_being_placed_in_queue.wav")]
        if q.callbacks:
            acts.append(("set", f"cc_exit_keys={q.callback_key}"))
        acts += [("callcenter", self.queue_name(q.id)), ("transfer", f"q-{q.id}-after XML {self.ctx}")]
        self.exts.append(Ext(f"queue-{q.id}", [Cond("destination_number", alternation(nums))], acts))
        after = Cond("destination_number", f"^q-{q.id}-after$")
        if q.callbacks:
            # The caller pressed the callback key and hangs up; scripts/zp_queue_callback.lua
            # calls them back once an agent is free and puts that call into the queue.
            cid = q.number or self.main_number(q.site) or q.extension
            args = " ".join([self.queue_name(q.id), q.extension, self.ctx,
                             "${caller_id_number}", self.domain, cid, "3600"])
            self.exts.append(Ext(f"queue-{q.id}-callback", [
                after, Cond("${cc_cancel_reason}", "^EXIT_WITH_KEY$")], [
                ("playback", "ivr/ivr-you_will_be_called_back.wav"),
                ("set", f"zp_cb=${{luarun(zp_queue_callback.lua {args})}}"),
                ("hangup", "NORMAL_CLEARING")]))
        self.exts.append(Ext(f"queue-{q.id}-overflow", [after], [self.dest(q.overflow)]))

    def park(self, lid: str) -> None:
        lot = next(x for x in self.pbx.park_lots if x.id == lid)
        name = f"{self.acct.id}-{lot.id}"
        slots = lot.slot_numbers()
        common = [("set", f"valet_parking_timeout={lot.timeout_seconds}"),
                  ("set", f"valet_hold_music={self.moh(lot.hold_music)}"),
                  ("set", "valet_announce_slot=true")]
        rkind, _ = parse_route(lot.return_to)
        if rkind not in ("hangup", "directory"):
            _, data = self.dest(lot.return_to)
            exten, _, rest = data.partition(" XML ")
            common += [("set", f"valet_parking_orbit_exten={exten}"),
                       ("set", "valet_parking_orbit_dialplan=XML"),
                       ("set", f"valet_parking_orbit_context={rest}")]
        self.exts.append(Ext(f"park-{lot.id}", [Cond("destination_number", f"^{lot.extension}$")],
                             [*common, ("answer", ""),
                              ("valet_park", f"{name} auto in {slots[0]} {slots[-1]}")]))
        self.exts.append(Ext(f"park-{lot.id}-retrieve", [Cond("destination_number", alternation(slots))],
                             [("answer", ""), ("valet_park", f"{name} $1")]))

    def conference(self, cid: str) -> None:
        c = next(x for x in self.pbx.conferences if x.id == cid)
        prof = conference_profile(self.acct.id, c.id)
        room = f"{self.acct.id}-{c.id}"
        dcond = Cond("destination_number", f"^{c.extension}$")
        member = f"{room}@{prof}"
        if c.moderators:
            self.exts.append(Ext(f"conference-{c.id}-moderator", [
                Cond("caller_id_number", alternation(c.moderators)), dcond],
                [("answer", ""), ("conference", f"{room}@{prof}+flags{{moderator}}")]))
            # With moderators the conference starts when one joins: members wait with
            # hold music until then (and hear nobody).
            member += "+flags{wait-mod}"
        self.exts.append(Ext(f"conference-{c.id}", [dcond],
                             [("answer", ""), ("conference", member)]))

    def paging(self, gid: str) -> None:
        g = next(x for x in self.pbx.paging_groups if x.id == gid)
        senders = g.senders or g.members
        dcond = Cond("destination_number", f"^{g.extension}$")
        # Members are muted: a page is one way.  FreeSWITCH 1.10+ reads the flags from
        # conference_utils_auto_outcall_flags (its code, conference_loop.c), the older
        # versions and the documentation from conference_auto_outcall_flags: both are set
        # (found by the paging flow: with only the documented one the members talked back).
        acts = [("answer", ""),
                ("set", "conference_auto_outcall_flags=mute"),
                ("set", "conference_utils_auto_outcall_flags=mute"),
                ("set", "conference_auto_outcall_prefix={sip_auto_answer=true}"),
                ("set", f"conference_auto_outcall_caller_id_name=Page {g.id}"),
                ("set", f"conference_auto_outcall_timeout={PAGE_RING_SECONDS}")]
        acts += [("conference_set_auto_outcall", ring_for(self.user_dial(m), PAGE_RING_SECONDS))
                 for m in sorted(g.members)]
        acts.append(("conference", f"page-{self.acct.id}-{g.id}-${{uuid}}@{paging_profile()}"
                                   "+flags{endconf}"))
        self.exts.append(Ext(f"paging-{g.id}", [Cond("caller_id_number", alternation(senders)), dcond],
                             acts))
        self.exts.append(Ext(f"paging-{g.id}-refused", [dcond],
                             [("playback", "ivr/ivr-call_rejected.wav"), ("hangup", "CALL_REJECTED")]))

    def user(self, u: User) -> None:
        ext = u.extension
        up = self.pbx.users.get(ext)
        rules = {r.when: r.to for r in (up.forwarding if up else [])}
        site = self.sites[u.site]
        nums = [ext, *u.dids]
        ring = f"u-{ext}-ring"
        pre = [*self.site_actions(site, self.user_lang(u)),
               ("export", f"eavesdrop_group={self.acct.id}-{ext}")]
        if up is not None and up.hold_music:
            pre.append(("set", f"hold_music={self.moh(up.hold_music)}"))
        entry = Cond("destination_number", alternation(nums))
        if up is not None and up.do_not_disturb:
            dnd = self.dest(f"voicemail:{ext}") if has_feature(u, "voicemail") \
                else ("hangup", "USER_BUSY")
            self.exts.append(Ext(f"user-{ext}-dnd", [entry], [*pre, dnd]))
            return
        if "always" in rules:
            self.exts.append(Ext(f"user-{ext}-always", [entry], [*pre, self.dest(rules["always"])]))
            return
        if "after_hours" in rules or "holiday" in rules:
            hours = (up.business_hours if up and up.business_hours is not None
                     else dict(site.business_hours))
            hols = up.holidays if up and up.holidays is not None else site.holidays
            self.exts.append(Ext(f"user-{ext}", [entry],
                                 [*pre, ("transfer", f"u-{ext}-hours XML {self.ctx}")]))
            closed = self.dest(rules["after_hours"]) if "after_hours" in rules else \
                ("transfer", f"{ring} XML {self.ctx}")
            self.hours_exts(f"u-{ext}-hours", f"u-{ext}-hours", site.timezone,
                            {str(k): v for k, v in hours.items()},
                            [(h.name, h.date) for h in hols],
                            self.dest(rules["holiday"]) if "holiday" in rules else None,
                            ("transfer", f"{ring} XML {self.ctx}"), closed, self.user_lang(u))
            entry = Cond("destination_number", f"^{ring}$")
            pre = []
        acts = [*pre, ("set", f"call_timeout={up.ring_seconds if up else 25}")]
        if has_feature(u, "call_recording_automatic"):
            if self.pbx.recording.announce:
                acts.append(("playback", "ivr/ivr-this_call_may_be_recorded.wav"))
            # the call record names the file (switch_cdr.recording)
            acts += [("set", f"zp_recording={self.recording_path()}"),
                     ("record_session", "${zp_recording}")]
        if has_feature(u, "call_recording_adhoc"):
            acts.append(("bind_meta_app", f"{FEATURE_CODES['adhoc_record'][1:]} ab s "
                                          f"record_session::{self.recording_path()}"))
        acts += [("bridge", ring_for(self.user_dial(ext), up.ring_seconds if up else 25)),
                 ("transfer", f"u-{ext}-failed XML {self.ctx}")]
        self.exts.append(Ext(f"user-{ext}-ring" if entry.expression.startswith("^u-") else f"user-{ext}",
                             [entry], acts))
        fallback = f"voicemail:{ext}" if has_feature(u, "voicemail") else "hangup"
        failed = Cond("destination_number", f"^u-{ext}-failed$")
        for when, causes in (("busy", "^(USER_BUSY)$"),
                             ("no_answer", "^(NO_ANSWER|NO_USER_RESPONSE|ALLOTTED_TIMEOUT)$")):
            if when in rules:
                self.exts.append(Ext(f"user-{ext}-{when}", [
                    failed, Cond("${originate_disposition}", causes)], [self.dest(rules[when])]))
        self.exts.append(Ext(f"user-{ext}-unavailable", [failed],
                             [self.dest(rules.get("unavailable", fallback))]))

    def recording_path(self) -> str:
        fmt = self.pbx.recording.file_format
        return (f"$${{zp_recordings}}/{self.acct.id}/${{strftime(%Y-%m-%d)}}/"
                f"${{uuid}}.{fmt}")

    # -- directory, secrets and module configs -------------------------------------------

    def directory(self) -> dict[str, Any]:
        users = []
        for u in sorted(self.acct.users, key=lambda x: x.extension):
            vm = has_feature(u, "voicemail")
            params = [("directory-visible", "true"), ("directory-exten-visible", "true"),
                      ("vm-enabled", "true" if vm else "false")]
            if vm:
                key = var_name("zp_vm_pin", self.acct.id, u.extension)
                self.secret_vars[key] = voicemail_pin(self.secrets, self.acct, u.extension)
                params.append(("vm-password", f"$${{{key}}}"))
            variables = [("effective_caller_id_name", u.name),
                         ("directory_full_name", directory_name(u.name)),
                         ("effective_caller_id_number", u.extension),
                         ("user_context", self.ctx), ("zp_account", self.acct.id),
                         ("zp_site", u.site), ("zp_language", self.user_lang(u)),
                         ("sound_prefix", sound_prefix(self.user_lang(u))),
                         ("default_language", self.user_lang(u))]
            if has_feature(u, "video_mail"):
                variables.append(("zp_video_mail", "true"))
            if has_feature(u, "voicemail_transcription"):
                variables.append(("zp_vm_transcription",
                                  self.pbx.voicemail.transcription_hook or "platform"))
            users.append({"id": u.extension, "params": params, "variables": variables})
        # One {} for every leg, with ':' as the separator (`^^:`): a comma inside {} would
        # split the dial string into simultaneous legs (FreeSWITCH then fails each with
        # CHAN_NOT_IMPLEMENTED).  Legs after '|' are tried in turn: this zone's proxy first,
        # the sister's only when it is down; the ring's bound comes from the caller's leg
        # (``ring_for``), whose variables these legs inherit.
        dial = (f"{{^^:{NEXT_PROXY_ONLY_IF_DOWN}:sip_invite_domain=${{dialed_domain}}"
                ":presence_id=${dialed_user}@${dialed_domain}}"
                + "|".join(f"[{via_proxy(p)}]sofia/{PROFILE}/${{dialed_user}}@${{dialed_domain}}"
                           for p in self.proxies))
        return {"domain": self.domain, "params": [("dial-string", dial)],
                "variables": [("user_context", self.ctx), ("zp_account", self.acct.id)],
                "users": users}

    def conference_profiles(self) -> list[dict[str, Any]]:
        out = []
        for c in self.pbx.conferences:
            params = [("rate", "16000"), ("interval", "20"), ("energy-level", "100"),
                      ("comfort-noise", "true"), ("max-members", str(c.max_members)),
                      ("moh-sound", self.moh(None)),
                      ("sound-prefix", sound_prefix(self.acct.sites[0].language))]
            if c.pin:
                key = var_name("zp_conf_pin", self.acct.id, c.id)
                self.secret_vars[key] = conference_pin(self.secrets, self.acct, c.id)
                params += [("pin", f"$${{{key}}}"), ("pin-sound", "conference/conf-pin.wav"),
                           ("bad-pin-sound", "conference/conf-bad-pin.wav")]
            if c.record:
                params.append(("auto-record", f"$${{zp_recordings}}/{self.acct.id}/conference-"
                                              f"{c.id}-${{strftime(%Y%m%d-%H%M%S)}}.wav"))
            out.append({"name": conference_profile(self.acct.id, c.id), "params": params})
        return out

    def ivr_menus(self) -> list[dict[str, Any]]:
        out = []
        for m in self.pbx.menus:
            greet = self.prompt(m.greeting)
            entries = []
            for key, target in sorted(m.keys.items()):
                kind, ref = parse_route(target)
                if kind == "menu":
                    entries.append(("menu-sub", key, self.menu_name(ref)))
                elif kind == "back":
                    entries.append(("menu-back", key, ""))
                elif kind == "top":
                    entries.append(("menu-top", key, ""))
                elif kind == "repeat":
                    entries.append(("menu-play-sound", key, greet))
                else:
                    app, data = self.dest(target)
                    entries.append(("menu-exec-app", key, f"{app} {data}"))
            fail_app, fail_data = self.dest(m.on_failure)
            out.append({
                "name": self.menu_name(m.id),
                "attrs": [("greet-long", greet), ("greet-short", greet),
                          ("invalid-sound", "ivr/ivr-that_was_an_invalid_entry.wav"),
                          ("exit-sound", "voicemail/vm-goodbye.wav"),
                          ("timeout", str(m.timeout_seconds * 1000)), ("inter-digit-timeout", "2000"),
                          ("max-failures", str(m.max_failures)), ("max-timeouts", str(m.max_failures)),
                          ("exec-on-max-failures", f"{fail_app} {fail_data}"),
                          ("exec-on-max-timeouts", f"{fail_app} {fail_data}"), ("digit-len", "1")],
                "entries": entries})
        return out

    def callcenter(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]],
                                  list[dict[str, str]]]:
        queues: list[dict[str, Any]] = []
        agents: dict[str, dict[str, str]] = {}
        tiers: list[dict[str, str]] = []
        for q in self.pbx.queues:
            params = [("strategy", q.strategy), ("moh-sound", self.moh(q.hold_music)),
                      ("time-base-score", "system"), ("max-wait-time", str(q.max_wait_seconds)),
                      ("max-wait-time-with-no-agent", str(q.max_wait_seconds)),
                      ("max-wait-time-with-no-agent-time-reached", "5"),
                      ("tier-rules-apply", "false"), ("tier-rule-wait-second", "300"),
                      ("tier-rule-wait-multiply-level", "true"),
                      ("tier-rule-no-agent-no-wait", "false"), ("discard-abandoned-after", "60"),
                      ("abandoned-resume-allowed", "false")]
            if q.record:
                params.append(("record-template", self.recording_path()))
            if q.announce:
                params += [("announce-sound", self.prompt(q.announce)),
                           ("announce-frequency", str(q.announce_seconds))]
            queues.append({"name": self.queue_name(q.id), "params": params})
            for a in q.agents:
                name = self.agent_name(a.user)
                prev = agents.get(name)
                wrap = max(q.wrap_up_seconds, int(prev["wrap-up-time"]) if prev else 0)
                agents[name] = {"name": name, "type": "callback",
                                "contact": self.agent_dial(a.user),
                                "status": "Available", "max-no-answer": "3",
                                "wrap-up-time": str(wrap), "reject-delay-time": "10",
                                "busy-delay-time": "30", "no-answer-delay-time": "20"}
                if a.opted_in:
                    tiers.append({"agent": name, "queue": self.queue_name(q.id),
                                  "level": str(a.level), "position": str(a.position)})
        return queues, agents, tiers

    def voicemail_profile(self) -> dict[str, Any]:
        pol = self.pbx.voicemail
        return {"name": f"{VM_PROFILE_PREFIX}{self.acct.id}", "params": [
            ("file-extension", "wav"), ("terminator-key", "#"),
            ("max-login-attempts", str(pol.pin.max_attempts)), ("digit-timeout", "10000"),
            ("min-record-len", "3"), ("max-record-len", str(pol.max_message_seconds)),
            ("max-retries", "3"), ("tone-spec", "%(1000, 0, 640)"),
            ("callback-dialplan", "XML"), ("callback-context", self.ctx),
            ("play-new-messages-key", "1"), ("play-saved-messages-key", "2"),
            ("login-keys", "0"), ("main-menu-key", "0"), ("config-menu-key", "5"),
            ("record-greeting-key", "1"), ("choose-greeting-key", "2"), ("change-pass-key", "6"),
            ("record-name-key", "3"), ("record-file-key", "3"), ("listen-file-key", "1"),
            ("save-file-key", "2"), ("delete-file-key", "7"), ("undelete-file-key", "8"),
            ("email-key", "4"), ("pause-key", "0"), ("restart-key", "1"), ("ff-key", "6"),
            ("rew-key", "4"), ("skip-greet-key", "#"), ("previous-message-key", "1"),
            ("next-message-key", "3"), ("repeat-message-key", "0"), ("urgent-key", "*"),
            ("operator-key", "9"), ("vmain-key", "*"), ("vmain-extension", FEATURE_CODES["voicemail_any"]),
            ("operator-extension", f"0 XML {self.ctx}"),
            # Boxes and their index are shared by the data center's switches: a message
            # left through one switch is heard through any other.
            ("storage-dir", f"$${{zp_shared}}/voicemail/{self.acct.id}"),
            ("odbc-dsn", VOICEMAIL_DSN),
            ("record-silence-threshold", "200"), ("record-silence-hits", "2"),
            ("record-sample-rate", "8000"), ("play-date-announcement", "first"),
            ("allow-empty-password-auth", "false")]}


def conference_profile(acct: str, conf: str) -> str:
    return f"zp-{acct}-{conf}"


def paging_profile() -> str:
    return "zp-paging"


def srtp_value(inv: Inventory, dc: DataCenter) -> str:
    """``rtp_secure_media`` mode and canonical suites from the security policy.

    ``mandatory`` by default: a switch's every leg ends at a media node (the zone proxy's
    rtpengine for phones, the sbc's for trunks), which applies each client's own policy
    (plain RTP where allowed) on the far side.  So the switch's legs are SRTP, and its
    offers carry one ``RTP/SAVP`` stream (``optional`` would offer a second, plain one:
    FreeSWITCH's best-effort SRTP).  With ``switch_legs: plain`` it is ``forbidden``: plain
    RTP on every leg, which FreeSWITCH's call recovery can resume (it restores no SDES
    keys; docs/FREESWITCH.md, "Switch failure and the standby")."""
    s = inv.security.srtp
    if inv.switch_legs(dc) == "plain":
        return "forbidden"
    suites = list(dict.fromkeys([s.apps, s.devices_upgraded, s.devices]))
    return ":".join(["mandatory", *suites])


SWITCH_DB_PASSWORD_KEY = "switch_db_password"  # noqa: S105 - a key name, not a secret


def core_db_name(switch: str) -> str:
    """The switch's own database on the switch_recovery server."""
    return "fs_" + switch.replace("-", "_").replace(".", "_")


# switch_cdr's columns and the channel variables mod_cdr_pg_csv fills them from (at
# hangup; ``hostname_zp`` is the switch's global variable, which a channel lookup reaches).
CDR_FIELDS = (
    ("uuid", "uuid"), ("originator_uuid", "originating_leg_uuid"),
    ("bridged_to", "last_bridge_to"), ("call_id", "sip_call_id"), ("direction", "direction"),
    ("node", "hostname_zp"), ("account", "zp_account"), ("caller", "caller_id_number"),
    ("destination", "destination_number"), ("start_us", "start_uepoch"),
    ("answer_us", "answer_uepoch"), ("end_us", "end_uepoch"), ("hangup_cause", "hangup_cause"),
    ("disposition", "sip_hangup_disposition"), ("sip_status", "sip_term_status"),
    ("read_codec", "read_codec"), ("write_codec", "write_codec"),
    ("srtp", "rtp_secure_media_negotiated"), ("mos", "rtp_audio_in_mos"),
    ("jitter", "rtp_audio_in_jitter_max_variance"),
    ("packets_in", "rtp_audio_in_packet_count"), ("packets_lost", "rtp_audio_in_skip_packet_count"),
    ("packets_out", "rtp_audio_out_packet_count"), ("recording", "zp_recording"),
    # "true" on a channel a standby switch recovered (its start is the recovery's)
    ("recovered", "recovered"),
)


# The switch's PostgreSQL passwords: a libpq password file (PGPASSFILE, mode 0600) beside
# its config, never in a DSN.  FreeSWITCH prints a DSN in its log when the database does
# not answer ("The sql server is not responding for DSN ..."): a password there would be
# in every such line.
PGPASS_FILE = "pgpass"


def cdr_db_info(inv: Inventory) -> str:
    """mod_cdr_pg_csv's libpq conninfo: the platform database, with the platform's role
    (the password comes from the switch's password file)."""
    db = inv.database
    return f"host={db.host} port={db.port} dbname={db.name} user={db.user} connect_timeout=2"


def core_db_dsn(inv: Inventory, switch: str) -> str:
    """FreeSWITCH's ``core-db-dsn`` (mod_pgsql: ``pgsql://`` and a libpq conninfo; the
    password comes from the switch's password file)."""
    rec = inv.switch_recovery
    assert rec is not None
    return (f"pgsql://hostaddr={rec.db_host} port={rec.db_port} dbname={core_db_name(switch)} "
            f"user={rec.db_user} connect_timeout=3")


def _pgpass_field(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def pgpass(inv: Inventory, secrets: Secrets) -> str:
    """The switch's libpq password file: the switches' role on the switch_recovery server,
    the platform's role on the platform database."""
    lines: list[tuple[object, ...]] = []
    rec, db = inv.switch_recovery, inv.database
    if rec is not None:
        lines.append((rec.db_host, rec.db_port, "*", rec.db_user,
                      secrets.get(SWITCH_DB_PASSWORD_KEY)))
    if db.engine == "postgres":
        lines.append((db.host, db.port, db.name, db.user, secrets.get(DB_PASSWORD_KEY)))
    return "".join(":".join(_pgpass_field(f) for f in line) + "\n" for line in lines)


# The proxies mark a call they sent to the rendezvous switch with this header.
RENDEZVOUS_HEADER = "X-ZP-Rendezvous"


def rendezvous_numbers(acct: Account) -> list[str]:
    """The extensions of an account whose calls must meet on one switch: conferences, park
    lots and their slots, paging groups, queues and their agents' opt-in and opt-out codes
    (a queue's callers and its agents' state live in one switch's mod_callcenter)."""
    pbx = acct.pbx
    out = [c.extension for c in pbx.conferences]
    for q in pbx.queues:
        out += [q.extension, FEATURE_CODES["queue_in"] + q.extension,
                FEATURE_CODES["queue_out"] + q.extension]
    for lot in pbx.park_lots:
        out += [lot.extension, *lot.slot_numbers()]
    out += [g.extension for g in pbx.paging_groups]
    return sorted(set(out))


@dataclass(frozen=True)
class SwitchDocument:
    """One account's dialplan context or directory domain as switch ``node`` is to have it:
    a row of the platform database's switch_xml (written by ``zpctl accounts sync``; the
    switch's scripts/zp_accounts.lua copies it into its accounts folder and reloads)."""

    node: str
    section: str  # "dialplan" | "directory"
    name: str  # the context, or the domain
    body: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()


def served_parts(loaded: LoadedInventory, secrets: Secrets, p: PlacedNode
                 ) -> Iterable[tuple[str, str, str, dict[str, Any], dict[str, str]]]:
    """What switch ``p`` takes from the platform database, per account: (section, name,
    template, template context, the secret variables the rendering references).  The same
    templates and context as the deployed files."""
    proxies = proxy_uris(loaded, p)
    for acct in served_accounts(loaded.model, p):
        a = _Account(loaded.model, acct, p, proxies, secrets)
        dialplan = {"context": a.ctx, "extensions": a.dialplan(), "account": acct}
        yield "dialplan", a.ctx, "dialplan/account.xml.j2", dialplan, a.secret_vars
        directory = {"d": a.directory(), "account": acct}
        yield "directory", a.domain, "directory/account.xml.j2", directory, a.secret_vars


# How often a switch asks the platform database whether its accounts changed (one small
# query of digests; a changed document is copied and the XML reloaded).
ACCOUNTS_POLL_MS = 500


def accounts_folder(paths: NodePaths) -> str:
    """Where a switch keeps its copies of the database's account documents (state: they
    outlive a restart, so a switch that starts with the database down has the last ones)."""
    return f"{paths.state}/{FS}/accounts"


def served_accounts(inv: Inventory, node: PlacedNode) -> list[Account]:
    """Accounts with a site in the switch's data center or in its pair."""
    dcs = {node.dc.id, node.dc.pair}
    return sorted((a for a in inv.accounts if any(s.datacenter in dcs for s in a.sites)),
                  key=lambda a: a.id)


def proxy_uris(loaded: LoadedInventory, node: PlacedNode) -> list[str]:
    """The zone's proxy first, then the sister zone's, as TLS URIs."""
    assert node.zone is not None
    zones = sorted(node.dc.zones, key=lambda z: (z != node.zone, z))
    out = []
    for z in zones:
        proxy = loaded.zone_node(node.dc, z, Role.PROXY)
        if proxy is not None:
            out.append(f"sip:{proxy.address}:{proxy.ports.sips};transport=tls")
    return out


def proxy_addresses(loaded: LoadedInventory, node: PlacedNode) -> list[str]:
    out = set()
    for z in sorted(node.dc.zones):
        proxy = loaded.zone_node(node.dc, z, Role.PROXY)
        if proxy is not None:
            out.add(f"{proxy.address}/32")
    return sorted(out)


def switch_addresses(loaded: LoadedInventory, node: PlacedNode) -> list[str]:
    """The data center's other switches (an attended transfer's INVITE with Replaces comes
    straight from the switch that took the REFER)."""
    return sorted(f"{p.node.address}/32" for p in loaded.nodes()
                  if p.role == Role.SWITCH and p.dc.id == node.dc.id and p.name != node.name)


def posix_tz(name: str) -> str:
    """The POSIX TZ rule of a tz database zone (``America/New_York`` ->
    ``EST5EDT,M3.2.0,M11.1.0``), as FreeSWITCH's timezones.conf wants it: the footer of the
    zone's TZif file, from the system's tz database or the ``tzdata`` package."""
    zoneinfo.ZoneInfo(name)  # the schema checked it; an unknown zone fails here
    data = b""
    for base in zoneinfo.TZPATH:
        path = Path(base, *name.split("/"))
        if path.is_file():
            data = path.read_bytes()
            break
    else:
        with contextlib.suppress(ModuleNotFoundError, OSError):  # no tzdata package either
            data = resources.files("tzdata").joinpath("zoneinfo", *name.split("/")).read_bytes()
    lines = data.rstrip(b"\n").rsplit(b"\n", 1)
    if not data.startswith(b"TZif") or len(lines) != 2 or not lines[1]:
        raise RenderError(f"no POSIX rule for time zone {name} in the tz database "
                          "(install tzdata)")
    return lines[1].decode("ascii")


def tls_versions(min_version: str) -> str:
    """``tls-version`` tokens, comma-separated without spaces."""
    return "tlsv1.3" if min_version == "TLSv1.3" else "tlsv1.2,tlsv1.3"


def render_switch(r: RendererLike, p: PlacedNode) -> None:
    """Render every FreeSWITCH file of switch node ``p`` into ``r.build``."""
    loaded, inv = r.loaded, r.loaded.model
    paths = r.paths(p.name)
    proxies = proxy_uris(loaded, p)
    accounts = [_Account(inv, a, p, proxies, r.secrets) for a in served_accounts(inv, p)]
    base = f"{p.name}/{FS}"
    conf_dir = f"{paths.config}/{FS}"
    languages = sorted({*(s.language for a in accounts for s in a.acct.sites),
                        *(u.language for a in accounts for u in a.acct.users if u.language),
                        *(ar.language for a in accounts for ar in a.pbx.auto_receptionists
                          if ar.language), "en-US"})
    zones = [(tz, posix_tz(tz)) for tz in sorted({s.timezone for a in accounts
                                                  for s in a.acct.sites})]
    common = {"node": p.node, "dc": p.dc, "zone": p.zone, "xa": xa, "profile": PROFILE,
              "entry_context": ENTRY_CONTEXT}

    def add(rel: str, template: str, mode: int = 0o644, **ctx: Any) -> None:
        r.build.add(f"{base}/{rel}", r.tpl(f"{template}.j2", **common, **ctx), mode)

    dialplans = {a.acct.id: a.dialplan() for a in accounts}
    directories = {a.acct.id: a.directory() for a in accounts}
    conf_profiles = [cp for a in accounts for cp in a.conference_profiles()]
    cc = [a.callcenter() for a in accounts]
    music = [("default", "$${zp_music}/default")]
    music += [(f"{a.acct.id}-{m}", f"$${{zp_music}}/{a.acct.id}/{m}") for a in accounts
              for m in sorted(a.pbx.music)]
    secret_vars = {"esl_password": r.secrets.get(ESL_PASSWORD_KEY)}
    core_db = core_db_dsn(inv, p.name) if inv.switch_recovery is not None else ""
    if core_db:
        secret_vars["zp_core_db_dsn"] = core_db
    for a in accounts:
        secret_vars.update(a.secret_vars)
    records = inv.database.engine == "postgres"  # a sqlite file is not every switch's
    if records:
        secret_vars["zp_cdr_db_info"] = cdr_db_info(inv)
    codecs = inv.media.codecs
    modules = list(MODULES) + sorted({CODEC_MODULES[c] for c in codecs if c in CODEC_MODULES})
    if records:
        modules.append("mod_cdr_pg_csv")

    add("freeswitch.xml", "freeswitch.xml", accounts=accounts_folder(paths) if records else "")
    add("vars.xml", "vars.xml", globals=[
        ("hostname_zp", p.name), ("zp_sounds", f"{paths.state}/{FS}/sounds"),
        ("zp_music", f"{paths.state}/{FS}/music"), ("zp_recordings", f"{paths.state}/{FS}/recordings"),
        ("zp_storage", f"{paths.state}/{FS}/storage"), ("hold_music", "local_stream://default"),
        ("rtp_secure_media_inbound", srtp_value(inv, p.dc)),
        ("rtp_secure_media_outbound", srtp_value(inv, p.dc)),
        ("zp_shared", paths.shared), ("zp_clock_shift", "0"),
        # RTP without gaps while nothing plays (a menu waiting for digits): FreeSWITCH does
        # it by itself for SRTP legs only (switch_rtp.c); plain switch legs had none, and
        # a caller in a menu heard no packets at all.
        ("send_silence_when_idle", "-1"),
        ("default_language", "en-US"), ("sound_prefix", sound_prefix("en-US")),
        # The profile is TLS only, so every leg's Contact must name TLS.  A leg that sets
        # no sip_transport reads this global one: the leg of an attended transfer's INVITE
        # with Replaces (placed with no variables of ours) named a UDP Contact, and the
        # BYE of the far switch never arrived (found by the transfer-attended flow).
        ("sip_transport", "tls")])
    add("secrets.xml", "secrets.xml", mode=0o600, secrets=sorted(secret_vars.items()))
    passwords = pgpass(inv, r.secrets)
    if passwords:
        r.build.add(f"{base}/{PGPASS_FILE}", passwords, 0o600)
    add("autoload_configs/modules.conf.xml", "autoload_configs/modules.conf.xml", modules=modules)
    add("autoload_configs/switch.conf.xml", "autoload_configs/switch.conf.xml",
        max_sessions=p.node.capacity.cps * 10, sps=p.node.capacity.cps,
        rtp_min=p.node.rtp.port_min, rtp_max=p.node.rtp.port_max, core_db=bool(core_db))
    if core_db:
        add("autoload_configs/pre_load_modules.conf.xml",
            "autoload_configs/pre_load_modules.conf.xml")
    add("autoload_configs/acl.conf.xml", "autoload_configs/acl.conf.xml",
        lists=[(PEER_ACL, proxy_addresses(loaded, p) + switch_addresses(loaded, p))])
    add("autoload_configs/event_socket.conf.xml", "autoload_configs/event_socket.conf.xml",
        esl_acl=",".join(inv.platform.management_networks))
    add("autoload_configs/logfile.conf.xml", "autoload_configs/logfile.conf.xml",
        log_file=f"{paths.log}/freeswitch.log")
    add("autoload_configs/sofia.conf.xml", "autoload_configs/sofia.conf.xml")
    add("autoload_configs/local_stream.conf.xml", "autoload_configs/local_stream.conf.xml",
        streams=music)
    add("autoload_configs/ivr.conf.xml", "autoload_configs/ivr.conf.xml",
        menus=[m for a in accounts for m in a.ivr_menus()])
    add("autoload_configs/callcenter.conf.xml", "autoload_configs/callcenter.conf.xml",
        queues=[q for c in cc for q in c[0]],
        agents=sorted((ag for c in cc for ag in c[1].values()), key=lambda x: x["name"]),
        tiers=[t for c in cc for t in c[2]], instance=p.name)
    add("autoload_configs/voicemail.conf.xml", "autoload_configs/voicemail.conf.xml",
        profiles=[a.voicemail_profile() for a in accounts])
    add("autoload_configs/conference.conf.xml", "autoload_configs/conference.conf.xml",
        profiles=conf_profiles, paging=paging_profile())
    add("autoload_configs/directory.conf.xml", "autoload_configs/directory.conf.xml")
    add("autoload_configs/timezones.conf.xml", "autoload_configs/timezones.conf.xml",
        zones=zones)
    add("autoload_configs/db.conf.xml", "autoload_configs/db.conf.xml", dsn=DB_DSN)
    if records:
        add("autoload_configs/cdr_pg_csv.conf.xml", "autoload_configs/cdr_pg_csv.conf.xml",
            fields=CDR_FIELDS,
            spool_dir=f"{paths.state}/{FS}/cdr-spool")
    add("autoload_configs/lua.conf.xml", "autoload_configs/lua.conf.xml", conf_dir=conf_dir,
        accounts_from_db=records)
    if records:  # the accounts' dialplans and directories, live from the platform database
        add("scripts/zp_accounts.lua", "scripts/zp_accounts.lua",
            dsn=f"pgsql://{cdr_db_info(inv)}", folder=accounts_folder(paths),
            interval_ms=ACCOUNTS_POLL_MS)
    add("scripts/zp_mwi.lua", "scripts/zp_mwi.lua", proxy=proxies[0].removeprefix("sip:"))
    add("scripts/zp_vm_auth.lua", "scripts/zp_vm_auth.lua",
        limits=[(a.domain, a.pbx.voicemail.pin.lockout_after) for a in accounts])
    # Lua is not preprocessed: the shared folder's path itself, not $${zp_shared}
    add("scripts/zp_queue_callback.lua", "scripts/zp_queue_callback.lua")
    add("scripts/zp_recordings.lua", "scripts/zp_recordings.lua",
        dsn=RECORDINGS_DSN.replace("$${zp_shared}", paths.shared), switch=p.name)
    add("lang/languages.xml", "lang/languages.xml", languages=languages,
        macros=VOICEMAIL_MACROS + DIRECTORY_MACROS)
    if "opus" in codecs:
        add("autoload_configs/opus.conf.xml", "autoload_configs/opus.conf.xml")
    policy = inv.security.tls
    add(f"sip_profiles/{PROFILE}.xml", "sip_profiles/profile.xml",
        aliases=[a.domain for a in accounts], params=[
        ("user-agent-string", "zpctl-switch"), ("debug", "0"), ("sip-trace", "no"),
        ("context", ENTRY_CONTEXT), ("dialplan", "XML"),
        ("sip-ip", p.node.address), ("rtp-ip", p.node.address), ("sip-port", str(p.node.ports.sip)),
        ("apply-inbound-acl", PEER_ACL), ("auth-calls", "true"), ("manage-presence", "false"),
        ("tls", "true"), ("tls-only", "true"), ("tls-bind-params", "transport=tls"),
        ("tls-sip-port", str(p.node.ports.sips)), ("tls-cert-dir", f"{paths.pki}/{FS}"),
        ("tls-version", tls_versions(policy.min_version)), ("tls-ciphers", policy.ciphers),
        ("tls-verify-policy", "all"), ("tls-verify-depth", "2"), ("tls-verify-date", "true"),
        ("codec-prefs", ",".join(catalog.CODECS[c].freeswitch for c in codecs)),
        ("inbound-codec-negotiation", "generous"), ("dtmf-type", "rfc2833"), ("rfc2833-pt", "101"),
        ("hold-music", "$${hold_music}"), ("rtp-timer-name", "soft"), ("rtp-timeout-sec", "300"),
        ("rtp-hold-timeout-sec", "1800"), ("nonce-ttl", "60"), ("track-calls", "true"),
        # The proxies' emergency notices (SIP MESSAGE, only they reach this port over
        # mutual TLS) become RECV_MESSAGE events for zpctl (docs/EMERGENCY.md).
        ("auth-messages", "false"), ("fire-message-events", "true")])
    add("dialplan/00-zpctl-in.xml", "dialplan/entry.xml",
        routes=[(a.ctx, "^" + rx(a.domain) + "$") for a in accounts])
    for a in accounts:
        add(f"dialplan/{a.acct.id}.xml", "dialplan/account.xml", context=a.ctx,
            extensions=dialplans[a.acct.id], account=a.acct)
        add(f"directory/{a.acct.id}.xml", "directory/account.xml", d=directories[a.acct.id],
            account=a.acct)
    sounds = [f"{lang}/{s}" for lang in languages for s in STANDARD_PROMPTS]
    sounds += [f"accounts/{a.acct.id}/{pr}.wav" for a in accounts for pr in sorted(a.pbx.prompts)]
    sounds += sorted({f"{NAMES_FOLDER}/{directory_name(u.name)}.wav" for a in accounts
                      if uses_directory(a.pbx) for u in a.acct.users if directory_name(u.name)})
    add("sounds.txt", "sounds.txt", sounds=sorted(sounds),
        music=sorted(f"{a.acct.id}/{m}/" for a in accounts for m in a.pbx.music),
        conf_dir=conf_dir)
