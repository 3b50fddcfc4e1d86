"""zpctl pki: the platform's certificates (the lab CA in the lab)."""

from __future__ import annotations

from pathlib import Path

import click

from zpctl import pki
from zpctl.cli.main import Context, pass_ctx
from zpctl.cli.output import emit
from zpctl.control import Control
from zpctl.errors import ExitCode, ZpctlError
from zpctl.lab import Lab
from zpctl.model.schema import Role

LAB_DIR = click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR",
                       help="The lab whose PKI to use (default lab directory).")


@click.group("pki")
def pki_group() -> None:
    """Certificates: status (expiry), issue and rotate node certificates.

    \b
      zpctl pki status                      # every certificate of the lab, days left
      zpctl pki status --dir /etc/zpctl/pki --warn-days 14
      zpctl pki rotate lab1-lb              # new key and certificate, then tls.reload
    """


@pki_group.command("status")
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="A directory of *.crt files (default: the lab's pki/).")
@click.option("--warn-days", type=int, default=14, show_default=True,
              help="Exit 1 when a certificate expires within this many days.")
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
                         + ", ".join(str(r["file"]) for r in soon))


def _node(lab: Lab, name: str) -> tuple[str, list[str], str]:
    inv = lab.inventory()
    try:
        p = inv.node(name)
    except KeyError:
        raise ZpctlError(f"no node {name!r}", ExitCode.USAGE) from None
    if p.role not in (Role.LB, Role.PROXY, Role.SBC):
        raise ZpctlError(f"{name} is a {p.role.value} node: no SIP TLS certificate", ExitCode.USAGE)
    return (f"{name}.{inv.model.platform.sip_domain}", sorted({p.node.address, p.node.public}),
            name)


@pki_group.command("rotate")
@click.argument("node")
@click.option("--days", type=int, default=825, show_default=True)
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
