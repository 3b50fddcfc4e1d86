"""The inventory schema: pydantic models that forbid unknown keys.

The schema checks shapes and single values; relations between values (uniqueness, pairs,
region locks, India rules, licenses) are cross-checks in :mod:`zpctl.model.checks`.
"""

from __future__ import annotations

import enum
import inspect
import re
import sys
from typing import Annotated, Literal

from pydantic import Field, model_validator

from zpctl.model import catalog
from zpctl.model.pbx import Pbx
from zpctl.model.types import (
    DEFAULT_MANAGEMENT_NETWORK,
    E164,
    IP,
    Currency,
    Date,
    Feature,
    Hostname,
    Hours,
    Ident,
    Language,
    Network,
    Port,
    Strict,
    Suite,
    TimeZone,
)


class Role(enum.StrEnum):
    LB = "lb"
    PROXY = "proxy"
    MEDIA = "media"
    SWITCH = "switch"
    # Standby hardware for the zone's switches: runs nothing until it takes over a dead
    # switch's addresses and recovers its calls (`zpctl lab takeover` in the lab).
    SWITCH_STANDBY = "switch-standby"
    SBC = "sbc"
    SURVIVABILITY = "survivability"
    MONITOR = "monitor"


DC_ROLES = frozenset({Role.LB, Role.MONITOR, Role.SURVIVABILITY})
ZONE_ROLES = frozenset({Role.PROXY, Role.MEDIA, Role.SWITCH, Role.SWITCH_STANDBY, Role.SBC})


# --- layered node settings ------------------------------------------------------------------

class Ports(Strict):
    sip: Port = 5060  # SIP over UDP and TCP
    sips: Port = 5061  # SIP over TLS
    mgmt_http: Port = 8080  # JSON-RPC over HTTP and /metrics, on the management address
    dmq: Port = 5090  # DMQ replication between the zone proxies
    rtpengine_ng: Port = 2223  # rtpengine control (ng protocol)
    esl: Port = 8021  # FreeSWITCH event socket
    redis: Port = 6379


class RtpRange(Strict):
    port_min: Port = 30000
    port_max: Port = 39999

    @model_validator(mode="after")
    def _ordered(self) -> RtpRange:
        if self.port_max <= self.port_min:
            raise ValueError("port_max must be above port_min")
        return self


class KamailioSettings(Strict):
    children: Annotated[int, Field(ge=1, le=64)] = 4
    tcp_children: Annotated[int, Field(ge=1, le=64)] = 2
    log_level: Annotated[int, Field(ge=-5, le=3)] = 1  # Kamailio debug: 1 notice, 2 info, 3 debug
    pkg_mb: Annotated[int, Field(ge=4, le=1024)] = 16


#: Registrations per second a node takes per call per second, when the inventory does not
#: say (a registration is two short transactions, no dialog, no media; docs/PERFORMANCE.md).
REGISTERS_PER_CALL = 5


class Capacity(Strict):
    cps: Annotated[int, Field(ge=1, le=100000)] = 200  # calls per second per node
    # REGISTERs (challenge and answer: one registration) per second per node; 5 x cps if
    # left out.  An lb admits new calls and registrations up to these two rates and answers
    # the rest 503 with Retry-After; both size Kamailio's shared memory.
    registrations: Annotated[int, Field(ge=1, le=1000000)] | None = None

    @property
    def rps(self) -> int:
        """Registrations per second: the declared figure, or REGISTERS_PER_CALL x cps."""
        return self.registrations or REGISTERS_PER_CALL * self.cps


class Node(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")]
    role: Role
    address: IP  # service address: SIP, RTP
    public_address: IP | None = None  # media / sbc address seen by carriers and peers
    mgmt_address: IP | None = None  # management network: JSON-RPC, metrics, ESL
    ports: Ports = Field(default_factory=Ports)
    rtp: RtpRange = Field(default_factory=RtpRange)
    kamailio: KamailioSettings = Field(default_factory=KamailioSettings)
    capacity: Capacity = Field(default_factory=Capacity)

    @property
    def mgmt(self) -> str:
        return self.mgmt_address or self.address

    @property
    def public(self) -> str:
        return self.public_address or self.address


class Defaults(Strict):
    ports: Ports = Field(default_factory=Ports)
    rtp: RtpRange = Field(default_factory=RtpRange)
    kamailio: KamailioSettings = Field(default_factory=KamailioSettings)
    capacity: Capacity = Field(default_factory=Capacity)


# --- platform -------------------------------------------------------------------------------

class Zone(Strict):
    defaults: Defaults | None = None
    nodes: list[Node] = Field(default_factory=list)


class Edge(Strict):
    """A data center's redundant lb pair: two lb nodes share one service address, which
    VRRP (keepalived) keeps on the lb that is alive (docs/EDGE.md)."""

    # The data center's service address: what its DNS records publish and what phones and
    # carriers reach; one lb of the pair holds it at a time.
    address: IP
    prefix: Annotated[int, Field(ge=8, le=32)] = 24  # its network prefix on the interface
    interface: Annotated[str, Field(pattern=r"^[a-zA-Z0-9._-]{1,15}$")] = "eth0"
    # VRRP virtual router id: unique among the pairs that share a network.
    vrid: Annotated[int, Field(ge=1, le=255)] = 51
    # VRRP advertisement interval: the backup takes the address after about three missed
    # advertisements (3 x 0.5 s + skew: under 2 s).
    advert_ms: Annotated[int, Field(ge=100, le=10000)] = 500


class DataCenter(Strict):
    id: Ident
    city: str
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    region: Ident
    cluster: str
    role: Literal["primary", "secondary"]
    pair: Ident
    defaults: Defaults | None = None
    # The switches' legs in this data center (default: security.srtp.switch_legs).
    switch_legs: Literal["srtp", "plain"] | None = None
    # Two lb nodes and the address they share; without it the data center has one lb, whose
    # own address is the one published.
    edge: Edge | None = None
    # SRV priority of this data center in DNS (lower is tried first): 10 for a primary and
    # 20 for a secondary unless set; a secondary must come after its primary.
    dns_priority: Annotated[int, Field(ge=0, le=65535)] | None = None
    nodes: list[Node] = Field(default_factory=list)
    zones: dict[Ident, Zone]

    @property
    def lbs(self) -> list[Node]:
        return [n for n in self.nodes if n.role == Role.LB]

    @property
    def service_address(self) -> str | None:
        """What phones and carriers reach: the edge pair's shared address, or the one lb's
        own (None: no lb)."""
        if self.edge is not None:
            return self.edge.address
        lbs = self.lbs
        return lbs[0].address if lbs else None

    @property
    def srv_priority(self) -> int:
        if self.dns_priority is not None:
            return self.dns_priority
        return 10 if self.role == "primary" else 20


class Cluster(Strict):
    id: Annotated[str, Field(pattern=r"^[A-Z]{2,4}[0-9]{2}$")]
    name: str
    regional: bool = False  # a regional cluster keeps accounts inside its region


class TlsPolicy(Strict):
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    ciphers: str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
                   "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"


class SrtpPolicy(Strict):
    apps: Suite = catalog.SRTP_AES256
    devices: Suite = catalog.SRTP_AES128  # the default for SIP devices
    devices_upgraded: Suite = catalog.SRTP_AES256  # for devices an admin upgraded
    allow_plain_rtp_fallback: bool = True  # devices without SRTP support
    # The class a user's own SIP credentials (extension + password) get; provisioned devices
    # have credentials of their own (the device id) and their class from the device entry.
    user_credentials: Literal["app", "device", "plain"] = "app"
    # The switches' legs, between them and the media nodes inside a data center: SRTP
    # (every usable suite), or plain RTP, which a standby switch needs to recover a dead
    # switch's calls (FreeSWITCH's call recovery restores no SDES keys: docs/FREESWITCH.md).
    switch_legs: Literal["srtp", "plain"] = "srtp"

    @model_validator(mode="after")
    def _plain_needs_fallback(self) -> SrtpPolicy:
        if self.user_credentials == "plain" and not self.allow_plain_rtp_fallback:
            raise ValueError("user_credentials: plain needs allow_plain_rtp_fallback: true")
        return self

    def suite_for(self, kind: str, encryption: str = "default") -> str:
        """The SRTP suite a client's media leg must use, or "plain" (RTP/AVP)."""
        if kind == "app":
            return self.apps
        if kind == "plain" or encryption == "none":
            return "plain"
        return self.devices_upgraded if encryption == "aes256" else self.devices


class AuthBans(Strict):
    """Digest brute-force bans at the zone proxies, shared by both zones over DMQ."""

    per_user: Annotated[int, Field(ge=1, le=1000)] = 5  # failures before a user is refused
    # Failures from one source address (any users) before it is refused; higher than per
    # user, since many phones may share one NAT address.
    per_address: Annotated[int, Field(ge=1, le=100000)] = 20
    minutes: Annotated[int, Field(ge=1, le=1440)] = 15


class Security(Strict):
    tls: TlsPolicy = Field(default_factory=TlsPolicy)
    srtp: SrtpPolicy = Field(default_factory=SrtpPolicy)
    auth_bans: AuthBans = Field(default_factory=AuthBans)


class Media(Strict):
    codecs: list[Literal["opus", "pcmu", "pcma", "g729"]] = ["opus", "pcmu", "pcma", "g729"]
    dtmf: Literal["rfc2833"] = "rfc2833"

    @model_validator(mode="after")
    def _unique(self) -> Media:
        if len(set(self.codecs)) != len(self.codecs):
            raise ValueError("codecs listed twice")
        if not self.codecs:
            raise ValueError("at least one codec is needed")
        return self


class TrunkAddress(Strict):
    address: IP
    port: Port = 5060
    transport: Literal["udp", "tcp", "tls"] = "udp"


class Carrier(Strict):
    id: Ident
    name: str
    # The carrier's SIP domain: the sbcs send to it by SRV (the first address's transport)
    # and Kamailio fails over between its targets.  Without it, the sbcs send to the
    # addresses in turn.  Either way the addresses are the sources the sbcs accept.
    host: Hostname | None = None
    addresses: Annotated[list[TrunkAddress], Field(min_length=1)]
    codecs: list[Literal["opus", "pcmu", "pcma", "g729"]] = ["pcmu", "pcma"]
    srtp: bool = False
    # Countries whose emergency calls this carrier takes (its emergency-services route):
    # the sbcs send them here, with the caller's location, never to the other carriers.
    emergency: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = Field(default_factory=list)
    pstn: bool = True  # false: an emergency-services route only, no ordinary calls


class Paths(Strict):
    """Where rendered configs point for state and run-time files on a host."""

    config_dir: str = "/etc/zpctl"
    state_dir: str = "/var/lib/zpctl"
    # Storage every switch of a data center shares (voicemail boxes and their index, the
    # voicemail lock table): a shared mount in production, one folder in the lab.
    shared_dir: str = "/var/lib/zpctl/shared"
    run_dir: str = "/run/zpctl"
    log_dir: str = "/var/log/zpctl"


class Privacy(Strict):
    """An account's privacy options (the seed's "Mask Personal Data from Dashboard and
    Call Log"): with ``mask_personal_data``, the last digits of external numbers are
    hidden in `zpctl cdr ls` and in the exporter's labels."""

    mask_personal_data: bool = False


class Database(Strict):
    engine: Literal["sqlite", "postgres"] = "sqlite"
    # postgres only: host, port, name, user (the password is a secret)
    host: str | None = None
    port: Port = 5432
    name: str = "zpctl"
    user: str = "kamailio"
    # How long call records are kept (`zpctl cdr purge` removes older ones), in days.
    record_retention_days: Annotated[int, Field(ge=1, le=3650)] = 365

    @model_validator(mode="after")
    def _host(self) -> Database:
        if self.engine == "postgres" and not self.host:
            raise ValueError("engine postgres needs host")
        return self


class SwitchRecovery(Strict):
    """Where the switches keep their core database (the calls they carry, FreeSWITCH's
    ``track-calls``), so that a standby switch taking over a dead one's addresses finds its
    calls and resumes them (``sofia recover``): a PostgreSQL server every switch reaches,
    one database per switch (``fs_<switch>``; recovery takes every call of the database it
    is given, so switches must not share one).  The password is the secret
    ``switch_db_password``."""

    db_host: IP
    db_port: Port = 5432
    db_user: Ident = "freeswitch"


class NameServer(Strict):
    name: Hostname  # its host name (NS record); under the zone, it gets an A record there
    address: IP


class Dns(Strict):
    """The platform's DNS zone: NAPTR, SRV and A records that lead phones and carriers to
    each cluster's and data center's lbs, primary first (docs/EDGE.md).  zpctl renders the
    zone file and an NSD config under ``_dns/``; the lab serves them with NSD."""

    zone: Hostname | None = None  # default: platform.sip_domain
    # TTL of every record (s): how long a resolver may keep an answer, so the longest a
    # phone that re-resolves keeps using an edge that DNS no longer prefers.
    ttl: Annotated[int, Field(ge=5, le=86400)] = 30
    servers: Annotated[list[NameServer], Field(min_length=1)]  # the authoritative servers


class Firewall(Strict):
    """What each node's nftables rules let in from outside the platform (docs/EDGE.md):
    the rest is derived from the inventory (who talks to whom)."""

    # Sources that may reach the lbs' SIP and SIP over TLS ports: phones and apps.
    sip_from: Annotated[list[Network], Field(min_length=1)] = ["0.0.0.0/0"]
    # Sources that may send RTP to the media nodes' public addresses: phones and carriers.
    rtp_from: Annotated[list[Network], Field(min_length=1)] = ["0.0.0.0/0"]


class PlatformInfo(Strict):
    name: Ident
    sip_domain: Hostname  # accounts get <account>.<sip_domain> unless they set their own
    switch_tier: bool = False  # zones run FreeSWITCH call switches
    management_networks: list[Network] = [DEFAULT_MANAGEMENT_NETWORK]
    # Sources the lbs never rate-limit (load generators, monitoring probes): networks.
    flood_exempt: list[Network] = Field(default_factory=list)
    # Requests one source may send per 2 s before the lb bans it for 5 minutes.
    flood_limit: Annotated[int, Field(ge=8, le=100000)] = 400


# --- accounts -------------------------------------------------------------------------------

class EmergencyAddress(Strict):
    """The site's civic address: the dispatchable location its emergency calls carry
    (PIDF-LO, RFC 4119 / RFC 5139).  What each country requires is checked
    (zpctl.model.emergency_checks, docs/EMERGENCY.md)."""

    street: str  # with the house number, as written locally: "55 Almaden Blvd", "Keizersgracht 123"
    city: str
    postal_code: str | None = None  # required except where the country has none (HK)
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    state: str | None = None  # state, province, prefecture: required where the country has them
    location: str | None = None  # floor, suite, room: what a responder needs inside the building


class Holiday(Strict):
    name: str
    date: Date


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class SurvivabilityGroup(Strict):
    """A survivability distribution group: an extension that rings its members when the
    site is cut off from the cloud (ring-all: every member at once; in-order: one after
    another, ``ring_seconds`` each)."""

    extension: Annotated[str, Field(pattern=r"^[0-9]{2,8}$")]
    name: str
    strategy: Literal["ring-all", "in-order"] = "ring-all"
    members: Annotated[list[Annotated[str, Field(pattern=r"^[0-9]{2,8}$")]],
                       Field(min_length=1)]  # extensions of the site's users
    ring_seconds: Annotated[int, Field(ge=5, le=120)] = 20


class SiteSbc(Strict):
    """The site's own SBC, on its LAN, with a carrier behind it: PSTN calls leave through
    it while the site is cut off."""

    address: IP
    port: Port = 5060
    transport: Literal["udp", "tcp"] = "udp"


class Survivability(Strict):
    """Local survivability for one site: a node at the site (a ``survivability`` node of
    the site's data center) where its phones register when they cannot reach the cloud
    (docs/SURVIVABILITY.md)."""

    node: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")]
    # The site's LAN networks, where its phones are: the only sources (with the SBC and
    # the management networks) the node's firewall lets SIP and RTP in from.
    lan: Annotated[list[Network], Field(min_length=1)]
    sbc: SiteSbc | None = None  # none: PSTN calls get the announcement
    groups: list[SurvivabilityGroup] = Field(default_factory=list)
    # How old the node's copy of the users may be before status and validate report it.
    max_sync_age_hours: Annotated[int, Field(ge=1, le=8760)] = 24


class Site(Strict):
    id: Ident
    name: str
    datacenter: Ident
    timezone: TimeZone
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    state: str | None = None  # India: GST state code of the site, e.g. "27"
    city: str | None = None
    language: Language = "en-US"
    emergency_address: EmergencyAddress
    business_hours: dict[Weekday, list[Hours]] = Field(default_factory=dict)
    holidays: list[Holiday] = Field(default_factory=list)
    survivability: Survivability | None = None


class Device(Strict):
    id: Ident
    kind: Literal["app", "desk-phone", "ata", "room", "common-area"] = "app"
    vendor: str | None = None
    # default: apps AES-256, devices AES-128; aes256: an admin upgrade; none: plain RTP
    encryption: Literal["default", "aes256", "none"] = "default"


class User(Strict):
    extension: Annotated[str, Field(pattern=r"^[0-9]{2,8}$")]
    name: str
    site: Ident
    license: Literal["basic", "pro", "common-area"] = "basic"
    addons: list[Literal["power-pack", "transcription"]] = Field(default_factory=list)
    calling_plan: Literal["none", "metered", "unlimited", "global-select"] = "none"
    dids: list[E164] = Field(default_factory=list)
    language: Language | None = None  # default: the site's
    devices: list[Device] = Field(default_factory=list)
    features: list[Feature] = Field(default_factory=list)


class Number(Strict):
    number: E164
    kind: Literal["did", "toll-free", "main"] = "did"
    site: Ident | None = None


class PeerTls(Strict):
    """What a BYOC-P premises SBC must present: a certificate from this CA, with this name."""

    # "platform": the peer's certificate is issued by the platform's own CA (the lab CA in the
    # lab); otherwise a PEM file of the customer's CA, relative to the inventory directory.
    ca: str
    subject_cn: str


class Trunk(Strict):
    id: Ident
    addresses: Annotated[list[TrunkAddress], Field(min_length=1)]
    codecs: list[Literal["opus", "pcmu", "pcma", "g729"]] = ["pcmu", "pcma"]
    srtp: bool = False
    tls: PeerTls | None = None  # required for BYOC-P
    # Countries whose emergency calls of this account go out by this trunk (else by the
    # platform's emergency carrier of the country).
    emergency: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = Field(default_factory=list)


class Entity(Strict):
    name: str
    registered_in_india: bool


class India(Strict):
    circle: Annotated[str, Field(json_schema_extra={"enum": sorted(catalog.INDIA_CIRCLES)})]
    entity: Entity
    gstin: str
    authorised_signatory: str


class Billing(Strict):
    currency: Currency = "USD"


class AccountLimits(Strict):
    """What the account may use at once.  Emergency calls are never refused for them."""

    concurrent_calls: Annotated[int, Field(ge=1, le=1000000)] | None = None  # per data center


class SecurityDesk(Strict):
    """Who hears of the account's emergency calls: an HTTP(S) webhook, posted a JSON
    notice (site, user, location) for each call (docs/EMERGENCY.md)."""

    webhook: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]


class Account(Strict):
    id: Ident
    name: str
    cluster: str
    domain: Hostname | None = None  # SIP domain; default <id>.<platform.sip_domain>
    offering: Literal["native", "byoc-c", "byoc-p"]
    region_lock: Ident | None = None
    # The digit users dial before an outside number ("9"): emergency numbers work with it
    # and without it (Kari's Law: direct dialling).
    outside_prefix: Annotated[str, Field(pattern=r"^[0-9]$")] | None = None
    limits: AccountLimits = Field(default_factory=AccountLimits)
    security_desk: SecurityDesk | None = None
    billing: Billing = Field(default_factory=Billing)
    india: India | None = None
    trunks: list[Trunk] = Field(default_factory=list)
    sites: Annotated[list[Site], Field(min_length=1)]
    numbers: list[Number] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    pbx: Pbx = Field(default_factory=Pbx)  # PBX features run by the switch tier (zpctl.model.pbx)
    privacy: Privacy = Field(default_factory=Privacy)

    def user(self, extension: str) -> User | None:
        return next((u for u in self.users if u.extension == extension), None)

    def site(self, site_id: str) -> Site | None:
        return next((s for s in self.sites if s.id == site_id), None)


class Inventory(Strict):
    platform: PlatformInfo
    clusters: Annotated[list[Cluster], Field(min_length=1)]
    security: Security = Field(default_factory=Security)
    media: Media = Field(default_factory=Media)
    carriers: list[Carrier] = Field(default_factory=list)
    paths: Paths = Field(default_factory=Paths)
    database: Database = Field(default_factory=Database)
    switch_recovery: SwitchRecovery | None = None
    dns: Dns | None = None
    firewall: Firewall = Field(default_factory=Firewall)
    defaults: Defaults = Field(default_factory=Defaults)
    datacenters: list[DataCenter]
    accounts: list[Account] = Field(default_factory=list)

    def switch_legs(self, dc: DataCenter) -> str:
        """SRTP or plain RTP between the media nodes and the switches of ``dc``."""
        return dc.switch_legs or self.security.srtp.switch_legs

    def account(self, account_id: str) -> Account | None:
        return next((a for a in self.accounts if a.id == account_id), None)

    def account_domain(self, account: Account) -> str:
        return account.domain or f"{account.id}.{self.platform.sip_domain}"

    def dns_zone(self) -> str | None:
        """The DNS zone zpctl renders (None: no dns section)."""
        return None if self.dns is None else (self.dns.zone or self.platform.sip_domain)


# The inventory's files and the part of the combined document each holds (the JSON Schema
# of each for editors: `zpctl inventory schema KIND`, the files in schemas/).
FILE_KINDS = ("platform", "datacenter", "account")


def file_schema(kind: str) -> dict[str, object]:
    """The JSON Schema of one kind of inventory file: platform.yml (the top-level keys but
    ``datacenters`` and ``accounts``), datacenters/*.yml (one data center), accounts/*.yml
    (one account); ``combined`` for the whole document."""
    if kind == "datacenter":
        out = DataCenter.model_json_schema()
    elif kind == "account":
        out = Account.model_json_schema()
    else:
        out = Inventory.model_json_schema()
        if kind == "platform":
            props = out["properties"]
            assert isinstance(props, dict)
            for key in ("datacenters", "accounts"):
                props.pop(key, None)
            required = out.get("required", [])
            assert isinstance(required, list)
            out["required"] = [r for r in required if r not in ("datacenters", "accounts")]
            out["title"] = "platform.yml"
    _closed_maps(out)
    _prune_defs(out)
    _describe(out)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out


def _prune_defs(schema: dict[str, object]) -> None:
    """Drop the definitions nothing in ``schema`` refers to any more."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return
    used: set[str] = set()
    todo: list[object] = [{k: v for k, v in schema.items() if k != "$defs"}]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in used and name in defs:
                    used.add(name)
                    todo.append(defs[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    schema["$defs"] = {k: v for k, v in defs.items() if k in used}


def _closed_maps(node: object) -> None:
    """A mapping whose keys have a pattern (zones) allows no other keys: as zpctl does."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _closed_maps(value)
    elif isinstance(node, list):
        for value in node:
            _closed_maps(value)


def field_comments() -> dict[tuple[str, str], str]:
    """(class, field) -> the comment the model's source gives the field: the ``#`` comment
    after it on its line, else the comment lines right above it.  The schema's field
    descriptions come from there, so the model's comments are the one place to write them."""
    out: dict[tuple[str, str], str] = {}
    for module in (sys.modules[__name__], sys.modules[Pbx.__module__]):
        cls, above = "", list[str]()
        for line in inspect.getsource(module).splitlines():
            if m := re.match(r"class (\w+)\(", line):
                cls, above = m[1], []
                continue
            stripped = line.strip()
            if line.startswith("    #") and not line.startswith("     "):
                above.append(stripped.lstrip("# ").strip())
                continue
            m = re.match(r"    (\w+): [^#]*?(?:#\s*(.*))?$", line)
            if cls and m and not line.startswith("     "):
                text = m[2] or " ".join(above)
                if text and not text.startswith(("noqa", "type:")):
                    out[(cls, m[1])] = text
            above = []
    return out


def _describe(schema: dict[str, object]) -> None:
    """Give each property of the schema's classes the comment of its field."""
    comments = field_comments()
    defs = schema.get("$defs")
    classes = dict(defs) if isinstance(defs, dict) else {}
    classes[str(schema.get("title", ""))] = schema
    for name, node in classes.items():
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict):
            continue
        for field, prop in props.items():
            text = comments.get((name, field))
            if text and isinstance(prop, dict) and "description" not in prop:
                prop["description"] = text
