"""zpctl deploy: roll a rendered build out to the hosts with Ansible, zone by zone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.output import emit, info
from zpctl.cli.render import SWITCH_CHECK_OPT
from zpctl.cli.types import TIMEOUT
from zpctl.deploy import DeployOptions
from zpctl.deploy import deploy as run_deploy
from zpctl.deploy import history as deploy_history
from zpctl.deploy import rollback as run_rollback

STATE_OPT = click.option("--state-dir", type=click.Path(path_type=Path), envvar="ZPCTL_DEPLOY_DIR",
                         help="Deploy state: kept builds, runs, history "
                              "(default ~/.local/state/zpctl/deploy).")


class _DeployGroup(click.Group):
    """``zpctl deploy INVENTORY`` runs a deploy; ``history`` and ``rollback`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("deploy", cls=_DeployGroup)
def deploy() -> None:
    """Deploy INVENTORY to its hosts with Ansible, one zone at a time.

    \b
      zpctl deploy INVENTORY [--limit DC|DC/ZONE|HOST] [--check --diff] [--dry-run]
      zpctl deploy history
      zpctl deploy rollback [BUILD]

    Per data center: the lb first, then each zone: drain, Ansible (roles/ install the
    rendered bytes, check them with kamailio -c, restart), health check, restore.  A zone
    that fails goes back to its last good build and the rollout stops (exit 5).  Hosts come
    from INVENTORY/deploy.yml (see docs/DEPLOY.md).
    """


@deploy.command("run")
@click.argument("inventory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", help="Only this data center (DC), zone (DC/ZONE) or node.")
@click.option("--check", is_flag=True, help="Ansible check mode: what would change, change nothing.")
@click.option("--diff", is_flag=True, help="With --check: show the file differences.")
@click.option("--dry-run", is_flag=True, help="Render and print the rollout plan; touch no host.")
@click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
              help="Secrets file (default: $ZPCTL_SECRETS or ~/.config/zpctl/secrets/<platform>.yml).")
@click.option("--health-timeout", type=TIMEOUT, default=30.0, show_default=True,
              help="Seconds a deployed host has to answer its health check.")
@SWITCH_CHECK_OPT
@STATE_OPT
@pass_ctx
def deploy_run(ctx: Context, inventory: Path, limit: str | None, check: bool, diff: bool,
               dry_run: bool, secrets_file: Path | None, health_timeout: float,
               switch_check: bool, state_dir: Path | None) -> None:
    """Deploy INVENTORY (see `zpctl deploy --help`)."""
    if diff and not check:
        raise click.UsageError("--diff goes with --check")
    opts = DeployOptions(inventory=inventory, limit=limit, check=check, diff=diff,
                         dry_run=dry_run, secrets_file=secrets_file, state_dir=state_dir,
                         health_timeout=health_timeout, switch_check=switch_check)
    result = run_deploy(opts, progress=info)
    emit(ctx.output, result, text=_summary(result))


def _summary(result: dict[str, Any]) -> str:
    if result.get("dry_run"):
        lines = [f"build {result['build']}: rollout plan (nothing touched)"]
        lines += [f"  {i + 1}. {s['scope']}: {', '.join(s['nodes'])}"
                  for i, s in enumerate(result["steps"])]
        return "\n".join(lines)
    if result.get("check"):
        changed = {h: n for h, n in result["would_change"].items() if n}
        return (f"build {result['build']}: check mode, {sum(changed.values())} change(s) "
                f"would be made" + "".join(f"\n  {h}: {n}" for h, n in sorted(changed.items())))
    steps = ", ".join(f"{s['scope']} {s['result']}" for s in result["steps"])
    return f"deployed build {result['build']}: {result['changed']} change(s); {steps}"


@deploy.command("history")
@click.option("--platform", help="The platform (default: the only one in the state dir).")
@STATE_OPT
@pass_ctx
def deploy_history_cmd(ctx: Context, platform: str | None, state_dir: Path | None) -> None:
    """Every deploy and rollback, oldest first, with its build and outcome."""
    rows = deploy_history(platform, state_dir)
    if not rows:
        info("no deploy history yet" + (f" for {platform}" if platform else ""))
    table = [{"time": e.get("time"), "kind": e.get("kind"), "build": e.get("build"),
              "limit": e.get("limit") or "-", "ok": "yes" if e.get("ok") else "NO",
              "changed": e.get("changed"),
              "reason": (e.get("reason") or "").splitlines()[0][:60] if e.get("reason") else ""}
             for e in rows]
    emit(ctx.output, rows, rows=table,
         columns=["time", "kind", "build", "limit", "ok", "changed", "reason"])


@deploy.command("rollback")
@click.argument("build", required=False)
@click.option("--platform", help="The platform (default: the only one in the state dir).")
@click.option("-i", "--inventory", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Inventory for hosts and zones (default: the one the last deploy used).")
@click.option("--limit", help="Only this data center (DC), zone (DC/ZONE) or node.")
@STATE_OPT
@pass_ctx
def deploy_rollback_cmd(ctx: Context, build: str | None, platform: str | None,
                        inventory: Path | None, limit: str | None, state_dir: Path | None) -> None:
    """Roll out a kept BUILD again, zone by zone (default: the good build before the last)."""
    result = run_rollback(build, platform, inventory, state_dir, limit, progress=info)
    emit(ctx.output, result, text=_summary(result))
