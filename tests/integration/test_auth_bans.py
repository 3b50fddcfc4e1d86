"""Digest brute force: after 5 wrong passwords a user is refused (403) for 15 minutes in
both zones (the failure count is shared over DMQ), while other users keep registering."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from zpctl import sipp
from zpctl.clients.kamailio import KamailioRpc
from zpctl.errors import RemoteFailure
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.testing import missing_binaries, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries(("kamailio", "rtpengine", "redis-server",
                                                       "sipp"))),
                                reason="lab binaries or sipp missing (make install)")

AOR = "3002@initech.lab.zpctl.test"


def _rpcs(lab: Lab) -> list[KamailioRpc]:
    inv = lab.inventory()
    return [KamailioRpc(f"http://{n.mgmt}:{n.ports.mgmt_http}/RPC")
            for n in (inv.node("lab1-a-proxy").node, inv.node("lab1-b-proxy").node)]


def _failures(lab: Lab, key: str) -> list[int]:
    """Each zone proxy's failure count for ``key`` (0 where it has none yet)."""
    out = []
    for rpc in _rpcs(lab):
        try:
            out.append(int(rpc.call("htable.get", "authfail", key)["item"]["value"]))
        except RemoteFailure:  # not counted there (yet)
            out.append(0)
    return out


def _counted_in_both_zones(lab: Lab, key: str, at_least: int) -> list[int]:
    """Wait until both zones count ``at_least`` failures for ``key`` (DMQ replication)."""
    return wait_for(f"both zones to count {at_least} failures for {key}", lambda: (
        c if min(c := _failures(lab, key)) >= at_least else None), 10)


def _deleted(rpc: KamailioRpc, key: str) -> bool:
    """True once ``key`` is gone from the proxy's authfail table."""
    try:
        rpc.call("htable.get", "authfail", key)
    except RemoteFailure as exc:
        if re.search(r"doesn.t exist|not found", str(exc)):
            return True
        raise
    return False


def test_brute_force_bans_the_user_in_both_zones(zpctl_lab: Lab, tmp_path: Path) -> None:
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path, subnet="127.0.57")
    user = phones.user("3002@initech")
    try:
        bad = sipp.users_csv(tmp_path / "bad.csv", [(user.username, user.domain, "guess")])
        attack = sipp.run("register", phones.lb, workdir=tmp_path, name="guess",
                          local_ip="127.0.57.200", local_port=5800, users=bad, calls=6,
                          rate=2, keys={"expires": "60"}, wait_s=60)
        assert attack.returncode != 0
        counts = _counted_in_both_zones(zpctl_lab, AOR, 5)  # both zones know (DMQ)
        assert min(counts) >= 5, counts
        # The right password no longer helps, for now.
        run = phones.register("3002@initech")
        assert run.returncode != 0
        assert run.received("SIP/2.0 403"), run.message_text()[-800:]
        assert "Too Many Failed Authentications" in run.received("SIP/2.0 403")[0]
        # Others are not affected.
        assert phones.register("3001@initech").returncode == 0
    finally:
        # An operator lifts the ban on one proxy; DMQ carries the delete to the other.
        _rpcs(zpctl_lab)[0].call("htable.delete", "authfail", AOR)
    wait_for("the delete to reach the other zone (DMQ)",
             lambda: _deleted(_rpcs(zpctl_lab)[1], AOR), 10)
    assert phones.register("3002@initech").returncode == 0


def test_many_users_guessed_from_one_address_bans_the_address(zpctl_lab: Lab,
                                                               tmp_path: Path) -> None:
    """A scanner trying a few passwords for many users (under the per-user limit each) is
    stopped by the per-address count: the lb passes the phone's own address to the zone
    proxies (X-ZP-Source), which count failures per address in both zones."""
    attacker = "127.0.57.210"
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path, subnet="127.0.57")
    domain = phones.user("3001@initech").domain
    per_address = zpctl_lab.inventory().model.security.auth_bans.per_address
    key = f"ip:{attacker}"
    guesses = [(f"99{i:02d}", domain, "guess") for i in range(per_address + 2)]
    try:
        bad = sipp.users_csv(tmp_path / "bad.csv", guesses)
        sipp.run("register", phones.lb, workdir=tmp_path, name="scan", local_ip=attacker,
                 local_port=5810, users=bad, calls=len(guesses), rate=5,
                 keys={"expires": "60"}, wait_s=60)
        counts = _counted_in_both_zones(zpctl_lab, key, per_address)  # both zones know it
        assert min(counts) >= per_address, counts
        # A real user's right password, from the banned address: refused.
        run = phones.register("3001@initech", ip=attacker, port=5812)
        assert run.returncode != 0
        assert "Too Many Failed Authentications" in run.received("SIP/2.0 403")[0]
        # The same user from its own address: fine.
        assert phones.register("3001@initech").returncode == 0
    finally:
        _rpcs(zpctl_lab)[0].call("htable.delete", "authfail", key)
        for user, _, _ in guesses:
            for rpc in _rpcs(zpctl_lab):
                with contextlib.suppress(RemoteFailure):
                    rpc.call("htable.delete", "authfail", f"{user}@{domain}")
