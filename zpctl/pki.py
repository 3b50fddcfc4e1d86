"""Certificates: a small PKI for the lab and tests, and node certificates from a production CA.

The lab makes its own CA (``make_ca``) and issues each node and peer a certificate
(``issue``).  Production platforms bring their own CA (``zpctl pki issue``): ``plan_nodes``
picks the SIP-facing nodes of an inventory and names their files, ``load_ca`` reads and
checks the CA's ``ca.crt``/``ca.key``, and ``issue_nodes`` gives each node a new key and a
certificate from that CA, or only a key and a CSR for an external CA.  Keys are EC P-256 and
mode 0600; certificates carry the node's addresses as IP SANs.  Key material goes to files
only, never into what these functions return.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zpctl.errors import EnvironmentProblem, ExitCode, ZpctlError
from zpctl.model import LoadedInventory, PlacedNode
from zpctl.model.roles import KAMAILIO_ROLES

log = logging.getLogger(__name__)


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


# --- node certificates from a production CA ----------------------------------------------------

SIP_ROLES = KAMAILIO_ROLES
CA_PASSPHRASE_ENV = "ZPCTL_SECRET_CA_KEY_PASSPHRASE"  # noqa: S105 - a variable name
DEFAULT_DAYS = 825

CAKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey \
    | ed448.Ed448PrivateKey


@dataclass(frozen=True)
class NodeCert:
    """One SIP-facing node: the names its certificate carries and the files written for it."""

    node: str
    role: str
    cn: str
    dns: tuple[str, ...]
    addresses: tuple[str, ...]
    key: Path
    cert: Path | None  # None when only a CSR is written
    csr: Path | None

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.key, self.cert, self.csr) if p is not None)

    def existing(self) -> list[Path]:
        """The files of this node that are already there (and would be replaced)."""
        return [p for p in self.files if os.path.lexists(p)]


@dataclass(frozen=True)
class CA:
    """An issuing CA: its certificate, its key and the intermediates a server sends with a leaf."""

    cert: x509.Certificate
    key: CAKey
    chain: tuple[x509.Certificate, ...]
    path: Path
    key_path: Path


def sip_nodes(inv: LoadedInventory, limits: Sequence[str] = ()) -> list[PlacedNode]:
    """The lb, proxy and sbc nodes of ``inv``, in inventory order, within ``limits`` (each a
    data center, ``DC/ZONE`` or a node name, as ``deploy --limit``; none: every node)."""
    nodes = list(inv.nodes())
    if not limits:
        return [p for p in nodes if p.role in SIP_ROLES]
    chosen: set[str] = set()
    for limit in limits:
        match = inv.within(limit)
        sip = [p for p in match if p.role in SIP_ROLES]
        if not sip and [p.name for p in match] == [limit]:
            raise ZpctlError(f"{limit} is a {match[0].role.value} node: no SIP TLS certificate "
                             "(only lb, proxy and sbc nodes get one)", ExitCode.USAGE)
        if not sip:
            raise ZpctlError(f"--limit {limit!r}: no lb, proxy or sbc node there", ExitCode.USAGE)
        chosen.update(p.name for p in sip)
    return [p for p in nodes if p.name in chosen]


def plan_nodes(inv: LoadedInventory, out_dir: Path, limits: Sequence[str] = (),
               csr_only: bool = False) -> list[NodeCert]:
    """What ``write_node`` writes for each SIP-facing node: CN the node name, SANs its DNS
    name under the platform's sip_domain and its service and public addresses."""
    domain = inv.model.platform.sip_domain
    return [NodeCert(node=p.name, role=p.role.value, cn=p.name, dns=(f"{p.name}.{domain}",),
                     addresses=tuple(sorted({p.node.address, p.node.public})),
                     key=out_dir / f"{p.name}.key",
                     cert=None if csr_only else out_dir / f"{p.name}.crt",
                     csr=out_dir / f"{p.name}.csr" if csr_only else None)
            for p in sip_nodes(inv, limits)]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EnvironmentProblem(f"{path}: no such file (the {what})") from None
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_ca(ca_dir: Path, name: str = "ca", passphrase: bytes | None = None,
            now: dt.datetime | None = None) -> CA:
    """Read and check ``name.crt`` (the CA, optionally followed by its issuers) and
    ``name.key`` (unencrypted, or encrypted with ``passphrase``)."""
    crt_path, key_path = ca_dir / f"{name}.crt", ca_dir / f"{name}.key"
    crt_data = _read(crt_path, "CA certificate")
    key_data = _read(key_path, "CA key")
    try:
        certs = x509.load_pem_x509_certificates(crt_data)
    except ValueError:
        raise EnvironmentProblem(f"{crt_path}: not a PEM certificate") from None
    cert = certs[0]
    try:
        key = serialization.load_pem_private_key(key_data, passphrase)
    except TypeError:
        if passphrase is None:
            raise EnvironmentProblem(f"{key_path}: the CA key is encrypted: give its passphrase "
                                     f"in ${CA_PASSPHRASE_ENV}") from None
        raise EnvironmentProblem(f"{key_path}: the CA key is not encrypted: unset "
                                 f"${CA_PASSPHRASE_ENV}") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (or the passphrase is wrong)" if passphrase is not None else ""
        raise EnvironmentProblem(f"{key_path}: not a readable PEM private key{hint}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                      | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise EnvironmentProblem(f"{key_path}: a {type(key).__name__} cannot sign certificates "
                                 "here (RSA, EC, Ed25519 or Ed448)")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise EnvironmentProblem(f"{key_path} is not the key of {crt_path}")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        is_ca = is_ca and ku.key_cert_sign
    except x509.ExtensionNotFound:
        pass
    if not is_ca:
        raise EnvironmentProblem(f"{crt_path}: not a CA certificate (basicConstraints CA:TRUE "
                                 "and keyCertSign are needed)")
    now = now or dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise EnvironmentProblem(f"{crt_path}: the CA expired on "
                                 f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    # What a server sends after its own certificate: the intermediates, never a root.
    chain = tuple(c for c in certs if c.issuer != c.subject)
    return CA(cert, key, chain, crt_path, key_path)


def validity(ca: CA, days: int, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Not-before and not-after of a certificate for ``days``, never beyond the CA's own."""
    now = now or dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    return now - dt.timedelta(minutes=5), not_after


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_pair(files: Sequence[tuple[Path, bytes, int]]) -> None:
    # Each file is written beside its target, then renamed: a reader sees the old file or the
    # new one, and a key is 0600 from its first byte (a stale temporary file is removed, never
    # reused with its old mode).  The renames happen only once every file is written.
    current = files[0][0]
    try:
        for current, data, mode in files:
            _tmp(current).unlink(missing_ok=True)
            fd = os.open(_tmp(current), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for current, _, _ in files:
            os.replace(_tmp(current), current)
    except OSError as exc:
        for path, _, _ in files:
            _tmp(path).unlink(missing_ok=True)
        raise EnvironmentProblem(f"{current}: cannot write: {exc.strerror}") from None


def _extensions(nc: NodeCert) -> list[tuple[x509.ExtensionType, bool]]:
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in nc.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in nc.addresses]
    return [(x509.SubjectAlternativeName(sans), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                    ExtendedKeyUsageOID.CLIENT_AUTH]), False)]


def _sign_hash(key: CAKey) -> hashes.SHA256 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None  # EdDSA signs the message itself
    return hashes.SHA256()


def _certificate(nc: NodeCert, key: ec.EllipticCurvePrivateKey, ca: CA, days: int,
                 now: dt.datetime | None) -> x509.Certificate:
    start, end = validity(ca, days, now)
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, nc.cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(aki, critical=False)
    )
    for ext, critical in _extensions(nc):
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(ca.key, _sign_hash(ca.key))


def _request(nc: NodeCert, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, nc.cn)]))
    for ext, critical in _extensions(nc):
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256())


def describe_plan(nc: NodeCert) -> dict[str, object]:
    """``nc`` as plain data: node, role, names and file paths."""
    return {"node": nc.node, "role": nc.role, "cn": nc.cn, "dns": list(nc.dns),
            "addresses": list(nc.addresses), "key": str(nc.key),
            "cert": None if nc.cert is None else str(nc.cert),
            "csr": None if nc.csr is None else str(nc.csr)}


def write_node(nc: NodeCert, ca: CA | None, days: int = DEFAULT_DAYS,
               now: dt.datetime | None = None) -> dict[str, object]:
    """Write a new key for ``nc`` and its certificate signed by ``ca`` (or, when ``nc`` was
    planned with ``csr_only``, a CSR); what was written, never key material."""
    replaced = [str(p) for p in nc.existing()]
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    not_after: str | None = None
    if nc.csr is not None:
        _write_pair([(nc.key, key_pem, 0o600),
                     (nc.csr, _request(nc, key).public_bytes(serialization.Encoding.PEM), 0o644)])
    else:
        if ca is None or nc.cert is None:
            raise ZpctlError(f"{nc.node}: a certificate needs a CA", ExitCode.USAGE)
        cert = _certificate(nc, key, ca, days, now)
        # A server sends its certificate and the intermediates: they go in one file.
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *ca.chain))
        _write_pair([(nc.key, key_pem, 0o600), (nc.cert, pem, 0o644)])
        not_after = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**describe_plan(nc), "not_after": not_after, "replaced": replaced}


def issue_nodes(plan: Sequence[NodeCert], ca: CA | None, days: int = DEFAULT_DAYS,
                force: bool = False, dry_run: bool = False,
                now: dt.datetime | None = None) -> list[dict[str, object]]:
    """Write every node of ``plan`` (or, with ``dry_run``, only say what would be written).

    Existing files stop everything before anything is written, unless ``force``: a half
    issued set, some nodes new and some old, is worse than none.
    """
    if ca is not None:
        own = {ca.path.resolve(), ca.key_path.resolve()}
        clash = [p for nc in plan for p in nc.files if p.resolve() in own]
        if clash:
            raise ZpctlError(f"{clash[0]} is the CA's own file: choose another --out",
                             ExitCode.USAGE)
    existing = [p for nc in plan for p in nc.existing()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise EnvironmentProblem(f"{len(existing)} file(s) exist: {shown}{more}; nothing "
                                 "written (--force replaces them)")
    end = None if ca is None else validity(ca, days, now)[1]
    if ca is not None and plan and end == ca.cert.not_valid_after_utc:
        log.warning("the CA expires on %s, in less than %d days: the certificates end then",
                    f"{end:%Y-%m-%d}", days)
    if dry_run:
        return [{**describe_plan(nc),
                 "not_after": None if end is None or nc.cert is None
                 else f"{end:%Y-%m-%dT%H:%M:%SZ}",
                 "replaced": [str(p) for p in nc.existing()]} for nc in plan]
    dirs = sorted({nc.key.parent for nc in plan})
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise EnvironmentProblem(f"{d}: cannot create: {exc.strerror}") from None
    return [write_node(nc, ca, days, now) for nc in plan]
