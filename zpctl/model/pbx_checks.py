"""The rules of an account's ``pbx`` block that need the schema's accounts and users: the
cross-check that every reference resolves and each feature is allowed by the user's license
(``catalog.LICENSES`` plus add-ons), and who may monitor whom.  The block itself is
:mod:`zpctl.model.pbx` (which the schema imports, so it cannot import the schema)."""

from __future__ import annotations

from collections.abc import Iterator

from zpctl.model import catalog
from zpctl.model.pbx import MENU_ONLY_ROUTES, STANDARD_PROMPTS, MonitorGrant, parse_route
from zpctl.model.schema import Account, Inventory, User

Finding = tuple[tuple[str | int, ...], str]


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
