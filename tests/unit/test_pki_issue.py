"""zpctl pki issue: node keys and certificates from a CA (or CSRs for an external one).

A temporary CA is made with zpctl.pki.make_ca; the shipped lab inventory supplies the
nodes.  What zpctl writes is checked with the openssl binary, not with the library that
wrote it: chain verification, subject, SANs, validity, key/certificate pairing, CSR
self-signature.  Error cases run through the CLI root and must give one line and the
documented exit code.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import INVENTORIES
from zpctl import pki
from zpctl.cli.main import main
from zpctl.errors import ExitCode, ZpctlError
from zpctl.model import load_inventory
from zpctl.model.schema import Role

LAB = INVENTORIES / "lab"
DAY = 86400

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _expected() -> dict[str, tuple[str, set[str]]]:
    """Every lb, proxy and sbc of the lab: its DNS name and its addresses."""
    inv = load_inventory(LAB)
    domain = inv.model.platform.sip_domain
    return {p.name: (f"{p.name}.{domain}", {p.node.address, p.node.public})
            for p in inv.nodes() if p.role in (Role.LB, Role.PROXY, Role.SBC)}


EXPECTED = _expected()


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if check:
        assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "PRIVATE KEY" not in out + err
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = out
    return code, data, err


def issue(capsys: pytest.CaptureFixture[str], ca: Path | None, out: Path,
          *extra: str) -> tuple[int, Any, str]:
    ca_args = ["--ca-dir", str(ca)] if ca is not None else []
    return run(capsys, "-o", "json", "pki", "issue", str(LAB), *ca_args, "--out", str(out),
               *extra)


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zpctl: error: "), err
    return lines[0]


def sans(path: Path, kind: str = "x509") -> set[str]:
    text = openssl(kind, "-in", str(path), "-noout", "-text").stdout
    line = text.split("X509v3 Subject Alternative Name:", 1)[1].strip().splitlines()[0]
    return {s.strip().replace("IP Address:", "IP:") for s in line.split(",")}


def pubkey(path: Path, kind: str) -> str:
    if kind == "key":
        return openssl("pkey", "-in", str(path), "-pubout").stdout
    return openssl(kind, "-in", str(path), "-noout", "-pubkey").stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    pki.make_ca(d, cn="test issuing CA")
    return d


# --- issuing ------------------------------------------------------------------------------


def test_every_sip_node_gets_a_key_and_a_certificate_that_openssl_verifies(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pki"
    code, doc, _ = issue(capsys, ca, out)
    assert code == 0
    assert doc["dry_run"] is False and doc["csr_only"] is False
    assert doc["ca"] == str(ca / "ca.crt") and doc["out"] == str(out)
    nodes = {r["node"]: r for r in doc["nodes"]}
    assert set(nodes) == set(EXPECTED)
    assert {r["role"] for r in doc["nodes"]} == {"lb", "proxy", "sbc"}
    # Only the nodes' files, nothing else (no media or switch node, no CSR, no leftovers).
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}.{ext}" for n in EXPECTED for ext in ("crt", "key"))
    assert mode(out) == 0o700
    for name, (dns, addresses) in EXPECTED.items():
        row = nodes[name]
        crt, key = out / f"{name}.crt", out / f"{name}.key"
        assert (row["cert"], row["key"], row["csr"]) == (str(crt), str(key), None)
        assert row["cn"] == name and row["dns"] == [dns]
        assert set(row["addresses"]) == addresses and row["replaced"] == []
        assert mode(key) == 0o600
        assert mode(crt) & 0o133 == 0  # 0644 less the umask: nobody else may write
        assert openssl("verify", "-CAfile", str(ca / "ca.crt"), str(crt)).stdout.strip() \
            == f"{crt}: OK"
        assert openssl("x509", "-in", str(crt), "-noout", "-subject").stdout.strip() \
            == f"subject=CN = {name}"
        assert sans(crt) == {f"DNS:{dns}"} | {f"IP:{a}" for a in addresses}
        assert pubkey(key, "key") == pubkey(crt, "x509")
        end = openssl("x509", "-in", str(crt), "-noout", "-enddate").stdout.strip()
        printed = dt.datetime.strptime(row["not_after"], "%Y-%m-%dT%H:%M:%SZ")
        assert end == f"notAfter={printed:%b %e %H:%M:%S %Y} GMT"
        # the default validity is 825 days
        openssl("x509", "-in", str(crt), "-noout", "-checkend", str(824 * DAY))
        assert openssl("x509", "-in", str(crt), "-noout", "-checkend", str(826 * DAY),
                       check=False).returncode == 1
        ext = openssl("x509", "-in", str(crt), "-noout", "-ext",
                      "basicConstraints,extendedKeyUsage").stdout
        assert "CA:FALSE" in ext
        assert "TLS Web Server Authentication" in ext
        assert "TLS Web Client Authentication" in ext
    # status reads what issue wrote
    code, rows, _ = run(capsys, "-o", "json", "pki", "status", "--dir", str(out))
    assert code == 0
    assert {Path(r["file"]).stem for r in rows} == set(EXPECTED)


def test_table_output_names_each_node_its_files_and_not_after(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = run(capsys, "pki", "issue", str(LAB), "--ca-dir", str(ca),
                        "--out", str(tmp_path), "--limit", "lab1-lb")
    assert code == 0
    header, row = text.strip().splitlines()
    assert header.split() == ["NODE", "KEY", "CERT", "NOT_AFTER"]
    name, key, crt, not_after = row.split()
    assert (name, key, crt) == ("lab1-lb", str(tmp_path / "lab1-lb.key"),
                                str(tmp_path / "lab1-lb.crt"))
    assert not_after == pki.describe(tmp_path / "lab1-lb.crt")["not_after"]


def test_days_sets_the_validity(ca: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _ = issue(capsys, ca, tmp_path, "--limit", "lab2-lb", "--days", "30")
    assert code == 0
    crt = tmp_path / "lab2-lb.crt"
    openssl("x509", "-in", str(crt), "-noout", "-checkend", str(29 * DAY))
    assert openssl("x509", "-in", str(crt), "-noout", "-checkend", str(31 * DAY),
                   check=False).returncode == 1
    assert doc["nodes"][0]["not_after"] == pki.describe(crt)["not_after"]


def test_a_certificate_never_outlives_its_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             caplog: pytest.LogCaptureFixture) -> None:
    short = tmp_path / "ca"
    pki.make_ca(short, days=10)
    code, doc, _ = issue(capsys, short, tmp_path / "out", "--limit", "lab1-lb")
    assert code == 0
    assert doc["nodes"][0]["not_after"] == pki.describe(short / "ca.crt")["not_after"]
    assert "the CA expires on" in caplog.text
    crt = tmp_path / "out" / "lab1-lb.crt"
    openssl("verify", "-CAfile", str(short / "ca.crt"), str(crt))
    assert openssl("x509", "-in", str(crt), "-noout", "-checkend", str(11 * DAY),
                   check=False).returncode == 1


def _ca_cert(cn: str, key: ec.EllipticCurvePrivateKey, path_length: int,
             issuer: x509.Certificate | None = None,
             issuer_key: ec.EllipticCurvePrivateKey | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name)
            .issuer_name(issuer.subject if issuer else name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1000))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(issuer_key or key, hashes.SHA256()))


def test_an_intermediate_ca_is_sent_with_the_certificate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ca.crt holds the intermediate, then the root; ca.key is the intermediate's."""
    root_key, inter_key = ec.generate_private_key(ec.SECP384R1()), \
        ec.generate_private_key(ec.SECP256R1())
    root = _ca_cert("test root", root_key, 1)
    inter = _ca_cert("test intermediate", inter_key, 0, root, root_key)
    pem = serialization.Encoding.PEM
    (tmp_path / "root.crt").write_bytes(root.public_bytes(pem))
    ca_dir = tmp_path / "intermediate"
    ca_dir.mkdir()
    (ca_dir / "ca.crt").write_bytes(inter.public_bytes(pem) + root.public_bytes(pem))
    (ca_dir / "ca.key").write_bytes(inter_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    code, _, _ = issue(capsys, ca_dir, tmp_path / "out", "--limit", "lab1-lb")
    assert code == 0
    crt = tmp_path / "out" / "lab1-lb.crt"
    # leaf and intermediate, not the root: a client that trusts the root verifies the file
    assert crt.read_text().count("BEGIN CERTIFICATE") == 2
    assert openssl("verify", "-CAfile", str(tmp_path / "root.crt"), "-untrusted", str(crt),
                   str(crt)).stdout.strip() == f"{crt}: OK"
    # without the intermediate the leaf alone does not verify against the root
    leaf = tmp_path / "leaf.crt"
    leaf.write_text(crt.read_text().split("-----END CERTIFICATE-----")[0]
                    + "-----END CERTIFICATE-----\n")
    assert openssl("verify", "-CAfile", str(tmp_path / "root.crt"), str(leaf),
                   check=False).returncode != 0
    assert "test intermediate" in openssl("x509", "-in", str(crt), "-noout",
                                          "-issuer").stdout


def test_an_encrypted_ca_key_needs_its_passphrase(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    enc = tmp_path / "enc"
    enc.mkdir()
    shutil.copy(ca / "ca.crt", enc / "ca.crt")
    key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)
    (enc / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"open sesame")))
    monkeypatch.delenv(pki.CA_PASSPHRASE_ENV, raising=False)
    code, _, err = issue(capsys, enc, tmp_path / "out", "--limit", "lab1-lb")
    assert code == ExitCode.ENVIRONMENT
    assert "encrypted" in error_line(err) and pki.CA_PASSPHRASE_ENV in err
    monkeypatch.setenv(pki.CA_PASSPHRASE_ENV, "wrong")
    code, _, err = issue(capsys, enc, tmp_path / "out", "--limit", "lab1-lb")
    assert code == ExitCode.ENVIRONMENT
    assert "passphrase is wrong" in error_line(err)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(pki.CA_PASSPHRASE_ENV, "open sesame")
    code, _, _ = issue(capsys, enc, tmp_path / "out", "--limit", "lab1-lb")
    assert code == 0
    openssl("verify", "-CAfile", str(ca / "ca.crt"), str(tmp_path / "out" / "lab1-lb.crt"))


# --- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(("limits", "nodes"), [
    (["lab1-a-sbc"], {"lab1-a-sbc"}),
    (["lab1/b"], {"lab1-b-proxy", "lab1-b-sbc"}),
    (["lab2"], {n for n in EXPECTED if n.startswith("lab2-")}),
    (["lab1-lb", "lab2/a", "lab1-lb"], {"lab1-lb", "lab2-a-proxy", "lab2-a-sbc"}),
])
def test_limit_selects_nodes_like_deploy_does(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], limits: list[str],
        nodes: set[str]) -> None:
    code, doc, _ = issue(capsys, ca, tmp_path, *[a for n in limits for a in ("--limit", n)])
    assert code == 0
    assert {r["node"] for r in doc["nodes"]} == nodes
    assert {p.stem for p in tmp_path.iterdir()} == nodes


# --- CSRs for an external CA --------------------------------------------------------------


def test_csr_only_writes_keys_and_requests_openssl_verifies(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _ = issue(capsys, None, tmp_path, "--csr-only", "--limit", "lab1")
    assert code == 0
    assert doc["csr_only"] is True and doc["ca"] is None
    expected = {n: v for n, v in EXPECTED.items() if n.startswith("lab1-")}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.{ext}" for n in expected for ext in ("csr", "key"))
    for row in doc["nodes"]:
        name = row["node"]
        dns, addresses = expected[name]
        csr, key = tmp_path / f"{name}.csr", tmp_path / f"{name}.key"
        assert (row["csr"], row["key"], row["cert"], row["not_after"]) == \
            (str(csr), str(key), None, None)
        assert mode(key) == 0o600
        r = openssl("req", "-in", str(csr), "-noout", "-verify")
        assert "verify OK" in r.stdout + r.stderr  # the exit code is 0 even on a failure
        assert openssl("req", "-in", str(csr), "-noout", "-subject").stdout.strip() \
            == f"subject=CN = {name}"
        assert sans(csr, "req") == {f"DNS:{dns}"} | {f"IP:{a}" for a in addresses}
        assert pubkey(key, "key") == pubkey(csr, "req")


def test_a_tampered_csr_fails_openssl_verification(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The check above must be able to fail: the same request with its subject changed (one
    # byte, same length, still well-formed DER) no longer matches its signature.
    assert issue(capsys, None, tmp_path, "--csr-only", "--limit", "lab1-lb")[0] == 0
    der = x509.load_pem_x509_csr((tmp_path / "lab1-lb.csr").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    good, bad = tmp_path / "good.der", tmp_path / "bad.der"
    good.write_bytes(der)
    bad.write_bytes(der.replace(b"lab1-lb", b"lab1-lc", 1))
    assert openssl("req", "-inform", "DER", "-in", str(bad), "-noout", "-subject").stdout.strip() \
        == "subject=CN = lab1-lc"
    # OpenSSL 3.0's `req -verify` exits 0 either way: its verdict is the message.
    r = openssl("req", "-inform", "DER", "-in", str(good), "-noout", "-verify")
    assert "verify OK" in r.stdout + r.stderr
    r = openssl("req", "-inform", "DER", "-in", str(bad), "-noout", "-verify", check=False)
    assert "verify OK" not in r.stdout + r.stderr
    assert "verify failure" in r.stdout + r.stderr or r.returncode != 0


# --- dry run and overwriting --------------------------------------------------------------


def test_dry_run_lists_the_files_and_writes_nothing(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pki"
    code, doc, err = issue(capsys, ca, out, "--dry-run")
    assert code == 0
    assert not out.exists()
    assert doc["dry_run"] is True
    assert {r["node"] for r in doc["nodes"]} == set(EXPECTED)
    assert all(r["cert"] == str(out / f"{r['node']}.crt") and r["not_after"]
               for r in doc["nodes"])
    assert "nothing written" in err
    code, doc, _ = issue(capsys, None, out, "--csr-only", "--dry-run")
    assert code == 0
    assert not out.exists()
    assert all(r["csr"] == str(out / f"{r['node']}.csr") for r in doc["nodes"])


def test_existing_files_are_kept_without_force_and_replaced_with_it(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert issue(capsys, ca, tmp_path, "--limit", "lab1/a")[0] == 0
    before = snapshot(tmp_path)
    # another node's files are new, but nothing at all is written while any file exists
    code, _, err = issue(capsys, ca, tmp_path, "--limit", "lab1")
    assert code == ExitCode.ENVIRONMENT == 9
    line = error_line(err)
    assert "lab1-a-proxy.key" in line and "--force" in line
    assert snapshot(tmp_path) == before
    # a CSR would replace the key the certificate belongs to: refused as well
    assert issue(capsys, None, tmp_path, "--csr-only", "--limit", "lab1-a-sbc")[0] == 9
    assert snapshot(tmp_path) == before
    # the dry run with --force names what it would replace and replaces nothing
    code, doc, _ = issue(capsys, ca, tmp_path, "--limit", "lab1-a-sbc", "--force", "--dry-run")
    assert code == 0
    assert doc["nodes"][0]["replaced"] == [str(tmp_path / "lab1-a-sbc.key"),
                                           str(tmp_path / "lab1-a-sbc.crt")]
    assert snapshot(tmp_path) == before
    code, doc, _ = issue(capsys, ca, tmp_path, "--limit", "lab1-a-sbc", "--force")
    assert code == 0
    assert doc["nodes"][0]["replaced"] == [str(tmp_path / "lab1-a-sbc.key"),
                                           str(tmp_path / "lab1-a-sbc.crt")]
    after = snapshot(tmp_path)
    assert after["lab1-a-sbc.key"] != before["lab1-a-sbc.key"]
    assert after["lab1-a-sbc.crt"] != before["lab1-a-sbc.crt"]
    assert after["lab1-a-proxy.key"] == before["lab1-a-proxy.key"]
    assert mode(tmp_path / "lab1-a-sbc.key") == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    crt = tmp_path / "lab1-a-sbc.crt"
    openssl("verify", "-CAfile", str(ca / "ca.crt"), str(crt))
    assert pubkey(tmp_path / "lab1-a-sbc.key", "key") == pubkey(crt, "x509")


def test_a_loose_key_file_is_replaced_with_mode_0600(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "lab1-lb.key"
    key.write_text("old\n")
    key.chmod(0o644)
    (tmp_path / ".lab1-lb.key.tmp").write_text("stale temporary file\n")
    os.chmod(tmp_path / ".lab1-lb.key.tmp", 0o666)
    assert issue(capsys, ca, tmp_path, "--limit", "lab1-lb", "--force")[0] == 0
    assert mode(key) == 0o600
    assert "PRIVATE KEY" in key.read_text()
    assert not (tmp_path / ".lab1-lb.key.tmp").exists()


def test_the_cas_own_files_are_never_targets(ca: Path, tmp_path: Path) -> None:
    d = tmp_path / "ca"
    shutil.copytree(ca, d)
    authority = pki.load_ca(d)
    clash = pki.NodeCert(node="ca", role="lb", cn="ca", dns=("ca.example.net",),
                         addresses=("192.0.2.1",), key=d / "ca.key", cert=d / "ca.crt", csr=None)
    before = snapshot(d)
    with pytest.raises(ZpctlError) as exc:
        pki.issue_nodes([clash], authority, force=True)
    assert exc.value.exit_code == ExitCode.USAGE
    assert snapshot(d) == before


# --- bad input ----------------------------------------------------------------------------


def test_unknown_and_non_sip_nodes_are_usage_errors(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = issue(capsys, ca, tmp_path, "--limit", "lab9-lb")
    assert code == ExitCode.USAGE
    assert "'lab9-lb': not a data center, DC/ZONE or node" in error_line(err)
    code, _, err = issue(capsys, ca, tmp_path, "--limit", "lab1-a-media")
    assert code == ExitCode.USAGE
    assert "lab1-a-media is a media node" in error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_missing_ca_files_are_environment_errors(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(ca / "ca.crt", half / "ca.crt")
    code, _, err = issue(capsys, half, tmp_path / "out", "--limit", "lab1-lb")
    assert code == ExitCode.ENVIRONMENT
    assert error_line(err) == f"zpctl: error: {half / 'ca.key'}: no such file (the CA key)"
    code, _, err = issue(capsys, tmp_path / "nowhere", tmp_path / "out")
    assert code == ExitCode.ENVIRONMENT
    assert "nowhere/ca.crt: no such file" in error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("crt", "key", "message"), [
    ("ca", b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
     "not a readable PEM private key"),
    ("ca", b"", "not a readable PEM private key"),
    ("ca", "other", "is not the key of"),
    ("garbage", "ca", "not a PEM certificate"),
    ("leaf", "leaf", "not a CA certificate"),
])
def test_unusable_ca_files_are_environment_errors(
        ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], crt: str,
        key: str | bytes, message: str) -> None:
    other = tmp_path / "other"
    pki.make_ca(other)
    pki.issue(ca, tmp_path / "leaf", "leaf", "leaf.example.net", ["192.0.2.1"])
    files = {"ca": ca, "other": other, "leaf": tmp_path / "leaf"}
    bad = tmp_path / "bad"
    bad.mkdir()
    if crt == "garbage":
        (bad / "ca.crt").write_text("hello\n")
    else:
        shutil.copy(files[crt] / f"{crt if crt == 'leaf' else 'ca'}.crt", bad / "ca.crt")
    if isinstance(key, bytes):
        (bad / "ca.key").write_bytes(key)
    else:
        shutil.copy(files[key] / f"{key if key == 'leaf' else 'ca'}.key", bad / "ca.key")
    code, _, err = issue(capsys, bad, tmp_path / "out", "--limit", "lab1-lb")
    assert code == ExitCode.ENVIRONMENT
    assert message in error_line(err)
    assert not (tmp_path / "out").exists()


def test_flag_mistakes_and_bad_inventories(ca: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert issue(capsys, None, tmp_path)[0] == ExitCode.USAGE  # no --ca-dir, no --csr-only
    assert issue(capsys, ca, tmp_path, "--csr-only")[0] == ExitCode.USAGE
    assert issue(capsys, None, tmp_path, "--csr-only", "--days", "9")[0] == ExitCode.USAGE
    assert issue(capsys, ca, tmp_path, "--days", "0")[0] == ExitCode.USAGE
    code, _, err = run(capsys, "pki", "issue", str(tmp_path / "no-inventory"), "--ca-dir",
                       str(ca), "--out", str(tmp_path))
    assert code == ExitCode.INVALID_INVENTORY
    assert "not an inventory directory" in err
    assert list(tmp_path.iterdir()) == []
