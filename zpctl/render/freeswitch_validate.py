"""Check rendered FreeSWITCH XML against what FreeSWITCH accepts, before anything ships.

How it works: the conf tree of one switch (path -> bytes) is read the way FreeSWITCH reads
it: from ``freeswitch.xml``, ``X-PRE-PROCESS include`` (globs relative to the including
file) and ``set`` (global ``$${vars}``) are resolved; every file must be reached by an
include.  Then each configuration is checked on its own (param names and values,
repeated params with surprising semantics) and every reference between them is followed:
dialplan applications to their modules, menus, queues, voicemail profiles, directory users
and domains, conference profiles, park lots, hold-music streams, sounds (against the
switch's ``sounds.txt``), contexts and the extensions a transfer lands on.  Regexes must
compile and use the captures their actions refer to; time-of-day conditions must be valid.

Sources of the rules: ``shared/reference/freeswitch-esl-protocol.md`` Part 3 (event socket,
sofia TLS/codec params, SRTP suites, ivr, voicemail, callcenter, valet_park, eavesdrop).
Parameter lists for switch.conf, conference.conf, local_stream.conf, directory.conf and the
dialplan's condition attributes are from FreeSWITCH's documentation and module sources as
the authors know them; the reference does not list them, and none of this was run against
a real FreeSWITCH (see docs/FREESWITCH.md).  A violation names the file, the element
(an XPath-like path) and the reason.
"""

from __future__ import annotations

import bisect
import collections
import fnmatch
import functools
import ipaddress
import posixpath
import re
import xml.etree.ElementTree as ET
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zpctl.errors import RenderError
from zpctl.model import catalog
from zpctl.render.build import Build

ROOT_FILE = "freeswitch.xml"
SOUNDS_FILE = "sounds.txt"
BANNER_MARK = "managed by zpctl"

# --- facts (reference Part 3 unless noted) -------------------------------------------------

SRTP_CANONICAL = ("AEAD_AES_256_GCM_8", "AEAD_AES_128_GCM_8", "AES_256_CM_HMAC_SHA1_80",
                  "AES_192_CM_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_32",
                  "AES_192_CM_HMAC_SHA1_32", "AES_CM_128_HMAC_SHA1_32", "AES_CM_128_NULL_AUTH")
SRTP_SDP_ALIASES = ("AES_CM_256_HMAC_SHA1_80", "AES_CM_192_HMAC_SHA1_80", "AES_CM_256_HMAC_SHA1_32",
                    "AES_CM_192_HMAC_SHA1_32")
SRTP_MODES = ("mandatory", "optional", "forbidden", "true", "false")
TLS_TOKENS = ("sslv2", "sslv3", "sslv23", "tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3")
TLS_WEAK = ("sslv2", "sslv3", "sslv23", "tlsv1", "tlsv1.1")
TLS_VERIFY = ("none", "in", "out", "all", "subjects_in", "subjects_out", "subjects_all")
CC_STRATEGIES = ("ring-all", "longest-idle-agent", "round-robin", "top-down",
                 "agent-with-least-talk-time", "agent-with-fewest-calls",
                 "sequentially-by-agent-order", "random", "ring-progressively")
CC_AGENT_STATUS = ("Logged Out", "Available", "Available (On Demand)", "On Break")
CC_SETTINGS = ("odbc-dsn", "dbname", "cc-instance-id", "reserve-agents", "truncate-agents-on-load",
               "truncate-tiers-on-load", "global-database-lock", "agent-originate-timeout", "debug")
CC_QUEUE_INT = ("announce-frequency", "ring-progressively-delay", "tier-rule-wait-second",
                "discard-abandoned-after", "max-wait-time", "max-wait-time-with-no-agent",
                "max-wait-time-with-no-agent-time-reached")
CC_QUEUE_BOOL = ("tier-rules-apply", "tier-rule-wait-multiply-level", "tier-rule-no-agent-no-wait",
                 "abandoned-resume-allowed", "skip-agents-with-external-calls")
CC_QUEUE_PARAMS = ("strategy", "moh-sound", "announce-sound", "record-template", "time-base-score",
                   "agent-no-answer-status", *CC_QUEUE_INT, *CC_QUEUE_BOOL)
CC_AGENT_ATTRS = ("name", "type", "contact", "status", "max-no-answer", "wrap-up-time",
                  "reject-delay-time", "busy-delay-time", "no-answer-delay-time")
VM_PARAMS = (
    "file-extension", "terminator-key", "max-login-attempts", "digit-timeout", "min-record-len",
    "max-record-len", "max-retries", "tone-spec", "callback-dialplan", "callback-context",
    "play-new-messages-key", "play-saved-messages-key", "play-new-messages-lifo",
    "play-saved-messages-lifo", "login-keys", "main-menu-key", "config-menu-key",
    "record-greeting-key", "choose-greeting-key", "change-pass-key", "record-name-key",
    "record-file-key", "listen-file-key", "save-file-key", "delete-file-key", "undelete-file-key",
    "email-key", "callback-key", "pause-key", "restart-key", "ff-key", "rew-key", "skip-greet-key",
    "previous-message-key", "next-message-key", "skip-info-key", "repeat-message-key", "urgent-key",
    "forward-key", "prepend-key", "record-silence-threshold", "record-silence-hits",
    "web-template-file", "db-password-override", "allow-empty-password-auth",
    "operator-extension", "operator-key", "vmain-extension", "vmain-key", "storage-dir",
    "storage-dir-shared", "odbc-dsn", "dbname", "record-title", "record-comment",
    "record-copyright", "record-sample-rate", "auto-playback-recordings", "send-full-vm-header",
    "convert-cmd", "convert-ext", "notify-email-body", "notify-email-headers",
    "play-date-announcement")
VM_DATE_ANNOUNCEMENT = ("first", "last", "never")
VM_INT = ("max-login-attempts", "digit-timeout", "min-record-len", "max-record-len", "max-retries",
          "record-silence-threshold", "record-silence-hits", "record-sample-rate")
IVR_ATTRS = ("name", "greet-long", "greet-short", "invalid-sound", "exit-sound", "transfer-sound",
             "confirm-macro", "confirm-key", "tts-engine", "tts-voice", "confirm-attempts",
             "timeout", "inter-digit-timeout", "max-failures", "max-timeouts",
             "exec-on-max-failures", "exec-on-max-timeouts", "digit-len", "pin", "pin-file",
             "bad-pin-file")
IVR_INT = ("timeout", "inter-digit-timeout", "max-failures", "max-timeouts", "digit-len",
           "confirm-attempts")
IVR_SOUNDS = ("greet-long", "greet-short", "invalid-sound", "exit-sound", "transfer-sound")
IVR_ACTIONS = ("menu-exit", "menu-sub", "menu-exec-app", "menu-play-sound", "menu-back", "menu-top")
ESL_PARAMS = ("listen-ip", "listen-port", "password", "apply-inbound-acl", "nat-map", "debug",
              "stop-on-bind-error")
NAMED_ACLS = ("loopback.auto", "localnet.auto", "lan.auto", "rfc1918.auto", "wan.auto",
              "wan_v4.auto", "wan_v6.auto", "nat.auto", "any_v4.auto", "any_v6.auto")
SOFIA_PARAMS = (
    # reference Part 3
    "tls", "tls-only", "tls-bind-params", "tls-sip-port", "tls-cert-dir", "tls-passphrase",
    "tls-verify-date", "tls-verify-depth", "tls-verify-policy", "tls-verify-in-subjects",
    "tls-ciphers", "tls-version", "tls-timeout", "tls-orq-connect-timeout", "tls-always-nat",
    "wss-binding", "ws-binding", "codec-prefs", "inbound-codec-prefs", "outbound-codec-prefs",
    "inbound-codec-negotiation", "renegotiate-codec-on-hold", "NDLB-allow-crypto-in-avp",
    "NDLB-support-asterisk-missing-srtp-auth",
    # common sofia.c params (not in the reference)
    "user-agent-string", "debug", "sip-trace", "context", "dialplan", "sip-ip", "rtp-ip",
    "sip-port", "ext-sip-ip", "ext-rtp-ip", "apply-inbound-acl", "apply-register-acl",
    "auth-calls", "manage-presence", "dtmf-type", "rfc2833-pt", "hold-music", "rtp-timer-name",
    "rtp-timeout-sec", "rtp-hold-timeout-sec", "nonce-ttl", "local-network-acl",
    "inbound-late-negotiation", "disable-transcoding", "accept-blind-reg", "aggressive-nat-detection",
    "track-calls", "auth-messages", "fire-message-events")
SOFIA_BOOL = ("tls", "tls-only", "tls-verify-date", "tls-always-nat", "auth-calls", "manage-presence",
              "renegotiate-codec-on-hold", "inbound-late-negotiation", "disable-transcoding",
              "accept-blind-reg", "aggressive-nat-detection", "track-calls", "auth-messages",
              "fire-message-events")
SOFIA_INT = ("tls-verify-depth", "tls-timeout", "rfc2833-pt", "rtp-timeout-sec",
             "rtp-hold-timeout-sec", "nonce-ttl", "debug")
CODEC_NAMES = ("OPUS", "G722", "PCMU", "PCMA", "G729", "GSM", "H264", "VP8", "L16", "SPEEX",
               "iLBC", "AMR", "AMR-WB", "G7221", "G726-32", "telephone-event")
SWITCH_PARAMS = ("colorize-console", "loglevel", "max-sessions", "sessions-per-second",
                 "rtp-start-port", "rtp-end-port", "event-heartbeat-interval", "dump-cores",
                 "max-db-handles", "db-handle-timeout", "min-idle-cpu", "rtp-enable-zrtp",
                 "switchname", "core-db-dsn", "1ms-timer")
CONF_PARAMS = ("rate", "interval", "energy-level", "comfort-noise", "max-members", "moh-sound",
               "sound-prefix", "pin", "moderator-pin", "pin-sound", "bad-pin-sound", "auto-record",
               "caller-controls", "moderator-controls", "conference-flags", "member-flags",
               "muted-sound", "unmuted-sound", "alone-sound", "enter-sound", "exit-sound",
               "caller-id-name", "caller-id-number", "timer-name", "max-members-sound",
               "announce-count", "tts-engine", "tts-voice")
LOCAL_STREAM_PARAMS = ("rate", "shuffle", "channels", "interval", "timer-name", "prebuf",
                       "chime-list", "chime-freq", "chime-max")
DIRECTORY_CONF_PARAMS = ("max-menu-attempts", "min-search-digits", "terminator-key", "digit-timeout",
                         "max-result", "next-key", "prev-key", "switch-order-key",
                         "select-name-key", "new-search-key", "search-order")
USER_PARAMS = ("password", "a1-hash", "vm-password", "vm-enabled", "vm-mailto", "vm-attach-file",
               "directory-visible", "directory-exten-visible", "dial-string", "esl-password",
               "esl-allowed-events", "esl-allowed-api", "esl-allowed-log")
CONDITION_ATTRS = ("field", "expression", "break", "require-nested", "regex", "wday", "mon",
                   "mday", "year", "yday", "week", "mweek", "hour", "minute", "minute-of-day",
                   "time-of-day", "date-time", "tz-offset")
PREPROCESS_CMDS = ("include", "set", "exec-set", "env-set", "stun-set")
# Dialplan applications zpctl uses, and the module that provides each.
APP_MODULES = {
    "answer": "mod_dptools", "set": "mod_dptools", "multiset": "mod_dptools",
    "export": "mod_dptools",
    "hangup": "mod_dptools", "transfer": "mod_dptools", "bridge": "mod_dptools",
    "playback": "mod_dptools", "record_session": "mod_dptools", "bind_meta_app": "mod_dptools",
    "eavesdrop": "mod_dptools", "park": "mod_dptools", "ivr": "mod_dptools",
    "respond": "mod_dptools", "sleep": "mod_dptools",
    "voicemail": "mod_voicemail", "callcenter": "mod_callcenter",
    "valet_park": "mod_valet_parking", "conference": "mod_conference",
    "conference_set_auto_outcall": "mod_conference", "directory": "mod_directory",
}
ENDPOINT_MODULES = {"sofia": "mod_sofia", "loopback": "mod_loopback", "user": "mod_dptools",
                    "error": "mod_dptools"}
API_MODULES = {"callcenter_config": "mod_callcenter", "sched_api": "mod_commands",
               "strftime": "mod_dptools"}
HANGUP_CAUSES = (
    "NONE", "UNALLOCATED_NUMBER", "NO_ROUTE_TRANSIT_NET", "NO_ROUTE_DESTINATION",
    "CHANNEL_UNACCEPTABLE", "CALL_AWARDED_DELIVERED", "NORMAL_CLEARING", "USER_BUSY",
    "NO_USER_RESPONSE", "NO_ANSWER", "SUBSCRIBER_ABSENT", "CALL_REJECTED", "NUMBER_CHANGED",
    "REDIRECTION_TO_NEW_DESTINATION", "EXCHANGE_ROUTING_ERROR", "DESTINATION_OUT_OF_ORDER",
    "INVALID_NUMBER_FORMAT", "FACILITY_REJECTED", "RESPONSE_TO_STATUS_ENQUIRY",
    "NORMAL_UNSPECIFIED", "NORMAL_CIRCUIT_CONGESTION", "NETWORK_OUT_OF_ORDER",
    "NORMAL_TEMPORARY_FAILURE", "SWITCH_CONGESTION", "SERVICE_UNAVAILABLE",
    "RECOVERY_ON_TIMER_EXPIRE", "PROTOCOL_ERROR", "INTERWORKING", "SUCCESS", "ORIGINATOR_CANCEL",
    "CRASH", "SYSTEM_SHUTDOWN", "LOSE_RACE", "MANAGER_REQUEST", "BLIND_TRANSFER",
    "ATTENDED_TRANSFER", "ALLOTTED_TIMEOUT", "USER_CHALLENGE", "MEDIA_TIMEOUT", "PICKED_OFF",
    "USER_NOT_REGISTERED", "PROGRESS_TIMEOUT", "INVALID_GATEWAY", "GATEWAY_DOWN", "INVALID_URL",
    "INVALID_PROFILE", "NO_PICKUP", "SRTP_READ_ERROR", "BOWOUT", "BUSY_EVERYWHERE", "DECLINE",
    "DOES_NOT_EXIST_ANYWHERE", "NOT_ACCEPTABLE", "UNWANTED", "NO_IDENTITY", "BAD_IDENTITY_INFO",
    "UNSUPPORTED_CERTIFICATE")
# Global variables FreeSWITCH defines itself (switch_core.c), usable as $${name}.
BUILTIN_VARS = ("base_dir", "conf_dir", "log_dir", "run_dir", "db_dir", "mod_dir", "htdocs_dir",
                "script_dir", "temp_dir", "grammar_dir", "certs_dir", "storage_dir", "cache_dir",
                "recordings_dir", "sounds_dir", "fonts_dir", "images_dir", "data_dir",
                "localstate_dir", "hostname", "switch_serial", "core_uuid", "local_ip_v4",
                "local_mask_v4", "local_ip_v6", "switch_name", "nat_public_addr", "nat_private_addr",
                "nat_type")
TRUE_FALSE = ("true", "false")


@dataclass(frozen=True, order=True)
class Violation:
    """One thing FreeSWITCH would reject, ignore or misread, and where."""

    file: str
    element: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.element}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "element": self.element, "reason": self.reason}


@dataclass
class _Node:
    """An element with the file it came from and its path there."""

    el: ET.Element
    file: str
    path: str


def _path(parent: str, el: ET.Element, index: int) -> str:
    name = el.get("name") or el.get("id")
    step = f"{el.tag}[@{'name' if el.get('name') else 'id'}='{name}']" if name else \
        f"{el.tag}[{index}]"
    return f"{parent}/{step}"


def _walk(el: ET.Element, file: str, path: str) -> Iterator[_Node]:
    yield _Node(el, file, path)
    counts: dict[str, int] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        counts[child.tag] = counts.get(child.tag, 0) + 1
        yield from _walk(child, file, _path(path, child, counts[child.tag]))


@dataclass
class _Conf:
    """One switch's conf tree, parsed."""

    files: dict[str, bytes]
    label: str
    out: list[Violation] = field(default_factory=list)
    roots: dict[str, ET.Element] = field(default_factory=dict)
    included: list[str] = field(default_factory=list)  # in include order
    globals: dict[str, str] = field(default_factory=dict)
    nodes: list[_Node] = field(default_factory=list)
    sounds: set[str] = field(default_factory=set)
    music: set[str] = field(default_factory=set)
    languages: set[str] = field(default_factory=set)
    # (file, tag) -> its nodes sorted by path, with their document order: children are a
    # range of it (built once, when every file has been read: see index_tags).
    _tagged: dict[tuple[str, str], tuple[list[str], list[tuple[int, _Node]]]] = field(
        default_factory=dict)

    def index_tags(self) -> None:
        groups: dict[tuple[str, str], list[tuple[str, int, _Node]]] = {}
        for i, n in enumerate(self.nodes):
            groups.setdefault((n.file, n.el.tag), []).append((n.path, i, n))
        self._tagged = {}
        for key, items in groups.items():
            items.sort(key=lambda x: x[0])
            self._tagged[key] = ([x[0] for x in items], [(x[1], x[2]) for x in items])

    def tagged(self, file: str, tag: str) -> tuple[list[str], list[tuple[int, _Node]]]:
        return self._tagged.get((file, tag), ([], []))

    def bad(self, file: str, element: str, reason: str) -> None:
        self.out.append(Violation(f"{self.label}{file}", element, reason))

    def expand(self, value: str) -> str:
        return re.sub(r"\$\$\{([^}]+)\}", lambda m: self.globals.get(m.group(1), m.group(0)), value)


# --- reading the tree ----------------------------------------------------------------------

_COMMENT = re.compile(rb"<!--(.*?)-->", re.S)


def _read(c: _Conf) -> None:
    for name, data in sorted(c.files.items()):
        if name.endswith(".xml"):
            text = data.decode("utf-8", errors="replace")
            if BANNER_MARK not in text[:400]:
                c.bad(name, "/", f"no '{BANNER_MARK}' header comment")
            for m in _COMMENT.finditer(data):
                body = m.group(1)
                if b"X-PRE-PROCESS" in body or b"$${" in body:
                    c.bad(name, "comment", "X-PRE-PROCESS and $${...} are processed even inside "
                          "XML comments: remove them from the comment")
            try:
                c.roots[name] = ET.fromstring(data)  # noqa: S314 - our own rendered bytes
            except ET.ParseError as exc:
                c.bad(name, "/", f"not well-formed XML: {exc}")
    if ROOT_FILE not in c.roots:
        c.bad(ROOT_FILE, "/", "missing or unparsable root config")
        return
    _preprocess(c, ROOT_FILE, c.roots[ROOT_FILE], set())
    c.index_tags()  # every node is read: nothing is added after this
    for name in sorted(c.roots):
        if name not in c.included:
            c.bad(name, "/", "not reached by any X-PRE-PROCESS include from freeswitch.xml; "
                  "FreeSWITCH would never read it")
    _read_sounds(c)


def _preprocess(c: _Conf, name: str, root: ET.Element, stack: set[str]) -> None:
    if name in stack:
        c.bad(name, "/", "include loop")
        return
    c.included.append(name)
    base = posixpath.dirname(name)
    for node in _walk(root, name, f"/{root.tag}"):
        el = node.el
        if el.tag != "X-PRE-PROCESS":
            c.nodes.append(node)
            continue
        cmd, data = el.get("cmd", ""), el.get("data", "")
        if cmd not in PREPROCESS_CMDS:
            c.bad(name, node.path, f"unknown X-PRE-PROCESS cmd {cmd!r}")
        elif cmd == "set":
            var, eq, value = data.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z0-9_]+", var):
                c.bad(name, node.path, f"set needs NAME=VALUE with a plain name: {data!r}")
            else:
                c.globals[var] = c.expand(value)
        elif cmd == "include":
            pattern = posixpath.normpath(posixpath.join(base, data))
            hits = sorted(f for f in c.files if fnmatch.fnmatchcase(f, pattern) and f.endswith(".xml"))
            if not hits and not any(ch in data for ch in "*?["):
                c.bad(name, node.path, f"include {data!r}: no such file")
            for hit in hits:
                if hit in c.roots:
                    _preprocess(c, hit, c.roots[hit], stack | {name})


def _read_sounds(c: _Conf) -> None:
    raw = c.files.get(SOUNDS_FILE)
    if raw is None:
        c.bad(SOUNDS_FILE, "/", "missing: the list of sound files the switch needs")
        return
    for raw_line in raw.decode("utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("music "):
            c.music.add(line[6:].strip())
        else:
            c.sounds.add(line)
            if line.split("/", 1)[0] in catalog.LANGUAGES:
                c.languages.add(line.split("/", 1)[0])


# --- helpers over the parsed tree ----------------------------------------------------------

def _configs(c: _Conf, name: str) -> list[_Node]:
    return [n for n in c.nodes if n.el.tag == "configuration" and n.el.get("name") == name]


def _children(c: _Conf, parent: _Node, tag: str) -> list[_Node]:
    """Every ``tag`` element below ``parent`` (any depth), in document order.  A range of the
    file's ``tag`` elements sorted by path: looked up, not scanned (a switch serving an
    account of 1,000 users has tens of thousands of elements)."""
    paths, nodes = c.tagged(parent.file, tag)
    prefix = parent.path + "/"
    lo = bisect.bisect_left(paths, prefix)
    hi = bisect.bisect_left(paths, prefix + "\U0010ffff")
    return [n for _, n in sorted(nodes[lo:hi], key=lambda x: x[0])]


def _params(c: _Conf, parent: _Node, tag: str = "param") -> list[tuple[_Node, str, str]]:
    return [(n, n.el.get("name", ""), c.expand(n.el.get("value", ""))) for n in _children(c, parent, tag)
            if n.path.count("/") in (parent.path.count("/") + 1, parent.path.count("/") + 2)]


def _under(n: _Node, tag: str) -> bool:
    """``n`` sits (somewhere) below an element ``tag``."""
    return re.search(rf"/{re.escape(tag)}(\[[^\]]*\])?/", n.path) is not None


def _int(value: str, lo: int = 0, hi: int = 1 << 31) -> bool:
    return value.lstrip("-").isdigit() and lo <= int(value) <= hi


def _check_params(c: _Conf, params: list[tuple[_Node, str, str]], known: Iterable[str], what: str,
                  ints: Iterable[str] = (), bools: Iterable[str] = (),
                  bounds: tuple[int, int] = (0, 1 << 31)) -> None:
    known_set, ints_set, bools_set = set(known), set(ints), set(bools)
    for n, name, value in params:
        if name not in known_set:
            c.bad(n.file, n.path, f"unknown {what} param {name!r}")
        elif name in ints_set and not _int(value, *bounds):
            c.bad(n.file, n.path, f"{name} must be an integer in {bounds[0]}..{bounds[1]}, "
                  f"not {value!r}")
        elif name in bools_set and value.lower() not in ("true", "false", "yes", "no", "on", "off"):
            c.bad(n.file, n.path, f"{name} must be true or false, not {value!r}")
        if "$${" in value:
            c.bad(n.file, n.path, f"undefined global variable in {value!r}")


def _srtp(c: _Conf, n: _Node, name: str, value: str) -> None:
    """``rtp_secure_media*`` values: a valid mode and canonical suite names only."""
    parts = value.split(":")
    if name == "rtp_secure_media_suites":
        suites = parts
    else:
        mode, suites = parts[0], parts[1:]
        if mode.lower() not in SRTP_MODES:
            c.bad(n.file, n.path, f"{name}: mode {mode!r} is not one of {', '.join(SRTP_MODES)} "
                  "(FreeSWITCH falls back to forbidden)")
    for s in suites:
        if s.upper() in SRTP_SDP_ALIASES:
            c.bad(n.file, n.path, f"{name}: {s} is an SDP alias FreeSWITCH rejects in "
                  "rtp_secure_media lists (INVALID SUITE SUPPLIED); use the canonical name, e.g. "
                  f"{catalog.SRTP_AES256}")
        elif s.upper() not in SRTP_CANONICAL:
            c.bad(n.file, n.path, f"{name}: unknown SRTP suite {s!r}")


@functools.lru_cache(maxsize=1 << 16)
def _compiled(expr: str) -> re.Pattern[str]:
    """re.compile with a cache big enough for a build (re's own keeps 512): the switches of
    a data center carry the same thousands of expressions."""
    return re.compile(expr)


def _regex(c: _Conf, n: _Node, expr: str) -> re.Pattern[str] | None:
    try:
        return _compiled(expr)
    except re.error as exc:
        c.bad(n.file, n.path, f"regex {expr!r} does not compile: {exc}")
        return None


# --- checks per configuration --------------------------------------------------------------

@dataclass
class _Index:
    contexts: dict[str, list[tuple[re.Pattern[str] | None, _Node]]] = field(default_factory=dict)
    menus: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    vm_profiles: set[str] = field(default_factory=set)
    conf_profiles: set[str] = field(default_factory=set)
    dir_profiles: set[str] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)
    sofia_profiles: set[str] = field(default_factory=set)
    acls: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    users: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # domain -> id -> params
    park_lots: set[str] = field(default_factory=set)
    # context -> (the literal numbers, the other non-catch-all patterns): built once the
    # contexts are read (a context of 1,000 users' extensions is asked thousands of times)
    specific: dict[str, tuple[set[str], list[re.Pattern[str]]]] = field(default_factory=dict)


def _index(c: _Conf) -> _Index:
    ix = _Index()
    for n in c.nodes:
        tag, name = n.el.tag, n.el.get("name", "")
        if tag == "context":
            if name in ix.contexts:
                c.bad(n.file, n.path, f"context {name!r} is defined twice")
            ix.contexts.setdefault(name, [])
        elif tag == "load":
            ix.modules.add(n.el.get("module", ""))
        elif tag == "list" and _under(n, "network-lists"):
            ix.acls.add(name)
    for cfg, target in (("ivr.conf", "menu"), ("callcenter.conf", "queue"),
                        ("voicemail.conf", "profile"), ("conference.conf", "profile"),
                        ("directory.conf", "profile"), ("local_stream.conf", "directory")):
        found = _configs(c, cfg)
        if len(found) > 1:
            c.bad(found[1].file, found[1].path, f"configuration {cfg} is defined twice")
        for conf in found:
            seen: set[str] = set()
            for n in _children(c, conf, target):
                name = n.el.get("name", "")
                if name in seen:
                    c.bad(n.file, n.path, f"{target} {name!r} is defined twice in {cfg}")
                seen.add(name)
            {"ivr.conf": ix.menus, "callcenter.conf": ix.queues, "voicemail.conf": ix.vm_profiles,
             "conference.conf": ix.conf_profiles, "directory.conf": ix.dir_profiles,
             "local_stream.conf": ix.streams}[cfg].update(seen)
    for n in c.nodes:
        if n.el.tag == "profile" and n.file.startswith("sip_profiles/"):
            ix.sofia_profiles.add(n.el.get("name", ""))
    for conf in _configs(c, "callcenter.conf"):
        ix.agents.update(a.el.get("name", "") for a in _children(c, conf, "agent"))
    for n in c.nodes:
        if n.el.tag == "domain":
            dom = c.expand(n.el.get("name", ""))
            if dom in ix.users:
                c.bad(n.file, n.path, f"domain {dom!r} is defined twice")
            users: dict[str, dict[str, str]] = ix.users.setdefault(dom, {})
            for u in _children(c, n, "user"):
                uid = u.el.get("id", "")
                if uid in users:
                    c.bad(u.file, u.path, f"user {uid!r} is defined twice in {dom}")
                users[uid] = {name: value for _, name, value in _params(c, u)}
    # context extensions: the first destination_number condition of each
    for n in c.nodes:
        if n.el.tag == "extension":
            ctx_name = re.search(r"context\[@name='([^']+)'\]", n.path)
            if not ctx_name:
                continue
            conds = [x for x in n.el if x.tag == "condition"]
            dest = next((x.get("expression", "") for x in conds
                         if x.get("field") == "destination_number"), None)
            pattern = None
            if dest is not None:
                try:
                    pattern = re.compile(dest)
                except re.error:
                    pattern = None
            ix.contexts.setdefault(ctx_name.group(1), []).append((pattern, n))
            for x in n.el.iter("action"):
                if x.get("application") == "valet_park":
                    m = re.fullmatch(r"(\S+) auto in \S+ \S+", x.get("data", ""))
                    if m:
                        ix.park_lots.add(m.group(1))
    for context, exts in ix.contexts.items():
        literal: set[str] = set()
        specific: list[re.Pattern[str]] = []
        for p, _ in exts:
            if p is None or p.search(""):
                continue
            m = _LITERAL.fullmatch(p.pattern)  # ^1001$: a set lookup, not a search
            if m:
                literal.add(m.group(1))
            else:
                specific.append(p)
        ix.specific[context] = (literal, specific)
    return ix


def _sound(c: _Conf, n: _Node, value: str, what: str) -> None:
    """A sound reference: a standard prompt (relative, every language has it), an account
    recording under $${zp_sounds}, a local_stream, or a tone."""
    v = c.expand(value)
    if not v or v.startswith(("tone_stream://", "silence_stream://", "phrase:", "say:")):
        return
    if v.startswith("local_stream://"):
        return  # checked by _moh where a stream is expected
    sounds_dir = c.globals.get("zp_sounds", "")
    if sounds_dir and v.startswith(sounds_dir + "/"):
        rel = v[len(sounds_dir) + 1:]
        if rel not in c.sounds:
            c.bad(n.file, n.path, f"{what}: sound {rel!r} is not in {SOUNDS_FILE}")
        return
    if v.startswith("/") or "$" in v:
        c.bad(n.file, n.path, f"{what}: sound {v!r} is outside the provisioned sound set")
        return
    missing = sorted(lang for lang in c.languages if f"{lang}/{v}" not in c.sounds)
    if missing or not c.languages:
        c.bad(n.file, n.path, f"{what}: sound {v!r} is not provisioned for "
              f"{', '.join(missing) or 'any language'} ({SOUNDS_FILE})")


def _phrases(c: _Conf) -> None:
    """The languages section: each language's sound-prefix is its own provisioned folder,
    and every file a phrase macro plays is provisioned for that language (a missing one
    ends voicemail's flow at that prompt: nothing is recorded)."""
    sounds_dir = c.globals.get("zp_sounds", "")
    for n in c.nodes:
        if n.el.tag != "language":
            continue
        lang = n.el.get("name", "")
        prefix = c.expand(n.el.get("sound-prefix", ""))
        if prefix != f"{sounds_dir}/{lang}":
            c.bad(n.file, n.path, f"language {lang!r}: sound-prefix {prefix!r} is not "
                  f"$${{zp_sounds}}/{lang}")
        for a in _children(c, n, "action"):
            if a.el.get("function") != "play-file":
                continue
            data = c.expand(a.el.get("data", ""))
            if sounds_dir and data == f"{sounds_dir}/names/$1.wav":
                continue  # the directory's names: each user's is checked by _directory_names
            if f"{lang}/{data}" not in c.sounds:
                c.bad(a.file, a.path, f"play-file: sound {data!r} is not provisioned for "
                      f"{lang} ({SOUNDS_FILE})")


def _moh(c: _Conf, ix: _Index, n: _Node, value: str, what: str) -> None:
    v = c.expand(value)
    if v.startswith("local_stream://"):
        name = v[len("local_stream://"):]
        if name not in ix.streams:
            c.bad(n.file, n.path, f"{what}: no local_stream {name!r} in local_stream.conf")
    else:
        _sound(c, n, value, what)


def _event_socket(c: _Conf, ix: _Index) -> None:
    confs = _configs(c, "event_socket.conf")
    if not confs:
        c.bad("autoload_configs/event_socket.conf.xml", "/", "no event_socket.conf: zpctl "
              "cannot control this switch")
        return
    conf = confs[0]
    params = _params(c, conf)
    for n, name, _value in params:
        if name not in ESL_PARAMS and name.lower() not in ("apply-inbound-acl", "stop-on-bind-error"):
            c.bad(n.file, n.path, f"unknown event_socket param {name!r} (names are case-sensitive)")
    values = {name.lower() if name.lower() in ("apply-inbound-acl", "stop-on-bind-error") else name:
              (n, value) for n, name, value in params}
    acls = [(n, v) for n, name, v in params if name.lower() == "apply-inbound-acl"]
    if not acls:
        c.bad(conf.file, conf.path, "no apply-inbound-acl: FreeSWITCH defaults to loopback.auto and "
              "rejects zpctl from the management network")
    if len(acls) > 1:
        c.bad(acls[1][0].file, acls[1][0].path, "several apply-inbound-acl params are AND-ed (every "
              "one must pass); give one comma-separated list")
    for n, v in acls:
        for raw_item in v.split(","):
            item = raw_item.strip()
            try:
                ipaddress.ip_network(item)
            except ValueError:
                if item not in ix.acls and item not in NAMED_ACLS:
                    c.bad(n.file, n.path, f"apply-inbound-acl {item!r} is neither a CIDR nor a "
                          "list in acl.conf")
    if "listen-ip" in values:
        n, v = values["listen-ip"]
        try:
            ipaddress.ip_address(v)
        except ValueError:
            c.bad(n.file, n.path, f"listen-ip {v!r} is not an IP address")
    if "listen-port" in values and not _int(values["listen-port"][1], 1, 65535):
        n, v = values["listen-port"]
        c.bad(n.file, n.path, f"listen-port {v!r} is not a port")
    if "password" not in values:
        c.bad(conf.file, conf.path, "no password: FreeSWITCH uses the default ClueCon")
    else:
        n, v = values["password"]
        if "$${" in v:
            c.bad(n.file, n.path, "password refers to an undefined global variable")
        elif v in ("", "ClueCon"):
            c.bad(n.file, n.path, "password is empty or the well-known default ClueCon")


def _sofia(c: _Conf, ix: _Index) -> None:
    if not ix.sofia_profiles:
        c.bad("sip_profiles", "/", "no sofia profile")
    for prof in (n for n in c.nodes if n.el.tag == "profile" and n.file.startswith("sip_profiles/")):
        params = _params(c, prof)
        _check_params(c, params, SOFIA_PARAMS, "sofia", SOFIA_INT, SOFIA_BOOL)
        seen: set[str] = set()
        for n, name, value in params:
            if name in seen:
                c.bad(n.file, n.path, f"{name} is given twice")
            seen.add(name)
            if name == "tls-version":
                if " " in value:
                    c.bad(n.file, n.path, "tls-version must be comma-separated without spaces "
                          f"(FreeSWITCH ignores unknown tokens silently): {value!r}")
                toks = [t for t in value.split(",") if t]
                for t in toks:
                    if t.strip() not in TLS_TOKENS:
                        c.bad(n.file, n.path, f"tls-version token {t!r} is unknown (ignored silently)")
                    elif t.strip() in TLS_WEAK:
                        c.bad(n.file, n.path, f"tls-version {t.strip()} is below TLS 1.2")
                if not any(t.strip() in ("tlsv1.2", "tlsv1.3") for t in toks):
                    c.bad(n.file, n.path, "tls-version allows neither tlsv1.2 nor tlsv1.3")
            elif name == "tls-verify-policy":
                for t in value.split("|"):
                    if t not in TLS_VERIFY:
                        c.bad(n.file, n.path, f"tls-verify-policy {t!r} is unknown")
            elif name in ("codec-prefs", "inbound-codec-prefs", "outbound-codec-prefs"):
                for item in value.split(","):
                    m = re.fullmatch(r"([A-Za-z0-9.-]+)((@[0-9]+(h|k|i|b|c))*)", item)
                    if not m or m.group(1).upper() not in {x.upper() for x in CODEC_NAMES}:
                        c.bad(n.file, n.path, f"{name}: {item!r} is not a codec "
                              "(name[@8000h|@8k][@20i][@<bitrate>b][@<n>c])")
            elif name == "inbound-codec-negotiation" and value not in ("generous", "greedy", "scrooge"):
                c.bad(n.file, n.path, f"inbound-codec-negotiation {value!r} is unknown")
            elif name == "dtmf-type" and value not in ("rfc2833", "info", "none"):
                c.bad(n.file, n.path, f"dtmf-type {value!r} is unknown")
            elif name == "context" and value not in ix.contexts:
                c.bad(n.file, n.path, f"context {value!r} is not defined in the dialplan")
            elif name in ("apply-inbound-acl", "apply-register-acl", "local-network-acl"):
                for item in value.split(","):
                    if item not in ix.acls and item not in NAMED_ACLS:
                        try:
                            ipaddress.ip_network(item)
                        except ValueError:
                            c.bad(n.file, n.path, f"{name} {item!r} is not a list in acl.conf")
            elif name in ("sip-ip", "rtp-ip", "ext-sip-ip", "ext-rtp-ip"):
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    c.bad(n.file, n.path, f"{name} {value!r} is not an IP address")
            elif name in ("sip-port", "tls-sip-port") and not (_int(value, 1, 65535) or value == "auto"):
                c.bad(n.file, n.path, f"{name} {value!r} is not a port")
            elif name == "hold-music":
                _moh(c, ix, n, value, name)
            elif name == "require-secure-rtp":
                c.bad(n.file, n.path, "require-secure-rtp is a no-op; use rtp_secure_media")
        if "tls" in seen and "tls-version" not in seen:
            c.bad(prof.file, prof.path, "tls without tls-version allows FreeSWITCH's default "
                  "tlsv1,tlsv1.1,tlsv1.2")


def _switch_conf(c: _Conf) -> None:
    for conf in _configs(c, "switch.conf"):
        params = _params(c, conf)
        _check_params(c, params, SWITCH_PARAMS, "switch.conf",
                      ("max-sessions", "sessions-per-second", "rtp-start-port", "rtp-end-port",
                       "event-heartbeat-interval"))
        vals = {name: value for _, name, value in params}
        lo, hi = vals.get("rtp-start-port", "0"), vals.get("rtp-end-port", "65535")
        if _int(lo) and _int(hi) and int(lo) >= int(hi):
            c.bad(conf.file, conf.path, f"rtp-start-port {lo} is not below rtp-end-port {hi}")


def _acl(c: _Conf) -> None:
    for n in c.nodes:
        if n.el.tag == "node" and _under(n, "network-lists"):
            if n.el.get("type") not in ("allow", "deny"):
                c.bad(n.file, n.path, "node type must be allow or deny")
            cidr = n.el.get("cidr")
            if cidr is not None:
                try:
                    ipaddress.ip_network(cidr)
                except ValueError:
                    c.bad(n.file, n.path, f"cidr {cidr!r} is not a network")
        if n.el.tag == "list" and _under(n, "network-lists") \
                and n.el.get("default") not in ("allow", "deny"):
            c.bad(n.file, n.path, "list default must be allow or deny")


def _modules(c: _Conf, ix: _Index) -> None:
    for n in c.nodes:
        if n.el.tag == "load" and not re.fullmatch(r"mod_[a-z0-9_]+", n.el.get("module", "")):
            c.bad(n.file, n.path, f"module name {n.el.get('module')!r} is not mod_<name>")
    for conf_name, module in (("callcenter.conf", "mod_callcenter"), ("voicemail.conf", "mod_voicemail"),
                              ("conference.conf", "mod_conference"), ("event_socket.conf",
                                                                      "mod_event_socket"),
                              ("local_stream.conf", "mod_local_stream"),
                              ("directory.conf", "mod_directory"), ("sofia.conf", "mod_sofia")):
        for conf in _configs(c, conf_name):
            has_content = any(True for _ in conf.el.iter() if _ is not conf.el)
            if has_content and module not in ix.modules:
                c.bad(conf.file, conf.path, f"{conf_name} is configured but {module} is not loaded")


def _ivr(c: _Conf, ix: _Index) -> None:
    for conf in _configs(c, "ivr.conf"):
        for menu in _children(c, conf, "menu"):
            for attr, value in menu.el.attrib.items():
                if attr not in IVR_ATTRS:
                    c.bad(menu.file, menu.path, f"unknown menu attribute {attr!r}")
                elif attr in IVR_INT and not _int(value, 0, 600000):
                    c.bad(menu.file, menu.path, f"{attr} must be an integer, not {value!r}")
                elif attr in IVR_SOUNDS:
                    _sound(c, menu, value, attr)
                elif attr.startswith("exec-on-max"):
                    _app_line(c, ix, menu, value, attr)
            digits_seen: set[str] = set()
            for entry in _children(c, menu, "entry"):
                action, digits, param = (entry.el.get("action", ""), entry.el.get("digits", ""),
                                         entry.el.get("param", ""))
                if digits in digits_seen:
                    c.bad(entry.file, entry.path, f"digits {digits!r} are mapped twice")
                digits_seen.add(digits)
                if digits.startswith("/"):
                    _regex(c, entry, digits.strip("/"))
                elif not re.fullmatch(r"[0-9*#]+", digits):
                    c.bad(entry.file, entry.path, f"digits {digits!r} are neither keys nor /regex/")
                if action not in IVR_ACTIONS:
                    c.bad(entry.file, entry.path, f"unknown ivr action {action!r}")
                elif action == "menu-sub" and param not in ix.menus:
                    c.bad(entry.file, entry.path, f"menu-sub {param!r}: no such menu")
                elif action == "menu-exec-app":
                    _app_line(c, ix, entry, param, "menu-exec-app")
                elif action == "menu-play-sound":
                    _sound(c, entry, param, "menu-play-sound")


def _callcenter(c: _Conf, ix: _Index) -> None:
    for conf in _configs(c, "callcenter.conf"):
        settings = [p for p in _params(c, conf) if _under(p[0], "settings")]
        _check_params(c, settings, CC_SETTINGS, "callcenter settings")
        for q in _children(c, conf, "queue"):
            params = _params(c, q)
            _check_params(c, params, CC_QUEUE_PARAMS, "callcenter queue", CC_QUEUE_INT, CC_QUEUE_BOOL,
                          (0, 86400))
            for n, name, value in params:
                if name == "strategy" and value not in CC_STRATEGIES:
                    c.bad(n.file, n.path, f"unknown strategy {value!r} (FreeSWITCH would silently "
                          f"fall back); one of {', '.join(CC_STRATEGIES)}")
                elif name == "moh-sound":
                    _moh(c, ix, n, value, name)
                elif name == "announce-sound":
                    _sound(c, n, value, name)
                elif name == "time-base-score" and value not in ("queue", "system"):
                    c.bad(n.file, n.path, f"time-base-score must be queue or system, not {value!r}")
        for a in _children(c, conf, "agent"):
            for attr, value in a.el.attrib.items():
                if attr not in CC_AGENT_ATTRS:
                    c.bad(a.file, a.path, f"unknown agent attribute {attr!r}")
                elif attr == "type" and value not in ("callback", "uuid-standby"):
                    c.bad(a.file, a.path, f"agent type {value!r} is not callback or uuid-standby")
                elif attr == "status" and value not in CC_AGENT_STATUS:
                    c.bad(a.file, a.path, f"agent status {value!r} is not one of "
                          f"{', '.join(CC_AGENT_STATUS)}")
                elif attr.endswith("-time") or attr == "max-no-answer":
                    if not _int(value, 0, 86400):
                        c.bad(a.file, a.path, f"{attr} must be an integer, not {value!r}")
                elif attr == "contact":
                    _dial_string(c, ix, a, value, "agent contact")
        for t in _children(c, conf, "tier"):
            if t.el.get("agent") not in ix.agents:
                c.bad(t.file, t.path, f"tier agent {t.el.get('agent')!r} is not an agent")
            if t.el.get("queue") not in ix.queues:
                c.bad(t.file, t.path, f"tier queue {t.el.get('queue')!r} is not a queue")
            for attr in ("level", "position"):
                if not _int(t.el.get(attr, "1"), 0, 1000):
                    c.bad(t.file, t.path, f"tier {attr} must be an integer")


def _voicemail(c: _Conf, ix: _Index) -> None:
    for conf in _configs(c, "voicemail.conf"):
        for prof in _children(c, conf, "profile"):
            params = [p for p in _params(c, prof) if not _under(p[0], "email")]
            _check_params(c, params, VM_PARAMS, "voicemail", VM_INT)
            for n, name, value in params:
                if name == "callback-context" and value not in ix.contexts:
                    c.bad(n.file, n.path, f"callback-context {value!r} is not a dialplan context")
                elif name == "max-login-attempts" and not _int(value, 1, 100):
                    c.bad(n.file, n.path, "max-login-attempts must be 1 or more (PIN lockout)")
                elif name == "play-date-announcement" and value not in VM_DATE_ANNOUNCEMENT:
                    # FreeSWITCH logs an error and keeps its default (mod_voicemail's enum).
                    c.bad(n.file, n.path, f"play-date-announcement {value!r} is not one of "
                          + ", ".join(VM_DATE_ANNOUNCEMENT))


def _simple_confs(c: _Conf, ix: _Index) -> None:
    for conf in _configs(c, "conference.conf"):
        for prof in _children(c, conf, "profile"):
            params = _params(c, prof)
            _check_params(c, params, CONF_PARAMS, "conference", ("rate", "interval", "energy-level",
                                                                 "max-members", "announce-count"))
            for n, name, value in params:
                if name == "moh-sound":
                    _moh(c, ix, n, value, name)
                elif name in ("pin-sound", "bad-pin-sound"):
                    _sound(c, n, value, name)
                elif name == "pin" and not value.isdigit():
                    c.bad(n.file, n.path, "conference pin must be digits")
                elif name == "sound-prefix":
                    _prefix(c, n, value)
    for conf in _configs(c, "local_stream.conf"):
        for d in _children(c, conf, "directory"):
            _check_params(c, _params(c, d), LOCAL_STREAM_PARAMS, "local_stream",
                          ("rate", "channels", "interval", "prebuf"))
            path = c.expand(d.el.get("path", ""))
            music_dir = c.globals.get("zp_music", "")
            if not path:
                c.bad(d.file, d.path, "local_stream directory without a path")
            elif music_dir and path.startswith(music_dir + "/"):
                rel = path[len(music_dir) + 1:].rstrip("/") + "/"
                if rel != "default/" and rel not in c.music:
                    c.bad(d.file, d.path, f"music folder {rel!r} is not in {SOUNDS_FILE}")
    for conf in _configs(c, "directory.conf"):
        for prof in _children(c, conf, "profile"):
            _check_params(c, _params(c, prof), DIRECTORY_CONF_PARAMS, "directory",
                          ("max-menu-attempts", "min-search-digits", "digit-timeout", "max-result"))


def _prefix(c: _Conf, n: _Node, value: str) -> None:
    sounds_dir = c.globals.get("zp_sounds", "")
    v = c.expand(value)
    lang = v[len(sounds_dir) + 1:] if sounds_dir and v.startswith(sounds_dir + "/") else None
    if lang is None or lang not in catalog.LANGUAGES:
        c.bad(n.file, n.path, f"sound prefix {value!r} is not a prompt-language folder")
    elif lang not in c.languages:
        c.bad(n.file, n.path, f"prompt language {lang} is not provisioned ({SOUNDS_FILE})")


def _directory_domains(c: _Conf) -> set[str]:
    """The directory domains a dial-by-name directory searches (``directory <profile>
    <domain> ...``, in the dialplan or an IVR menu entry)."""
    out = set()
    for n in c.nodes:
        if n.el.tag == "action" and n.el.get("application") == "directory":
            words = c.expand(n.el.get("data", "")).split()
            out.update(words[1:2])
        elif n.el.tag == "entry":
            words = c.expand(n.el.get("param", "")).split()
            if words[:1] == ["directory"]:
                out.update(words[2:3])
    return out


def _directory(c: _Conf, ix: _Index) -> None:
    searched = _directory_domains(c)
    for n in c.nodes:
        if n.el.tag == "param" and re.search(r"/(user|domain)\[@(id|name)='[^']*'\]/params\[\d+\]/",
                                             n.path):
            name, value = n.el.get("name", ""), c.expand(n.el.get("value", ""))
            if name not in USER_PARAMS:
                c.bad(n.file, n.path, f"unknown directory param {name!r}")
            elif name == "vm-password" and not value.isdigit():
                c.bad(n.file, n.path, "vm-password must be digits (a voicemail PIN)")
            elif name == "vm-enabled" and value not in TRUE_FALSE:
                c.bad(n.file, n.path, "vm-enabled must be true or false")
            elif name == "dial-string":
                _dial_string(c, ix, n, value, "dial-string", dynamic=True)
        if n.el.tag == "variable" and _under(n, "variables"):
            name, value = n.el.get("name", ""), n.el.get("value", "")
            if name == "sound_prefix":
                _prefix(c, n, value)
            elif name == "user_context" and value not in ix.contexts:
                c.bad(n.file, n.path, f"user_context {value!r} is not a dialplan context")
            elif name == "directory_full_name":
                dom = re.search(r"domain\[@name='([^']*)'\]", n.path)
                if dom and c.expand(dom[1]) in searched and f"names/{value}.wav" not in c.sounds:
                    c.bad(n.file, n.path, f"the directory says this user's name from "
                          f"names/{value}.wav, which is not in {SOUNDS_FILE}")


# --- the dialplan ---------------------------------------------------------------------------

_WDAY = {"sun": 1, "mon": 2, "tue": 3, "wed": 4, "thu": 5, "fri": 6, "sat": 7}
# numeric time conditions: attribute -> (lowest, highest) value of each range end
_TIME_RANGES = {"mon": (1, 12), "mday": (1, 31), "year": (1970, 2100), "hour": (0, 23),
                "minute": (0, 59), "yday": (1, 366)}


def _time_cond(c: _Conf, n: _Node, attr: str, value: str) -> None:
    def ranges(lo: int, hi: int, conv: Callable[[str], int | None] = lambda s: int(s)
               if s.isdigit() else None) -> bool:
        for part in value.split(","):
            ends = part.split("-")
            if len(ends) > 2:
                return False
            vals = [conv(e.strip()) for e in ends]
            if any(v is None or not lo <= v <= hi for v in vals):
                return False
        return True

    ok = True
    if attr == "wday":
        ok = ranges(1, 7, lambda s: _WDAY.get(s.lower()) or (int(s) if s.isdigit() else None))
    elif attr in _TIME_RANGES:
        ok = ranges(*_TIME_RANGES[attr])
    elif attr == "time-of-day":
        m = re.fullmatch(r"(\d{2}):(\d{2})(?::(\d{2}))?-(\d{2}):(\d{2})(?::(\d{2}))?", value)
        ok = bool(m) and int(m.group(1)) <= 23 and int(m.group(4)) <= 24 \
            and int(m.group(2)) <= 59 and int(m.group(5)) <= 59 \
            and (m.group(1), m.group(2)) < (m.group(4), m.group(5)) if m else False
    elif attr == "date-time":
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?)~(\d{4}-\d{2}-\d{2} \d{2}:\d{2}"
                         r"(?::\d{2})?)", value)
        ok = bool(m) and m.group(1) < m.group(2) if m else False
    if not ok:
        c.bad(n.file, n.path, f"time condition {attr}={value!r} is not valid")


def _split_dial(value: str) -> list[tuple[str, str]]:
    """A dial string into (variables, endpoint) items, split on ',' and '|' outside braces."""
    items, depth, cur = [], 0, ""
    for ch in value:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch in ",|" and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out = []
    for item in items:
        text = item.strip()
        end = 0
        while end < len(text) and text[end] in "{[":
            close = {"{": "}", "[": "]"}[text[end]]
            level, i = 0, end
            while i < len(text):
                if text[i] in "{[":
                    level += 1
                elif text[i] in "}]":
                    level -= 1
                    if level == 0 and text[i] == close:
                        break
                i += 1
            end = i + 1
        out.append((text[:end], text[end:]))
    return out


def _dial_vars(c: _Conf, n: _Node, vars_part: str) -> None:
    # {a=1,b=2} or {^^:a=1:b=2} (custom separator); values may hold ${...}
    for name, value in re.findall(r"(rtp_secure_media\w*)=([^,}\]]*)", vars_part):
        _srtp(c, n, name, value)


def _dial_string(c: _Conf, ix: _Index, n: _Node, value: str, what: str, dynamic: bool = False) -> None:
    v = c.expand(value)
    # A cause list in fail_on_single_reject ('!...') turns off the originate's own timeout
    # while a leg rings (switch_ivr_originate.c): only a leg's leg_timeout ends the ring.
    # The users' dial strings carry such a list, so each user/ leg needs one too.
    cause_list = "fail_on_single_reject=!" in v
    for vars_part, endpoint in _split_dial(v):
        _dial_vars(c, n, vars_part)
        if not dynamic and (cause_list or endpoint.startswith("user/")) \
                and "leg_timeout=" not in vars_part:
            c.bad(n.file, n.path, f"{what}: leg {endpoint!r} has no leg_timeout and would ring "
                  "until the SIP timer (fail_on_single_reject with a cause list ignores "
                  "call_timeout)")
        tech, _, rest = endpoint.partition("/")
        if tech not in ENDPOINT_MODULES:
            c.bad(n.file, n.path, f"{what}: unknown endpoint {endpoint!r}")
            continue
        if ENDPOINT_MODULES[tech] not in ix.modules:
            c.bad(n.file, n.path, f"{what}: endpoint {tech}/ needs {ENDPOINT_MODULES[tech]}, not loaded")
        if tech == "sofia":
            profile = rest.split("/", 1)[0]
            if profile not in ix.sofia_profiles:
                c.bad(n.file, n.path, f"{what}: no sofia profile {profile!r}")
        elif tech == "user" and "$" not in rest:
            user, _, domain = rest.partition("@")
            if domain not in ix.users or user not in ix.users[domain]:
                c.bad(n.file, n.path, f"{what}: no user {user!r} in directory domain {domain!r}")
        elif tech == "loopback":
            parts = rest.split("/")
            if len(parts) > 1 and parts[1] not in ix.contexts:
                c.bad(n.file, n.path, f"{what}: loopback context {parts[1]!r} is not defined")
        if not dynamic and tech == "user" and "$" in rest and "${dialed" in rest:
            c.bad(n.file, n.path, f"{what}: ${{dialed_*}} is only set inside a directory dial-string")


_LITERAL = re.compile(r"\^([\w#-]+)\$")  # an expression that matches one string only


def _routable(ix: _Index, context: str, dest: str) -> bool:
    """Some extension of ``context`` that is not a catch-all (one matching "") takes ``dest``."""
    literal, specific = ix.specific.get(context, (set(), []))
    return dest in literal or any(p.search(dest) for p in specific)


def _app_line(c: _Conf, ix: _Index, n: _Node, line: str, what: str) -> None:
    app, _, data = line.strip().partition(" ")
    _app(c, ix, n, app, data, what, groups=None)


def _app(c: _Conf, ix: _Index, n: _Node, app: str, data: str, what: str,
         groups: int | None) -> None:
    """One application with its data (dialplan action, ivr menu-exec-app, exec-on-max-*)."""
    if app not in APP_MODULES:
        c.bad(n.file, n.path, f"{what}: unknown application {app!r}")
        return
    if APP_MODULES[app] not in ix.modules:
        c.bad(n.file, n.path, f"{what}: {app} needs {APP_MODULES[app]}, which is not loaded")
    if groups is not None:
        used = [int(x) for x in re.findall(r"(?<![$\w])\$(\d)", data)]
        if used and max(used) > groups:
            c.bad(n.file, n.path, f"{what}: uses ${max(used)} but the last condition's regex has "
                  f"{groups} group(s)")
    for api in re.findall(r"\$\{([a-z_]+)\(", data):
        if api in API_MODULES and API_MODULES[api] not in ix.modules:
            c.bad(n.file, n.path, f"{what}: ${{{api}(...)}} needs {API_MODULES[api]}, not loaded")
    if "$${" in c.expand(data):
        c.bad(n.file, n.path, f"{what}: undefined global variable in {data!r}")
    words = data.split()
    if app == "transfer":
        if len(words) >= 3 and words[1] == "XML":
            ctx = words[2]
            if ctx not in ix.contexts:
                c.bad(n.file, n.path, f"{what}: transfer to undefined context {ctx!r}")
            elif "$" not in words[0] and not _routable(ix, ctx, words[0]):
                c.bad(n.file, n.path, f"{what}: no extension of {ctx} matches {words[0]!r}")
        elif not words:
            c.bad(n.file, n.path, f"{what}: transfer without a destination")
    elif app == "ivr" and data not in ix.menus:
        c.bad(n.file, n.path, f"{what}: no ivr menu {data!r}")
    elif app == "callcenter" and data not in ix.queues:
        c.bad(n.file, n.path, f"{what}: no callcenter queue {data!r}")
    elif app == "voicemail":
        args = [w for w in words if w not in ("check", "auth")]
        if len(args) < 2:
            c.bad(n.file, n.path, f"{what}: voicemail needs <profile> <domain> [<id>]")
            return
        if args[0] not in ix.vm_profiles:
            c.bad(n.file, n.path, f"{what}: no voicemail profile {args[0]!r}")
        if args[1] not in ix.users:
            c.bad(n.file, n.path, f"{what}: no directory domain {args[1]!r}")
        elif len(args) > 2 and "$" not in args[2]:
            params = ix.users[args[1]].get(args[2])
            if params is None:
                c.bad(n.file, n.path, f"{what}: no user {args[2]!r} in {args[1]}")
            elif params.get("vm-enabled") != "true":
                c.bad(n.file, n.path, f"{what}: user {args[2]} has no voicemail box (vm-enabled)")
    elif app in ("bridge", "conference_set_auto_outcall"):
        _dial_string(c, ix, n, data, f"{what} {app}")
    elif app == "conference":
        m = re.fullmatch(r"([^@+]+)@([^+]+)(\+.*)?", data)
        if not m:
            c.bad(n.file, n.path, f"{what}: conference needs name@profile")
        elif m.group(2) not in ix.conf_profiles:
            c.bad(n.file, n.path, f"{what}: no conference profile {m.group(2)!r}")
    elif app == "valet_park":
        m = re.fullmatch(r"(\S+) auto in (\d+) (\d+)", data)
        if m and int(m.group(2)) > int(m.group(3)):
            c.bad(n.file, n.path, f"{what}: valet_park slot range {m.group(2)}-{m.group(3)} is empty")
        elif not m:
            lot = words[0] if words else ""
            if lot not in ix.park_lots:
                c.bad(n.file, n.path, f"{what}: park lot {lot!r} is never parked into "
                      "(no valet_park <lot> auto in)")
    elif app == "directory":
        if len(words) != 3 or words[0] not in ix.dir_profiles or words[1] not in ix.users \
                or words[2] not in ix.contexts:
            c.bad(n.file, n.path, f"{what}: directory needs <profile> <domain> <context> that "
                  f"exist: {data!r}")
    elif app == "playback":
        _sound(c, n, data, what)
    elif app == "hangup":
        if data and not data.startswith("${") and data not in HANGUP_CAUSES:
            c.bad(n.file, n.path, f"{what}: unknown hangup cause {data!r}")
    elif app == "multiset":
        # "^^<sep>a=1<sep>b=2" (or space-separated): each part is checked as a set
        parts = data[3:].split(data[2]) if data.startswith("^^") and len(data) > 2 \
            else data.split()
        for part in parts:
            _app(c, ix, n, "set", part, what, groups)
    elif app in ("set", "export"):
        name, eq, value = data.removeprefix("nolocal:").partition("=")
        if not eq:
            c.bad(n.file, n.path, f"{what}: {app} needs name=value")
        elif name.startswith("rtp_secure_media"):
            _srtp(c, n, name, value)
        elif name in ("hold_music", "valet_hold_music"):
            _moh(c, ix, n, value, name)
        elif name == "timezone":
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                c.bad(n.file, n.path, f"{what}: unknown time zone {value!r}")
        elif name == "sound_prefix":
            _prefix(c, n, value)
        elif name == "valet_parking_orbit_context" and value not in ix.contexts:
            c.bad(n.file, n.path, f"{what}: orbit context {value!r} is not defined")
        elif name == "call_timeout" and not _int(value, 1, 3600):
            c.bad(n.file, n.path, f"{what}: call_timeout must be seconds")
    elif app == "bind_meta_app":
        m = re.fullmatch(r"([0-9*#]) (a|b|ab) ([a-z]+) ([a-z_]+)(::.*)?", data)
        if not m:
            c.bad(n.file, n.path, f"{what}: bind_meta_app needs <key> <a|b|ab> <flags> <app>[::args]")
        elif m.group(4) not in APP_MODULES:
            c.bad(n.file, n.path, f"{what}: bind_meta_app runs unknown application {m.group(4)!r}")


def _dialplan(c: _Conf, ix: _Index) -> None:
    for n in c.nodes:
        if n.el.tag != "extension":
            continue
        conds = [ch for ch in n.el if ch.tag == "condition"]
        if not conds:
            c.bad(n.file, n.path, "extension without a condition")
            continue
        last_groups = 0
        for i, cond in enumerate(conds):
            cn = _Node(cond, n.file, f"{n.path}/condition[{i + 1}]")
            for attr, value in cond.attrib.items():
                if attr not in CONDITION_ATTRS:
                    c.bad(cn.file, cn.path, f"unknown condition attribute {attr!r}")
                elif attr not in ("field", "expression", "break", "require-nested", "regex",
                                  "tz-offset"):
                    _time_cond(c, cn, attr, value)
            if ("field" in cond.attrib) != ("expression" in cond.attrib):
                c.bad(cn.file, cn.path, "a condition needs both field and expression")
            if "expression" in cond.attrib:
                pat = _regex(c, cn, cond.get("expression", ""))
                last_groups = pat.groups if pat is not None else 0
            if cond.get("break", "on-false") not in ("on-true", "on-false", "always", "never"):
                c.bad(cn.file, cn.path, f"break={cond.get('break')!r} is not valid")
            if i < len(conds) - 1 and list(cond):
                c.bad(cn.file, cn.path, "actions in a condition that is not the last one run "
                      "only when it matches on its own; keep actions in the last condition")
            for j, act in enumerate(x for x in cond if x.tag in ("action", "anti-action")):
                an = _Node(act, n.file, f"{cn.path}/{act.tag}[{j + 1}]")
                if act.get("inline") not in (None, "true", "false"):
                    c.bad(an.file, an.path, "inline must be true or false")
                _app(c, ix, an, act.get("application", ""), act.get("data", ""), "action",
                     last_groups)
    for ctx, exts in ix.contexts.items():
        counts = collections.Counter(x.el.get("name") for _, x in exts)
        dup = sorted(str(x) for x, k in counts.items() if x and k > 1)
        if dup:
            first = exts[0][1]
            c.bad(first.file, first.path.rsplit("/", 1)[0],
                  f"context {ctx}: extension name(s) used twice: {', '.join(dup)}")


def _globals(c: _Conf) -> None:
    for n in c.nodes:
        for attr, value in n.el.attrib.items():
            for var in re.findall(r"\$\$\{([^}]+)\}", value):
                if var not in c.globals and var not in BUILTIN_VARS:
                    c.bad(n.file, n.path, f"{attr}: global variable $${{{var}}} is never set")
    for name in ("rtp_secure_media", "rtp_secure_media_inbound", "rtp_secure_media_outbound",
                 "rtp_secure_media_suites"):
        if name in c.globals:
            _srtp(c, _Node(ET.Element("X-PRE-PROCESS"), "vars.xml", "/include/X-PRE-PROCESS"), name,
                  c.globals[name])


def validate_conf(files: Mapping[str, bytes], label: str = "") -> list[Violation]:
    """Every violation in one switch's conf tree (paths relative to the conf directory).

    ``label`` prefixes the file names in the violations (e.g. ``"<host>/freeswitch/"``).
    """
    c = _Conf(dict(files), label)
    _read(c)
    if ROOT_FILE not in c.roots:
        return sorted(set(c.out))
    ix = _index(c)
    _globals(c)
    _modules(c, ix)
    _event_socket(c, ix)
    _sofia(c, ix)
    _switch_conf(c)
    _acl(c)
    _ivr(c, ix)
    _callcenter(c, ix)
    _voicemail(c, ix)
    _simple_confs(c, ix)
    _directory(c, ix)
    _dialplan(c, ix)
    _phrases(c)
    return sorted(set(c.out))


def switch_trees(files: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    """Build files grouped per switch host: host -> conf-relative path -> bytes."""
    out: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        host, sep, rest = path.partition("/freeswitch/")
        if sep and "/" not in host:
            out.setdefault(host, {})[rest] = data
    return out


def validate_build(build: Build) -> list[Violation]:
    """Validate the FreeSWITCH tree of every switch in a build."""
    files = {p: f.data for p, f in build.files.items()}
    out: list[Violation] = []
    for host, tree in sorted(switch_trees(files).items()):
        out += validate_conf(tree, f"{host}/freeswitch/")
    return out


def validate_dir(conf_dir: Path) -> list[Violation]:
    """Validate a conf directory on disk (a written build's ``<host>/freeswitch``)."""
    root = Path(conf_dir)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
             if p.is_file()}
    return validate_conf(files, f"{root}/")


def check_build(build: Build) -> None:
    """Raise RenderError (exit 4) listing every violation; nothing to do without switches."""
    violations = validate_build(build)
    if violations:
        shown = "\n".join(f"  {v}" for v in violations[:50])
        more = f"\n  ... and {len(violations) - 50} more" if len(violations) > 50 else ""
        raise RenderError(f"{len(violations)} FreeSWITCH config problem(s):\n{shown}{more}")
