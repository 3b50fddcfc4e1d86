"""Cross-checks: the rules that relate values to each other, beyond the schema.

Each check yields ``(path, reason)`` with ``path`` a tuple into the combined inventory data,
so the caller can point at the file and line where the offending value was written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import phonenumbers

from zpctl.model import catalog, emergency_checks, pbx_checks, survivability_checks
from zpctl.model.dns_names import claimed_names
from zpctl.model.gstin import gstin_problem
from zpctl.model.roles import ANNOUNCER_PORT
from zpctl.model.schema import DC_ROLES, ZONE_ROLES, Account, Inventory, Node, Role
from zpctl.model.types import DEFAULT_MANAGEMENT_NETWORK

Finding = tuple[tuple[str | int, ...], str]


def run_all(inv: Inventory, root: Path | None = None) -> list[Finding]:
    """Every cross-check; ``root`` is the inventory directory (for files it names)."""
    out: list[Finding] = []
    for check in (_datacenters, _nodes_unique, _numbers_unique, _carriers, _standby, _edges,
                  _dns, _firewall):
        out.extend(check(inv))
    out.extend(_accounts(inv, root))
    out.extend(pbx_checks.check(inv))
    out.extend(survivability_checks.check(inv))
    out.extend(emergency_checks.check(inv))
    return out


def _standby(inv: Inventory) -> Iterator[Finding]:
    """A standby switch recovers a dead switch's calls from the shared core database, and
    only calls whose legs are plain RTP: FreeSWITCH's recovery restores no SDES keys."""
    rec = inv.switch_recovery
    if rec is not None and not inv.platform.switch_tier:
        yield ("switch_recovery",), "switch_recovery needs platform.switch_tier: true"
    for di, dc in enumerate(inv.datacenters):
        for zname, zone in dc.zones.items():
            for ni, n in enumerate(zone.nodes):
                if n.role != Role.SWITCH_STANDBY:
                    continue
                at = ("datacenters", di, "zones", zname, "nodes", ni, "role")
                if rec is None:
                    yield at, (f"standby {n.name} needs switch_recovery (the PostgreSQL where "
                               "the switches keep the calls it would recover)")
                if inv.switch_legs(dc) != "plain":
                    yield at, (f"standby {n.name} needs plain RTP switch legs (switch_legs: "
                               f"plain on data center {dc.id}, or security.srtp.switch_legs): "
                               "FreeSWITCH's call recovery restores no SRTP keys, so a "
                               "recovered SRTP leg is hung up (docs/FREESWITCH.md)")
                if not any(m.role == Role.SWITCH for m in zone.nodes):
                    yield at, f"standby {n.name} has no switch to stand in for in its zone"


def _edges(inv: Inventory) -> Iterator[Finding]:
    """An lb pair shares one service address: exactly two lbs, on its network, and an
    address no node has as its own; one VRRP router id per pair on a network."""
    owners = {a: n.name for _, n in _all_nodes(inv) for a in (n.address, n.public, n.mgmt)}
    seen: list[tuple[ipaddress.IPv4Network, int, str]] = []
    for di, dc in enumerate(inv.datacenters):
        lbs = dc.lbs
        if dc.edge is None:
            if len(lbs) > 1:
                yield ("datacenters", di, "nodes"), (
                    f"data center {dc.id} has {len(lbs)} lb nodes: an lb pair needs "
                    "edge.address, the service address they share (docs/EDGE.md)")
            continue
        at = ("datacenters", di, "edge")
        addr = dc.edge.address
        if len(lbs) != 2:
            yield (*at, "address"), (
                f"edge.address {addr} is held by a pair of lbs, and data center {dc.id} has "
                f"{len(lbs)} lb node(s): no node would hold the address its DNS records "
                "point at")
        if addr in owners:
            yield (*at, "address"), (f"edge.address {addr} is also the own address of "
                                     f"{owners[addr]}; the shared address must be apart")
        net = ipaddress.IPv4Network(f"{addr}/{dc.edge.prefix}", strict=False)
        for n in lbs:
            if ipaddress.ip_address(n.address) not in net:
                yield (*at, "prefix"), (f"lb {n.name} ({n.address}) is not on the network of "
                                        f"edge.address ({net}): VRRP runs between the two "
                                        "lbs on that network")
        for other_net, vrid, other in seen:
            if vrid == dc.edge.vrid and net.overlaps(other_net):
                yield (*at, "vrid"), (f"VRRP router id {vrid} is also data center {other}'s "
                                      f"on {other_net}: give each pair its own edge.vrid")
        seen.append((net, dc.edge.vrid, dc.id))


def _firewall(inv: Inventory) -> Iterator[Finding]:
    """A needed path the firewall would close: sources the platform relies on that fall
    outside what the firewall lets in."""
    def inside(addr: str, nets: list[str]) -> bool:
        a = ipaddress.ip_network(addr, strict=False)
        return any(a.subnet_of(ipaddress.IPv4Network(n)) for n in nets
                   if isinstance(a, ipaddress.IPv4Network))
    fw = inv.firewall
    for i, net in enumerate(inv.platform.flood_exempt):
        if not inside(net, fw.sip_from):
            yield ("platform", "flood_exempt", i), (
                f"{net} is exempt from flood limits, but firewall.sip_from "
                f"({', '.join(fw.sip_from)}) closes the lbs' SIP ports to it")
    for ci, c in enumerate(inv.carriers):
        for ai, a in enumerate(c.addresses):
            if not inside(a.address, fw.rtp_from):
                yield ("carriers", ci, "addresses", ai, "address"), (
                    f"carrier {c.id} sends its media from {a.address}, but firewall.rtp_from "
                    f"({', '.join(fw.rtp_from)}) closes the media nodes' RTP ports to it")
    for ai, acct in enumerate(inv.accounts):
        for ti, t in enumerate(acct.trunks):
            for xi, a in enumerate(t.addresses):
                if not inside(a.address, fw.rtp_from):
                    yield ("accounts", ai, "trunks", ti, "addresses", xi, "address"), (
                        f"trunk {t.id} sends its media from {a.address}, but firewall.rtp_from "
                        f"({', '.join(fw.rtp_from)}) closes the media nodes' RTP ports to it")


def _dns(inv: Inventory) -> Iterator[Finding]:
    """DNS offers a secondary after its primary, and its names do not collide."""
    if inv.dns is None:
        return
    by_id = {d.id: d for d in inv.datacenters}
    for di, dc in enumerate(inv.datacenters):
        primary = by_id.get(dc.pair)
        if dc.role != "secondary" or primary is None:
            continue
        if dc.srv_priority <= primary.srv_priority:
            yield ("datacenters", di, "dns_priority"), (
                f"overlapping priorities: secondary {dc.id} has SRV priority "
                f"{dc.srv_priority} and its primary {primary.id} {primary.srv_priority}; the "
                "secondary must come after (a higher number)")
    owners: dict[str, str] = {}
    for name, owner, at in claimed_names(inv):
        if name in owners and owners[name] != owner:
            yield at, (f"{name}.{inv.dns_zone()} would be both {owners[name]}'s and {owner}'s "
                       "name in the DNS zone: rename one")
        owners.setdefault(name, owner)
    names = [s.name for s in inv.dns.servers]
    for si, s in enumerate(inv.dns.servers):
        if names.index(s.name) != si:
            yield ("dns", "servers", si, "name"), f"name server {s.name} is listed twice"


def _datacenters(inv: Inventory) -> Iterator[Finding]:
    clusters = {c.id for c in inv.clusters}
    by_id = {}
    for di, dc in enumerate(inv.datacenters):
        p = ("datacenters", di)
        if dc.id in by_id:
            yield (*p, "id"), f"data center {dc.id!r} is defined twice"
        by_id[dc.id] = dc
        if dc.cluster not in clusters:
            yield (*p, "cluster"), f"unknown cluster {dc.cluster!r}; known: {sorted(clusters)}"
        if len(dc.zones) != 2:
            yield (*p, "zones"), (f"a data center has exactly two SIP zones, {dc.id!r} has "
                                  f"{len(dc.zones)} ({', '.join(sorted(dc.zones)) or 'none'})")
        roles_dc = [n.role for n in dc.nodes]
        for ni, n in enumerate(dc.nodes):
            if n.role not in DC_ROLES:
                yield (*p, "nodes", ni, "role"), \
                    f"role {n.role.value!r} belongs in a zone, not at data-center level"
        if Role.LB not in roles_dc:
            yield (*p, "nodes"), f"data center {dc.id!r} has no lb node"
        needed = {Role.PROXY, Role.MEDIA, Role.SBC}
        if inv.platform.switch_tier:
            needed.add(Role.SWITCH)
        for zname, zone in dc.zones.items():
            zp = (*p, "zones", zname)
            for ni, n in enumerate(zone.nodes):
                if n.role not in ZONE_ROLES:
                    yield (*zp, "nodes", ni, "role"), \
                        f"role {n.role.value!r} belongs at data-center level, not in a zone"
            have = {n.role for n in zone.nodes}
            missing = sorted(r.value for r in needed - have)
            if missing:
                yield (*zp, "nodes"), f"zone {dc.id}/{zname} lacks role(s): {', '.join(missing)}"
            for role in (Role.PROXY, Role.MEDIA, Role.SBC):
                if sum(1 for n in zone.nodes if n.role == role) > 1:
                    yield (*zp, "nodes"), \
                        f"zone {dc.id}/{zname} has more than one {role.value} node"
    for di, dc in enumerate(inv.datacenters):
        pp: tuple[str | int, ...] = ("datacenters", di, "pair")
        other = by_id.get(dc.pair)
        if other is None:
            yield pp, f"pair {dc.pair!r} is not a data center of this inventory"
            continue
        if other.id == dc.id:
            yield pp, "a data center cannot be its own pair"
        elif other.pair != dc.id:
            yield pp, f"{dc.id} pairs with {other.id}, but {other.id} pairs with {other.pair}"
        elif other.role == dc.role:
            yield pp, f"{dc.id} and {other.id} are both {dc.role}; a pair is one primary and one " \
                     "secondary"
        elif other.cluster != dc.cluster or other.region != dc.region:
            yield pp, f"{dc.id} and its pair {other.id} must share cluster and region"


def _nodes_unique(inv: Inventory) -> Iterator[Finding]:
    names: dict[str, tuple[str | int, ...]] = {}
    sockets: dict[tuple[str, int, str], str] = {}
    rtp: dict[str, list[tuple[int, int, str]]] = {}
    mgmt_nets = [ipaddress.ip_network(n) for n in inv.platform.management_networks]
    defaulted = "management_networks" not in inv.platform.model_fields_set
    outside = []
    for path, node in _all_nodes(inv):
        if not any(ipaddress.ip_address(node.mgmt) in net for net in mgmt_nets):
            outside.append(node.name)
            if not defaulted:
                field = "mgmt_address" if node.mgmt_address else "address"
                yield (*path, field), (
                    f"management address {node.mgmt} of {node.name} is outside "
                    f"platform.management_networks ({', '.join(inv.platform.management_networks)})")
        if node.role == Role.SBC and node.public_address in (None, node.address):
            yield (*path, "public_address"), (
                "an SBC needs a public_address of its own (the carriers' side), apart from "
                "its address (the platform's side)")
        if node.role == Role.MEDIA:
            for addr in sorted({node.address, node.public}):
                for lo, hi, other in rtp.get(addr, []):
                    if lo <= node.rtp.port_max and node.rtp.port_min <= hi:
                        yield (*path, "rtp"), (f"RTP ports {node.rtp.port_min}-{node.rtp.port_max} "
                                               f"on {addr} overlap those of {other}")
                rtp.setdefault(addr, []).append((node.rtp.port_min, node.rtp.port_max, node.name))
        if node.name in names:
            yield (*path, "name"), f"node name {node.name!r} is used twice"
        names[node.name] = path
        for addr, port, proto, what, field in _listeners(node):
            key = (addr, port, proto)
            if key in sockets and sockets[key] != node.name:
                yield (*path, field), (f"{what} {addr}:{port}/{proto} of {node.name} is "
                                       f"also used by {sockets[key]}")
            sockets.setdefault(key, node.name)
    if defaulted and outside:
        yield ("platform", "management_networks"), (
            f"{len(outside)} nodes ({', '.join(outside[:3])}"
            f"{', ...' if len(outside) > 3 else ''}) have management addresses outside the "
            f"default management network {DEFAULT_MANAGEMENT_NETWORK} "
            f"(platform.management_networks is not set): list "
            f"the networks of your management addresses, e.g. management_networks: "
            f"[10.0.0.0/8]")


def _listeners(node: Node) -> list[tuple[str, int, str, str, str]]:
    """(address, port, proto, what, field): ``field`` is the node key that gave the address."""
    p = node.ports
    a, m = node.address, node.mgmt
    mf = "mgmt_address" if node.mgmt_address else "address"
    out: list[tuple[str, int, str, str, str]] = []
    if node.role in (Role.LB, Role.PROXY, Role.SBC, Role.SURVIVABILITY):
        out += [(a, p.sip, "udp", "SIP", "address"), (a, p.sip, "tcp", "SIP", "address"),
                (a, p.sips, "tcp", "SIP/TLS", "address"),
                (m, p.mgmt_http, "tcp", "management HTTP", mf)]
        if node.public_address:
            out += [(node.public_address, p.sip, "udp", "SIP", "public_address"),
                    (node.public_address, p.sips, "tcp", "SIP/TLS", "public_address")]
    if node.role == Role.PROXY:
        out.append((a, p.dmq, "udp", "DMQ", "address"))
    if node.role == Role.SURVIVABILITY:  # its announcer
        out += [(a, ANNOUNCER_PORT, "udp", "announcer SIP", "address"),
                (m, p.esl, "tcp", "ESL", mf)]
    if node.role == Role.MEDIA:
        out += [(m, p.rtpengine_ng, "udp", "rtpengine ng", mf), (m, p.redis, "tcp", "Redis", mf)]
    if node.role == Role.SWITCH:
        out += [(a, p.sip, "udp", "SIP", "address"), (m, p.esl, "tcp", "ESL", mf)]
    return out


def _all_nodes(inv: Inventory) -> Iterator[tuple[tuple[str | int, ...], Node]]:
    for di, dc in enumerate(inv.datacenters):
        for ni, n in enumerate(dc.nodes):
            yield ("datacenters", di, "nodes", ni), n
        for zname, zone in dc.zones.items():
            for ni, n in enumerate(zone.nodes):
                yield ("datacenters", di, "zones", zname, "nodes", ni), n


def _carriers(inv: Inventory) -> Iterator[Finding]:
    seen: set[str] = set()
    for ci, c in enumerate(inv.carriers):
        if c.id in seen:
            yield ("carriers", ci, "id"), f"carrier {c.id!r} is defined twice"
        seen.add(c.id)
    if any(a.offering == "native" for a in inv.accounts) and not inv.carriers:
        yield ("carriers",), "native accounts need at least one platform carrier"


def _numbers_unique(inv: Inventory) -> Iterator[Finding]:
    owners: dict[str, str] = {}
    domains: dict[str, str] = {}
    for ai, acct in enumerate(inv.accounts):
        dom = inv.account_domain(acct)
        if dom in domains:
            yield ("accounts", ai, "domain"), f"SIP domain {dom!r} is also used by {domains[dom]}"
        domains.setdefault(dom, acct.id)
        for ni, num in enumerate(acct.numbers):
            if num.number in owners:
                yield ("accounts", ai, "numbers", ni, "number"), \
                    f"number {num.number} is also assigned to account {owners[num.number]}"
            owners.setdefault(num.number, acct.id)


def _accounts(inv: Inventory, root: Path | None) -> Iterator[Finding]:
    clusters = {c.id: c for c in inv.clusters}
    dcs = {dc.id: dc for dc in inv.datacenters}
    ids: set[str] = set()
    regional_regions = {dc.region for dc in inv.datacenters if clusters.get(dc.cluster) and
                        clusters[dc.cluster].regional}
    for ai, acct in enumerate(inv.accounts):
        p: tuple[str | int, ...] = ("accounts", ai)
        if acct.id in ids:
            yield (*p, "id"), f"account {acct.id!r} is defined twice"
        ids.add(acct.id)
        if acct.cluster not in clusters:
            yield (*p, "cluster"), f"unknown cluster {acct.cluster!r}; known: {sorted(clusters)}"
        if acct.region_lock is not None:
            known = sorted({dc.region for dc in inv.datacenters})
            if acct.region_lock not in known:
                yield (*p, "region_lock"), \
                    f"region {acct.region_lock!r} has no data center here; regions: {known}"
        yield from _offering(acct, p, root)
        site_ids: set[str] = set()
        for si, site in enumerate(acct.sites):
            sp = (*p, "sites", si)
            if site.id in site_ids:
                yield (*sp, "id"), f"site {site.id!r} is defined twice"
            site_ids.add(site.id)
            if site.emergency_address.country != site.country:
                yield (*sp, "emergency_address", "country"), (
                    f"the emergency address is in {site.emergency_address.country}, the site "
                    f"in {site.country}: a dispatchable location is the site's own")
            dc = dcs.get(site.datacenter)
            if dc is None:
                yield (*sp, "datacenter"), f"unknown data center {site.datacenter!r}"
                continue
            if dc.cluster != acct.cluster:
                yield (*sp, "datacenter"), (f"data center {dc.id} is in cluster {dc.cluster}, "
                                            f"the account in {acct.cluster}")
            served_by = [dc] + ([dcs[dc.pair]] if dc.pair in dcs else [])
            if acct.region_lock is not None:
                for d in served_by:
                    if d.region != acct.region_lock:
                        yield (*sp, "datacenter"), (
                            f"account is locked to region {acct.region_lock!r} but site "
                            f"{site.id} is served by {d.id} in region {d.region!r}")
            elif dc.region in regional_regions and acct.india is None:
                yield (*p, "region_lock"), (
                    f"site {site.id} uses {dc.id} of a regional cluster; set region_lock "
                    f"to {dc.region!r}")
        yield from _india(inv, acct, p)
        yield from _users(inv, acct, p, site_ids)
        yield from _number_countries(acct, p)


def _offering(acct: Account, p: tuple[str | int, ...], root: Path | None) -> Iterator[Finding]:
    if acct.offering == "native" and acct.trunks:
        yield (*p, "trunks"), "native accounts use the platform's carriers; remove trunks"
    if acct.offering in ("byoc-c", "byoc-p") and not acct.trunks:
        yield (*p, "trunks"), f"{acct.offering} accounts need at least one trunk"
    for ti, t in enumerate(acct.trunks):
        tp = (*p, "trunks", ti)
        if t.tls is not None and t.tls.ca != "platform" and root is not None \
                and not (root / t.tls.ca).is_file():
            yield (*tp, "tls", "ca"), (f"CA file {t.tls.ca} not found in the inventory "
                                       "(a PEM file relative to it, or 'platform')")
        if acct.offering == "byoc-p":
            if t.tls is None:
                yield (*tp, "tls"), "BYOC-P trunks need mutual TLS (ca and subject_cn)"
            for ai, a in enumerate(t.addresses):
                if a.transport != "tls":
                    yield (*tp, "addresses", ai, "transport"), "BYOC-P trunks use transport tls"
        elif t.tls is not None:
            yield (*tp, "tls"), "only BYOC-P trunks carry a peer certificate policy"
    for ui, u in enumerate(acct.users):
        if acct.offering != "native" and u.calling_plan != "none":
            yield (*p, "users", ui, "calling_plan"), \
                f"{acct.offering} users call through their own carrier; calling plans are " \
                "for native accounts"


def _india(inv: Inventory, acct: Account, p: tuple[str | int, ...]) -> Iterator[Finding]:
    dcs = {dc.id: dc for dc in inv.datacenters}
    in_india = [s for s in acct.sites if s.country == "IN"]
    if acct.india is None:
        if in_india:
            yield (*p, "india"), (f"site {in_india[0].id} is in India: the account needs the "
                                  "india block (circle, entity, GSTIN, signatory)")
        return
    ip = (*p, "india")
    india = acct.india
    if acct.offering != "byoc-p":
        yield (*p, "offering"), "Zoom Phone India accounts are BYOC-P"
    if acct.billing.currency != "INR":
        yield (*p, "billing", "currency"), \
            f"India accounts are billed in INR, not {acct.billing.currency}"
    if not india.entity.registered_in_india:
        yield (*ip, "entity", "registered_in_india"), \
            "must be a business entity registered with the Government of India"
    if not india.authorised_signatory.strip():
        yield (*ip, "authorised_signatory"), "an authorised signatory is required"
    circle = catalog.INDIA_CIRCLES.get(india.circle)
    if circle is None:
        yield (*ip, "circle"), (f"{india.circle!r} is not a licensed circle; one of "
                                f"{', '.join(catalog.INDIA_CIRCLES)}")
    problem = gstin_problem(india.gstin)
    if problem:
        yield (*ip, "gstin"), problem
    for si, site in enumerate(acct.sites):
        sp = (*p, "sites", si)
        if site.country != "IN":
            yield (*sp, "country"), "every site of an India account must be in India"
            continue
        if site.state is None:
            yield (*sp, "state"), "India sites give their GST state code, e.g. \"27\" (Maharashtra)"
            continue
        if site.state not in catalog.GST_STATES:
            yield (*sp, "state"), (f"{site.state!r} is not the GST state code of a state in a "
                                   "licensed circle")
            continue
        if circle is not None:
            if site.state not in circle.states:
                yield (*sp, "state"), (f"{catalog.GST_STATES[site.state]} is outside the "
                                       f"{circle.name} circle")
            elif circle.cities and site.city not in circle.cities:
                yield (*sp, "city"), (f"{site.city!r} is outside the {circle.name} circle's "
                                      f"local area ({', '.join(sorted(circle.cities))})")
            elif not circle.cities and any(site.city in c.cities and site.state in c.states
                                           for c in catalog.INDIA_CIRCLES.values()):
                yield (*sp, "city"), (f"{site.city} is in a metro circle of its own, not in the "
                                      f"{circle.name} circle")
        if site.datacenter in dcs and dcs[site.datacenter].region != "in":
            yield (*sp, "datacenter"), (f"India sites are served by data centers in region "
                                        f"'in'; {site.datacenter} is in "
                                        f"{dcs[site.datacenter].region!r}")
        if not problem and india.gstin[:2] != site.state:
            yield (*ip, "gstin"), (f"GSTIN is issued in state {india.gstin[:2]}, site "
                                   f"{site.id} is in state {site.state}: the GSTIN must be "
                                   "from the state where service is given")


def _users(inv: Inventory, acct: Account, p: tuple[str | int, ...],
           site_ids: set[str]) -> Iterator[Finding]:
    numbers = {n.number for n in acct.numbers}
    exts: dict[str, int] = {}
    did_owner: dict[str, str] = {}
    devices: set[str] = set()
    exts_all = {u.extension for u in acct.users}
    for ni, n in enumerate(acct.numbers):
        if n.site is not None and n.site not in site_ids:
            yield (*p, "numbers", ni, "site"), f"unknown site {n.site!r}"
    for ui, u in enumerate(acct.users):
        up = (*p, "users", ui)
        if u.extension in exts:
            yield (*up, "extension"), \
                f"duplicate extension {u.extension} (also users[{exts[u.extension]}])"
        exts.setdefault(u.extension, ui)
        if u.site not in site_ids:
            yield (*up, "site"), f"unknown site {u.site!r}"
        for di, did in enumerate(u.dids):
            if did not in numbers:
                yield (*up, "dids", di), f"{did} is not one of the account's numbers"
            if did in did_owner:
                yield (*up, "dids", di), f"{did} is also assigned to extension {did_owner[did]}"
            did_owner.setdefault(did, u.extension)
        allowed = set(catalog.LICENSES[u.license])
        for addon in u.addons:
            allowed |= catalog.ADDONS[addon]
        for fi, feat in enumerate(u.features):
            if feat not in allowed:
                yield (*up, "features", fi), (f"the {u.license} license (add-ons: "
                                              f"{', '.join(u.addons) or 'none'}) does not "
                                              f"allow {feat}")
        for dvi, dev in enumerate(u.devices):
            if dev.id in exts_all:
                yield (*up, "devices", dvi, "id"), \
                    f"device id {dev.id!r} is also an extension (both are SIP user names)"
            if dev.id in devices:
                yield (*up, "devices", dvi, "id"), f"device {dev.id!r} is used twice"
            devices.add(dev.id)
            if dev.encryption == "none" and not inv.security.srtp.allow_plain_rtp_fallback:
                yield (*up, "devices", dvi, "encryption"), \
                    "plain RTP is not allowed by security.srtp.allow_plain_rtp_fallback"
            if dev.encryption == "none" and dev.kind == "app":
                yield (*up, "devices", dvi, "encryption"), \
                    "apps always encrypt media (AES-256); plain RTP is for SIP devices"


def _number_countries(acct: Account, p: tuple[str | int, ...]) -> Iterator[Finding]:
    """A number's country calling code is its site's country's: an account number with a
    site, and a user's DID (the user's site, when the number names none)."""
    sites = {s.id: s for s in acct.sites}
    number_site = {n.number: n.site for n in acct.numbers}

    def wrong(number: str, site_id: str | None) -> str | None:
        site = sites.get(site_id or "")
        if site is None:
            return None
        want = phonenumbers.country_code_for_region(site.country)
        try:
            got = phonenumbers.parse(number).country_code
        except phonenumbers.NumberParseException:
            return None  # the E.164 check reports it
        if not want or got == want:
            return None
        return (f"{number} has country code +{got}, but site {site.id} is in {site.country} "
                f"(+{want})")

    for ni, n in enumerate(acct.numbers):
        problem = wrong(n.number, n.site)
        if problem:
            yield (*p, "numbers", ni, "number"), problem
    for ui, u in enumerate(acct.users):
        for di, did in enumerate(u.dids):
            problem = None if number_site.get(did) else wrong(did, u.site)
            if problem:
                yield (*p, "users", ui, "dids", di), problem
