"""The sites with local survivability, as render, sync and status need them.

A site's survivability node (a ``survivability`` node of the site's data center, named by
``sites[].survivability.node``) serves that site's users only: their extensions, their
DIDs, the site's groups and its emergency numbers.  Cross-checks live in
:mod:`zpctl.model.survivability_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from zpctl.model import catalog
from zpctl.model.schema import Account, Inventory, Site, Survivability

DB_FILE = "survivability.sqlite"  # in the node's state folder: the users it serves
# The announcer's prompt, under the node's FreeSWITCH sounds folder, and what it says.
ANNOUNCEMENT = "survivability/only-internal-calls.wav"
ANNOUNCEMENT_TEXT = ("The phone service cannot be reached from this site. "
                     "Only calls to colleagues at this site are working. "
                     "Please try again later.")


@dataclass(frozen=True)
class SurvivableSite:
    account: Account
    site: Site
    config: Survivability
    domain: str  # the account's SIP domain: the realm the users authenticate in

    @property
    def where(self) -> str:
        """``account/site``: how the CLI names a site."""
        return f"{self.account.id}/{self.site.id}"

    @property
    def extensions(self) -> list[str]:
        return sorted(u.extension for u in self.account.users if u.site == self.site.id)

    @property
    def dids(self) -> list[tuple[str, str]]:
        """(DID, extension) of the site's users: what the site's SBC may deliver."""
        return sorted((d, u.extension) for u in self.account.users if u.site == self.site.id
                      for d in u.dids)

    @property
    def caller_ids(self) -> list[tuple[str, str]]:
        """(extension, the number its PSTN calls show): the user's first DID, else the
        site's main number (the account's, when the site has none); users with neither
        are left out."""
        nums = self.account.numbers
        main = next((n.number for n in nums if n.kind == "main" and n.site == self.site.id),
                    next((n.number for n in nums if n.kind == "main"), None))
        out = []
        for u in sorted(self.account.users, key=lambda u: u.extension):
            if u.site == self.site.id and (u.dids or main):
                out.append((u.extension, u.dids[0] if u.dids else str(main)))
        return out

    @property
    def no_plan(self) -> list[str]:
        """The site's users with no calling plan: no PSTN (emergency numbers still go)."""
        return sorted(u.extension for u in self.account.users
                      if u.site == self.site.id and u.calling_plan == "none")

    @property
    def emergency(self) -> tuple[str, ...]:
        return catalog.EMERGENCY_NUMBERS.get(self.site.country, ())


def survivable_sites(inv: Inventory) -> list[SurvivableSite]:
    return [SurvivableSite(a, s, s.survivability, inv.account_domain(a))
            for a in inv.accounts for s in a.sites if s.survivability is not None]


def site_of_node(inv: Inventory, node: str) -> SurvivableSite | None:
    return next((s for s in survivable_sites(inv) if s.config.node == node), None)


def find_site(inv: Inventory, spec: str) -> SurvivableSite:
    """The site ``account/site`` (or a bare site id, when only one account has it);
    ValueError naming the sites that have survivability."""
    sites = survivable_sites(inv)
    found = [s for s in sites if spec in (s.where, s.site.id)]
    if len(found) == 1:
        return found[0]
    known = ", ".join(s.where for s in sites) or "none"
    if found:
        raise ValueError(f"site {spec!r} is ambiguous: name it as account/site ({known})")
    raise ValueError(f"no site {spec!r} with survivability (sites with survivability: {known})")
