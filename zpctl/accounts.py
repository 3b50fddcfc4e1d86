"""Provision an inventory's accounts into the subscriber database.

Each user becomes a subscriber ``<extension>@<account domain>`` with the HA1 hashes of a
password from the secrets file (key ``sip:<extension>@<domain>``, generated when missing);
each of its provisioned devices a subscriber ``<device id>@<domain>`` of its own that may
only register and call as the user's extension (column ``aor``), with the device's media
policy (column ``srtp``: the SRTP suite its leg must use, or "plain");
each row also carries what an emergency call needs: the user's site (column ``site``,
``<account id>/<site id>``) and callback number (column ``callback``: the user's DID, else
the site's main number), the user's on a device's row too;
the plain password is never stored in the database or logged.  Each DID becomes an alias
(``dbaliases``) to its user.  Rows carry the platform's name, so syncing one inventory
creates, updates and removes only its own rows and several inventories (a global identity
database serving regional platforms) can share one database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.db import Db, DbTarget, connect, create_sqlite, require_current
from zpctl.errors import EnvironmentProblem
from zpctl.model import LoadedInventory, emergency
from zpctl.render import switch_documents
from zpctl.render.freeswitch import SwitchDocument
from zpctl.secrets import Secrets

SUB_COLUMNS = ("username", "domain", "ha1", "ha1b", "account", "offering", "region_lock",
               "calling_plan", "country", "caller_id", "platform", "aor", "srtp", "site",
               "callback")


@dataclass(frozen=True)
class SipUser:
    """A provisioned user as a phone (or SIPp) needs it."""

    username: str
    domain: str
    password: str
    account: str
    offering: str
    dids: tuple[str, ...]


def password_key(username: str, domain: str) -> str:
    return f"sip:{username}@{domain}"


def sip_users(inv: LoadedInventory, secrets: Secrets) -> list[SipUser]:
    """Every user of the inventory with its SIP credentials."""
    out = []
    for acct in inv.model.accounts:
        domain = inv.model.account_domain(acct)
        for u in acct.users:
            out.append(SipUser(u.extension, domain, secrets.get(password_key(u.extension, domain), 12),
                               acct.id, acct.offering, tuple(u.dids)))
    return out


@dataclass(frozen=True)
class SipDevice:
    """A provisioned device's own credentials: it registers and calls as ``aor``."""

    username: str  # the device id: the digest user name
    aor: str  # the user's extension
    domain: str
    password: str
    kind: str
    srtp: str  # the suite its media leg must use, or "plain"


def sip_devices(inv: LoadedInventory, secrets: Secrets) -> list[SipDevice]:
    """Every provisioned device of the inventory with its SIP credentials and media policy."""
    policy = inv.model.security.srtp
    out = []
    for acct in inv.model.accounts:
        domain = inv.model.account_domain(acct)
        for u in acct.users:
            for d in u.devices:
                out.append(SipDevice(d.id, u.extension, domain,
                                     secrets.get(password_key(d.id, domain), 12), d.kind,
                                     policy.suite_for(d.kind, d.encryption)))
    return out


def _ha1(user: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()  # noqa: S324 - RFC 2617


def _credentials(user: str, domain: str, password: str) -> dict[str, str]:
    """A subscriber's user name and HA1 hashes (realm = the domain; ha1b for user@domain)."""
    return {"username": user, "ha1": _ha1(user, domain, password),
            "ha1b": _ha1(f"{user}@{domain}", domain, password)}


def desired(inv: LoadedInventory, secrets: Secrets) -> tuple[dict[tuple[str, str], dict[str, Any]],
                                                               dict[str, tuple[str, str]]]:
    """The subscriber rows and the DID aliases the inventory asks for."""
    platform = inv.model.platform.name
    policy = inv.model.security.srtp
    subs: dict[tuple[str, str], dict[str, Any]] = {}
    aliases: dict[str, tuple[str, str]] = {}
    for acct in inv.model.accounts:
        domain = inv.model.account_domain(acct)
        sites = {s.id: s for s in acct.sites}
        main = next((n.number for n in acct.numbers if n.kind == "main"), "")
        for u in acct.users:
            pw = secrets.get(password_key(u.extension, domain), 12)
            subs[(u.extension, domain)] = {
                **_credentials(u.extension, domain, pw), "domain": domain,
                "account": acct.id, "offering": acct.offering,
                "region_lock": acct.region_lock or "", "calling_plan": u.calling_plan,
                "country": sites[u.site].country if u.site in sites else "",
                "caller_id": u.dids[0] if u.dids else main, "platform": platform,
                "aor": u.extension, "srtp": policy.suite_for(policy.user_credentials),
                "site": emergency.site_key(acct, sites[u.site]) if u.site in sites else None,
                "callback": emergency.callback_number(acct, u),
            }
            for did in u.dids:
                aliases[did] = (u.extension, domain)
    for d in sip_devices(inv, secrets):  # the user's row, with the device's credentials
        subs[(d.username, d.domain)] = {**subs[(d.aor, d.domain)],
                                          **_credentials(d.username, d.domain, d.password),
                                          "srtp": d.srtp}
    return subs, aliases


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    aliases: int = 0
    # the switches' documents (switch_xml rows, "node section name") written or removed
    switch_written: list[str] = field(default_factory=list)
    switch_removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "removed": self.removed,
                "unchanged": self.unchanged, "aliases": self.aliases,
                "switch_documents": {"written": self.switch_written,
                                     "removed": self.switch_removed}}


def sync(inv: LoadedInventory, secrets: Secrets, target: DbTarget | Path,
         dry_run: bool = False) -> SyncResult:
    """Make the database's rows of this platform match the inventory, in one transaction:
    a sync that fails changes nothing.  A sqlite file is created or migrated as needed; a
    PostgreSQL database must be at zpctl's schema version (``zpctl db migrate``)."""
    if isinstance(target, Path):
        target = DbTarget.sqlite(target)
    subs, aliases = desired(inv, secrets)
    docs = switch_documents(inv, secrets)
    platform = inv.model.platform.name
    result = SyncResult(aliases=len(aliases))
    if target.engine == "sqlite":
        assert target.path is not None
        if dry_run and not target.path.exists():
            result.created = sorted(f"{u}@{d}" for u, d in subs)
            return result
        if not dry_run:
            create_sqlite(target.path)
    with connect(target) as db:
        require_current(db)
        with db.transaction():
            _apply(db, platform, subs, aliases, result, dry_run)
            _apply_switch_documents(db, platform, docs, result, dry_run)
    return result


def _apply(db: Db, platform: str, subs: dict[tuple[str, str], dict[str, Any]],
           aliases: dict[str, tuple[str, str]], result: SyncResult, dry_run: bool) -> None:
    rows = db.execute(f"SELECT {', '.join(SUB_COLUMNS)} FROM subscriber "  # noqa: S608
                      "WHERE platform = ?", (platform,))
    current = {(r[0], r[1]): dict(zip(SUB_COLUMNS, r, strict=True)) for r in rows}
    others = {(r[0], r[1]) for r in db.execute(
        "SELECT username, domain FROM subscriber WHERE platform != ?", (platform,))}
    for key, row in sorted(subs.items()):
        name = f"{key[0]}@{key[1]}"
        if key in others:
            raise EnvironmentProblem(f"{name} already belongs to another platform's rows")
        if key not in current:
            result.created.append(name)
            if not dry_run:
                db.execute(f"INSERT INTO subscriber ({', '.join(SUB_COLUMNS)}) VALUES "  # noqa: S608
                           f"({', '.join('?' * len(SUB_COLUMNS))})", [row[c] for c in SUB_COLUMNS])
        elif current[key] != row:
            result.updated.append(name)
            if not dry_run:
                sets = ", ".join(f"{c} = ?" for c in SUB_COLUMNS[2:])
                db.execute(f"UPDATE subscriber SET {sets} WHERE username = ? AND domain = ?",  # noqa: S608
                           [row[c] for c in SUB_COLUMNS[2:]] + list(key))
        else:
            result.unchanged += 1
    for key in sorted(set(current) - set(subs)):
        result.removed.append(f"{key[0]}@{key[1]}")
        if not dry_run:
            db.execute("DELETE FROM subscriber WHERE username = ? AND domain = ? "
                       "AND platform = ?", (*key, platform))
    if dry_run:
        return
    db.execute("DELETE FROM dbaliases WHERE platform = ?", (platform,))
    db.executemany(
        "INSERT INTO dbaliases (alias_username, alias_domain, username, domain, platform)"
        " VALUES (?, '', ?, ?, ?)",
        [(did, u, d, platform) for did, (u, d) in sorted(aliases.items())])


def _apply_switch_documents(db: Db, platform: str, docs: list[SwitchDocument],
                            result: SyncResult, dry_run: bool) -> None:
    """Write the switch_xml rows whose document changed, remove the ones no switch serves
    any more (a switch reads them at its next lookup)."""
    current = {(n, s, m): d for n, s, m, d in db.execute(
        "SELECT node, section, name, digest FROM switch_xml WHERE platform = ?", (platform,))}
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    wanted = set()
    for doc in docs:
        key = (doc.node, doc.section, doc.name)
        wanted.add(key)
        if current.get(key) == doc.digest:
            continue
        result.switch_written.append(" ".join(key))
        if dry_run:
            continue
        if key in current:
            db.execute("UPDATE switch_xml SET body = ?, digest = ?, updated_at = ? "
                       "WHERE node = ? AND section = ? AND name = ?",
                       (doc.body, doc.digest, now, *key))
        else:
            db.execute("INSERT INTO switch_xml (node, section, name, platform, body, digest, "
                       "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (*key, platform, doc.body, doc.digest, now))
    for key in sorted(set(current) - wanted):
        result.switch_removed.append(" ".join(key))
        if not dry_run:
            db.execute("DELETE FROM switch_xml WHERE node = ? AND section = ? AND name = ? "
                       "AND platform = ?", (*key, platform))
