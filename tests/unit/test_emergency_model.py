"""Emergency calling as the inventory describes it and as the Kamailio tiers get it: the
location document (PIDF-LO, RFC 4119 with RFC 5139 civic elements), the callback number,
the route, and what the lab inventory renders for the lb, the zone proxies and the sbcs."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from zpctl.model import emergency, load_inventory
from zpctl.model.schema import Account, EmergencyAddress
from zpctl.render import account_set_ids, render
from zpctl.render.build import RenderedFile
from zpctl.render.emergency import trunk_set
from zpctl.secrets import Secrets

LAB = Path("inventories/lab")
NS = {"p": "urn:ietf:params:xml:ns:pidf", "gp": "urn:ietf:params:xml:ns:pidf:geopriv10",
      "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"}


@pytest.fixture(scope="module")
def inv():  # type: ignore[no-untyped-def]
    return load_inventory(LAB)


@pytest.fixture(scope="module")
def acme(inv) -> Account:  # type: ignore[no-untyped-def]
    return next(a for a in inv.model.accounts if a.id == "acme")


@pytest.fixture(scope="module")
def files(inv, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RenderedFile]:  # type: ignore[no-untyped-def]
    return render(inv, Secrets(tmp_path_factory.mktemp("s") / "s.yml")).files


def _text(files: dict[str, RenderedFile], path: str) -> str:
    data = files[path].data
    return data.decode() if isinstance(data, bytes) else data


@pytest.mark.parametrize(("street", "road", "hno"), [
    ("55 Almaden Blvd", "Almaden Blvd", "55"),
    ("Keizersgracht 123", "Keizersgracht", "123"),
    ("12B Baker Street", "Baker Street", "12B"),
    ("Hauptstraße 5-7", "Hauptstraße", "5-7"),
    ("Marina Bay Sands", "Marina Bay Sands", None),
])
def test_the_house_number_is_its_own_element(street: str, road: str, hno: str | None) -> None:
    got = dict(emergency.civic(EmergencyAddress(street=street, city="X", country="US")))
    assert got["RD"] == road
    assert got.get("HNO") == hno


def test_the_location_document_is_pidf_lo_with_the_site_address(acme: Account) -> None:
    site = acme.sites[0]
    site = site.model_copy(update={"emergency_address": site.emergency_address.model_copy(
        update={"location": "Floor 3 & Suite <300>"})})
    doc = emergency.pidf(site, "+15550100002@acme.lab.zpctl.test")
    root = ET.fromstring(doc)  # well-formed, escaped
    assert root.tag == f"{{{NS['p']}}}presence"
    assert root.get("entity") == "pres:+15550100002@acme.lab.zpctl.test"
    civic = root.find("p:tuple/p:status/gp:geopriv/gp:location-info/ca:civicAddress", NS)
    assert civic is not None
    got = {el.tag.split("}")[1]: el.text for el in civic}
    a = site.emergency_address
    assert got == {"country": a.country, "A1": a.state, "A3": a.city, "RD": "Main St",
                   "HNO": "1", "PC": a.postal_code, "LOC": "Floor 3 & Suite <300>"}
    assert root.find("p:tuple/p:status/gp:geopriv/gp:method", NS).text == "Manual"  # type: ignore[union-attr]
    # One line, attributes in single quotes: it sits in a Kamailio string as it is.
    assert "\n" not in doc and '"' not in doc


def test_the_callback_number_is_the_users_did_else_the_sites_main(acme: Account) -> None:
    users = {u.extension: u for u in acme.users}
    assert emergency.callback_number(acme, users["1001"]) == users["1001"].dids[0]
    assert not users["1003"].dids
    assert emergency.callback_number(acme, users["1003"]) == emergency.main_number(acme, "hq")
    assert emergency.main_number(acme, "hq") == "+15550100001"


def test_emergency_numbers_dial_with_and_without_the_outside_prefix(acme: Account) -> None:
    assert acme.outside_prefix == "9"
    assert set(emergency.dialled(acme, "US")) == {"911", "933", "9911", "9933"}
    no_prefix = acme.model_copy(update={"outside_prefix": None})
    assert emergency.dialled(no_prefix, "US") == ("911", "933")


def test_the_accounts_own_trunk_comes_before_the_platforms_carrier(inv) -> None:  # type: ignore[no-untyped-def]
    model = inv.model
    acme = next(a for a in model.accounts if a.id == "acme")
    assert emergency.route(model, acme, "US") == emergency.Route("carrier", "lab-psap")
    assert emergency.route(model, acme, "ZZ") is None
    globex = next(a for a in model.accounts if a.trunks)
    marked = globex.model_copy(update={"trunks": [
        globex.trunks[0].model_copy(update={"emergency": ["US"]}), *globex.trunks[1:]]})
    assert emergency.route(model, marked, "US") == emergency.Route("trunk", globex.trunks[0].id)


def test_the_zone_proxy_knows_numbers_prefixes_limits_and_locations(
        files: dict[str, RenderedFile], acme: Account) -> None:
    cfg = _text(files, "lab1-a-proxy/kamailio/kamailio.cfg")
    assert '$sht(emnum=>US) = "^(911|933)$";' in cfg
    assert '$sht(outside=>acme) = "9";' in cfg
    assert f"$sht(acctlimit=>acme) = {acme.limits.concurrent_calls};" in cfg
    tail = emergency.pidf_tail(acme.sites[0])
    assert f'$sht(siteloc=>acme/hq) = "{tail}";' in cfg
    assert f'#!define PIDF_HEAD "{emergency.PIDF_HEAD}"' in cfg
    # The location and callback number ride on the subscriber row and the proxy's cache.
    assert "$avp(zp_site)=site;$avp(zp_callback)=callback" in cfg
    assert "authcache=>$au@$ar::site" in cfg and "authcache=>$au@$ar::callback" in cfg
    # Emergency calls go to the sbcs before the account limit and never to a switch.
    main = cfg[cfg.index("request_route {"):]
    assert main.index("route(EMERGENCY);") < main.index("route(ACCOUNT_LIMIT);") \
        < main.index("route(INTERNAL);")
    em = cfg[cfg.index("route[EMERGENCY] {"):]
    em = em[:em.index("\n}\n")]
    assert "route(TO_SBC);" in em and "TO_SWITCH" not in em


def test_the_sbc_has_a_set_of_emergency_carriers_apart_from_the_pstn(
        files: dict[str, RenderedFile]) -> None:
    ds = _text(files, "lab1-a-sbc/kamailio/dispatcher.list")
    sets: dict[str, list[str]] = {}
    for line in ds.splitlines():
        if line and not line.startswith("#"):
            setid, uri = line.split()[:2]
            sets.setdefault(setid, []).append(uri)
    assert sets["20"] == ["sip:127.0.9.21:5060"]
    assert "sip:127.0.9.21:5060" not in sets["10"]  # pstn: false
    cfg = _text(files, "lab1-a-sbc/kamailio/kamailio.cfg")
    assert "$sht(emergency=>US) = 20;" in cfg
    # the answering point may call back: its address is a known peer
    assert '$sht(peer=>127.0.9.21) = "lab-psap";' in cfg


def _sets(dispatcher_list: str) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    for line in dispatcher_list.splitlines():
        if line and not line.startswith("#"):
            setid, uri = line.split()[:2]
            sets.setdefault(setid, []).append(uri)
    return sets


def test_an_accounts_emergency_route_is_only_its_trunks_marked_for_the_country(
        tmp_path: Path) -> None:
    """globex with two trunks, the second marked for US: its emergency calls go to a set of
    that trunk alone (not the account's set, which has both), numbered from the account's
    set and the country; the ordinary route stays the account's set."""
    inv_dir = tmp_path / "lab"
    shutil.copytree(LAB, inv_dir)
    acct = inv_dir / "accounts" / "globex.yml"
    text = acct.read_text(encoding="utf-8")
    assert text.count("sites:\n") == 1
    acct.write_text(text.replace("sites:\n", (
        "  - id: globex-emergency\n"
        "    addresses:\n"
        "      - {address: 127.0.9.3, port: 5060, transport: udp}\n"
        "    codecs: [pcmu]\n"
        "    emergency: [US]\n"
        "sites:\n")), encoding="utf-8")
    loaded = load_inventory(inv_dir)
    files = render(loaded, Secrets(tmp_path / "s.yml")).files
    account_set = account_set_ids(loaded.model)["globex"]
    em_set = trunk_set(account_set, "US")
    assert em_set == 539_000_000 + account_set < 2**31
    sets = _sets(_text(files, "lab1-a-sbc/kamailio/dispatcher.list"))
    assert sets[str(em_set)] == ["sip:127.0.9.3:5060"]
    assert sets[str(account_set)] == ["sip:127.0.9.2:5060", "sip:127.0.9.3:5060"]
    cfg = _text(files, "lab1-a-sbc/kamailio/kamailio.cfg")
    assert f"$sht(emergency=>globex::US) = {em_set};" in cfg
    assert f"$sht(acct_set=>globex) = {account_set};" in cfg


def test_the_lb_never_sheds_the_emergency_numbers_of_its_accounts(
        files: dict[str, RenderedFile]) -> None:
    cfg = _text(files, "lab1-lb/kamailio/kamailio.cfg")
    m = re.search(r'#!define EMERGENCY_RE "([^"]+)"', cfg)
    assert m is not None
    regex = re.compile(m.group(1))
    for number in ("911", "9911", "933"):
        assert regex.match(number)
    for number in ("1911", "91100", "+15550100002"):
        assert not regex.match(number)
    admit = cfg[cfg.index("route[ADMIT] {"):]
    assert admit.index("route(IS_EMERGENCY)") < admit.index("pl_check")


def test_switch_profiles_turn_the_notice_into_an_event(files: dict[str, RenderedFile]) -> None:
    profile = _text(files, "lab1-a-switch1/freeswitch/sip_profiles/zpctl.xml")
    assert '<param name="fire-message-events" value="true"/>' in profile
    assert '<param name="auth-messages" value="false"/>' in profile
