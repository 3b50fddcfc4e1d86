"""What the lab simulates around the platform: carriers (SIPp UAS that answer and echo RTP),
customer PBXs, and BYOC-P premises SBCs (Kamailio over mutual TLS) -- their processes,
configs and certificates.  Only peers on loopback addresses are simulated."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from zpctl import pki, sipp
from zpctl.lab.services import Service, bound_health, sip_health, which
from zpctl.media import write_tone
from zpctl.model import LoadedInventory
from zpctl.model.schema import Role
from zpctl.render import BANNER, environment

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
PEER_MEDIA_PORT = 20000  # RTP echo port of simulated carriers and PBXs


@dataclass(frozen=True)
class Peer:
    """Something outside the platform that the lab simulates: a carrier (SIPp UAS that
    answers and echoes RTP), a customer's PBX, or a BYOC-P premises SBC (Kamailio)."""

    name: str
    kind: str  # carrier | psap | pbx | premises
    address: str
    port: int
    account: str | None = None
    tls_port: int | None = None
    cn: str | None = None


def peers(inv: LoadedInventory) -> list[Peer]:
    """The carriers and customer equipment the lab simulates (loopback addresses only)."""
    out: list[Peer] = []
    for c in sorted(inv.model.carriers, key=lambda c: c.id):
        # a carrier for emergency calls only: the lab's answering point (scenarios/psap.xml)
        kind = "psap" if c.emergency and not c.pstn else "carrier"
        for i, a in enumerate(c.addresses):
            if a.transport == "udp" and ipaddress.ip_address(a.address) in LOOPBACK:
                out.append(Peer(f"{kind}-{c.id}-{i}", kind, a.address, a.port))
    for acct in sorted(inv.model.accounts, key=lambda a: a.id):
        for t in acct.trunks:
            for i, a in enumerate(t.addresses):
                if ipaddress.ip_address(a.address) not in LOOPBACK:
                    continue
                if t.tls is None and a.transport == "udp":
                    out.append(Peer(f"carrier-{t.id}-{i}", "carrier", a.address, a.port,
                                    acct.id))
                elif t.tls is not None:
                    pbx = str(ipaddress.ip_address(a.address) + 1)
                    out.append(Peer(f"premises-{t.id}-{i}", "premises", a.address, 5060,
                                    acct.id, a.port, t.tls.subject_cn))
                    out.append(Peer(f"pbx-{t.id}-{i}", "pbx", pbx, 5060, acct.id))
    return out


def peer_services(inv: LoadedInventory, lab_dir: Path, bin_path: str | None = None
                  ) -> list[Service]:
    """The processes of the simulated peers (SIPp carriers and PBXs, premises Kamailio)."""
    out = []
    for peer in peers(inv):
        home = lab_dir / "nodes" / peer.name
        if peer.kind in ("carrier", "pbx", "psap"):
            psap = peer.kind == "psap"
            argv = sipp.command("psap" if psap else "uas", None, workdir=home / "log",
                                name="sipp", local_ip=peer.address, local_port=peer.port,
                                calls=None, media_port=PEER_MEDIA_PORT, rtp_echo=True,
                                stats_period_s=10)
            out.append(Service(peer.name, peer.kind, peer.name, argv,
                               [(peer.address, peer.port, "udp")],
                               bound_health(peer.address, peer.port), cwd=home / "run"))
        else:
            assert peer.tls_port is not None
            kam = which("kamailio", bin_path)
            cfg = home / "etc" / "kamailio.cfg"
            out.append(Service(
                peer.name, "premises", peer.name,
                [kam, "-DD", "-E", "-f", str(cfg), "-Y", str(home / "run"), "-m", "64",
                 "-M", "8", "-x", "tlsf"],
                [(peer.address, peer.tls_port, "tcp"), (peer.address, peer.port, "udp")],
                sip_health(peer.address, peer.port), cwd=home / "run"))
    return out


def prepare_peers(inv: LoadedInventory, lab_dir: Path) -> None:
    """Configs, certificates and test audio for the simulated peers."""
    pki_dir = lab_dir / "pki"
    write_tone(lab_dir / "media" / "tone.ulaw")
    env = environment()
    for peer in peers(inv):
        home = lab_dir / "nodes" / peer.name
        for sub in ("run", "log", "etc"):
            private_dir(home / sub)
        if peer.kind != "premises":
            continue
        assert peer.cn is not None
        crt, key = pki.issue(pki_dir, home / "etc", "peer", peer.cn, [peer.address])
        pbx = next(p for p in peers(inv) if p.kind == "pbx" and p.account == peer.account)
        sbc = _sbc_for(inv, peer.account)
        ctx = {"banner": BANNER, "account": peer.account, "trunk": peer.name,
               "address": peer.address, "sip_port": peer.port, "tls_port": peer.tls_port,
               "pbx": f"{pbx.address}:{pbx.port}", "platform_sbc": sbc,
               "tls_cfg": str(home / "etc" / "tls.cfg"), "cn": peer.cn, "cert": str(crt),
               "key": str(key), "ca": str(pki_dir / "ca.crt")}
        (home / "etc" / "kamailio.cfg").write_text(
            env.get_template("lab/premises.cfg.j2").render(**ctx))
        (home / "etc" / "tls.cfg").write_text(
            env.get_template("lab/premises-tls.cfg.j2").render(**ctx))


def _sbc_for(inv: LoadedInventory, account: str | None) -> str:
    """Where a premises SBC sends its calls: the zone-a sbc of its site's data center."""
    acct = inv.model.account(account or "")
    assert acct is not None, account
    dc = inv.dc(acct.sites[0].datacenter)
    sbc = inv.zone_node(dc, sorted(dc.zones)[0], Role.SBC)
    assert sbc is not None
    return f"{sbc.public}:{sbc.ports.sips}"


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if missing; it is mode 0700 afterwards."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
