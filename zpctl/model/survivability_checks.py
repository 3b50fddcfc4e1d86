"""Cross-checks of local survivability: each site's node, its users and its groups.

A site's survivability node is a ``survivability`` node of the site's data center that
serves that site alone; a node no site names is an error too (it would run with nobody to
serve).  A site with survivability needs users (the node's whole job is theirs), and a
group rings users of the site: a member from another site would not be registered there
during an outage.  What the node holds at run time (how fresh its copy is) is for
``zpctl survivability status``: validate reads the inventory, not the node.
"""

from __future__ import annotations

from collections.abc import Iterator

from zpctl.model import emergency
from zpctl.model.schema import Inventory, Role

Finding = tuple[tuple[str | int, ...], str]


def check(inv: Inventory) -> Iterator[Finding]:
    nodes = {n.name: (dc.id, n) for dc in inv.datacenters for n in dc.nodes}
    served: dict[str, str] = {}
    # A node a site names but cannot have (another data center's) is reported at the site.
    named = {s.survivability.node for a in inv.accounts for s in a.sites
             if s.survivability is not None}
    for ai, acct in enumerate(inv.accounts):
        exts = {u.extension for u in acct.users}
        for si, site in enumerate(acct.sites):
            surv = site.survivability
            if surv is None:
                continue
            p: tuple[str | int, ...] = ("accounts", ai, "sites", si, "survivability")
            where = f"{acct.id}/{site.id}"
            found = nodes.get(surv.node)
            if found is None or found[1].role != Role.SURVIVABILITY:
                yield (*p, "node"), (
                    f"{surv.node!r} is not a survivability node: list it under "
                    f"datacenters[{site.datacenter}].nodes with role: survivability")
            elif found[0] != site.datacenter:
                yield (*p, "node"), (f"{surv.node} belongs to data center {found[0]}, and "
                                     f"site {where} to {site.datacenter}")
            elif surv.node in served:
                yield (*p, "node"), (f"{surv.node} already serves site {served[surv.node]}: "
                                     "one survivability node per site")
            else:
                served[surv.node] = where
                if surv.sbc is not None and surv.sbc.address in (found[1].address,
                                                                 found[1].mgmt):
                    yield (*p, "sbc", "address"), (
                        f"the site SBC's address {surv.sbc.address} is {surv.node}'s own")
            users = {u.extension for u in acct.users if u.site == site.id}
            if not users:
                yield p, (f"site {where} has no users: its survivability node would have "
                          "nobody to sync and nobody to serve")
            seen: set[str] = set()
            for gi, g in enumerate(surv.groups):
                gp = (*p, "groups", gi)
                if g.extension in exts:
                    yield (*gp, "extension"), (f"group extension {g.extension} is also a "
                                               f"user's extension in account {acct.id}")
                if g.extension in emergency.numbers(site.country):
                    yield (*gp, "extension"), (
                        f"group extension {g.extension} is an emergency number in "
                        f"{site.country}: calls to it go to emergency services, never to "
                        "the group")
                elif g.extension in emergency.dialled(acct, site.country):
                    yield (*gp, "extension"), (
                        f"group extension {g.extension} is the outside prefix "
                        f"({acct.outside_prefix}) and an emergency number of {site.country}: "
                        "calls to it go to emergency services, never to the group")
                if g.extension in seen:
                    yield (*gp, "extension"), f"group extension {g.extension} is used twice"
                seen.add(g.extension)
                for mi, m in enumerate(g.members):
                    if m not in users:
                        yield (*gp, "members", mi), (
                            f"{m} is not a user of site {where}" + (
                                " (a user of another site would not be registered at this "
                                "node during an outage)" if m in exts else ""))
    for di, dc in enumerate(inv.datacenters):
        for ni, n in enumerate(dc.nodes):
            if n.role == Role.SURVIVABILITY and n.name not in named:
                yield ("datacenters", di, "nodes", ni, "name"), (
                    f"survivability node {n.name} serves no site: name it in an account's "
                    "sites[].survivability.node")
