"""Certificate expiry of the PKI files the exporter is told about.

Each path is a PEM file (every certificate in it counts: CA bundles hold several) or a
directory (its ``*.crt`` and ``*.pem`` files).  Files are read at every scrape, so a renewed
certificate shows at once.  Keys are never opened: only files ending in ``.crt``/``.pem``
inside directories are read, and a given file is parsed for certificates only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from zpctl.metrics.base import Families, ZpctlCollector

CERT_SUFFIXES = (".crt", ".pem")


def certificate_files(paths: Sequence[Path]) -> list[Path]:
    """The certificate files named by ``paths`` (directories expanded), sorted, no repeats."""
    out: set[Path] = set()
    for path in paths:
        if path.is_dir():
            out.update(p for p in path.iterdir() if p.suffix in CERT_SUFFIXES and p.is_file())
        else:
            out.add(path)
    return sorted(out)


def subject(cert: x509.Certificate) -> str:
    """The certificate's common name, or its whole subject when it has none."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string()


class CertificateCollector(ZpctlCollector):
    """``zpctl_certificate_expiry_timestamp_seconds`` per certificate file and certificate."""

    name = "certificates"

    def __init__(self, paths: Sequence[Path], registry: CollectorRegistry | None = None) -> None:
        self.paths = list(paths)
        super().__init__(registry)

    def families(self) -> Families:
        return {
            "expiry": GaugeMetricFamily(
                "zpctl_certificate_expiry_timestamp_seconds", "When the certificate expires "
                "(notAfter, Unix time)", labels=["file", "subject", "serial"]),
        }

    def fill(self, fams: Families, errors: list[str]) -> None:
        for path in certificate_files(self.paths):
            try:
                certs = x509.load_pem_x509_certificates(path.read_bytes())
            except (OSError, ValueError) as exc:
                errors.append(f"{path}: {exc}")
                continue
            for cert in certs:
                fams["expiry"].add_metric([str(path), subject(cert), f"{cert.serial_number:x}"],
                                          cert.not_valid_after_utc.timestamp())
