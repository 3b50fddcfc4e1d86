"""The address guard of live commands: an address is contacted only when it is on the
inventory's management network and this machine reaches it from there."""

from __future__ import annotations

import ipaddress
import socket

from zpctl.errors import EnvironmentProblem
from zpctl.model import LoadedInventory


class AddressGuard:
    """Refuses to contact an address outside the inventory's management networks, or one
    this machine would reach from a source address outside them (the nodes' management
    listeners answer only those sources: a lab machine holding a production inventory is
    not on its management network).  Exit 9, naming the address and the networks."""

    def __init__(self, inv: LoadedInventory) -> None:
        self.inv = inv
        self.nets = [ipaddress.ip_network(n) for n in inv.model.platform.management_networks]
        self._checked: set[str] = set()

    def check(self, host: str, what: str = "") -> None:
        if host in self._checked:
            return
        nets = ", ".join(str(n) for n in self.nets)
        name = self.inv.model.platform.name
        about = f" ({what})" if what else ""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise EnvironmentProblem(f"refusing to contact {host}{about}: not an IP address "
                                     f"in platform.management_networks ({nets})") from None
        if not any(addr in n for n in self.nets):
            raise EnvironmentProblem(
                f"refusing to contact {host}{about}: outside platform.management_networks "
                f"({nets}) of inventory {self.inv.root} ({name})")
        source = source_address(host)
        if source is None:
            raise EnvironmentProblem(
                f"refusing to contact {host}{about}: this machine has no route to it; it is "
                f"not on the management network ({nets}) of inventory {self.inv.root} ({name})")
        if not any(ipaddress.ip_address(source) in n for n in self.nets):
            raise EnvironmentProblem(
                f"refusing to contact {host}{about}: this machine would reach it from "
                f"{source}, outside platform.management_networks ({nets}) of inventory "
                f"{self.inv.root} ({name}); run zpctl from a host on that management network")
        self._checked.add(host)


def source_address(host: str) -> str | None:
    """The source address this machine would use towards ``host`` (no packet is sent);
    None when there is no route."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
        except OSError:
            return None
        return str(s.getsockname()[0])
