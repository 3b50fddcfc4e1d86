"""The node roles, in one table: what each role runs and how.

A role is a rendered config plus the processes that run it.  For each role this table says
which services (processes) it has -- program, command line, the addresses they listen on,
how to tell that they answer, the signal that stops them -- which Ansible group and roles
deploy it, whether the exporter probes it, and what sizes it.  Render writes each node's
services, resolved for that node, into its build (``<node>/node.json``); the lab runner,
the deploy and the Ansible roles read them from there and never work them out again.

Adding a role: one :class:`RoleSpec` entry here, its templates, and its renderer in
``zpctl.render`` (docs/ARCHITECTURE.md walks through an example).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zpctl.model.schema import DataCenter, Node, Role

# Where a service's command line points: the node's config, run, log and state folders,
# and its memory sizing (Kamailio).
ArgsFn = Callable[[dict[str, Any]], list[str]]
ListenersFn = Callable[[Node], list[tuple[str, int, str]]]

HEALTH_SIP_OPTIONS = "sip-options"  # answers OPTIONS with 200 (or 503 Warming Up)
HEALTH_RTPENGINE_PING = "rtpengine-ping"  # ng "ping" answers "pong"
HEALTH_REDIS_PING = "redis-ping"  # PING answers PONG
HEALTH_ESL = "esl"  # the event socket greets (auth/request)
HEALTH_PROCESS = "process"  # no port to ask: running is all there is to check (keepalived)


def _always(dc: DataCenter) -> bool:
    return True


@dataclass(frozen=True)
class ServiceSpec:
    """One process of a role."""

    name: str  # also the Ansible role that installs it and the prefix of its variables
    binary: str  # the program, found on PATH (lab) or at <name>_binary (hosts)
    config: str  # its main config, relative to the node's config folder
    args: ArgsFn  # the command line after the program
    listeners: ListenersFn  # (address, port, udp|tcp) it binds
    health: str  # one of the HEALTH_* kinds
    health_target: Callable[[Node], tuple[str, int]]  # where the health check asks
    stop_signal: str = "TERM"  # then KILL after a grace period
    # Whether a node of the role in this data center runs it (keepalived: an lb pair's).
    needed: Callable[[DataCenter], bool] = _always


@dataclass(frozen=True)
class RoleSpec:
    """What a node of one role is."""

    role: Role
    services: tuple[ServiceSpec, ...]
    ansible_group: str  # the play's host group (deploy)
    probed: bool  # the exporter asks it for health (Kamailio nodes, media nodes)
    # Sizing input: the SIP transactions one call makes at this node (Kamailio shm); None
    # for a role that runs no Kamailio.
    transactions_per_call: int | None = None
    # ... and the transactions one registration makes there: the challenged REGISTER and
    # the answered one; a proxy also replicates it to its sister zone and takes the
    # sister's replication (DMQ).
    transactions_per_registration: int = 0
    lab_order: int = 9  # start order in the lab: media first, then proxies, sbcs, lbs
    in_lab: bool = True  # `zpctl lab up` runs its services
    deployed: bool = True  # `zpctl deploy` installs and runs its services

    @property
    def ansible_roles(self) -> list[str]:
        return [s.name for s in self.services]

    def services_in(self, dc: DataCenter) -> tuple[ServiceSpec, ...]:
        """The services a node of this role runs in ``dc``."""
        return tuple(s for s in self.services if s.needed(dc))


def _kamailio_args(c: dict[str, Any]) -> list[str]:
    # -x tlsf: Kamailio's TLSF allocator for shared and private memory.  The default (qm,
    # Debian's build) searched its free lists in 32 % of the lb's CPU under 2,500
    # REGISTER/s, and the p99 at that rate fell from 632 ms to 4 ms with TLSF
    # (docs/PERFORMANCE.md, "Where the time goes").
    return ["-DD", "-E", "-f", f"{c['config']}/kamailio/kamailio.cfg", "-Y", c["run"],
            "-m", str(c["shm_mb"]), "-M", str(c["pkg_mb"]), "-x", "tlsf"]


def _kamailio_listeners(role: Role) -> ListenersFn:
    def listeners(n: Node) -> list[tuple[str, int, str]]:
        out = [(n.address, n.ports.sip, "udp"), (n.address, n.ports.sip, "tcp"),
               (n.mgmt, n.ports.mgmt_http, "tcp")]
        if role == Role.LB:
            out.append((n.address, n.ports.sips, "tcp"))
        if role == Role.PROXY:
            out.append((n.address, n.ports.dmq, "udp"))
        if role == Role.SBC:
            out += [(n.public, n.ports.sip, "udp"), (n.public, n.ports.sip, "tcp")]
        return out
    return listeners


def _kamailio(role: Role) -> ServiceSpec:
    return ServiceSpec("kamailio", "kamailio", "kamailio/kamailio.cfg", _kamailio_args,
                       _kamailio_listeners(role), HEALTH_SIP_OPTIONS,
                       lambda n: (n.address, n.ports.sip))


REDIS = ServiceSpec(
    "redis", "redis-server", "redis/redis.conf",
    lambda c: [f"{c['config']}/redis/redis.conf"],
    lambda n: [(n.mgmt, n.ports.redis, "tcp")],
    HEALTH_REDIS_PING, lambda n: (n.mgmt, n.ports.redis))
RTPENGINE = ServiceSpec(
    "rtpengine", "rtpengine", "rtpengine/rtpengine.conf",
    lambda c: [f"--config-file={c['config']}/rtpengine/rtpengine.conf", "--foreground",
               "--log-stderr", "--no-log-timestamps"],
    lambda n: [(n.mgmt, n.ports.rtpengine_ng, "udp")],
    HEALTH_RTPENGINE_PING, lambda n: (n.mgmt, n.ports.rtpengine_ng))
# In the foreground without a console (-nf -nc), every folder under the node's own.  -log
# is the run folder: FreeSWITCH writes its preprocessed config there (freeswitch.xml.fsxml,
# secrets included), while its log file is named in logfile.conf.  The sofia profile is
# TLS only: it listens on the sips port.
FREESWITCH = ServiceSpec(
    "freeswitch", "freeswitch", "freeswitch/freeswitch.xml",
    lambda c: ["-nf", "-nc", "-nonat", "-conf", f"{c['config']}/freeswitch",
               "-log", c["run"], "-run", c["run"], "-db", c["state"],
               "-temp", c["run"], "-sounds", f"{c['state']}/freeswitch/sounds",
               "-recordings", f"{c['state']}/freeswitch/recordings",
               "-storage", f"{c['state']}/freeswitch/storage",
               # the rendered Lua scripts: `api lua zp_recordings.lua ...` runs from here
               "-scripts", f"{c['config']}/freeswitch/scripts",
               "-cache", f"{c['state']}/freeswitch/cache"],
    lambda n: [(n.address, n.ports.sips, "tcp"), (n.mgmt, n.ports.esl, "tcp")],
    HEALTH_ESL, lambda n: (n.mgmt, n.ports.esl))

# A survivability node's announcer: FreeSWITCH with one SIP profile on this port of the
# node's address, reached only by the node's own Kamailio (templates/survivability/).
ANNOUNCER_PORT = 5080
# Its config is in announcer/, not freeswitch/: a switch's tree is validated as one.
ANNOUNCER = ServiceSpec(
    "announcer", "freeswitch", "announcer/freeswitch.xml",
    lambda c: ["-nf", "-nc", "-nonat", "-conf", f"{c['config']}/announcer",
               "-log", c["run"], "-run", c["run"], "-db", c["state"], "-temp", c["run"],
               "-sounds", f"{c['state']}/freeswitch/sounds",
               "-recordings", f"{c['state']}/freeswitch/recordings",
               "-storage", f"{c['state']}/freeswitch/storage",
               "-cache", f"{c['state']}/freeswitch/cache"],
    lambda n: [(n.address, ANNOUNCER_PORT, "udp"), (n.mgmt, n.ports.esl, "tcp")],
    HEALTH_ESL, lambda n: (n.mgmt, n.ports.esl))

# VRRP for an lb pair (a data center with `edge:`): only its VRRP part (--vrrp), in the
# foreground, with pid files of its own in the node's run folder.
KEEPALIVED = ServiceSpec(
    "keepalived", "keepalived", "keepalived/keepalived.conf",
    lambda c: ["--dont-fork", "--log-console", "--log-detail", "--vrrp",
               "-f", f"{c['config']}/keepalived/keepalived.conf",
               "-p", f"{c['run']}/keepalived.pid", "-r", f"{c['run']}/keepalived-vrrp.pid"],
    lambda n: [], HEALTH_PROCESS, lambda n: (n.mgmt, n.ports.mgmt_http),
    needed=lambda dc: dc.edge is not None)

ROLES: dict[Role, RoleSpec] = {
    Role.LB: RoleSpec(Role.LB, (_kamailio(Role.LB), KEEPALIVED), "kamailio", probed=True,
                      transactions_per_call=5,
                      transactions_per_registration=2, lab_order=3),
    Role.PROXY: RoleSpec(Role.PROXY, (_kamailio(Role.PROXY),), "kamailio", probed=True,
                         transactions_per_call=3,
                         transactions_per_registration=4, lab_order=1),
    Role.SBC: RoleSpec(Role.SBC, (_kamailio(Role.SBC),), "kamailio", probed=True,
                       transactions_per_call=2, lab_order=2),
    # Redis before rtpengine: rtpengine restores its calls from Redis when it starts.
    Role.MEDIA: RoleSpec(Role.MEDIA, (REDIS, RTPENGINE), "media", probed=True, lab_order=0),
    # Switches start with the media nodes (they take a few seconds), before the proxies
    # that probe them.
    Role.SWITCH: RoleSpec(Role.SWITCH, (FREESWITCH,), "switch", probed=False, lab_order=0),
    # Runs nothing until it takes over a dead switch (its addresses, its build, its calls
    # from the shared core database): see Role.SWITCH_STANDBY.
    Role.SWITCH_STANDBY: RoleSpec(Role.SWITCH_STANDBY, (), "switch_standby", probed=False,
                                  in_lab=False),
    # The monitor's Prometheus and exporter run from the _monitoring build with host
    # settings (listen address, inventory path): their roles build their command lines.
    Role.MONITOR: RoleSpec(Role.MONITOR, (), "monitor", probed=False),
    # At a customer site: the registrar its phones fall back to when the cloud is out of
    # reach (docs/SURVIVABILITY.md).  Not probed: the exporter cannot reach a site that is
    # cut off, and `zpctl survivability status` asks it directly.
    Role.SURVIVABILITY: RoleSpec(Role.SURVIVABILITY, (_kamailio(Role.SURVIVABILITY), ANNOUNCER),
                                 "survivability", probed=False,
                                 transactions_per_call=3, transactions_per_registration=2,
                                 # At a customer's site, behind its firewall: not deployed
                                 # by `zpctl deploy` yet (docs/SURVIVABILITY.md).
                                 lab_order=4, deployed=False),
}
# Ansible roles a monitor node gets (they are not services of node.json; see above).
MONITOR_ANSIBLE_ROLES = ["prometheus", "zpctl_exporter"]
# The Ansible role every deployed node gets last: its firewall (nftables/zpctl.nft).
FIREWALL_ANSIBLE_ROLE = "nftables"


def spec(role: Role) -> RoleSpec:
    """The table's entry for ``role``."""
    return ROLES[role]


# Roles whose node runs Kamailio (SIP nodes: certificates, JSON-RPC control, scraping).
KAMAILIO_ROLES = frozenset(r for r, s in ROLES.items()
                           if any(x.name == "kamailio" for x in s.services))
# Roles whose nodes the exporter probes for health.
PROBED_ROLES = frozenset(r for r, s in ROLES.items() if s.probed)
