"""Deploy rendered builds to real hosts with Ansible, one zone at a time.

How it works: ``zpctl deploy`` renders the inventory once, keeps the build (by build id) in a
state directory, refuses it if ``kamailio -c`` rejects a config, then rolls it out per data
center: DC-level hosts (the lb) first, then each zone in turn: drain, Ansible run on the
zone's hosts (roles/ install the rendered bytes, validate and restart), health check,
restore.  A zone that fails is redeployed with its last good build and restored, and the
rollout stops (exit 5).  Every Ansible run gets its own ansible-runner private data dir
(env/, inventory/, project/, artifacts/<id>/), kept for the post-mortem.
"""

from zpctl.deploy.hosts import DeployHosts, HostSpec
from zpctl.deploy.rollout import DeployOptions, Step, deploy, history, plan, rollback
from zpctl.deploy.store import BuildStore

__all__ = ["BuildStore", "DeployHosts", "DeployOptions", "HostSpec", "Step", "deploy", "history",
           "plan", "rollback"]
