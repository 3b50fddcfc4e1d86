"""`zone restore` copies the sister zone's registrations: what usrloc's words mean.

``ul.dump`` gives a contact's Expires as seconds left, or as a word (``expired`` for a
contact the timer has not purged yet, ``deleted``, ``permanent``).  The copy takes the
live ones and passes over the rest; a word must never stop a restore half way (CI once saw
``zone restore`` fail on an expired contact, leaving the zone closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpctl.control import Control
from zpctl.model import Role, load_inventory

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


def contact(address: str, expires: Any) -> dict[str, Any]:
    return {"Address": address, "Expires": expires, "Q": -1, "Path": "", "Flags": 0,
            "CFlags": 0, "Methods": 4294967295, "Received": ""}


@dataclass
class Recorded(Control):
    """A Control whose proxies answer from dictionaries; its changes are only recorded."""

    dumps: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)

    def contacts(self, proxy: Any) -> dict[str, list[dict[str, Any]]]:
        return self.dumps[proxy.name]


def test_only_live_contacts_are_copied() -> None:
    inv = load_inventory(LAB)
    ctl = Recorded(inv, dry_run=True)
    dc, _ = ctl.zone("lab1/a")
    proxy, sister = ctl.node_of(dc, "a", Role.PROXY), ctl.node_of(dc, "b", Role.PROXY)
    ctl.dumps = {
        proxy.name: {"sip:1001@acme": [contact("sip:1001@127.0.0.1:5070", 300)]},
        sister.name: {
            "sip:1001@acme": [contact("sip:1001@127.0.0.1:5070", 300),
                              contact("sip:1001@127.0.0.1:5071", 120)],
            "sip:1002@acme": [contact("sip:1002@127.0.0.1:5072", "expired"),
                              contact("sip:1002@127.0.0.1:5073", "deleted"),
                              contact("sip:1002@127.0.0.1:5074", "permanent"),
                              contact("sip:1002@127.0.0.1:5075", 0),
                              contact("sip:1002@127.0.0.1:5076", None),
                              contact("sip:1002@127.0.0.1:5077", "45")],
        },
    }
    assert ctl.sync_registrations("lab1/a") == {"sister_contacts": 8, "copied": 2}
    added = [(r.node, r.params[1], r.params[2], r.params[3]) for r in ctl.sent]
    assert added == [(proxy.name, "sip:1001@acme", "sip:1001@127.0.0.1:5071", 120),
                     (proxy.name, "sip:1002@acme", "sip:1002@127.0.0.1:5077", 45)]
