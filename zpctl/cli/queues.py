"""zpctl queues: the live state of call queues on the switch tier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.cli.switch import load_live, show_fallback_plan
from zpctl.cli.types import TIMEOUT, host_ports
from zpctl.freeswitch import ESL_OVERRIDE_ENV
from zpctl.freeswitch import queues as qs

COLUMNS = ["queue", "ext", "strategy", "waiting", "answered", "abandoned", "agents in",
           "agents out", "switch"]


def _row(s: qs.QueueState) -> dict[str, Any]:
    def who(a: dict[str, Any]) -> str:
        return f"{a['agent']} ({a['state'] or a['status'] or '-'})"

    return {"queue": s.queue, "ext": s.extension, "strategy": s.strategy,
            "waiting": s.waiting, "answered": s.answered, "abandoned": s.abandoned,
            "agents in": ", ".join(who(a) for a in s.agents if a["opted_in"]) or "-",
            "agents out": ", ".join(a["agent"] for a in s.agents if not a["opted_in"]) or "-",
            "switch": s.switch}


@click.group("queues")
def queues() -> None:
    """Call queues on the switch tier: agents opted in and out, callers waiting, counts.

    \b
    zpctl queues status INVENTORY ACCOUNT [QUEUE] [--dry-run]

    A queue runs on its data center's rendezvous switch: the first switch up in the order
    every zone proxy sends rendezvous calls (the data center's switches by name).  Its
    callers, its agents' *75<queue> (opt in) and *76<queue> (opt out) and its callbacks
    all go there; `status` asks the switches in that order and reads the first that
    answers.  The inventory's agents with opted_in false start opted out.

    Exit codes: 2 unknown account, queue or switch; 6 a switch answered with an error
    (mod_callcenter or the queue missing); 7 no switch answered; 9 no ESL password.
    """


@queues.command("status")
@INVENTORY_ARG
@click.argument("account", metavar="ACCOUNT")
@click.argument("queue", metavar="[QUEUE]", required=False)
@click.option("--switch", "switch_name", metavar="NAME",
              help="Read this switch of the queue's data center (default: the rendezvous "
                   "switch, the first that answers).")
@click.option("--esl-address", envvar=ESL_OVERRIDE_ENV, metavar="HOST:PORT",
              callback=host_ports,
              help="For tests and labs: send ESL here instead of each switch's management "
                   f"address (or NAME=HOST:PORT,...). Env: {ESL_OVERRIDE_ENV}.")
@click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
              help="Secrets file holding esl_password (default: $ZPCTL_SECRETS or "
                   "~/.config/zpctl/secrets/<platform>.yml).")
@click.option("--timeout", type=TIMEOUT, default=5.0, show_default=True,
              help="Seconds to wait for a switch to answer.")
@click.option("--dry-run", is_flag=True, help="Print the ESL commands; connect to nothing.")
@pass_ctx
def status_cmd(ctx: Context, inventory: Path, account: str, queue: str | None,
               switch_name: str | None, esl_address: str | None, secrets_file: Path | None,
               timeout: float, dry_run: bool) -> None:
    """Show ACCOUNT's queues (or QUEUE): callers waiting, calls answered and abandoned since
    the switch started, and each agent: opted in (with its state: Waiting, Receiving, In a
    queue call, ...) or opted out.  With -o json|yaml: per queue, its agents with opted_in,
    tier_state, status, state and calls_answered."""
    loaded = load_live(inventory)
    refs = qs.resolve_queues(loaded, account, queue)
    if dry_run:
        groups = {dc: qs.rendezvous_targets(loaded, dc, esl_address, switch_name)
                  for dc in sorted({r.dc for r in refs})}
        steps = [s for dc, ts in groups.items()
                 for s in qs.status_plan([r for r in refs if r.dc == dc], ts)]
        show_fallback_plan(ctx, steps, groups.values())
        return
    states = qs.queue_status(loaded, account, queue, esl_override=esl_address,
                             switch=switch_name, secrets_file=secrets_file, timeout=timeout,
                             progress=info)
    emit(ctx.output, [s.as_dict() for s in states], rows=[_row(s) for s in states],
         columns=COLUMNS)
