"""The lab: an inventory's whole platform running on this machine, on loopback.

``Lab(dir).up(inventory)`` renders the inventory with every path pointing into the lab
directory, prepares the subscriber database, the lab CA and certificates, then starts one
real process per service on the node's own loopback address and waits until each answers;
``down()`` stops exactly the processes ``up()`` recorded.  The package is split by concern:

- :mod:`zpctl.lab.runner` -- :class:`Lab`: state, up, down, status, logs;
- :mod:`zpctl.lab.services` -- how each platform node runs and how to tell it answers;
- :mod:`zpctl.lab.peers` -- the carriers, PBXs and premises SBCs the lab simulates;
- :mod:`zpctl.lab.procs` -- processes started, recorded by pid and start time, stopped;
- :mod:`zpctl.lab.phones` and :mod:`zpctl.lab.flows` -- SIPp phones and the call flows
  that the demo and the flow tests run.
"""

from __future__ import annotations

from zpctl.lab.peers import LOOPBACK, PEER_MEDIA_PORT, Peer
from zpctl.lab.runner import DEFAULT_INVENTORY, DownReport, Lab, Progress, default_lab_dir
from zpctl.lab.services import Service, port_free

__all__ = ["DEFAULT_INVENTORY", "LOOPBACK", "PEER_MEDIA_PORT", "DownReport", "Lab", "Peer",
           "Progress", "Service", "default_lab_dir", "port_free"]
