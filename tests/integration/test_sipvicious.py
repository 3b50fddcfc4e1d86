"""SIPVicious against the lab's lb: svmap and svwar learn nothing, svcrack finds no
password, and the lab's users keep registering.  (SIPVicious 0.3.3 here sends from the
kernel's default loopback source whatever -b says; that source is in the management
network, so it is dropped but not banned — the ban of a scanner's source is tested from a
non-exempt address in test_flood.py.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from zpctl.clients.kamailio import KamailioRpc
from zpctl.errors import RemoteFailure
from zpctl.lab import Lab
from zpctl.lab.phones import Phones
from zpctl.testing import wait_for

pytestmark = pytest.mark.skipif(shutil.which("svmap") is None,
                                reason="sipvicious is not installed (make install)")


def _run(*argv: str) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    return out.stdout + out.stderr


def test_svmap_finds_nothing(zpctl_lab: Lab) -> None:
    # The lb (phones' entry), the sbc's public side (carriers' entry) and even a zone proxy.
    out = _run("svmap", "127.0.1.1", "127.0.1.11", "127.0.1.113")
    assert "found nothing" in out, out[-500:]


def test_svwar_enumerates_nothing(zpctl_lab: Lab) -> None:
    out = _run("svwar", "-e1000-1010", "-m", "REGISTER", "127.0.1.1")
    assert "found nothing" in out, out[-500:]


def test_svcrack_fails_and_users_keep_registering(zpctl_lab: Lab, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    user = next(u for u in zpctl_lab.users() if u.username == "1001")
    words.write_text("1234\npassword\n1001\n" + user.password + "\n")  # even the right one
    out = _run("svcrack", "-u", "1001", "-d", str(words), "127.0.1.1")
    assert "found nothing" in out, out[-500:]
    assert user.password not in out
    phones = Phones(zpctl_lab.inventory(), zpctl_lab.users(), tmp_path / "p", subnet="127.0.57")
    run = phones.register("1002@acme")
    assert run.returncode == 0


# SIPVicious 0.3.3's svcrack never hands its -b address to its scanner (a bug of that
# release), so it always sends from the default loopback source, which is management
# network.  This runs the same svcrack with that one argument passed, from an ordinary
# source, and with SVCRACK_UA set, under another User-Agent than "friendly-scanner" (what an
# attacker who knows about scanner filters does).
SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter SIPVicious is packaged for
_SVCRACK_FROM = """
import os, sys
sys.path.insert(0, "/usr/share/sipvicious")
from sipvicious import svcrack
_init = svcrack.ASipOfRedWine.__init__
def _bound(self, *args, **kwargs):
    kwargs["bindingip"] = os.environ["SVCRACK_BIND"]
    _init(self, *args, **kwargs)
svcrack.ASipOfRedWine.__init__ = _bound
if os.environ.get("SVCRACK_UA"):
    _make = svcrack.makeRequest
    def _disguised(*args, **kwargs):
        kwargs["useragent"] = os.environ["SVCRACK_UA"]
        return _make(*args, **kwargs)
    svcrack.makeRequest = _disguised
sys.argv[0] = "svcrack"
svcrack.main()
"""


def _svcrack(source: str, user: str, words: Path, domain: str, port: int,
             ua: str | None = None, timeout: float = 30.0) -> str:
    env = {**os.environ, "SVCRACK_BIND": source, "SVCRACK_UA": ua or ""}
    argv = [SYSTEM_PYTHON, "-c", _SVCRACK_FROM, "-u", user, "-d", str(words), "--domain",
            domain, "-P", str(port), "127.0.1.1"]
    try:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired as exc:  # svcrack keeps retrying a 403 for ever
        return f"{_text(exc.stdout)}{_text(exc.stderr)}\n(svcrack stopped after {timeout:g} s)"
    return out.stdout + out.stderr


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _delete(rpcs: list[KamailioRpc], table: str, keys: list[str]) -> None:
    for key in keys:
        for r in rpcs:
            with contextlib.suppress(RemoteFailure):
                r.call("htable.delete", table, key)


def test_svcrack_gets_its_source_banned_at_the_lb(zpctl_lab: Lab, tmp_path: Path) -> None:
    """svcrack as shipped, from an ordinary source: its User-Agent gives it away, the lb
    drops it and bans the source; a proper REGISTER from there then gets no answer either,
    while phones elsewhere register."""
    source = "127.0.57.97"
    inv = zpctl_lab.inventory()
    lb = inv.node("lab1-lb").node
    lb_rpc = [KamailioRpc(f"http://{lb.mgmt}:{lb.ports.mgmt_http}/RPC")]
    user = next(u for u in zpctl_lab.users() if u.username == "3002")
    words = tmp_path / "words.txt"
    words.write_text(f"1234\n{user.password}\n")
    try:
        out = _svcrack(source, "3002", words, user.domain, 5880)
        assert "found nothing" in out, out[-500:]
        assert user.password not in out
        assert lb_rpc[0].call("htable.get", "ipban", source)["item"]["value"]
        phones = Phones(inv, zpctl_lab.users(), tmp_path / "p", subnet="127.0.57")
        assert phones.register("3002@initech", ip=source, port=5881).returncode != 0
        assert phones.register("3002@initech").returncode == 0
    finally:
        _delete(lb_rpc, "ipban", [source])


def test_disguised_svcrack_gets_its_source_banned_by_the_proxies(zpctl_lab: Lab,
                                                                  tmp_path: Path) -> None:
    """svcrack posing as a desk phone, guessing across extensions from one address (a few
    words each, under the per-user limit): the address is banned in both zones, even the
    right password of a real user is refused from it, and phones elsewhere keep
    registering."""
    source = "127.0.57.99"
    inv = zpctl_lab.inventory()
    per_address = inv.model.security.auth_bans.per_address
    user = next(u for u in zpctl_lab.users() if u.username == "3002")
    words = tmp_path / "words.txt"
    words.write_text("1234\npassword\nsecret\nletmein\n")
    runs = -(-per_address // 4) + 1
    ua = "Yealink SIP-T46S 66.86.0.15"
    rpcs = [KamailioRpc(f"http://{n.mgmt}:{n.ports.mgmt_http}/RPC")
            for n in (inv.node("lab1-a-proxy").node, inv.node("lab1-b-proxy").node)]
    def counts() -> list[int]:
        out = []
        for r in rpcs:
            try:
                out.append(int(r.call("htable.get", "authfail", f"ip:{source}")["item"]["value"]))
            except RemoteFailure:  # no failure counted yet
                out.append(0)
        return out

    try:
        # Extensions nobody has, a few words each, until the address is banned (svcrack
        # retransmits, so one run may already be enough).
        for i in range(runs):
            # a few words end in about a second; banned meanwhile, svcrack retries its 403
            # for ever: 10 s of that show the ban as well as 30 s did
            _svcrack(source, f"98{i:02d}", words, user.domain, 5870 + i, ua, timeout=10)
            time.sleep(0.5)  # DMQ replication, most of the time (only decides on another run)
            if min(counts()) >= per_address:
                break
        # Both zones count the address's failures once DMQ has carried them over.
        got = wait_for(f"both zones to count {per_address} failures from {source}", lambda: (
            c if min(c := counts()) >= per_address else None), 10)
        assert min(got) >= per_address, got
        words.write_text(f"wrong\n{user.password}\n")
        out = _svcrack(source, "3002", words, user.domain, 5899, ua, timeout=10)
        assert user.password not in out, out[-500:]
        phones = Phones(inv, zpctl_lab.users(), tmp_path / "p", subnet="127.0.57")
        run = phones.register("3002@initech", ip=source, port=5898)
        assert run.returncode != 0
        assert "Too Many Failed Authentications" in run.received("SIP/2.0 403")[0]
        assert phones.register("3002@initech").returncode == 0  # from its own address
    finally:
        _delete(rpcs, "authfail", [f"ip:{source}", f"3002@{user.domain}",
                                   *(f"98{i:02d}@{user.domain}" for i in range(runs))])
