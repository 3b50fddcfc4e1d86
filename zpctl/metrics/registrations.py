"""Registrations per account: the usrloc ``location`` table of every proxy, by SIP domain.

The two zone proxies of a data center hold the same registrations (DMQ replicates them), so
a data center's count is the *union* of its proxies' contacts, counted once each (address of
record and contact URI); a proxy that does not answer leaves the other's view.  An address
of record ``user@domain`` belongs to the account whose SIP domain is ``domain``.

``ul.dump`` returns every contact: fine for tens of thousands of registrations per data
center, heavy beyond that (the reply is a few hundred bytes per contact).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from zpctl.metrics.base import Families, PlatformCollector
from zpctl.metrics.sources import Clients, fan_out
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.schema import Role

UNKNOWN_ACCOUNT = "_unknown"
LIVE_EXPIRES = frozenset({"permanent"})  # string Expires values of a live contact


def contacts(ul_dump: Any, table: str = "location") -> Iterator[tuple[str, str]]:
    """(address of record, contact URI) of every live contact in a ``ul.dump`` reply.

    Kamailio marks contacts that are past their lifetime but not yet purged with the string
    ``"expired"`` (or ``"deleted"``) instead of the seconds left; those are not registered.
    """
    domains = ul_dump.get("Domains") if isinstance(ul_dump, dict) else None
    for d in domains or []:
        dom = d.get("Domain") or {}
        if dom.get("Domain") != table:
            continue
        for aor in dom.get("AoRs") or []:
            info = aor.get("Info") or {}
            name = str(info.get("AoR", ""))
            for c in info.get("Contacts") or []:
                contact = c.get("Contact") or {}
                expires = contact.get("Expires")
                live = expires in LIVE_EXPIRES or (isinstance(expires, int) and expires > 0)
                if name and live:
                    yield name, str(contact.get("Address", ""))


class RegistrationsCollector(PlatformCollector):
    """``zpctl_registrations`` and ``zpctl_registered_users`` per data center and account."""

    name = "registrations"

    def __init__(self, inventory: LoadedInventory, clients: Clients,
                 registry: CollectorRegistry | None = None) -> None:
        self.domains = {inventory.model.account_domain(a).lower(): a.id
                        for a in inventory.model.accounts}
        super().__init__(inventory, clients, registry)

    def families(self) -> Families:
        return {
            "contacts": GaugeMetricFamily(
                "zpctl_registrations", "Registered contacts (distinct AoR and contact) in the "
                "data center, per account", labels=["dc", "account"]),
            "users": GaugeMetricFamily(
                "zpctl_registered_users", "Users (addresses of record) with at least one "
                "registered contact in the data center, per account", labels=["dc", "account"]),
        }

    def account(self, aor: str) -> str:
        domain = aor.rpartition("@")[2].lower()
        return self.domains.get(domain, UNKNOWN_ACCOUNT)

    def fill(self, fams: Families, errors: list[str]) -> None:
        proxies = [p for p in self.inv.nodes() if p.role == Role.PROXY]
        replies: dict[str, list[Any]] = {}
        for p, reply, err in fan_out(self._dump, proxies):
            if err is not None:
                errors.append(f"{p.name}: ul.dump: {err}")
            else:
                replies.setdefault(p.dc.id, []).append(reply)
        accounts = sorted(self.domains.values())
        for dc in self.inv.model.datacenters:
            if dc.id not in replies:  # no proxy of this data center answered: no samples
                continue
            seen = {pair for reply in replies[dc.id] for pair in contacts(reply)}
            per_contacts = dict.fromkeys(accounts, 0)
            per_users: dict[str, set[str]] = {a: set() for a in accounts}
            for aor, _ in seen:
                acct = self.account(aor)
                per_contacts[acct] = per_contacts.get(acct, 0) + 1
                per_users.setdefault(acct, set()).add(aor.lower())
            for acct in sorted(per_contacts):
                fams["contacts"].add_metric([dc.id, acct], per_contacts[acct])
                fams["users"].add_metric([dc.id, acct], len(per_users[acct]))

    def _dump(self, p: PlacedNode) -> Any:
        return self.clients.rpc(p.node).call("ul.dump")
