"""Kamailio shared-memory sizing from the capacity target.

Each tm transaction of a call takes about 13 kB of shared memory and stays about 5 s (wait
state) after it ends; a call makes two transactions (INVITE and BYE) at a simple hop.  So a
node taking ``cps`` calls per second holds about ``cps * T * 5 * 13 kB`` of transactions,
with T the transactions a call makes *at that node*: an sbc sees 2; a proxy 3 (the INVITE
challenged with 407, the INVITE with credentials, the BYE); an lb 5 (the same three from the
caller, and the INVITE and BYE it relays back out to a callee it registered).  We add 25 %
headroom and a 32 MB base (modules, usrloc, dialogs, htables), round up to 16 MB and never go
below 64 MB.  Measured: 64 MB holds about 500 calls/s; -m 256 fails at 2,000 calls/s.
"""

from __future__ import annotations

import math

from zpctl.model.roles import ROLES
from zpctl.model.schema import Role

TRANSACTION_KB = 13
# The per-role figure lives in the role table (zpctl.model.roles); by role name here.
TRANSACTIONS_PER_CALL = {r.value: s.transactions_per_call for r, s in ROLES.items()
                         if s.transactions_per_call is not None}
WAIT_SECONDS = 5
HEADROOM = 1.25
BASE_MB = 32
MIN_MB = 64


def shm_mb(cps: int, role: Role | str = Role.SBC) -> int:
    """Shared memory (MB, Kamailio's -m) for a ``role`` node taking ``cps`` calls per second."""
    kb = cps * TRANSACTIONS_PER_CALL.get(Role(role).value, 2) * WAIT_SECONDS * TRANSACTION_KB * HEADROOM
    mb = BASE_MB + kb / 1024
    return max(MIN_MB, 16 * math.ceil(mb / 16))
