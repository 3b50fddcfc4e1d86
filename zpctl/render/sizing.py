"""Kamailio shared-memory sizing from the capacity target.

Each tm transaction takes about 13 kB of shared memory and stays about 5 s (wait state)
after it ends.  A call makes T transactions *at a node*: an sbc 2 (INVITE, BYE); a proxy 3
(the INVITE challenged with 407, the INVITE with credentials, the BYE); an lb 5 (the same
three from the caller, and the INVITE and BYE it relays back out to a callee it
registered).  A registration makes R: an lb 2 (the REGISTER challenged with 401 and the
answered one); a proxy 4 (those two, its DMQ replication to the sister zone, and the
sister's to it).  So a node taking ``cps`` calls and ``rps`` registrations per second holds
about ``(cps * T + rps * R) * 5 s * 13 kB`` of transactions.  We add 25 % headroom and a
32 MB base (modules, usrloc, dialogs, htables), round up to 16 MB and never go below 64 MB.

Sizing calls alone was not enough: the lab's lb, sized for 200 calls/s, ran out at 700
registrations/s and answered 500 ("No error (2/SL)", tm's ``new_t(): out of mem``).
Measured before that: 64 MB holds about 500 calls/s; -m 256 fails at 2,000 calls/s.
"""

from __future__ import annotations

import math

from zpctl.model.roles import ROLES
from zpctl.model.schema import Capacity, Role

TRANSACTION_KB = 13
# The per-role figures live in the role table (zpctl.model.roles); by role name here.
TRANSACTIONS_PER_CALL = {r.value: s.transactions_per_call for r, s in ROLES.items()
                         if s.transactions_per_call is not None}
TRANSACTIONS_PER_REGISTRATION = {r.value: s.transactions_per_registration
                                 for r, s in ROLES.items()}
WAIT_SECONDS = 5
HEADROOM = 1.25
BASE_MB = 32
MIN_MB = 64
#: Share of shared memory an lb keeps free for what is already admitted (in-dialog requests,
#: replies, timers): below it, new calls and registrations are answered 503.
SHM_RESERVE = 0.2


def shm_mb(capacity: Capacity, role: Role | str = Role.SBC) -> int:
    """Shared memory (MB, Kamailio's -m) for a ``role`` node of ``capacity``."""
    name = Role(role).value
    per_s = (capacity.cps * TRANSACTIONS_PER_CALL.get(name, 2)
             + capacity.rps * TRANSACTIONS_PER_REGISTRATION.get(name, 0))
    kb = per_s * WAIT_SECONDS * TRANSACTION_KB * HEADROOM
    mb = BASE_MB + kb / 1024
    return max(MIN_MB, 16 * math.ceil(mb / 16))


def shm_reserve_bytes(mb: int) -> int:
    """Free shared memory below which an lb of ``mb`` MB (:func:`shm_mb`) stops admitting:
    :data:`SHM_RESERVE` of it."""
    return int(mb * SHM_RESERVE) << 20
