"""A small PKI for the lab and tests: a CA, and certificates it issues for nodes and peers.

Production platforms bring their own CA; the inventory names the files.  Keys are EC P-256,
certificates carry the node's addresses as IP SANs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zpctl lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, name: str = "ca", cn: str = "zpctl lab CA",
            days: int = 3650) -> tuple[Path, Path]:
    """Create ``name.crt`` and ``name.key`` in ``directory`` unless they exist."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, keyf = directory / f"{name}.crt", directory / f"{name}.key"
    if crt.exists() and keyf.exists():
        return crt, keyf
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(keyf, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, keyf


def issue(ca_dir: Path, out_dir: Path, name: str, cn: str, addresses: list[str],
          ca_name: str = "ca", days: int = 825) -> tuple[Path, Path]:
    """Issue ``name.crt``/``name.key`` for ``cn`` with IP SANs, signed by the CA."""
    out_dir.mkdir(parents=True, exist_ok=True)
    crt, keyf = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    if crt.exists() and keyf.exists():
        return crt, keyf
    ca_cert = x509.load_pem_x509_certificate((ca_dir / f"{ca_name}.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / f"{ca_name}.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(cn)]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(keyf, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, keyf


def describe(path: Path) -> dict[str, object]:
    """Subject, issuer, validity and days left of one PEM certificate."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    now = dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    return {
        "file": str(path),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_left": left.days,
        "expired": left.total_seconds() <= 0,
    }


def rotate(ca_dir: Path, out_dir: Path, name: str, cn: str, addresses: list[str],
           days: int = 825) -> tuple[Path, Path]:
    """Issue ``name`` again (new key, new certificate), replacing the old pair atomically."""
    tmp = out_dir / f".{name}.new"
    tmp.mkdir(parents=True, exist_ok=True)
    crt, key = issue(ca_dir, tmp, name, cn, addresses, days=days)
    os.replace(key, out_dir / f"{name}.key")
    os.replace(crt, out_dir / f"{name}.crt")
    tmp.rmdir()
    return out_dir / f"{name}.crt", out_dir / f"{name}.key"
