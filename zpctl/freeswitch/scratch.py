"""Prove a rendered switch config with FreeSWITCH itself: one scratch instance per config.

The XML validator (:mod:`zpctl.render.freeswitch_validate`) knows what its authors wrote
down; FreeSWITCH knows the rest.  :func:`check_switch_configs` starts each switch config
of a written build in a throwaway FreeSWITCH on this machine and asks it, over ESL, whether
every module of ``modules.conf.xml`` is loaded and every sofia profile is RUNNING; any
``[ERR]``/``[CRIT]`` line FreeSWITCH logs while it starts is a problem too (a bad parameter
value is logged and then replaced by a default, so the switch would start with a config
other than the one rendered).

What is changed in the scratch copy, and nothing else:

- what binds to the network: in each profile of ``sip_profiles/*.xml`` ``sip-ip`` and
  ``rtp-ip`` become 127.0.0.1 and ``sip-port``/``tls-sip-port`` free ports (added when
  missing: FreeSWITCH would bind this host's own address and the default ports), and
  ``ext-sip-ip``/``ext-rtp-ip`` 127.0.0.1 when present; in ``event_socket.conf.xml``
  ``listen-ip`` 127.0.0.1, a free ``listen-port`` and an ``apply-inbound-acl`` of
  127.0.0.1/32 (RTP ports are bound only by calls, and none is made);
- the core database: ``core-db-dsn`` is removed from ``switch.conf.xml`` (the platform's
  PostgreSQL is the hosts' to reach); the instance keeps it in sqlite, and ``mod_pgsql``
  is still loaded first, as the hosts load it; for the same reason the accounts' copier
  (``zp_accounts.lua``, a mod_lua ``startup-script``) is left out of ``lua.conf.xml``;
- the host folders: every path of the node's ``node.json`` (config, state, run, log) in every
  file and on the command line, and the sofia ``tls-cert-dir``, point into the scratch
  folder, which :func:`zpctl.freeswitch.provision.provision` fills (a throwaway CA and
  certificate, the sounds of ``sounds.txt``, the state folders).

A module zpctl renders on purpose (``zpctl.render.freeswitch.MODULES``, the codec modules)
that this machine's FreeSWITCH does not have at all (its ``.so`` cannot be opened: the
lab's package has no G.729) is a *note*, not a problem: the config asks for it rightly, and
only the hosts' FreeSWITCH can show that it loads.  Any other module that does not load is
a problem.

The command line is the node's own (``node.json``'s ``freeswitch`` service) with those
folders.  Switches whose scratch copies are identical but for their own name run once: in
an inventory the two switches of a zone usually differ only by name and addresses.

Stopping: SIGTERM, FreeSWITCH's orderly shutdown (as ``api shutdown``, and it works when
the event socket does not), then SIGKILL after a grace.  It takes about 4 s whatever the
config, so it runs in a thread of its own while the next config starts; the instances still
shutting down when the last result is in are killed instead, and the check returns once
every instance has exited and its folder is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl import pki
from zpctl.clients.esl import EslConnection
from zpctl.errors import EnvironmentProblem, Problem, RemoteFailure, RenderError, ZpctlError
from zpctl.freeswitch.provision import SwitchFiles, provision
from zpctl.model.roles import FREESWITCH
from zpctl.paths import find_binary
from zpctl.render.freeswitch import CODEC_MODULES, MODULES

FREESWITCH_ENV = "ZPCTL_FREESWITCH"
FS = "freeswitch"
LOCAL = "127.0.0.1"
START_TIMEOUT = 30.0  # until the event socket answers
READY_TIMEOUT = 15.0  # then until every sofia profile is RUNNING
STOP_GRACE = 10.0  # after TERM, before KILL
TAIL_GRACE = 0.5  # for the instances still shutting down when the check is done
LOG_TAIL = 12  # lines of log shown when FreeSWITCH died or never answered

PROFILE_ADDRESS_PARAMS = ("sip-ip", "rtp-ip")  # bound: set, or added when missing
PROFILE_EXT_PARAMS = ("ext-sip-ip", "ext-rtp-ip")  # advertised: set when present
PROFILE_PORT_PARAMS = ("sip-port", "tls-sip-port")
# Log lines that are problems, and the source files that tell which config file they are about.
PROBLEM_LEVELS = ("[ERR]", "[CRIT]", "[ALERT]", "[EMERG]")
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ +(?:[\d.]+% +)?(\[[A-Z]+\]) (.*)$")
# Modules zpctl renders on purpose: one missing from this machine's FreeSWITCH is a note.
RENDERED_MODULES = frozenset(MODULES) | frozenset(CODEC_MODULES.values())
_NOT_INSTALLED = re.compile(r"Error Loading module \S*?(mod_[\w-]+)\.so: cannot open shared "
                            r"object file")
_SOURCE_FILES = {"sofia": "sip_profiles", "switch_xml": "freeswitch.xml",
                 "switch_core": "autoload_configs/switch.conf.xml",
                 "switch_loadable_module": "autoload_configs/modules.conf.xml"}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SwitchCheck:
    """One scratch run: the switch that ran (``switches[0]``) and those with the same config."""

    switches: tuple[str, ...]
    ok: bool
    seconds: float
    modules: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    # Rendered modules this machine's FreeSWITCH does not have (not checked here).
    not_installed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"switches": list(self.switches), "ok": self.ok,
                "seconds": round(self.seconds, 1), "modules": len(self.modules),
                "profiles": list(self.profiles), "problems": [p.as_dict() for p in self.problems],
                "not_installed_here": list(self.not_installed)}

    def line(self) -> str:
        """One line for humans: what ran, what it proved, how long it took."""
        also = (f" (same config: {', '.join(self.switches[1:])})" if len(self.switches) > 1
                else "")
        if self.ok:
            missing = (f"; not installed in this FreeSWITCH, so not checked here: "
                       f"{', '.join(self.not_installed)}" if self.not_installed else "")
            return (f"{self.switches[0]}{also}: FreeSWITCH loaded {len(self.modules)} modules, "
                    f"sofia profile {', '.join(self.profiles) or '-'} RUNNING "
                    f"({self.seconds:.1f} s){missing}")
        return (f"{self.switches[0]}{also}: rejected by FreeSWITCH ({len(self.problems)} "
                f"problem{'s' if len(self.problems) != 1 else ''}, {self.seconds:.1f} s)")


def freeswitch_binary() -> str | None:
    """``$ZPCTL_FREESWITCH`` (a path or a command name; exit 9 when it is set and not an
    executable), else ``freeswitch`` on PATH or in :data:`zpctl.paths.BINARY_DIRS`, else
    None (not installed)."""
    named = os.environ.get(FREESWITCH_ENV)
    if named:
        found = shutil.which(named)
        if found is None:
            raise EnvironmentProblem(f"${FREESWITCH_ENV}={named} is not an executable")
        return found
    return find_binary(FS)


def switch_nodes(build_dir: Path) -> list[str]:
    """The nodes of a written build that have a switch config (``<node>/freeswitch``)."""
    return sorted(p.parent.parent.name for p in Path(build_dir).glob(f"*/{FS}/freeswitch.xml"))


# --- the scratch copy ------------------------------------------------------------------------


@dataclass
class _Scratch:
    """One switch's config as it will run in the scratch folder ``root``."""

    node: str
    files: dict[str, bytes]  # relative to the conf folder
    original: dict[str, bytes]  # as rendered: where problems are located (file, line)
    args: list[str]
    conf: str  # the conf folder (-conf), where ``files`` go
    password: str
    ports: dict[str, int] = field(default_factory=dict)


def _read_tree(conf: Path) -> dict[str, bytes]:
    return {p.relative_to(conf).as_posix(): p.read_bytes()
            for p in sorted(conf.rglob("*")) if p.is_file()}


def _param_tags(text: str, name: str) -> list[re.Match[str]]:
    return list(re.finditer(r'<param\b[^>]*?\bname\s*=\s*"' + re.escape(name) + r'"[^>]*>',
                            text))


def _set_params(text: str, values: Mapping[str, str]) -> str:
    """Every ``<param name=NAME value=...>`` of ``text`` with the value of ``values``, and
    the params it lacks added at the top of its ``<settings>`` (FreeSWITCH's default for a
    missing address is this host's own)."""
    for name, value in values.items():
        new = f'value="{html.escape(value)}"'
        tag = re.compile(r'<param\b[^>]*?\bname\s*=\s*"' + re.escape(name) + r'"[^>]*>')

        def set_value(m: re.Match[str], new: str = new) -> str:
            return re.sub(r'\bvalue\s*=\s*"[^"]*"', new, m.group(0))

        def add(m: re.Match[str], name: str = name, new: str = new) -> str:
            return f'{m.group(0)}\n      <param name="{name}" {new}/>'

        text = (tag.sub(set_value, text) if tag.search(text)
                else re.sub(r"<settings\s*>", add, text, count=1))
    return text


def _param(text: str, name: str) -> str | None:
    tags = _param_tags(text, name)
    m = re.search(r'\bvalue\s*=\s*"([^"]*)"', tags[0].group(0)) if tags else None
    return html.unescape(m.group(1)) if m else None


_PROFILE = re.compile(r'(<profile\b[^>]*\bname\s*=\s*"([^"]*)"[^>]*>)(.*?)(</profile>)', re.S)


def _relocate(text: str, folders: Sequence[tuple[str, str]]) -> str:
    """Every host folder (and what is under it) moved to its scratch folder."""
    for host, scratch in folders:
        text = re.sub(re.escape(host.rstrip("/")) + r"(?![\w.+-])", scratch, text)
    return text


def _folders(manifest: Mapping[str, Any], root: str) -> list[tuple[str, str]]:
    paths = manifest.get("paths") or {}
    pairs = [(str(host), f"{root}/{kind}") for kind, host in paths.items()
             if kind in ("config", "state", "shared", "run", "log")
             and str(host).startswith("/")]
    return sorted(pairs, key=lambda p: -len(p[0]))  # /a/b before /a


def _ports(files: Mapping[str, bytes]) -> list[str]:
    """The port slots a config needs: ESL, then each sofia profile's SIP ports."""
    slots = ["esl"]
    for rel in sorted(files):
        if rel.startswith("sip_profiles/") and rel.endswith(".xml"):
            for m in _PROFILE.finditer(files[rel].decode(errors="replace")):
                slots += [f"{rel}:{m.group(2)}:{name}" for name in PROFILE_PORT_PARAMS]
    return slots


# The switch's core database on the platform's PostgreSQL (switch_recovery): not this
# machine's to reach, so the scratch instance keeps its core database in sqlite.
_CORE_DB_DSN = re.compile(r'[ \t]*<param\s+name="core-db-dsn"\s+value="[^"]*"\s*/>[ \t]*\n?')
# The accounts' copier (scripts/zp_accounts.lua, a startup script): it polls the platform
# database, which is the hosts' to reach, like the core database.
_ACCOUNTS_SCRIPT = re.compile(r'\s*<param name="startup-script" value="[^"]*zp_accounts\.lua"\s*/>')


def _rewrite(node: str, files: Mapping[str, bytes], manifest: Mapping[str, Any], root: str,
             ports: Mapping[str, int]) -> _Scratch:
    """The scratch copy of one switch config for the folder ``root`` and ``ports``."""
    folders = _folders(manifest, root)
    out: dict[str, bytes] = {}
    for rel, data in files.items():
        try:
            text = data.decode()
        except UnicodeDecodeError:
            out[rel] = data
            continue
        text = _relocate(text, folders)
        if rel.startswith("sip_profiles/") and rel.endswith(".xml"):
            def profile(m: re.Match[str], rel: str = rel) -> str:
                values = dict.fromkeys(PROFILE_ADDRESS_PARAMS, LOCAL)
                values |= {name: str(ports[f"{rel}:{m.group(2)}:{name}"])
                           for name in PROFILE_PORT_PARAMS}
                values |= {name: LOCAL for name in PROFILE_EXT_PARAMS
                           if _param(m.group(3), name) is not None}
                if _param(m.group(3), "tls-cert-dir") is not None:
                    values["tls-cert-dir"] = f"{root}/tls"
                return m.group(1) + _set_params(m.group(3), values) + m.group(4)
            text = _PROFILE.sub(profile, text)
        elif rel == "autoload_configs/event_socket.conf.xml":
            text = _set_params(text, {"listen-ip": LOCAL, "listen-port": str(ports["esl"]),
                                      "apply-inbound-acl": f"{LOCAL}/32"})
        elif rel == "autoload_configs/switch.conf.xml":
            text = _CORE_DB_DSN.sub("", text)
        elif rel == "autoload_configs/lua.conf.xml":
            text = _ACCOUNTS_SCRIPT.sub("", text)
        out[rel] = text.encode()
    service = next((s for s in manifest.get("services") or () if s.get("name") == FS), None)
    if service is not None:
        args = [_relocate(str(a), folders) for a in service["args"]]
    else:  # a build without node.json services: the role table's command line
        args = FREESWITCH.args({k: f"{root}/{k}" for k in ("config", "state", "run", "log")})
    conf = args[args.index("-conf") + 1] if "-conf" in args else f"{root}/config/{FS}"
    m = re.search(rb'data="esl_password=([^"]*)"', files.get("secrets.xml", b""))
    password = html.unescape(m.group(1).decode()) if m else ""
    return _Scratch(node, out, dict(files), args, conf, password, dict(ports))


def _key(s: _Scratch) -> str:
    """What makes two scratch copies the same config: everything but the switch's name."""
    h = hashlib.sha256()
    name = s.node.encode()
    for rel in sorted(s.files):
        h.update(rel.encode() + b"\0" + s.files[rel].replace(name, b"\0node\0") + b"\0")
    h.update(json.dumps([a.replace(s.node, "\0node\0") for a in s.args]).encode())
    return h.hexdigest()


def plan(build_dir: Path, switches: Iterable[str] | None = None) -> list[list[str]]:
    """The switches of a written build grouped by config: each group runs once (its first
    switch), in build order."""
    build_dir = Path(build_dir)
    groups: dict[str, list[str]] = {}
    for node in (sorted(switches) if switches is not None else switch_nodes(build_dir)):
        s = _prepare(build_dir, node, "/zpctl-scratch", None)
        groups.setdefault(_key(s), []).append(node)
    return list(groups.values())


def _prepare(build_dir: Path, node: str, root: str, ports: Mapping[str, int] | None) -> _Scratch:
    conf = build_dir / node / FS
    if not (conf / "freeswitch.xml").is_file():
        raise RenderError(f"{conf}: no switch config (freeswitch.xml) in the build")
    manifest_file = build_dir / node / "node.json"
    if not manifest_file.is_file():  # it says which host folders the config names
        raise RenderError(f"{manifest_file}: missing; the switch check needs the node's paths")
    manifest = json.loads(manifest_file.read_text())
    files = _read_tree(conf)
    if ports is None:  # placeholders, for comparing configs
        ports = {slot: i + 1 for i, slot in enumerate(_ports(files))}
    return _rewrite(node, files, manifest, root, ports)


# --- running one ------------------------------------------------------------------------------

_port_lock = threading.Lock()


def _free_ports(count: int) -> list[int]:
    with _port_lock, contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((LOCAL, 0))
        return [int(s.getsockname()[1]) for s in socks]


def _log_lines(root: Path) -> list[str]:
    """FreeSWITCH's log (the rewritten logfile, then its console output), entries joined
    with their continuation lines."""
    lines: list[str] = []
    for path in [*sorted((root / "log").glob("*.log")), root / "console.out"]:
        if not path.is_file():
            continue
        for raw in path.read_text(errors="replace").splitlines():
            if not raw.strip():
                continue
            if _LOG_LINE.match(raw) or not lines:
                lines.append(raw.rstrip())
            else:  # "**<the file>: <why>**" after "Error Loading module <the file>"
                more = raw.strip().strip("*").strip()
                last = lines[-1].rsplit(" ", 1)[-1]
                if more.startswith(f"{last}:"):
                    more = more[len(last) + 1:].strip()
                lines[-1] += f": {more}" if lines[-1][-1:].isalnum() else f" {more}"
    return lines


def _short(line: str) -> str:
    """A log line without its time stamp and CPU idle column."""
    m = _LOG_LINE.match(line)
    return f"{m.group(1)} {m.group(2)}" if m else line


def error_lines(lines: Iterable[str]) -> list[str]:
    """FreeSWITCH's ``[ERR]``/``[CRIT]`` (and worse) lines, short."""
    out = []
    for line in lines:
        m = _LOG_LINE.match(line)
        if m and m.group(1) in PROBLEM_LEVELS:
            out.append(_short(line))
    return out


def _line_of(text: str, needle: str) -> int | None:
    pos = text.find(needle)
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None


def _locate(s: _Scratch, message: str, nth: int = 0) -> tuple[str, int | None, str]:
    """The config file (relative), line and field a FreeSWITCH log line is about; ``nth``:
    how many times the same line came before (the same mistake in several places)."""
    texts = {rel: data.decode(errors="replace") for rel, data in s.original.items()}
    m = re.search(r"Error Loading module \S*?(mod_[\w-]+)(?:\.so)?\b", message)
    if m:
        rel = "autoload_configs/modules.conf.xml"
        return rel, _line_of(texts.get(rel, ""), f'"{m.group(1)}"'), m.group(1)
    tokens = re.findall(r"\[([^\]\s]{2,})\]|'([^'\s]{2,})'|\"([^\"\s]{2,})\"", message)
    words = sorted({t for group in tokens for t in group if t}, key=len, reverse=True)
    for word in words:  # a parameter name first (the one with a value the line quotes)...
        places = [(rel, m) for rel, text in sorted(texts.items())
                  for m in _param_tags(text, word)]
        if places:
            valued = [(rel, m) for rel, m in places
                      if any(f'value="{html.escape(w)}"' in m.group(0) for w in words)]
            rel, m = (valued or places)[nth % len(valued or places)]
            return rel, texts[rel].count("\n", 0, m.start()) + 1, word
    for word in words:
        for rel, text in sorted(texts.items()):
            line = _line_of(text, f'"{word}"')
            if line:
                return rel, line, word
    src = re.match(r"\[[A-Z]+\] ([\w.]+?)(?:\.c|\.cpp)?:\d+ ", message)
    stem = src.group(1) if src else ""
    for prefix, where in _SOURCE_FILES.items():
        if stem.startswith(prefix) and where != "sip_profiles":
            return where, None, ""
        if stem.startswith(prefix):
            return next((r for r in sorted(texts) if r.startswith("sip_profiles/")),
                        "autoload_configs/sofia.conf.xml"), None, ""
    mod = re.match(r"mod_(\w+)$", stem)
    if mod and f"autoload_configs/{mod.group(1)}.conf.xml" in texts:
        return f"autoload_configs/{mod.group(1)}.conf.xml", None, ""
    return "freeswitch.xml", None, ""


def _malformed(s: _Scratch) -> tuple[str, int | None, str]:
    """The first file that is not well-formed XML (FreeSWITCH names only a line of the
    document it assembled from all of them), or the root file."""
    for rel in sorted(s.original):
        if rel.endswith(".xml"):
            try:
                ET.fromstring(s.original[rel])  # noqa: S314 - our own rendered bytes
            except ET.ParseError as exc:
                return rel, exc.position[0], ""
    return "freeswitch.xml", None, ""


def _modules(s: _Scratch) -> list[str]:
    data = s.files.get("autoload_configs/modules.conf.xml")
    if data is None:
        return []
    root = ET.fromstring(data)  # noqa: S314 - our own rendered bytes
    return [el.get("module", "") for el in root.iter("load") if el.get("module")]


def _profiles(s: _Scratch) -> dict[str, str]:
    """Each sofia profile's name and its file."""
    out = {}
    for rel in sorted(s.files):
        if rel.startswith("sip_profiles/") and rel.endswith(".xml"):
            with contextlib.suppress(ET.ParseError):
                for el in ET.fromstring(s.files[rel]).iter("profile"):  # noqa: S314 - ours
                    out[el.get("name", "")] = rel
    return out


async def _ask(s: _Scratch, proc: subprocess.Popen[bytes], deadline: float
               ) -> tuple[list[str], list[str], list[tuple[str, str, str]]]:
    """Over ESL once it answers: the modules loaded, the profiles RUNNING, and what failed
    as (file, field, reason).  ProcessLookupError when FreeSWITCH exits, TimeoutError when
    its event socket does not answer by ``deadline``, PermissionError when it refuses us."""
    conn: EslConnection | None = None
    while conn is None:
        if proc.poll() is not None:
            raise ProcessLookupError(proc.returncode)
        try:
            conn = EslConnection(LOCAL, s.ports["esl"], s.password, name=s.node, timeout=5)
            await conn.connect()
        except RemoteFailure as exc:  # it answered, and said no (password, ACL)
            raise PermissionError(exc.message) from None
        except ZpctlError as exc:
            conn = None
            if time.monotonic() > deadline:
                raise TimeoutError(exc.message) from None
            await asyncio.sleep(0.2)
    try:
        failed: list[tuple[str, str, str]] = []
        # Start-up is over when the core says it is ready; the sofia profiles start in
        # threads of their own, so they are waited for one by one.
        ready_by = time.monotonic() + READY_TIMEOUT
        while "ready" not in (await conn.api("status", check=False)) \
                and time.monotonic() < ready_by:
            await asyncio.sleep(0.2)
        loaded = []
        rel = "autoload_configs/modules.conf.xml"
        for mod in _modules(s):
            if (await conn.api(f"module_exists {mod}", check=False)).strip() == "true":
                loaded.append(mod)
            else:
                failed.append((rel, mod, f"module {mod} is not loaded"))
        running = []
        for name, prel in _profiles(s).items():
            while True:
                listed = await conn.api("sofia status", check=False)
                row = next((ln for ln in listed.splitlines()
                            if ln.split()[:2] == [name, "profile"]), "")
                if "RUNNING" in row:
                    running.append(name)
                    break
                if time.monotonic() > ready_by:
                    state = f" ({row.split(None, 3)[-1]})" if row else " (not started)"
                    failed.append((prel, name, f"sofia profile {name} is not RUNNING{state}"))
                    break
                await asyncio.sleep(0.3)
        return loaded, running, failed
    finally:
        with contextlib.suppress(ZpctlError, OSError):
            await conn.abort()


def _stop(proc: subprocess.Popen[bytes], root: Path, keep: Path | None, node: str) -> None:
    """TERM (FreeSWITCH's orderly shutdown, about 4 s), KILL after a grace; then the scratch
    folder goes (or is kept for debugging)."""
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
            try:
                proc.wait(STOP_GRACE)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if keep is not None:
            with contextlib.suppress(OSError):
                shutil.copytree(root, keep / node, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(root, ignore_errors=True)


def _tail(root: Path) -> str:
    return "".join(f"\n    {_short(x)}" for x in _log_lines(root)[-LOG_TAIL:])


def _run(binary: str, build_dir: Path, group: Sequence[str], agent: bytes, ca: bytes,
         timeout: float, keep: Path | None,
         reapers: list[tuple[threading.Thread, subprocess.Popen[bytes]]]) -> SwitchCheck:
    """One scratch run of ``group[0]``'s config.  The instance is stopped by a thread of its
    own (added to ``reapers``), so the next run need not wait for its shutdown."""
    node = group[0]
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"zpctl-fs-{node}-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        slots = list(_prepare(build_dir, node, str(root), None).ports)
        s = _prepare(build_dir, node, str(root),
                     dict(zip(slots, _free_ports(len(slots)), strict=True)))
        conf = Path(s.conf)
        for rel, data in s.files.items():
            (conf / rel).parent.mkdir(parents=True, exist_ok=True)
            (conf / rel).write_bytes(data)
            (conf / rel).chmod(0o600)
        for sub in ("config", "state", "shared", "run", "log", "tls"):
            (root / sub).mkdir(mode=0o700, exist_ok=True)
        provision(SwitchFiles(conf, root / "state", root / "tls"), agent, ca)
        for i, arg in enumerate(s.args[:-1]):  # the folders of the command line
            if arg.startswith("-") and s.args[i + 1].startswith(f"{root}/"):
                Path(s.args[i + 1]).mkdir(parents=True, exist_ok=True)
        base = f"{build_dir}/{node}/{FS}"
        problems: list[Problem] = []
        loaded: list[str] = []
        running: list[str] = []
        with (root / "console.out").open("wb") as console:
            proc = subprocess.Popen([binary, *s.args], stdout=console, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=root)
        try:
            loaded, running, failed = asyncio.run(_ask(s, proc, time.monotonic() + timeout))
            problems += [Problem(f"{base}/{rel}", _line_of(
                s.original.get(rel, b"").decode(errors="replace"), f'"{what}"'), what, reason)
                for rel, what, reason in failed]
        except ProcessLookupError:
            rel, line, what = _malformed(s)
            problems.append(Problem(f"{base}/{rel}", line, what,
                                    f"FreeSWITCH exited at start (status {proc.returncode}); "
                                    f"its last lines:{_tail(root)}"))
        except PermissionError as exc:
            problems.append(Problem(f"{base}/autoload_configs/event_socket.conf.xml", None,
                                    "password", f"FreeSWITCH's event socket refused zpctl: {exc}"))
        except TimeoutError as exc:
            problems.append(Problem(f"{base}/autoload_configs/event_socket.conf.xml", None, "",
                                    f"FreeSWITCH's event socket did not answer within "
                                    f"{timeout:.0f} s ({exc}); its last lines:{_tail(root)}"))
        said: list[Problem] = []
        seen: dict[str, int] = {}
        absent: list[str] = []
        for err in error_lines(_log_lines(root)):
            m = _NOT_INSTALLED.search(err)
            if m and m.group(1) in RENDERED_MODULES:
                absent.append(m.group(1))
                continue
            rel, line, what = _locate(s, err, seen.get(err, 0))
            seen[err] = seen.get(err, 0) + 1
            problem = Problem(f"{base}/{rel}", line, what, f"FreeSWITCH: {err}")
            if problem not in said:
                said.append(problem)
        # FreeSWITCH's own line says it better than "module X is not loaded".
        covered = {(p.file, p.field) for p in said if p.field}
        problems = said + [p for p in problems if ((p.file, p.field) not in covered
                                                   or not p.reason.startswith("module "))
                           and p.field not in absent]
    finally:
        if proc is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            reaper = threading.Thread(target=_stop, args=(proc, root, keep, node),
                                      name=f"zpctl-fs-stop-{node}")
            reaper.start()
            reapers.append((reaper, proc))
    return SwitchCheck(tuple(group), not problems, time.monotonic() - started, tuple(loaded),
                       tuple(running), tuple(problems), tuple(sorted(set(absent))))


def _throwaway_pki() -> tuple[bytes, bytes]:
    """A CA and a certificate for 127.0.0.1 (agent.pem = certificate + key)."""
    with tempfile.TemporaryDirectory(prefix="zpctl-fs-pki-") as tmp:
        d = Path(tmp)
        ca, _ = pki.make_ca(d, cn="zpctl scratch CA", days=2)
        crt, key = pki.issue(d, d, "switch", "scratch.switch.invalid", [LOCAL])
        return crt.read_bytes() + key.read_bytes(), ca.read_bytes()


def check_switch_configs(build_dir: Path, switches: Iterable[str] | None = None, *,
                         binary: str | None = None, jobs: int = 2,
                         progress: Progress | None = None, timeout: float = START_TIMEOUT,
                         keep: Path | None = None) -> list[SwitchCheck]:
    """Start every switch config of the written build ``build_dir`` (of ``switches`` when
    given) in a scratch FreeSWITCH, ``jobs`` at a time; one result per distinct config, in
    build order.  ``progress`` gets a line as each run finishes; ``keep`` (debugging) keeps
    each scratch folder there.  EnvironmentProblem (exit 9) without a FreeSWITCH binary."""
    binary = binary or freeswitch_binary()
    if binary is None:
        raise EnvironmentProblem("FreeSWITCH is not installed (no `freeswitch` on PATH; or set "
                                 f"${FREESWITCH_ENV})")
    build_dir = Path(build_dir)
    groups = plan(build_dir, switches)
    if not groups:
        return []
    agent, ca = _throwaway_pki()
    done: list[SwitchCheck] = []
    reapers: list[tuple[threading.Thread, subprocess.Popen[bytes]]] = []
    lock = threading.Lock()

    def one(group: list[str]) -> SwitchCheck:
        result = _run(binary, build_dir, group, agent, ca, timeout, keep, reapers)
        with lock:
            done.append(result)
            if progress is not None:
                more = f" (+{len(group) - 1} same)" if len(group) > 1 else ""
                progress(f"[{len(done)}/{len(groups)}] {group[0]}{more}: "
                         f"{'ok' if result.ok else 'REJECTED'} ({result.seconds:.1f} s)")
        return result

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="zpctl-fs") as pool:
            return list(pool.map(one, groups))
    finally:
        # The last instances are still shutting down: nothing more is asked of them, so
        # they are killed rather than waited for.  Then every folder is gone.
        time.sleep(TAIL_GRACE)
        for reaper, proc in list(reapers):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            reaper.join()


def problems(results: Iterable[SwitchCheck]) -> list[Problem]:
    """Every problem of a check, each naming the switches whose config it is."""
    out = []
    for r in results:
        for p in r.problems:
            also = (f" [same config: {', '.join(r.switches[1:])}]" if len(r.switches) > 1
                    else "")
            out.append(Problem(p.file, p.line, p.field, p.reason + also))
    return out


def raise_for(results: Sequence[SwitchCheck]) -> None:
    """RenderError (exit 4) with every problem, when a config was rejected."""
    found = problems(results)
    if not found:
        return
    bad = [r for r in results if not r.ok]
    names = ", ".join(r.switches[0] for r in bad)
    lines = "\n".join(f"  {p}" for p in found)
    raise RenderError(f"{len(bad)} switch config{'s' if len(bad) != 1 else ''} rejected by "
                      f"FreeSWITCH ({names}):\n{lines}")
