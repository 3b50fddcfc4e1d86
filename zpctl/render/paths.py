"""Where a node's files live: on a production host, or inside a lab directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zpctl.model.schema import Inventory
from zpctl.model.survivable import DB_FILE as SURVIVABILITY_DB


@dataclass(frozen=True)
class NodePaths:
    config: str  # the node's rendered tree is installed here
    state: str
    shared: str  # shared by the switches of a data center
    run: str
    log: str
    db: str  # the sqlite subscriber database (engine sqlite)
    pki: str  # certificates and keys

    @property
    def survivability_db(self) -> str:
        """A survivability node's users (written by ``zpctl survivability sync``)."""
        return f"{self.state}/{SURVIVABILITY_DB}"


def node_paths(inv: Inventory, node: str, lab_root: Path | None = None) -> NodePaths:
    """Paths of ``node``: the inventory's own, or per node under ``lab_root`` in a lab."""
    if lab_root is not None:
        base = Path(lab_root)
        return NodePaths(
            config=str(base / "build" / node),
            state=str(base / "nodes" / node / "state"),
            shared=str(base / "shared"),
            run=str(base / "nodes" / node / "run"),
            log=str(base / "nodes" / node / "log"),
            db=str(base / "state" / "subscriber.sqlite"),
            pki=str(base / "pki"),
        )
    p = inv.paths
    return NodePaths(config=p.config_dir, state=p.state_dir, shared=p.shared_dir,
                     run=p.run_dir, log=p.log_dir,
                     db=f"{p.state_dir}/subscriber.sqlite", pki=f"{p.config_dir}/pki")
