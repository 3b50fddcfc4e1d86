"""zpctl pki against the running lab: status reports expiry; rotate issues a new certificate
and Kamailio serves it after tls.reload, without a restart."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from zpctl.cli.main import main
from zpctl.lab import Lab


def _served_serial(address: str, port: int) -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=5) as raw, ctx.wrap_socket(raw) as t:
        der = t.getpeercert(binary_form=True)
    from cryptography import x509  # noqa: PLC0415

    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_status_and_rotate(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-o", "json", "pki", "status", "--lab-dir", str(zpctl_lab.dir)]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert names["lab1-lb.crt"]["days_left"] > 700
    assert names["ca.crt"]["days_left"] > 3000
    # A short warning horizon passes, a long one fails (exit 9) and names the files.
    assert main(["pki", "status", "--lab-dir", str(zpctl_lab.dir), "--warn-days", "5000"]) == 9
    assert "expire within 5000 days" in capsys.readouterr().err

    lb = zpctl_lab.inventory().node("lab1-lb").node
    before = _served_serial(lb.address, lb.ports.sips)
    assert main(["pki", "rotate", "lab1-lb", "--dry-run", "--lab-dir", str(zpctl_lab.dir)]) == 0
    assert _served_serial(lb.address, lb.ports.sips) == before
    assert main(["pki", "rotate", "lab1-lb", "--lab-dir", str(zpctl_lab.dir)]) == 0
    after = _served_serial(lb.address, lb.ports.sips)
    assert after != before
    assert main(["pki", "rotate", "lab1-a-media", "--lab-dir", str(zpctl_lab.dir)]) == 2
