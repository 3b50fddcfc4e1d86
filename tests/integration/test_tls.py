"""SIP over TLS at the lb (phones, apps) and at the sbc's peer side (BYOC-P, mutual TLS),
checked with a real TLS scanner (sslscan): nothing below TLS 1.2, no weak cipher, AES-256
preferred, and the Kamailio process still answering after the scan (kamailio issue 3791
reports 5.6.3 on OpenSSL 3 crashing under scans)."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from zpctl.clients.probes import sip_options
from zpctl.lab import Lab

pytestmark = pytest.mark.skipif(shutil.which("sslscan") is None,
                                reason="sslscan is not installed (make install)")

WEAK = re.compile(r"RC4|DES|NULL|EXP|MD5|anon|ADH|AECDH|PSK|SRP|CBC|SHA(?!\d)")


def _scan(target: str, extra: list[str]) -> str:
    """sslscan's report.  A scanner that dies of a signal says nothing of the target (its
    buffered report is lost with it): it gets one more run.  A report with no protocol
    section fails the test with what sslscan said on stderr and its exit status."""
    for _attempt in range(2):
        out = subprocess.run(["sslscan", "--no-colour", "--no-heartbleed", *extra, target],
                             capture_output=True, text=True, timeout=180, check=False)
        if out.returncode >= 0:
            break
    assert re.search(r"^TLSv1\.2\s", out.stdout, re.M), (
        f"sslscan {target} exit {out.returncode}: {out.stderr.strip()[-600:]!r} "
        f"{out.stdout.strip()[-600:]!r}")
    return out.stdout


def _check(text: str) -> dict[str, object]:
    protocols = dict(re.findall(r"^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)", text, re.M))
    accepted = re.findall(r"^(?:Preferred|Accepted)\s+(TLSv1\.[23])\s+(\d+) bits\s+(\S+)", text,
                          re.M)
    preferred = re.findall(r"^Preferred\s+(TLSv1\.[23])\s+(\d+) bits\s+(\S+)", text, re.M)
    return {"protocols": protocols, "accepted": accepted, "preferred": preferred}


@pytest.mark.parametrize("node", ["lab1-lb", "lab1-a-sbc"])
def test_tls_scan(zpctl_lab: Lab, node: str) -> None:
    inv = zpctl_lab.inventory()
    n = inv.node(node).node
    extra: list[str] = []
    if node.endswith("sbc"):
        # Mutual TLS: the scanner presents the premises SBC's certificate.
        home = zpctl_lab.dir / "nodes" / "premises-initech-pbx-0" / "etc"
        extra = [f"--certs={home / 'peer.crt'}", f"--pk={home / 'peer.key'}"]
    result = _check(_scan(f"{n.public}:{n.ports.sips}", extra))
    assert result["protocols"] == {"SSLv2": "disabled", "SSLv3": "disabled",
                                   "TLSv1.0": "disabled", "TLSv1.1": "disabled",
                                   "TLSv1.2": "enabled", "TLSv1.3": "enabled"}, result
    accepted = result["accepted"]
    assert accepted, result
    assert [c for _, _, c in accepted if WEAK.search(c)] == []
    assert all(int(bits) >= 128 for _, bits, _ in accepted)
    assert all(int(bits) == 256 for _, bits, _ in result["preferred"]), result  # AES-256 first
    # The process survived the scan.
    assert sip_options(n.address, n.ports.sip).status == 200


def test_register_over_tls_through_the_lb(zpctl_lab: Lab) -> None:
    lb = zpctl_lab.inventory().node("lab1-lb").node
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(zpctl_lab.dir / "pki" / "ca.crt")
    ctx.check_hostname = False
    with socket.create_connection((lb.address, lb.ports.sips), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        port = tls.getsockname()[1]
        tls.sendall((
            "REGISTER sip:acme.lab.zpctl.test SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKtls1;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:1001@acme.lab.zpctl.test>;tag=t1\r\n"
            "To: <sip:1001@acme.lab.zpctl.test>\r\nCall-ID: tls-register-1\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:1001@127.0.0.1:{port};transport=tls>\r\nExpires: 60\r\n"
            "Content-Length: 0\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4000)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"SIP/2.0 401"), data[:200]
    assert b'realm="acme.lab.zpctl.test"' in data


def test_certificates_are_the_lab_pki(zpctl_lab: Lab) -> None:
    assert (zpctl_lab.dir / "pki" / "lab1-lb.crt").exists()
    key = zpctl_lab.dir / "pki" / "lab1-lb.key"
    assert key.stat().st_mode & 0o077 == 0
    assert Path(zpctl_lab.dir / "build" / "lab1-lb" / "kamailio" / "tls.cfg").exists()
