"""zpctl pki: the platform's certificates (the lab CA in the lab)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from zpctl import pki
from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.cli.types import DAYS, count
from zpctl.control import Control
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.model import load_inventory
from zpctl.model.roles import KAMAILIO_ROLES

LAB_DIR = click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR",
                       help="The lab whose PKI to use (default lab directory).")


@click.group("pki")
def pki_group() -> None:
    """Certificates: status (expiry), issue and rotate node certificates.

    \b
      zpctl pki status                      # every certificate of the lab, days left
      zpctl pki status --dir /etc/zpctl/pki --warn-days 14
      zpctl pki issue INV --ca-dir /secure/ca --out pki/    # production: from your CA
      zpctl pki issue INV --csr-only --out pki/             # key + CSR for an external CA
      zpctl pki rotate lab1-lb              # lab: new key and certificate, then tls.reload
    """


@pki_group.command("status")
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="A directory of *.crt files (default: the lab's pki/).")
@click.option("--warn-days", type=count(0, 36500), default=14, show_default=True,
              help="Exit 9 when a certificate expires within this many days.")
@LAB_DIR
@pass_ctx
def status_cmd(ctx: Context, directory: Path | None, warn_days: int, lab_dir: Path | None) -> None:
    """Each certificate: subject, issuer, expiry and days left."""
    root = directory or Lab(lab_dir).dir / "pki"
    files = sorted(root.glob("*.crt")) + sorted(root.glob("*.pem"))
    if not files:
        raise ZpctlError(f"no certificates in {root}", ExitCode.USAGE)
    rows = [pki.describe(f) for f in files if "KEY" not in f.read_text(errors="replace")]
    emit(ctx.output, rows, rows=rows, columns=["file", "subject", "not_after", "days_left"])
    soon = [r for r in rows if int(str(r["days_left"])) < warn_days]
    if soon:
        raise ZpctlError(f"{len(soon)} certificate(s) expire within {warn_days} days: "
                         + ", ".join(str(r["file"]) for r in soon), ExitCode.ENVIRONMENT)


def _node(lab: Lab, name: str) -> tuple[str, list[str], str]:
    inv = lab.inventory()
    try:
        p = inv.node(name)
    except KeyError:
        raise ZpctlError(f"no node {name!r}", ExitCode.USAGE) from None
    if p.role not in KAMAILIO_ROLES:
        raise ZpctlError(f"{name} is a {p.role.value} node: no SIP TLS certificate", ExitCode.USAGE)
    return (f"{name}.{inv.model.platform.sip_domain}", sorted({p.node.address, p.node.public}),
            name)


@pki_group.command("rotate")
@click.argument("node")
@click.option("--days", type=DAYS, default=825, show_default=True)
@click.option("--dry-run", is_flag=True, help="Say what would be replaced; change nothing.")
@LAB_DIR
@pass_ctx
def rotate_cmd(ctx: Context, node: str, days: int, dry_run: bool, lab_dir: Path | None) -> None:
    """Issue NODE a new key and certificate from the lab CA and make Kamailio load it
    (JSON-RPC tls.reload): no restart, calls in progress keep their connections."""
    lab = Lab(lab_dir)
    cn, addresses, name = _node(lab, node)
    pki_dir = lab.dir / "pki"
    if dry_run:
        emit(ctx.output, {"node": name, "cn": cn, "addresses": addresses,
                          "replaces": str(pki_dir / f"{name}.crt"),
                          "then": "tls.reload"}, text=f"would reissue {pki_dir / name}.crt "
                                                     f"for {cn} and call tls.reload on {name}")
        return
    crt, _ = pki.rotate(pki_dir, pki_dir, name, cn, addresses, days=days)
    c = Control(lab.inventory())
    c.change(lab.inventory().node(name).node, "tls.reload")
    emit(ctx.output, pki.describe(crt), text=f"{name}: new certificate until "
                                            f"{pki.describe(crt)['not_after']}, reloaded")


@pki_group.command("issue")
@INVENTORY_ARG
@click.option("--limit", "limits", multiple=True, metavar="DC|DC/ZONE|NODE",
              help="Only this data center, zone or node (repeatable; default: every lb, "
                   "proxy and sbc).")
@click.option("--ca-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The issuing CA: ca.crt (then any intermediates above it) and ca.key. "
                   f"An encrypted key's passphrase comes from ${pki.CA_PASSPHRASE_ENV}.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Write NODE.key (0600) and NODE.crt, or NODE.csr, here.")
@click.option("--days", type=DAYS,
              help=f"Validity in days [default: {pki.DEFAULT_DAYS}; never beyond the CA's].")
@click.option("--csr-only", is_flag=True,
              help="Write keys and certificate signing requests for an external CA; sign nothing.")
@click.option("--force", is_flag=True, help="Replace existing files (new keys).")
@click.option("--dry-run", is_flag=True, help="List what would be written; write nothing.")
@pass_ctx
def issue_cmd(ctx: Context, inventory: Path, limits: tuple[str, ...], ca_dir: Path | None,
              out_dir: Path, days: int | None, csr_only: bool, force: bool,
              dry_run: bool) -> None:
    """Issue INVENTORY's SIP-facing nodes (lb, proxy, sbc) a new EC key and a certificate
    from your CA: CN the node name, SANs NODE.<sip_domain> and the node's addresses.

    \b
      zpctl pki issue inventories/us01 --ca-dir /secure/ca --out pki/
      zpctl pki issue INV --ca-dir CA --out pki/ --limit au-melbourne-lb --force  # one again
      zpctl pki issue INV --csr-only --out csr/     # sign NODE.csr elsewhere, save NODE.crt

    Existing files are never replaced without --force (exit 9, nothing written).  Ship
    NODE.crt, NODE.key and ca.crt to the node's paths.config_dir/pki (docs/SECURITY.md).
    """
    if csr_only and (ca_dir is not None or days is not None):
        raise click.UsageError("--csr-only signs nothing: it takes no --ca-dir or --days")
    if not csr_only and ca_dir is None:
        raise click.UsageError("--ca-dir is required (or --csr-only for an external CA)")
    plan = pki.plan_nodes(load_inventory(inventory), out_dir, limits, csr_only=csr_only)
    passphrase = os.environ.get(pki.CA_PASSPHRASE_ENV)
    ca = None if ca_dir is None else pki.load_ca(
        ca_dir, passphrase=passphrase.encode() if passphrase else None)
    rows = pki.issue_nodes(plan, ca, days or pki.DEFAULT_DAYS, force=force, dry_run=dry_run)
    if dry_run:
        files = sum(len(nc.files) for nc in plan)
        info(f"dry run: would write {files} files for {len(plan)} nodes in {out_dir}; "
             "nothing written")
    emit(ctx.output, {"dry_run": dry_run, "csr_only": csr_only,
                      "ca": None if ca is None else str(ca.path), "out": str(out_dir),
                      "nodes": rows},
         rows=rows, columns=["node", "key", "csr"] if csr_only else ["node", "key", "cert",
                                                                     "not_after"])
