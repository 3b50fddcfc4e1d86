"""zpctl exporter: serve the platform metrics that no daemon exports itself."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import info
from zpctl.cli.types import TIMEOUT
from zpctl.errors import ExitCode, ZpctlError
from zpctl.metrics.exporter import DEFAULT_LISTEN, ExporterOptions, build_registry, scrape, serve
from zpctl.metrics.quality import DEFAULT_MAX_CALLS
from zpctl.metrics.sources import Clients
from zpctl.model import load_inventory


def _lab_certs(lab_dir: Path) -> list[Path]:
    pki = lab_dir / "pki"
    if not pki.is_dir():
        raise ZpctlError(f"no lab PKI in {pki}; is {lab_dir} a lab directory (zpctl lab up)?",
                         ExitCode.ENVIRONMENT)
    return [pki]


@click.command("exporter")
@INVENTORY_ARG
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="ADDR:PORT",
              help="Where to serve GET /metrics ([v6]:PORT for IPv6).")
@click.option("--lab-dir", type=click.Path(path_type=Path, file_okay=False),
              help="A lab directory: watch the expiry of its PKI (pki/*.crt, peer-cas.pem).")
@click.option("--cert", "certs", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="A PEM certificate file or a directory of them to watch (repeatable).")
@click.option("--timeout", type=TIMEOUT, default=1.0, show_default=True,
              help="Seconds to wait for each node's answer (JSON-RPC, ng, SIP OPTIONS).")
@click.option("--max-calls", type=click.IntRange(1, 10000), default=DEFAULT_MAX_CALLS,
              show_default=True, help="Calls queried for quality per media node per scrape.")
@click.option("--per-call/--no-per-call", default=True, show_default=True,
              help="Export zpctl_call_* series per call (label call_id).")
@click.option("--once", is_flag=True,
              help="Scrape once, print the metrics on stdout and exit (serve nothing).")
def exporter_cmd(inventory: Path, listen: str, lab_dir: Path | None, certs: tuple[Path, ...],
                 timeout: float, max_calls: int, per_call: bool, once: bool) -> None:
    """Serve the metrics of INVENTORY's platform that no daemon exports itself.

    \b
    Read live at each scrape, from the management network:
      zone and data-center health   SIP OPTIONS, rtpengine ping, the lbs' dispatcher state
      registrations per account     usrloc (ul.dump) of every proxy
      call attempts and failures    dialog statistics (answer-seizure ratio in Prometheus)
      call quality                  rtpengine ng list/query: MOS, jitter, loss, RTT
      certificate expiry            the PEM files of --cert / --lab-dir
      switches and call queues      FreeSWITCH over ESL, once its source is wired in
                                    (zpctl.metrics.esl_source.esl_switch_source)
    Kamailio (xhttp_prom) and rtpengine serve their own /metrics; the rendered
    _monitoring/prometheus/prometheus.yml scrapes all three.  See docs/MONITORING.md.

    \b
      zpctl exporter inventories/lab --lab-dir ~/.local/state/zpctl/lab
      zpctl exporter inventories/lab --once | grep zpctl_zone_up
    """
    inv = load_inventory(inventory)
    paths = list(certs) + (_lab_certs(lab_dir) if lab_dir is not None else [])
    options = ExporterOptions(certs=paths, max_calls=max_calls, per_call=per_call)
    if once:
        click.echo(scrape(build_registry(inv, Clients.live(timeout), options)), nl=False)
        return
    # Ctrl-C and SIGTERM must reach this (the main) thread: one delivered to another thread
    # (the switches' ESL reader the registry starts, the server and its handlers) would
    # leave the wait below asleep for up to an hour.  Every thread started from here on
    # inherits the blocked mask; only this thread unblocks it.
    stopping = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    try:
        registry = build_registry(inv, Clients.live(timeout), options)
        url, _thread = serve(registry, listen)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
    info(f"exporter: serving {inv.model.platform.name} metrics on {url} (Ctrl-C to stop)")
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop.wait(3600):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    info("exporter: stopped")
