"""A site's survivability node, rendered (docs/SURVIVABILITY.md): a registrar and proxy for
the site's users alone, its groups, DIDs, emergency numbers and PSTN through the site SBC,
no platform-wide key, and a firewall open to the site's phones and SBC.  Run for real in
tests/integration/test_survivability.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from zpctl.model import catalog, emergency, load_inventory
from zpctl.render import render
from zpctl.render.build import RenderedFile
from zpctl.secrets import Secrets

# The survivability tests' platform (tests/integration/test_survivability.py).
SITE_MINI = Path(__file__).parents[1] / "integration" / "fixtures" / "site-mini"
NODE = "sm1-hq-local"
DOMAIN = "sitecorp.site.zpctl.test"
SITE_USERS = [str(e) for e in range(2001, 2021)]
SBC = "10.199.9.3"
MGMT = {"10.199.8.192/26", "10.199.9.192/26", "10.199.10.0/24"}
ADDR, MGMT_ADDR = "10.199.9.2", "10.199.9.201"  # the node's SIP and management addresses
# The sitecorp account file's end: a second site (no survivability) with a user and a DID.
BRANCH_SITE = """  - id: branch
    name: Branch
    datacenter: sm1
    timezone: UTC
    country: US
    emergency_address: {street: 2 Test Way, city: Test City, postal_code: '00002', country: US, state: NY}
"""


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new), encoding="utf-8")


def _copy(dest: Path) -> Path:
    shutil.copytree(SITE_MINI, dest)
    return dest


def _render(inv_dir: Path, secrets: Path) -> dict[str, RenderedFile]:
    return render(load_inventory(inv_dir), Secrets.load(secrets)).files


def _text(files: dict[str, RenderedFile], path: str) -> str:
    return files[path].data.decode()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RenderedFile]:
    """The fixture as it is, with a neighbour: a user (and a DID) of another site of the
    same account, which the node must not serve."""
    tmp = tmp_path_factory.mktemp("survivability-render")
    inv = _copy(tmp / "inv")
    acct = inv / "accounts" / "sitecorp.yml"
    _edit(acct, "numbers:\n", BRANCH_SITE + "numbers:\n  - {number: '+15550200021', site: branch}\n")
    _edit(acct, "  - {extension: '2020', name: User 20, site: hq, calling_plan: metered}\n",
          "  - {extension: '2020', name: User 20, site: hq, calling_plan: metered}\n"
          "  - {extension: '2021', name: User 21, site: branch, calling_plan: metered,"
          " dids: ['+15550200021']}\n")
    return _render(inv, tmp / "s.yml")


@pytest.fixture(scope="module")
def cfg(files: dict[str, RenderedFile]) -> str:
    return _text(files, f"{NODE}/kamailio/kamailio.cfg")


def _block(cfg: str, head: str) -> str:
    """The body of a top-level block of the config, ``route[NAME]`` and the like."""
    m = re.search(rf"^{re.escape(head)} \{{\n(.*?)^\}}", cfg, re.M | re.S)
    assert m is not None, f"no {head} in the config"
    return m[1]


def _cases(body: str) -> list[str]:
    return re.findall(r'^\s*case "([^"]+)":', body, re.M)


def _defines(cfg: str) -> dict[str, str]:
    return dict(re.findall(r'^#!define (\w+) "?(.*?)"?$', cfg, re.M))


def test_the_node_serves_its_site_users_and_no_one_else(cfg: str) -> None:
    """The internal extensions are exactly the site's 20 users: not the user of the other
    site, nor the groups' extensions; the realm is the account's domain."""
    assert _cases(_block(cfg, "route[INTERNAL]")) == SITE_USERS
    assert "2021" not in cfg
    d = _defines(cfg)
    assert d["DOMAIN"] == DOMAIN
    assert d["SITE_DB"] == "sqlite:///var/lib/zpctl/survivability.sqlite"
    # Its own address only: the node sits at the site, not behind the lb.
    assert re.findall(r"^listen=(\S+)", cfg, re.M) == [
        "udp:10.199.9.2:5060", "tcp:10.199.9.2:5060", "tcp:10.199.9.201:8080"]
    # Authentication against the node's own file of HA1 hashes, never a password.
    assert 'modparam("auth_db", "db_url", SITE_DB)' in cfg
    assert 'modparam("auth_db", "calculate_ha1", 0)' in cfg
    assert 'modparam("auth_db", "password_column", "ha1")' in cfg
    assert 'modparam("htable", "htable", "site=>size=2;dbtable=zp_site;")' in cfg


def test_groups_ring_their_members_in_order_with_their_strategy(cfg: str) -> None:
    """8100 (ring-all, 20 s) and 8200 (in-order, 5 s), each member by index in the order
    the inventory lists them."""
    groups = _block(cfg, "route[GROUPS]")
    found = re.findall(r'case "(\d+)":.*?\n\s*\$avp\(zp_group\) = "(\d+)";\n'
                       r'\s*\$avp\(zp_ring_ms\) = (\d+);\n\s*route\((\w+)\);', groups)
    assert found == [("8100", "8100", "20000", "RING_ALL"), ("8200", "8200", "5000", "IN_ORDER")]
    members = re.findall(r'case "(\d+)/(\d+)":\n\s*\$var\(member\) = "sip:(\d+)@" \+ DOMAIN;',
                         _block(cfg, "route[GROUP_MEMBER]"))
    assert members == [("8100", "0", "2001"), ("8100", "1", "2002"), ("8100", "2", "2003"),
                       ("8200", "0", "2004"), ("8200", "1", "2005"), ("8200", "2", "2006")]
    assert "t_on_failure(\"IN_ORDER\")" in _block(cfg, "route[NEXT_MEMBER]")
    assert "route(NEXT_MEMBER);" in _block(cfg, "failure_route[IN_ORDER]")


def test_dids_from_the_site_sbc_ring_their_users(cfg: str) -> None:
    """Only a request from the SBC's address takes the DID route, and each of the site's
    DIDs rings its own user (the other site's DID is not there)."""
    assert 'if ($si == SBC_ADDR && !is_method("REGISTER")) {\n\t\troute(INBOUND);' in cfg
    dids = re.findall(r'case "(\+\d+)":\n\s*\$ru = "sip:(\d+)@" \+ DOMAIN;',
                      _block(cfg, "route[INBOUND]"))
    assert dids == [("+15550200011", "2001"), ("+15550200012", "2002"),
                    ("+15550200013", "2003"), ("+15550200014", "2004")]
    assert "+15550200021" not in cfg


def test_emergency_numbers_and_the_pstn_go_to_the_site_sbc(cfg: str) -> None:
    """The US emergency numbers and any other PSTN number leave through the SBC's URI."""
    d = _defines(cfg)
    assert d["SBC_ADDR"] == SBC
    assert d["SBC_URI"] == f"sip:{SBC}:5060;transport=udp"
    emergency = _block(cfg, "route[EMERGENCY]")
    assert list(catalog.EMERGENCY_NUMBERS["US"]) == ["911", "933"]
    # Dialled directly or after the account's outside-line prefix (9): sent on as 911.
    assert emergency.count('"^(911|933)$"') == 2
    assert '$(rU{s.substr,0,1}) == "9"' in emergency
    assert "$rU = $var(em_number);" in emergency
    assert "$du = SBC_URI;" in emergency and "ANNOUNCE" not in emergency
    assert emergency.index("route(EMERGENCY_CALLBACK);") < emergency.index("t_relay()")
    assert emergency.index("route(EMERGENCY_LOCATION);") < emergency.index("t_relay()")
    # A PSTN number (past the route's checks, at its top level) leaves through the SBC.
    assert _block(cfg, "route[PSTN]").endswith("\n\troute(TO_SBC);\n\texit;\n")
    assert "$du = SBC_URI;" in _block(cfg, "route[TO_SBC]")
    # Emergency numbers are matched before the groups, the users and the PSTN.
    main = _block(cfg, "request_route")
    order = [main.index(f"route({r});") for r in ("AUTH", "EMERGENCY", "GROUPS", "INTERNAL",
                                                   "PSTN")]
    assert order == sorted(order)


def test_emergency_calls_carry_the_callback_number_and_the_site_location(cfg: str) -> None:
    """As the cloud sends them (docs/EMERGENCY.md): P-Asserted-Identity is the user's DID,
    else the site's main number (the other site's user is not there), and the body gains
    the site's PIDF-LO document, entity the callback number, referenced by Geolocation."""
    callbacks = re.findall(r'case "(\d+)":\n\s*\$var\(callback\) = "(\+\d+)";',
                           _block(cfg, "route[EMERGENCY_CALLBACK]"))
    assert callbacks[:5] == [("2001", "+15550200011"), ("2002", "+15550200012"),
                             ("2003", "+15550200013"), ("2004", "+15550200014"),
                             ("2005", "+15550200001")]
    assert [e for e, _ in callbacks] == SITE_USERS
    assert 'append_hf("P-Asserted-Identity: <sip:$var(callback)@" + DOMAIN' in cfg
    location = _block(cfg, "route[EMERGENCY_LOCATION]")
    inv = load_inventory(SITE_MINI)
    site = next(s for a in inv.model.accounts for s in a.sites if s.id == "hq")
    doc = emergency.pidf(site, "ENTITY")
    head, tail = doc.split("ENTITY")
    assert f'$var(pidf) = "{head}" + $var(entity) + "@" + DOMAIN + "{tail}";' in location
    assert "<ca:A1>NY</ca:A1><ca:A3>Test City</ca:A3><ca:RD>Test Way</ca:RD>" in tail
    assert f'$var(cid) = "zp-location@{DOMAIN}";' in location
    assert location.rstrip().endswith("route(LOCATION_BODY);")
    body = _block(cfg, "route[LOCATION_BODY]")  # the zone proxies' too
    assert "Geolocation: <cid:$var(cid)>" in body
    assert '"multipart/mixed;boundary=zpctl-location"' in body


def _secret(text: str) -> str:
    m = re.search(r'^#!define AUTH_SECRET "([^"]+)"$', text, re.M)
    assert m is not None, text
    return m[1]


def test_the_node_holds_no_platform_wide_key(files: dict[str, RenderedFile]) -> None:
    """A nonce secret of its own (not the proxies' shared one), no database URL, no topoh
    key; mode 0600 like every secrets file."""
    own = files[f"{NODE}/kamailio/secrets.cfg"]
    text = own.data.decode()
    assert own.mode == 0o600
    assert "DBURL" not in text
    assert "TOPOH_KEY" not in text
    secret = _secret(text)
    assert len(secret) >= 16
    proxies = [_text(files, f"{p}/kamailio/secrets.cfg") for p in ("sm1-a-proxy", "sm1-b-proxy")]
    assert all("TOPOH_KEY" in t and "DBURL" in t for t in proxies)
    assert {_secret(t) for t in proxies} == {_secret(proxies[0])}  # shared by the proxies
    assert secret != _secret(proxies[0])
    # Nor any of the platform's keys anywhere in the node's files.
    shared = [re.search(rf'^#!define {k} "([^"]+)"$', proxies[0], re.M) for k in
              ("TOPOH_KEY", "DBURL", "AUTH_SECRET")]
    node_files = b"".join(f.data for p, f in files.items() if p.startswith(f"{NODE}/"))
    for m in shared:
        assert m is not None
        assert m[1].encode() not in node_files


def test_node_json_runs_kamailio(files: dict[str, RenderedFile]) -> None:
    """What the host runs: Kamailio with the node's config, on the node's own address."""
    doc = json.loads(_text(files, f"{NODE}/node.json"))
    assert doc["role"] == "survivability"
    services = {s["name"]: s for s in doc["services"]}
    svc = services["kamailio"]
    assert svc["binary"] == "kamailio"
    assert svc["config"] == "/etc/zpctl/kamailio/kamailio.cfg"
    assert ["10.199.9.2", 5060, "udp"] in svc["listeners"]
    assert ["10.199.9.2", 5060, "tcp"] in svc["listeners"]
    assert {f"{NODE}/kamailio/kamailio.cfg", f"{NODE}/kamailio/secrets.cfg",
            f"{NODE}/nftables/zpctl.nft", f"{NODE}/announcer/freeswitch.xml"} <= set(files)
    # The announcer: FreeSWITCH on its own config folder (not a switch's), event socket on
    # the management address for the health check.
    ann = services["announcer"]
    assert ann["binary"] == "freeswitch"
    assert ann["args"][ann["args"].index("-conf") + 1] == "/etc/zpctl/announcer"
    assert ann["health"] == {"kind": "esl", "address": MGMT_ADDR, "port": 8021}


def _accepts(nft: str) -> dict[tuple[str, str, str], set[str] | None]:
    """(address, protocol, port) -> the sources an accept rule for one of the node's
    addresses names (None: anyone)."""
    out: dict[tuple[str, str, str], set[str] | None] = {}
    for m in re.finditer(r"^\s*(?:ip saddr (\{ [^}]+ \}|\S+) )?ip daddr (\{ [^}]+ \}|\S+) "
                         r"(udp|tcp) dport (\S+) accept", nft, re.M):
        src = None if m[1] is None else set(m[1].strip("{} ").split(", "))
        for dst in m[2].strip("{} ").split(", "):
            out[(dst, m[3], m[4])] = src
    return out


def test_firewall_lets_in_the_site_lan_the_sbc_and_management_only(
        files: dict[str, RenderedFile]) -> None:
    """SIP (UDP and TCP 5060) answers the site's LAN (survivability.lan), its SBC and the
    management networks; the announcer's RTP the LAN and the SBC; JSON-RPC, SSH and the
    announcer's event socket the management networks only, on the management address.
    Nothing is open to anyone, and the announcer's SIP port is not open at all."""
    nft = _text(files, f"{NODE}/nftables/zpctl.nft")
    assert "policy drop;" in nft
    rules = _accepts(nft)
    lan = {"10.199.9.0/25"}
    assert rules[(ADDR, "udp", "5060")] == lan | {SBC} | MGMT
    assert rules[(ADDR, "tcp", "5060")] == lan | {SBC} | MGMT
    assert rules[(ADDR, "udp", "30000-34999")] == lan | {SBC}
    for port in ("8080", "22", "8021"):
        assert rules[(MGMT_ADDR, "tcp", port)] == MGMT, port
    assert None not in rules.values()
    assert not any(port == "5080" for _, _, port in rules)


def test_without_an_sbc_the_pstn_and_emergency_calls_get_the_announcement(
        tmp_path: Path) -> None:
    """No sbc: no SBC URI, no DID route; emergency numbers and the PSTN go to
    route(ANNOUNCE), and the firewall names no SBC."""
    inv = _copy(tmp_path / "inv")
    _edit(inv / "accounts" / "sitecorp.yml", "      sbc: {address: 10.199.9.3, port: 5060}\n", "")
    files = _render(inv, tmp_path / "s.yml")
    cfg = _text(files, f"{NODE}/kamailio/kamailio.cfg")
    assert "SBC_URI" not in cfg and "SBC_ADDR" not in cfg and SBC not in cfg
    assert "route[TO_SBC]" not in cfg and "route[INBOUND]" not in cfg
    emergency = _block(cfg, "route[EMERGENCY]")
    assert '=~ "^(911|933)$"' in emergency
    assert "route(ANNOUNCE);" in emergency and "SBC_URI" not in emergency
    assert "route[EMERGENCY_LOCATION]" not in cfg
    pstn = _block(cfg, "route[PSTN]")
    assert pstn.endswith("\n\troute(ANNOUNCE);\n\texit;\n") and "TO_SBC" not in pstn
    assert "exit;" in _block(cfg, "route[ANNOUNCE]")
    # Internal calls and the groups still work.
    assert _cases(_block(cfg, "route[INTERNAL]")) == SITE_USERS
    assert _cases(_block(cfg, "route[GROUPS]")) == ["8100", "8200"]
    rules = _accepts(_text(files, f"{NODE}/nftables/zpctl.nft"))
    assert rules[(ADDR, "udp", "5060")] == {"10.199.9.0/25"} | MGMT
    nft = _text(files, f"{NODE}/nftables/zpctl.nft")
    assert SBC not in nft


def test_zpctl_render_takes_the_announcer_for_no_switch(tmp_path: Path) -> None:
    """`zpctl render` (its FreeSWITCH validator runs on every switch's tree before anything
    is written) accepts an inventory with a survivability node: the announcer's config is
    in announcer/, not freeswitch/, so it is not checked as a switch's.  Was exit 4."""
    from zpctl.cli.main import main  # noqa: PLC0415 - the CLI only here

    out = tmp_path / "build"
    assert main(["render", str(SITE_MINI), "--out", str(out), "--no-check",
                 "--secrets", str(tmp_path / "s.yml")]) == 0
    assert (out / NODE / "announcer" / "freeswitch.xml").is_file()
    assert not (out / NODE / "freeswitch").exists()
