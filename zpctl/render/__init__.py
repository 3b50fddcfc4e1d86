"""Render an inventory into one tree of files per host: a pure, deterministic function.

``render(inventory, secrets)`` returns a :class:`Build` (relative path -> bytes and mode);
nothing is written until :meth:`Build.write`.  Templates live in the repository's
``kamailio/`` (Kamailio configs, one entry template per role plus shared blocks) and
``templates/`` (everything else).  The same inventory and secrets always give byte-identical
files: iteration is sorted, and no timestamps are written.  Files holding secrets are
separate (``kamailio/secrets.cfg``, mode 0600) so the rest can be diffed and reviewed freely.

This module renders the Kamailio and media nodes and assembles the build; the rest of the
package: :mod:`~zpctl.render.freeswitch` (switch nodes), :mod:`~zpctl.render.monitoring`
(Prometheus and Grafana files), :mod:`~zpctl.render.build` (the build and writing it safely),
:mod:`~zpctl.render.verify` (every check of a build, with :mod:`~zpctl.render.freeswitch_validate`
and the real binaries), :mod:`~zpctl.render.diff`, ``paths`` and ``sizing``.  The package is
a closed layer: it imports only :mod:`zpctl.model`, ``errors``, ``paths`` and ``secrets``
(the import contract in pyproject.toml).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jinja2

from zpctl.errors import RenderError
from zpctl.model import LoadedInventory, PlacedNode, catalog, roles
from zpctl.model.schema import Carrier, DataCenter, Inventory, Node, Role, Trunk
from zpctl.model.survivable import ANNOUNCEMENT, site_of_node
from zpctl.paths import data_dir
from zpctl.render import emergency as emergency_ctx
from zpctl.render.build import MANIFEST, Build, check_out_dir
from zpctl.render.dns import DNS, dns_files
from zpctl.render.firewall import firewall_rules
from zpctl.render.freeswitch import (
    SwitchDocument,
    extensions_xml,
    render_switch,
    rendezvous_numbers,
    served_accounts,
    served_parts,
    users_xml,
    xa,
)
from zpctl.render.monitoring import MonitoringOptions, add_monitoring, monitoring_files
from zpctl.render.paths import NodePaths, node_paths
from zpctl.render.sizing import (
    TRANSACTIONS_PER_CALL,
    TRANSACTIONS_PER_REGISTRATION,
    shm_mb,
    shm_reserve_bytes,
)
from zpctl.secrets import DB_PASSWORD_KEY, ESL_PASSWORD_KEY, Secrets

# Build, MANIFEST and check_out_dir live in zpctl.render.build; callers take them from here.
__all__ = ["BANNER", "MANIFEST", "TEMPLATE_DIRS", "Build", "check_out_dir", "environment",
           "iter_kamailio_configs", "render", "render_monitoring"]

TEMPLATE_DIRS = tuple(data_dir(d) for d in ("kamailio", "templates", "freeswitch"))
BANNER = "managed by zpctl — do not edit; rendered from the inventory"

# A dispatcher destination's flag: its host is not resolved when the list is loaded (a
# carrier named by its SIP domain is resolved by SRV when each request is sent).
DS_NO_DNS_AT_LOAD = 16
# Switches a call is offered to before it takes the direct path to the user.
SWITCH_TRIES = 3
# A zone proxy checks credentials it read from the database less than this long ago in its
# own memory, without a query (route AUTH_FRESH).  `zpctl accounts sync` deletes a changed
# user's entries on every proxy at once; this bounds a proxy the sync could not reach.
AUTH_FRESH_S = 900
# The entries of a user in a proxy's `authcache` htable, each keyed "user@realm::field".
# `at` (when the database was read) is written last and deleted first: without it no
# entry is fresh.
CREDENTIAL_FIELDS = ("ha1", "account", "offering", "region", "plan", "country", "cid", "aor",
                     "srtp", "site", "callback", "at")
# Proxy branch flags from here on name SRTP suites (below: 6 and 7 are taken).
FLB_SRTP_FIRST = 8
# The media policy's rtpengine flags and flag numbers: the same for every node.
SRTP_TEMPLATE_GLOBALS = {
    # (branch flag, suite): a registered contact's policy
    "srtp_suite_flags": [(FLB_SRTP_FIRST + i, n) for i, n in enumerate(catalog.ALL_SRTP_SUITES)],
    # a platform leg: SRTP with every suite but the weak ones (the proxy narrows it per client)
    "srtp_internal_offer": "transport-protocol=RTP/SAVP "
                           + " ".join(f"SDES-no-{n}" for n in catalog.SRTP_WEAK),
    # an SRTP trunk's leg: the usual AES-128 and AES-256 suites only
    "srtp_trunk_offer": "transport-protocol=RTP/SAVP " + " ".join(
        f"SDES-no-{n}" for n in catalog.ALL_SRTP_SUITES
        if n not in (catalog.SRTP_AES128, catalog.SRTP_AES256)),
}

# A switch's leg with plain RTP (security.srtp.switch_legs: plain).
PLAIN_SWITCH_OFFER = "transport-protocol=RTP/AVP"


def switch_offer(inv: Inventory, dc: DataCenter) -> str:
    """rtpengine's flags for an offer to a switch of ``dc``: SRTP with every usable suite,
    or plain RTP when its switch legs are plain (a phone's own leg keeps its policy)."""
    if inv.platform.switch_tier and inv.switch_legs(dc) == "plain":
        return PLAIN_SWITCH_OFFER
    return str(SRTP_TEMPLATE_GLOBALS["srtp_internal_offer"])


# LB failover timing (kamailio-facts.md): detection ~ fr_timer + up to one ping interval.
LB_ZONE_FR_TIMER_MS = 1000
LB_PING_INTERVAL_S = 1
LB_PROBING_THRESHOLD = 1
# An lb over its admission rate answers 503 with Retry-After: a random 1..N seconds, so a
# storm of phones told to wait does not come back all in the same second.
LB_RETRY_AFTER_S = 5


def environment() -> jinja2.Environment:
    """The one Jinja environment: strict undefined, trailing newline kept."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - configs, not HTML
    )
    env.globals["scanner_user_agents"] = "|".join(catalog.SCANNER_USER_AGENTS)
    env.globals.update(SRTP_TEMPLATE_GLOBALS)
    env.globals["extensions_xml"] = extensions_xml
    env.globals["users_xml"] = users_xml
    return env


def _sister(dc_zones: list[str], zone: str) -> str:
    return next(z for z in dc_zones if z != zone)


class _Renderer:
    def __init__(self, loaded: LoadedInventory, secrets: Secrets, lab_root: Path | None) -> None:
        self.loaded = loaded
        self.inv: Inventory = loaded.model
        self.secrets = secrets
        self.lab_root = lab_root
        self.env = environment()
        self.build = Build()
        self._shm: dict[str, int] = {}

    def tpl(self, name: str, **ctx: Any) -> str:
        try:
            return self.env.get_template(name).render(banner=BANNER, **ctx)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name}: {exc}") from None

    def paths(self, node: str) -> NodePaths:
        return node_paths(self.inv, node, self.lab_root)

    def renderers(self) -> dict[Role, Callable[[PlacedNode], None]]:
        """The renderer of each role of the role table (zpctl.model.roles) that has one:
        a role with services must have one (tests/unit/test_roles.py)."""
        return {Role.LB: self.kamailio, Role.PROXY: self.kamailio, Role.SBC: self.kamailio,
                Role.MEDIA: self.media, Role.SWITCH: lambda p: render_switch(self, p),
                Role.SURVIVABILITY: self.survivability}

    def run(self) -> Build:
        renderers = self.renderers()
        for placed in self.loaded.nodes():
            renderer = renderers.get(placed.role)
            if renderer is not None:
                renderer(placed)
            self.node_manifest(placed)
            self.build.add(f"{placed.name}/nftables/zpctl.nft",
                           self.tpl("nftables.nft.j2", node=placed.node, dc=placed.dc,
                                    rules=firewall_rules(self.loaded, placed)))
        add_monitoring(self.build, self.loaded, self.tpl)
        for path, text in dns_files(self.inv, self.tpl, self.dns_paths).items():
            self.build.add(path, text)
        return self.build

    def dns_paths(self, server: str) -> tuple[str, str]:
        """A DNS server's config folder (where ``_dns/`` is installed) and state folder."""
        if self.lab_root is not None:
            base = Path(self.lab_root)
            return str(base / "build" / DNS), str(base / "nodes" / DNS / server)
        return f"{self.inv.paths.config_dir}/dns", f"{self.inv.paths.state_dir}/nsd"

    # -- common -----------------------------------------------------------------------------

    def shm_mb(self, p: PlacedNode) -> int:
        """The node's Kamailio shared memory (MB), sized once per render."""
        if p.name not in self._shm:
            self._shm[p.name] = shm_mb(p.node.capacity, p.role)
        return self._shm[p.name]

    def base_ctx(self, p: PlacedNode) -> dict[str, Any]:
        return {
            "node": p.node, "dc": p.dc, "zone": p.zone, "paths": self.paths(p.name),
            "mgmt_networks": ",".join(self.inv.platform.management_networks),
            "sizing": {"cps": p.node.capacity.cps, "rps": p.node.capacity.rps,
                       "tpc": TRANSACTIONS_PER_CALL.get(p.role.value, 2),
                       "tpr": TRANSACTIONS_PER_REGISTRATION.get(p.role.value, 0),
                       "shm_mb": self.shm_mb(p)},
        }

    def db_url(self) -> str:
        db = self.inv.database
        if db.engine == "sqlite":
            return "sqlite://" + (self.paths("_").db if self.lab_root is None
                                  else str(Path(self.lab_root) / "state" / "subscriber.sqlite"))
        password = self.secrets.get(DB_PASSWORD_KEY)
        return f"postgres://{db.user}:{password}@{db.host}:{db.port}/{db.name}"

    def kamcli_db(self) -> dict[str, str]:
        db = self.inv.database
        if db.engine == "sqlite":
            path = self.db_url()[len("sqlite://"):]
            return {"db_type": "sqlite", "db_driver": "pysqlite", "db_name": path,
                    "db_url": f"sqlite:///{path}"}
        return {"db_type": "postgresql", "db_driver": "psycopg2", "db_name": db.name,
                "db_url": f"postgresql+psycopg2://{db.user}@{db.host}:{db.port}/{db.name}"}

    # -- Kamailio ---------------------------------------------------------------------------

    def kamailio(self, p: PlacedNode) -> None:
        ctx = self.base_ctx(p)
        name, role = p.name, p.role.value
        dispatcher: list[dict[str, Any]] = []
        if p.role == Role.LB:
            ctx["lb"] = {"flood_limit": self.inv.platform.flood_limit,
                         "flood_exempt": ",".join([*self.inv.platform.management_networks,
                                                   *self.inv.platform.flood_exempt]),
                         "zone_fr_timer_ms": LB_ZONE_FR_TIMER_MS,
                         "ping_interval_s": LB_PING_INTERVAL_S,
                         "probing_threshold": LB_PROBING_THRESHOLD,
                         "admit_cps": p.node.capacity.cps, "admit_rps": p.node.capacity.rps,
                         "shm_reserve": shm_reserve_bytes(self.shm_mb(p)),
                         "retry_after_s": LB_RETRY_AFTER_S,
                         "emergency_re": emergency_ctx.lb_regex(self.inv, p),
                         "sip_address": p.dc.service_address or p.node.address}
            ctx["edge"] = edge_ctx(p)
            # An lb of a pair keeps its zone keepalives on its own address (route EDGE_SOCKET).
            own = f";socket=udp:{p.node.address}:{p.node.ports.sip}" if ctx["edge"] else ""
            for zname in sorted(p.dc.zones):
                proxy = self.loaded.zone_node(p.dc, zname, Role.PROXY)
                if proxy is not None:
                    dispatcher.append(_dst(1, f"sip:{proxy.address}:{proxy.ports.sip}", 0,
                                           f"zone-{zname}", f"zone {p.dc.id}/{zname}", extra=own))
        elif p.role == Role.PROXY:
            ctx["proxy"] = self.proxy_ctx(p)
            dispatcher = self.sbc_dsts(p) + self.switch_dsts(p)
        elif p.role == Role.SBC:
            ctx["sbc"], dispatcher = self.sbc_ctx(p)
        ctx["dispatcher"] = dispatcher
        ctx["acc"] = self.acc_ctx(p)
        self.build.add(f"{name}/kamailio/kamailio.cfg", self.tpl(f"{role}.cfg.j2", **ctx))
        if dispatcher:
            self.build.add(f"{name}/kamailio/dispatcher.list", self.tpl("dispatcher.list.j2", **ctx))
        secrets = {"topoh_key": self.secrets.get("topoh_mask_key"), "db_url": self.db_url(),
                   "auth_secret": self.secrets.get("auth_nonce_secret")}
        self.build.add(f"{name}/kamailio/secrets.cfg",
                       self.tpl("secrets.cfg.j2", secrets=secrets, **ctx), mode=0o600)
        if ctx.get("edge"):
            self.build.add(f"{name}/keepalived/keepalived.conf",
                           self.tpl("keepalived.conf.j2", **ctx))
            self.build.add(f"{name}/keepalived/kamailio-answers",
                           self.tpl("kamailio-answers.j2", **ctx), mode=0o755)
        if p.role == Role.LB:
            # The lb reaches a switch itself only around a dead zone proxy (in-dialog
            # requests): with the platform's certificate, which the switches require.
            switches = ([n for z in sorted(p.dc.zones) for n in p.dc.zones[z].nodes
                         if n.role == Role.SWITCH] if self.inv.platform.switch_tier else [])
            self.build.add(f"{name}/kamailio/tls.cfg",
                           self.tpl("lb-tls.cfg.j2", tls=self.tls_ctx(p), switches=switches,
                                    **ctx))
        if p.role == Role.PROXY and ctx["proxy"]["switch_tier"]:
            self.build.add(f"{name}/kamailio/tls.cfg",
                           self.tpl("proxy-tls.cfg.j2", tls=ctx["proxy"]["tls"], **ctx))
        if p.role == Role.SBC and ctx["sbc"]["tls"]:
            self.build.add(f"{name}/kamailio/tls.cfg", self.tpl("tls.cfg.j2", tls=self.tls_ctx(p),
                                                                **ctx))
        domain = self.inv.platform.sip_domain
        self.build.add(f"{name}/kamcli/kamcli.ini",
                       self.tpl("kamcli.ini.j2", domain=domain, kamcli=self.kamcli_db(), **ctx))

    def survivability(self, p: PlacedNode) -> None:
        """A site's survivability node: its Kamailio config and its own secrets.  It sits
        at a customer's site, so it gets no platform-wide key: a nonce secret of its own,
        and no database URL (its users are in a local file that sync writes)."""
        site = site_of_node(self.inv, p.name)
        if site is None:  # validate refuses it (survivability_checks)
            raise RenderError(f"survivability node {p.name} serves no site")
        ctx = self.base_ctx(p)
        ctx["site"] = {
            "where": site.where, "domain": site.domain, "country": site.site.country,
            "db": self.paths(p.name).survivability_db,
            "sbc": site.config.sbc, "groups": site.config.groups,
            "users": site.extensions, "dids": site.dids, "emergency": site.emergency,
            "caller_ids": site.caller_ids, "no_plan": site.no_plan,
            "announcer_port": roles.ANNOUNCER_PORT, "em": emergency_ctx.node_ctx(site),
        }
        self.build.add(f"{p.name}/kamailio/kamailio.cfg", self.tpl("survivability.cfg.j2", **ctx))
        secrets = {"auth_secret": self.secrets.get(f"auth_nonce_secret:{p.name}")}
        self.build.add(f"{p.name}/kamailio/secrets.cfg",
                       self.tpl("secrets.cfg.j2", secrets=secrets, **ctx), mode=0o600)
        # The announcer's FreeSWITCH: its one file holds the event socket's password.
        self.build.add(f"{p.name}/announcer/freeswitch.xml", self.tpl(
            "survivability/freeswitch.xml.j2", port=roles.ANNOUNCER_PORT, sessions=100,
            esl_password=self.secrets.get(f"{ESL_PASSWORD_KEY}:{p.name}"),
            announcement=f"{self.paths(p.name).state}/freeswitch/sounds/{ANNOUNCEMENT}",
            **ctx), mode=0o600)

    def acc_ctx(self, p: PlacedNode) -> dict[str, Any] | None:
        """Call records (acc) at the lb, the proxies and the SBCs: into the platform
        database when it is PostgreSQL (a sqlite file is one node's, not every hop's)."""
        if self.inv.database.engine != "postgres":
            return None
        return {"load_db": p.role != Role.PROXY}

    def proxy_ctx(self, p: PlacedNode) -> dict[str, Any]:
        assert p.zone is not None
        zones = sorted(p.dc.zones)
        other = _sister(zones, p.zone)
        sister = self.loaded.zone_node(p.dc, other, Role.PROXY)
        media_own = self.loaded.zone_node(p.dc, p.zone, Role.MEDIA)
        media_other = self.loaded.zone_node(p.dc, other, Role.MEDIA) or media_own
        assert sister is not None
        assert media_own is not None
        assert media_other is not None
        sbcs = [n for z in zones for n in p.dc.zones[z].nodes if n.role == Role.SBC]
        switches = [n for z in zones for n in p.dc.zones[z].nodes if n.role == Role.SWITCH]
        paths = self.paths(p.name)
        return {
            "switch_tier": bool(self.inv.platform.switch_tier and switches),
            "switch_nets": ",".join(f"{n.address}/32" for n in switches),
            "switch_tries": SWITCH_TRIES,
            "auth_fresh_s": AUTH_FRESH_S, "credential_fields": CREDENTIAL_FIELDS,
            "tls": {"cert": f"{paths.pki}/{p.name}.crt", "key": f"{paths.pki}/{p.name}.key",
                    "ca": f"{paths.pki}/ca.crt",
                    "method": "TLSv1.2+" if self.inv.security.tls.min_version == "TLSv1.2"
                    else "TLSv1.3", "ciphers": self.inv.security.tls.ciphers},
            "sister": sister.address,
            "media_own": f"{media_own.mgmt}:{media_own.ports.rtpengine_ng}",
            "media_other": f"{media_other.mgmt}:{media_other.ports.rtpengine_ng}",
            "trusted": ",".join(f"{n.address}/32" for n in sbcs),
            "db_module": "db_sqlite" if self.inv.database.engine == "sqlite" else "db_postgres",
            # The data center's lbs: they pass a phone's own address in X-ZP-Source.
            "lb_nets": ",".join(f"{a}/32" for a in [
                *(n.address for n in self._dc_lbs(p)),
                *([p.dc.edge.address] if p.dc.edge else [])]),
            "auth_bans": self.inv.security.auth_bans,
            "rendezvous": rendezvous_regex(self.inv, p),
            "switch_offer": switch_offer(self.inv, p.dc),
            "sister_name": sister.name,
            "em": emergency_ctx.proxy_ctx(self.inv, p),
        }

    def _dc_lbs(self, p: PlacedNode) -> list[Node]:
        return [q.node for q in self.loaded.nodes() if q.dc.id == p.dc.id and q.role == Role.LB]

    def switch_dsts(self, p: PlacedNode) -> list[dict[str, Any]]:
        """Set 3: this zone's switches; set 4: the sister zone's (over TLS).  The proxy
        takes them round robin, so a zone's calls are spread evenly over its switches, and
        turns to set 4 only when set 3 has none left to try."""
        if not self.inv.platform.switch_tier:
            return []
        out = []
        for zname in sorted(p.dc.zones):
            for n in p.dc.zones[zname].nodes:
                if n.role == Role.SWITCH:
                    own = zname == p.zone
                    out.append(_dst(3 if own else 4,
                                    f"sip:{n.address}:{n.ports.sips};transport=tls",
                                    10 if own else 5, n.name, f"switch {p.dc.id}/{zname}"))
        # Set 5: every switch of the data center in one order, the same on every proxy:
        # the first one up is the rendezvous switch (conferences, park lots, paging).
        switches = sorted((n for z in p.dc.zones.values() for n in z.nodes
                           if n.role == Role.SWITCH), key=lambda n: n.name)
        for i, n in enumerate(switches):
            out.append(_dst(5, f"sip:{n.address}:{n.ports.sips};transport=tls",
                            len(switches) - i, f"rdv-{n.name}", f"rendezvous {p.dc.id}"))
        return out

    def sbc_dsts(self, p: PlacedNode) -> list[dict[str, Any]]:
        out = []
        for zname in sorted(p.dc.zones):
            sbc = self.loaded.zone_node(p.dc, zname, Role.SBC)
            if sbc is not None:
                prio = 10 if zname == p.zone else 5
                out.append(_dst(2, f"sip:{sbc.address}:{sbc.ports.sip}", prio, f"sbc-{zname}",
                                f"sbc {p.dc.id}/{zname}"))
        return out

    def sbc_ctx(self, p: PlacedNode) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        assert p.zone is not None
        dsts: list[dict[str, Any]] = []
        internal = []
        for zname in sorted(p.dc.zones):
            proxy = self.loaded.zone_node(p.dc, zname, Role.PROXY)
            if proxy is not None:
                prio = 10 if zname == p.zone else 5
                dsts.append(_dst(1, f"sip:{proxy.address}:{proxy.ports.sip}", prio,
                                 f"proxy-{zname}", f"zone {p.dc.id}/{zname}"))
                internal.append(f"{proxy.address}/32")
        peers: dict[str, str] = {}
        set_codecs: list[tuple[int, str]] = []
        carrier_codecs = sorted({c for car in self.inv.carriers if car.pstn for c in car.codecs})
        if carrier_codecs:
            set_codecs.append((10, _codec_flags(carrier_codecs)))
        for c in sorted(self.inv.carriers, key=lambda c: c.id):
            if not c.pstn:  # an emergency-services route only (below)
                for a in c.addresses:
                    peers[a.address] = c.id
                continue
            if c.host is not None:  # one destination, its targets from DNS (SRV)
                # flag 16: not resolved when loaded (an A lookup), but at each send (SRV)
                dsts.append({**_dst(10, f"sip:{c.host};transport={c.addresses[0].transport}",
                                    0, f"carrier-{c.id}", f"carrier {c.id}", srtp=c.srtp),
                             "flags": DS_NO_DNS_AT_LOAD})
            for a in c.addresses:
                if c.host is None:
                    dsts.append(_dst(10, _trunk_uri(a.address, a.port, a.transport), 0,
                                     f"carrier-{c.id}", f"carrier {c.id}", srtp=c.srtp))
                peers[a.address] = c.id
        account_sets: list[tuple[str, int]] = []
        setids = account_set_ids(self.inv)
        tls = False
        # Only the accounts this data center serves (a site here or in the pair): an SBC
        # trusts no other account's trunk or premises SBC, and carries no other region's.
        for acct in served_accounts(self.inv, p):
            if not acct.trunks:
                continue
            setid = setids[acct.id]
            for i, t in enumerate(acct.trunks):
                if i == 0:
                    account_sets.append((acct.id, setid))
                    set_codecs.append((setid, _codec_flags(t.codecs)))
                for a in t.addresses:
                    dsts.append(_dst(setid, _trunk_uri(a.address, a.port, a.transport), 0,
                                     f"trunk-{t.id}", f"{acct.offering} trunk of {acct.id}",
                                     srtp=t.srtp))
                    peers[a.address] = t.id
                    if t.tls is not None:
                        peers[f"{a.address}::cn"] = t.tls.subject_cn
                tls = tls or t.tls is not None
        em_routes, em_members, em_trunks = emergency_ctx.sbc_sets(self.inv, p,
                                                                   dict(account_sets))
        em_codecs: dict[int, set[str]] = {}
        peers_of: list[tuple[int, str, Carrier | Trunk]] = [*em_members, *em_trunks]
        for setid, country, peer in peers_of:
            for a in peer.addresses:
                dsts.append(_dst(setid, _trunk_uri(a.address, a.port, a.transport), 0,
                                 f"emergency-{peer.id}", f"emergency {country} {peer.id}",
                                 srtp=peer.srtp))
            em_codecs.setdefault(setid, set()).update(peer.codecs)
        set_codecs += [(setid, _codec_flags(sorted(c))) for setid, c in sorted(em_codecs.items())]
        media = self.loaded.zone_node(p.dc, p.zone, Role.MEDIA)
        assert media is not None
        ctx = {
            "emergency_routes": em_routes,
            "internal_nets": ",".join(internal),
            "media": f"{media.mgmt}:{media.ports.rtpengine_ng}",
            "account_sets": account_sets,
            "peers": sorted(peers.items()),
            "set_codecs": set_codecs,
            "tls": tls,
            # carriers reached by SRV: Kamailio's DNS cache and failover between targets
            "dns": any(c.host is not None for c in self.inv.carriers),
            # the platform side: a switch, when there is a switch tier
            "platform_offer": switch_offer(self.inv, p.dc),
        }
        return ctx, dsts

    def tls_ctx(self, p: PlacedNode) -> dict[str, Any]:
        paths = self.paths(p.name)
        policy = self.inv.security.tls
        return {
            "min_version": policy.min_version,
            "method": "TLSv1.2+" if policy.min_version == "TLSv1.2" else "TLSv1.3",
            "ciphers": policy.ciphers,
            "cert": f"{paths.pki}/{p.name}.crt",
            "key": f"{paths.pki}/{p.name}.key",
            "peer_ca": f"{paths.pki}/peer-cas.pem",
        }

    # -- media ------------------------------------------------------------------------------

    def media(self, p: PlacedNode) -> None:
        ctx = self.base_ctx(p)
        self.build.add(f"{p.name}/rtpengine/rtpengine.conf", self.tpl("rtpengine.conf.j2", **ctx))
        self.build.add(f"{p.name}/redis/redis.conf", self.tpl("redis.conf.j2", **ctx))

    def node_manifest(self, p: PlacedNode) -> None:
        """node.json: what runs on the host and how, from the role table (zpctl.model.roles):
        each service's program, command line, listeners, health check and stop signal,
        resolved for this node.  The lab runner, deploy and the Ansible roles read it."""
        paths = self.paths(p.name)
        sizing = {"shm_mb": self.shm_mb(p), "pkg_mb": p.node.kamailio.pkg_mb}
        where = {"config": paths.config, "run": paths.run, "log": paths.log,
                 "state": paths.state, **sizing}
        services: list[dict[str, Any]] = []
        for svc in roles.spec(p.role).services_in(p.dc):
            host, port = svc.health_target(p.node)
            services.append({
                "name": svc.name, "binary": svc.binary,
                "config": f"{paths.config}/{svc.config}",
                "args": svc.args(where),
                "listeners": [list(x) for x in svc.listeners(p.node)],
                "health": {"kind": svc.health, "address": host, "port": port},
                "stop_signal": svc.stop_signal,
                **(sizing if svc.name == "kamailio" else {}),
            })
        doc = {
            "node": p.name, "role": p.role.value, "datacenter": p.dc.id, "zone": p.zone,
            "address": p.node.address, "public_address": p.node.public,
            "mgmt_address": p.node.mgmt, "ports": p.node.ports.model_dump(),
            "paths": {"config": paths.config, "state": paths.state, "run": paths.run,
                      "log": paths.log, **({"shared": paths.shared}
                                           if p.role == Role.SWITCH else {})},
            "services": services,
        }
        self.build.add(f"{p.name}/node.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")


def edge_ctx(p: PlacedNode) -> dict[str, Any] | None:
    """An lb of a pair: the shared address and its VRRP settings (None: a lone lb).  The
    first lb by name starts with the higher priority; neither takes the address back from
    the other (nopreempt), so a recovered lb does not move it a second time."""
    edge = p.dc.edge
    lbs = sorted(p.dc.lbs, key=lambda n: n.name)
    if edge is None or len(lbs) != 2:
        return None
    peer = next(n for n in lbs if n.name != p.name)
    return {"address": edge.address, "prefix": edge.prefix, "interface": edge.interface,
            "vrid": edge.vrid, "advert_s": f"{edge.advert_ms / 1000:g}",
            "priority": 150 if lbs[0].name == p.name else 100,
            "peer": peer.address, "peer_name": peer.name}


def rendezvous_regex(inv: Inventory, p: PlacedNode) -> str:
    """A POSIX regex of ``user@domain`` for every rendezvous number (conference, park lot
    and slot, paging group) of the accounts this data center serves; "" when none."""
    alts = []
    for acct in served_accounts(inv, p):
        nums = rendezvous_numbers(acct)
        if nums:
            domain = inv.account_domain(acct).replace(".", "[.]")
            alts.append(f"({'|'.join(n.replace('*', '[*]') for n in nums)})@{domain}")
    return f"^({'|'.join(alts)})$" if alts else ""


# An account's dispatcher set on the SBCs: from its id, so that adding or removing another
# account renumbers nothing (a fleet-wide config change for no reason).  Sets 1, 2 and 10
# are the proxies', the SBCs' and the carriers'.
ACCOUNT_SETS = range(100_000, 1_000_000)


def account_set_ids(inv: Inventory) -> dict[str, int]:
    """Each account with trunks: its set, CRC-32 of its id in :data:`ACCOUNT_SETS`.  Two
    ids that land on one set: the later id (in sorted order) takes the next free one, so
    only a colliding pair's order can move a set."""
    out: dict[str, int] = {}
    taken: set[int] = set()
    span = len(ACCOUNT_SETS)
    for acct in sorted((a for a in inv.accounts if a.trunks), key=lambda a: a.id):
        offset = zlib.crc32(acct.id.encode()) % span
        while ACCOUNT_SETS[offset] in taken:
            offset = (offset + 1) % span
        out[acct.id] = ACCOUNT_SETS[offset]
        taken.add(out[acct.id])
    return out


def _dst(setid: int, uri: str, priority: int, duid: str, comment: str,
         srtp: bool | None = None, extra: str = "") -> dict[str, Any]:
    """A dispatcher destination; a trunk's carries ``srtp=0|1`` (the media its leg gets);
    ``extra``: more attributes (``;socket=...``)."""
    attrs = f"name={comment.replace(' ', '_')}" + ("" if srtp is None else f";srtp={int(srtp)}") \
        + extra
    return {"set": setid, "uri": uri, "priority": priority, "duid": duid, "comment": attrs}


def _codec_flags(codecs: Sequence[str]) -> str:
    """rtpengine flags offering a trunk only its codecs, transcoding when the caller has none
    of them (the caller keeps its own codec on its leg); telephone-event always passes."""
    names = [catalog.CODECS[c].encoding for c in codecs]
    keep = " ".join(f"codec-except-{n}" for n in [*names, "telephone-event"])
    add = " ".join(f"codec-transcode-{n}" for n in names)
    return f"codec-mask-all {keep} {add}"


def _trunk_uri(address: str, port: int, transport: str) -> str:
    return f"sip:{address}:{port}" + (f";transport={transport}" if transport != "udp" else "")


def render(loaded: LoadedInventory, secrets: Secrets, lab_root: Path | None = None) -> Build:
    """Render every host of ``loaded``; ``lab_root`` points all paths into a lab directory."""
    return _Renderer(loaded, secrets, lab_root).run()


def switch_documents(loaded: LoadedInventory, secrets: Secrets) -> list[SwitchDocument]:
    """Every switch's account documents (dialplan contexts, directory domains), from the
    same code and templates as its deployed files.  The switches of a zone have the same
    ones: the proxies they ring through and the media policy are the zone's.  The secrets
    those files reference as global variables (voicemail PINs) are written out: a user
    added after the deploy has no variable on the switch.  Other ``$${name}`` references
    stay for the switch's XML preprocessor."""
    env = environment()
    docs = []
    by_zone: dict[tuple[str, str | None], list[tuple[str, str, str]]] = {}  # same zone, same docs
    for p in loaded.nodes():
        if p.role != Role.SWITCH:
            continue
        if (p.dc.id, p.zone) not in by_zone:
            parts = []
            for section, name, template, ctx, secret_vars in served_parts(loaded, secrets, p):
                body = env.get_template(template).render(banner=BANNER, xa=xa, **ctx)
                for key, value in secret_vars.items():
                    body = body.replace(f"$${{{key}}}", xa(value))
                parts.append((section, name, body))
            by_zone[(p.dc.id, p.zone)] = parts
        docs += [SwitchDocument(p.name, *part) for part in by_zone[(p.dc.id, p.zone)]]
    return docs


def iter_kamailio_configs(build_root: Path) -> Iterator[Path]:
    """The kamailio.cfg of every host in a written build."""
    yield from sorted(Path(build_root).glob("*/kamailio/kamailio.cfg"))


def render_monitoring(loaded: LoadedInventory,
                      options: MonitoringOptions | None = None) -> dict[str, str]:
    """The monitoring files alone, e.g. with a test's exporter address and intervals."""
    env = environment()

    def tpl(name: str, **ctx: Any) -> str:
        try:
            return env.get_template(name).render(banner=BANNER, **ctx)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name}: {exc}") from None

    return monitoring_files(loaded, tpl, options)
