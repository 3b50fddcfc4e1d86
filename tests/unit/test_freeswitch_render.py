"""Rendering the switch tier: which files each switch gets, what they say, and that every
PBX feature of the sample accounts shows up in the configuration FreeSWITCH would read."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.freeswitch import esl_targets, select_switches, zone_switches
from zpctl.model import LoadedInventory, catalog, load_inventory
from zpctl.render import Build, render
from zpctl.render.freeswitch import (
    NEXT_PROXY_ONLY_IF_DOWN,
    directory_name,
    number_regex,
    pin_digits,
    served_accounts,
    sound_prefix,
    srtp_value,
    time_span_regex,
    tls_versions,
    uses_directory,
)
from zpctl.secrets import Secrets

HERE = Path(__file__).resolve().parent
MINI = HERE / "fixtures" / "switch-mini"
SW = "lab1-a-switch1/freeswitch"
ESL_PW = "esl-pw-7f3a"


def _secrets() -> Secrets:
    return Secrets(Path("/nonexistent"), {"esl_password": ESL_PW, "pin_seed": "seed"})


@pytest.fixture(scope="module")
def mini() -> LoadedInventory:
    return load_inventory(MINI)


@pytest.fixture(scope="module")
def build(mini: LoadedInventory) -> Build:
    return render(mini, _secrets())


@pytest.fixture(scope="module")
def us01() -> LoadedInventory:
    return load_inventory(INVENTORIES / "us01")


def text(build: Build, rel: str) -> str:
    return build.files[f"{SW}/{rel}"].data.decode()


def xml(build: Build, rel: str) -> ET.Element:
    return ET.fromstring(build.files[f"{SW}/{rel}"].data)


def params(el: ET.Element, path: str) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in el.iterfind(path)}


def actions(build: Build, ext: str) -> list[tuple[str, str]]:
    root = xml(build, "dialplan/acme.xml")
    e = root.find(f".//extension[@name='{ext}']")
    assert e is not None, ext
    out = []
    for a in e.iter("action"):
        app, data = a.get("application", ""), a.get("data", "")
        if app == "multiset":  # "^^|a=1|b=2": the sets it stands for, in order
            assert data.startswith("^^|"), data
            out += [("set", d) for d in data[3:].split("|")]
        else:
            out.append((app, data))
    return out


def test_every_switch_gets_a_full_tree(build: Build, mini: LoadedInventory) -> None:
    expected = {"freeswitch.xml", "vars.xml", "secrets.xml", "sounds.txt",
                "sip_profiles/zpctl.xml", "dialplan/00-zpctl-in.xml", "dialplan/acme.xml",
                "directory/acme.xml", "lang/languages.xml", "scripts/zp_mwi.lua",
                "scripts/zp_vm_auth.lua", "scripts/zp_recordings.lua", "scripts/zp_queue_callback.lua",
                } | {f"autoload_configs/{n}.conf.xml" for n in (
                    "modules", "switch", "acl", "event_socket", "logfile", "sofia", "local_stream",
                    "ivr", "callcenter", "voicemail", "conference", "directory", "timezones",
                    "db", "opus", "lua")}
    for p in select_switches(mini):
        got = {k.split("/freeswitch/", 1)[1] for k in build.files
               if k.startswith(f"{p.name}/freeswitch/")}
        assert got == expected, p.name
        node = json.loads(build.files[f"{p.name}/node.json"].data)
        [svc] = node["services"]
        assert (svc["name"], svc["config"]) == ("freeswitch",
                                                "/etc/zpctl/freeswitch/freeswitch.xml")
        assert svc["args"][:5] == ["-nf", "-nc", "-nonat", "-conf", "/etc/zpctl/freeswitch"]
        assert svc["health"] == {"kind": "esl", "address": p.node.mgmt, "port": p.node.ports.esl}
    for path, f in build.files.items():
        if "/freeswitch/" in path:
            assert "managed by zpctl — do not edit" in f.data.decode()[:300], path


def test_render_is_deterministic(mini: LoadedInventory, build: Build) -> None:
    again = render(load_inventory(MINI), _secrets())
    assert {p: f for p, f in again.files.items() if "/freeswitch/" in p} == \
        {p: f for p, f in build.files.items() if "/freeswitch/" in p}


def test_secrets_only_in_secrets_xml(build: Build) -> None:
    sec = build.files[f"{SW}/secrets.xml"]
    assert sec.mode == 0o600
    assert f'data="esl_password={ESL_PW}"' in sec.data.decode()
    assert re.search(r'data="zp_vm_pin_acme_1001=\d{6}"', sec.data.decode())
    assert re.search(r'data="zp_conf_pin_acme_huddle=\d{6}"', sec.data.decode())
    for path, f in build.files.items():
        if path != f"{SW}/secrets.xml" and path.startswith(SW):
            assert ESL_PW.encode() not in f.data, path
            assert f.mode == 0o644, path


def test_event_socket_on_mgmt_with_one_acl(build: Build, mini: LoadedInventory) -> None:
    p = params(xml(build, "autoload_configs/event_socket.conf.xml"), "settings/param")
    node = mini.node("lab1-a-switch1").node
    assert p["listen-ip"] == node.mgmt == "127.1.1.14"
    assert p["listen-port"] == "8021"
    assert p["password"] == "$${esl_password}"
    assert p["apply-inbound-acl"] == ",".join(mini.model.platform.management_networks)
    assert text(build, "autoload_configs/event_socket.conf.xml").count("apply-inbound-acl") == 1


def test_sofia_profile_faces_the_proxies_over_tls(build: Build) -> None:
    p = params(xml(build, "sip_profiles/zpctl.xml"), ".//param")
    assert p["tls-version"] == "tlsv1.2,tlsv1.3"
    assert " " not in p["tls-version"]
    assert (p["tls"], p["tls-only"], p["sip-ip"]) == ("true", "true", "127.0.1.14")
    assert p["codec-prefs"] == "OPUS,PCMU,PCMA,G729"  # media.codecs, in order
    assert (p["dtmf-type"], p["rfc2833-pt"]) == ("rfc2833", "101")
    # calls come from the zone proxies, and an attended transfer's INVITE with Replaces
    # from the data center's other switches
    assert p["apply-inbound-acl"] == "zpctl-peers"
    acl = xml(build, "autoload_configs/acl.conf.xml")
    peers = [n.get("cidr") for n in acl.iterfind(".//list[@name='zpctl-peers']/node")]
    assert peers[:2] == ["127.0.1.11/32", "127.0.1.21/32"]
    assert "127.0.1.14/32" not in peers and len(peers) > 2
    assert "require-secure-rtp" not in p
    # legs placed without our variables (the transfer's INVITE) still name TLS
    assert 'data="sip_transport=tls"' in text(build, "vars.xml")


def test_srtp_suites_are_canonical_from_policy(build: Build, mini: LoadedInventory) -> None:
    # A switch's legs all end at a media node, which applies each client's policy: the
    # switch itself talks SRTP (one RTP/SAVP stream per offer), or plain RTP only where the
    # data center's switch legs are plain (standby switches need it).
    dc = mini.model.datacenters[0]
    assert srtp_value(mini.model, dc) == "mandatory:AES_256_CM_HMAC_SHA1_80:AES_CM_128_HMAC_SHA1_80"
    strict = mini.model.model_copy(update={"security": mini.model.security.model_copy(update={
        "srtp": mini.model.security.srtp.model_copy(update={"allow_plain_rtp_fallback": False})})})
    assert srtp_value(strict, dc) == srtp_value(mini.model, dc)
    assert ("set", "rtp_secure_media_inbound=" + srtp_value(mini.model, dc)) \
        in actions(build, "zp-init")
    plain = dc.model_copy(update={"switch_legs": "plain"})
    assert srtp_value(mini.model, plain) == "forbidden"
    assert mini.model.switch_legs(plain) == "plain" and mini.model.switch_legs(dc) == "srtp"
    assert "AES_CM_256" not in "".join(f.data.decode() for p, f in build.files.items()
                                       if p.startswith(SW))


@pytest.mark.parametrize("span", ["09:00-17:00", "08:30-18:00", "12:15-12:45", "00:00-23:59",
                                  "13:30-17:00"])
def test_business_hours_span_regex_takes_start_not_end(span: str) -> None:
    rxp = re.compile(f"^({time_span_regex(span)})$")
    a, b = span.split("-")
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (a, b))
    for m in range(24 * 60):
        assert bool(rxp.match(f"{m // 60:02d}:{m % 60:02d}")) == (start <= m < end), (span, m)


def test_tls_version_tokens() -> None:
    assert tls_versions("TLSv1.2") == "tlsv1.2,tlsv1.3"
    assert tls_versions("TLSv1.3") == "tlsv1.3"


def test_entry_context_routes_by_account_domain(build: Build) -> None:
    root = xml(build, "dialplan/00-zpctl-in.xml")
    cond = root.find(".//extension[@name='to-acct-acme']/condition")
    assert cond is not None
    assert (cond.get("field"), cond.get("expression")) == ("${sip_req_host}",
                                                           r"^acme\.lab\.zpctl\.test$")


def test_auto_receptionist_with_hours_holidays_submenu_and_directory(build: Build) -> None:
    ivr = xml(build, "autoload_configs/ivr.conf.xml")
    main = ivr.find(".//menu[@name='acme-main']")
    assert main is not None
    assert main.get("greet-long") == "$${zp_sounds}/accounts/acme/main-greeting.wav"
    entries = {e.get("digits"): (e.get("action"), e.get("param")) for e in main}
    assert entries["2"] == ("menu-sub", "acme-sales")
    assert entries["3"] == ("menu-exec-app", "directory zpctl acme.lab.zpctl.test acct-acme")
    assert entries["1"] == ("menu-exec-app", "transfer 7100 XML acct-acme")
    assert entries["9"][0] == "menu-play-sound"
    sales = ivr.find(".//menu[@name='acme-sales']")
    assert sales is not None
    assert {e.get("digits"): e.get("action") for e in sales}["*"] == "menu-back"
    dp = xml(build, "dialplan/acme.xml")
    tz = dp.find(".//extension[@name='ar-main-tz']")
    assert tz is not None
    assert tz.get("continue") == "true"
    assert ("set", "zp_local_time=${strftime_tz(America/New_York ${expr(${strepoch()}+"
            "${zp_clock_shift})}|%u %H:%M %Y-%m-%d)}") in actions(build, "ar-main-tz")
    open_mon = dp.find(".//extension[@name='ar-main-open-mon-0900-1700']/condition[2]")
    assert open_mon is not None
    assert open_mon.get("field") == "${zp_local_time}"
    assert open_mon.get("expression") == "^1 (" + "|".join(
        f"{h:02d}:[0-5][0-9]" for h in range(9, 17)) + ") "
    fri = [e.get("name") for e in dp.iter("extension") if (e.get("name") or "").startswith(
        "ar-main-open-fri")]
    assert fri == ["ar-main-open-fri-0900-1200", "ar-main-open-fri-1300-1700"]
    hol = dp.find(".//extension[@name='ar-main-holiday-1']/condition[2]")
    assert hol is not None
    assert hol.get("expression") == "^[1-7] [0-9]{2}:[0-9]{2} 2027-01-01$"
    assert actions(build, "ar-main-holiday-1")[-1] == ("hangup", "NORMAL_CLEARING")
    assert actions(build, "ar-main-closed")[-1] == ("transfer", "*991001 XML acct-acme")


def test_queue_strategy_tiers_opt_in_out_and_callbacks(build: Build) -> None:
    cc = xml(build, "autoload_configs/callcenter.conf.xml")
    q = params(cc, ".//queue[@name='sales@acme.lab.zpctl.test']/param")
    assert q["strategy"] == "round-robin"
    assert q["moh-sound"] == "local_stream://acme-jazz"
    agents = {a.get("name"): a.attrib for a in cc.iter("agent")}
    assert set(agents) == {"1002@acme.lab.zpctl.test", "1004@acme.lab.zpctl.test"}
    # its own sofia legs through the proxies, the sister's only when the first is down
    contact = agents["1002@acme.lab.zpctl.test"]["contact"]
    assert contact.startswith("{^^:" + NEXT_PROXY_ONLY_IF_DOWN + "}")
    assert contact.split("}", 1)[1].split("|") == [
        "[leg_timeout=15,sip_invite_domain=acme.lab.zpctl.test,presence_id=1002@acme.lab.zpctl."
        f"test,sip_route_uri=sip:{ip}:5061;transport=tls,sip_transport=tls]sofia/zpctl/"
        "1002@acme.lab.zpctl.test" for ip in ("127.0.1.11", "127.0.1.21")]
    tiers = [(t.get("agent"), t.get("level")) for t in cc.iter("tier")]
    assert tiers == [("1002@acme.lab.zpctl.test", "1")]  # 1004 has opted out
    opt_in = actions(build, "queue-sales-75-1004")
    assert ("set", "zp_cc=${callcenter_config(tier add sales@acme.lab.zpctl.test "
                   "1004@acme.lab.zpctl.test 2 1)}") in opt_in
    assert ("set", "zp_cc=${callcenter_config(tier del sales@acme.lab.zpctl.test "
                   "1004@acme.lab.zpctl.test)}") in actions(build, "queue-sales-76-1004")
    assert ("set", "cc_exit_keys=1") in actions(build, "queue-sales")
    cb = dict(actions(build, "queue-sales-callback"))
    assert cb["set"] == ("zp_cb=${luarun(zp_queue_callback.lua sales@acme.lab.zpctl.test 7100 "
                         "acct-acme ${caller_id_number} acme.lab.zpctl.test +15550100001 3600)}")
    assert actions(build, "queue-sales-overflow") == [("transfer", "*991002 XML acct-acme")]


def test_voicemail_pin_lockout_transcription(build: Build) -> None:
    vm = params(xml(build, "autoload_configs/voicemail.conf.xml"), ".//profile[@name='acct-acme']/param")
    assert vm["max-login-attempts"] == "3"
    d = xml(build, "directory/acme.xml")
    u1001 = params(d, ".//user[@id='1001']/params/param")
    assert (u1001["vm-enabled"], u1001["vm-password"]) == ("true", "$${zp_vm_pin_acme_1001}")
    v1001 = params(d, ".//user[@id='1001']/variables/variable")
    assert v1001["zp_vm_transcription"] == "https://transcribe.acme.example/hook"
    u1003 = params(d, ".//user[@id='1003']/params/param")
    assert u1003["vm-enabled"] == "false"
    assert "vm-password" not in u1003
    v1003 = params(d, ".//user[@id='1003']/variables/variable")
    assert v1003["sound_prefix"] == "$${zp_sounds}/es-US"  # the user's own prompt language


def test_voicemail_is_shared_by_the_switches_and_speaks_our_prompts(build: Build) -> None:
    """Boxes and their index on the data center's shared storage (a message left through
    one switch is heard through any other); the phrase macros voicemail plays are ours."""
    vm = params(xml(build, "autoload_configs/voicemail.conf.xml"),
                ".//profile[@name='acct-acme']/param")
    assert vm["storage-dir"] == "$${zp_shared}/voicemail/acme"
    assert vm["odbc-dsn"] == "sqlite://$${zp_shared}/voicemail.db"
    assert params(xml(build, "autoload_configs/db.conf.xml"), ".//param")["odbc-dsn"] == \
        "sqlite://$${zp_shared}/zpctl.db"
    assert 'data="zp_shared=/var/lib/zpctl/shared"' in text(build, "vars.xml")
    langs = xml(build, "lang/languages.xml")
    en = langs.find(".//language[@name='en-US']")
    assert en is not None and en.get("sound-prefix") == "$${zp_sounds}/en-US"
    greeting = en.find(".//macro[@name='voicemail_play_greeting']//action")
    assert greeting is not None and greeting.get("data") == "voicemail/vm-not_available.wav"
    assert {lang.get("name") for lang in langs.iter("language")} >= {"en-US", "es-US"}
    # leaving a message asks nothing after the recording; a locked box says so
    assert ("set", "skip_record_check=true") in actions(build, "vm-direct-1001")
    root = xml(build, "dialplan/acme.xml")
    guard = root.find(".//extension[@name='vm-own-locked']")
    assert guard is not None
    fields = [c.get("field", "") for c in guard.iter("condition")]
    assert "${db(select/zp_vmlock/${caller_id_number}@acme.lab.zpctl.test)}" in fields
    assert ("playback", "voicemail/vm-locked.wav") in actions(build, "vm-own-locked")


def test_mwi_and_pin_lockout_hooks(build: Build, mini: LoadedInventory) -> None:
    lua = params(xml(build, "autoload_configs/lua.conf.xml"), ".//param")
    assert lua["script-directory"].endswith("/freeswitch/scripts/?.lua")
    hooks = {(h.get("event"), h.get("subclass")): h.get("script", "")
             for h in xml(build, "autoload_configs/lua.conf.xml").iter("hook")}
    assert hooks[("MESSAGE_WAITING", None)].endswith("/scripts/zp_mwi.lua")
    assert hooks[("CUSTOM", "vm::maintenance")].endswith("/scripts/zp_vm_auth.lua")
    # MWI goes to the switch's own zone proxy, over TLS
    proxy = next(n for n in mini.nodes() if n.name == "lab1-a-proxy").node
    assert f'"@{proxy.address}:{proxy.ports.sips};transport=tls"' in text(build, "scripts/zp_mwi.lua")
    # the account's lockout limit (default 6) per domain
    assert '["acme.lab.zpctl.test"] = 6,' in text(build, "scripts/zp_vm_auth.lua")
    aliases = [a.get("name") for a in xml(build, "sip_profiles/zpctl.xml").iter("alias")]
    assert "acme.lab.zpctl.test" in aliases


def test_video_mail_flag(us01: LoadedInventory) -> None:
    build = render(us01, _secrets())
    d = ET.fromstring(build.files["us-east-ny-a-switch1/freeswitch/directory/northwind.xml"].data)
    assert params(d, ".//user[@id='1001']/variables/variable")["zp_video_mail"] == "true"
    assert "zp_video_mail" not in params(d, ".//user[@id='1002']/variables/variable")


def test_call_handling_forwarding_recording_and_hold_music(build: Build) -> None:
    ring = actions(build, "user-1001")
    assert ("set", "hold_music=local_stream://acme-jazz") in ring
    # the file's name is the call record's (switch_cdr.recording) and the recording's
    path = "$${zp_recordings}/acme/${strftime(%Y-%m-%d)}/${uuid}.wav"
    at = ring.index(("set", f"zp_recording={path}"))
    assert ring[at + 1] == ("record_session", "${zp_recording}")
    assert ("bind_meta_app", "2 ab s record_session::$${zp_recordings}/acme/${strftime(%Y-%m-%d)}"
                             "/${uuid}.wav") in ring
    # rings its ring_seconds (the leg timeout: the proxy failover's cause list turns the
    # originate's own timeout off)
    assert ring[-2:] == [("bridge", "[leg_timeout=25]user/1001@acme.lab.zpctl.test"),
                         ("transfer", "u-1001-failed XML acct-acme")]
    assert actions(build, "user-1001-busy") == [("transfer", "*991001 XML acct-acme")]
    assert actions(build, "user-1001-no_answer") == [("transfer", "1002 XML acct-acme")]
    streams = [d.get("name") for d in xml(build, "autoload_configs/local_stream.conf.xml")]
    assert streams == ["default", "acme-jazz"]


def test_park_conference_shared_line_paging(build: Build) -> None:
    assert actions(build, "park-main")[-1] == ("valet_park", "acme-main auto in 801 803")
    assert ("set", "valet_parking_orbit_exten=1002") in actions(build, "park-main")
    assert actions(build, "park-main-retrieve")[-1] == ("valet_park", "acme-main $1")
    assert actions(build, "conference-huddle-moderator")[-1] == \
        ("conference", "acme-huddle@zp-acme-huddle+flags{moderator}")
    conf = params(xml(build, "autoload_configs/conference.conf.xml"),
                  ".//profile[@name='zp-acme-huddle']/param")
    assert conf["pin"] == "$${zp_conf_pin_acme_huddle}"
    assert ("bridge", "[leg_timeout=30]user/1001@acme.lab.zpctl.test,"
                      "[leg_timeout=30]user/1002@acme.lab.zpctl.test") in \
        actions(build, "shared-front")
    page = actions(build, "paging-all")
    assert [d for a, d in page if a == "conference_set_auto_outcall"] == \
        ["[leg_timeout=10]user/1002@acme.lab.zpctl.test", "[leg_timeout=10]user/1003@acme.lab.zpctl.test"]
    # members muted (a page is one way), under both names FreeSWITCH versions read
    assert {("set", "conference_auto_outcall_flags=mute"),
            ("set", "conference_utils_auto_outcall_flags=mute")} <= set(page)
    dp = xml(build, "dialplan/acme.xml")
    sender = dp.find(".//extension[@name='paging-all']/condition[1]")
    assert sender is not None
    assert sender.get("expression") == "^(1001)$"  # only permitted senders page


def test_monitoring_only_for_permitted_supervisors(build: Build) -> None:
    dp = xml(build, "dialplan/acme.xml")
    names = [e.get("name") for e in dp.iter("extension") if (e.get("name") or "").startswith(
        "monitor-")]
    assert names == ["monitor-1004-1-listen", "monitor-1004-1-whisper", "monitor-1004-1-barge"]
    first = dp.find(".//extension[@name='monitor-1004-1-whisper']/condition[1]")
    assert first is not None
    assert first.get("expression") == "^1004$"
    targets = dp.find(".//extension[@name='monitor-1004-1-whisper']/condition[2]")
    assert targets is not None
    assert targets.get("expression") == r"^\*31(1001|1002)$"  # user:1001 and sales' agent 1002
    whisper = actions(build, "monitor-1004-1-whisper")
    assert ("set", "eavesdrop_whisper_bleg=true") in whisper
    assert ("set", "eavesdrop_whisper_aleg=true") not in whisper
    barge = actions(build, "monitor-1004-1-barge")
    assert {("set", "eavesdrop_whisper_bleg=true"), ("set", "eavesdrop_whisper_aleg=true")} <= \
        set(barge)
    assert ("export", "eavesdrop_group=acme-1001") in actions(build, "user-1001")


def test_blocking_spam_caller_id_and_emergency(build: Build) -> None:
    dp = xml(build, "dialplan/acme.xml")
    blocked = dp.find(".//extension[@name='zp-blocked']/condition")
    assert blocked is not None
    assert blocked.get("expression") == r"^(\+1900[0-9]*)$"
    assert actions(build, "zp-spam") == [("hangup", "UNWANTED")]
    assert ("set", "zp_caller_id=+15550100002") in actions(build, "zp-caller-1001")
    emerg = dict(actions(build, "emergency-hq"))
    em = [d for a, d in actions(build, "emergency-hq") if a == "set"]
    assert "sip_h_X-ZP-Emergency-Address=1 Main St, Springfield, NY, 12345, US" in em
    assert "effective_caller_id_number=+15550100001" in em
    assert emerg["bridge"].startswith(
        "{^^:" + NEXT_PROXY_ONLY_IF_DOWN + "}[leg_timeout=60,sip_route_uri=sip:127.0.1.11:5061;"
        "transport=tls,sip_transport=tls]sofia/zpctl/$1@acme.lab.zpctl.test|")
    cond = dp.find(".//extension[@name='emergency-hq']/condition[2]")
    assert cond is not None
    assert cond.get("expression") == "^(911|933)$"


def test_prompt_languages_map_to_sound_prefixes(build: Build) -> None:
    prefixes = {sound_prefix(code) for code in catalog.LANGUAGES}
    assert len(prefixes) == len(catalog.LANGUAGES) == 40
    with pytest.raises(KeyError):
        sound_prefix("xx")
    sounds = text(build, "sounds.txt").splitlines()
    assert "es-US/ivr/ivr-welcome.wav" in sounds
    assert "en-US/ivr/ivr-welcome.wav" in sounds
    assert "accounts/acme/main-greeting.wav" in sounds
    assert "music acme/jazz/" in sounds


def test_dial_by_name_directory_has_each_users_spoken_name(build: Build) -> None:
    assert directory_name("Dave Dunn (supervisor)") == "Dave Dunn"
    assert directory_name("  Zoë  O'Neil-Smith / ops ") == "Zoë O'Neil-Smith ops"
    assert directory_name("(nobody)") == ""
    users = xml(build, "directory/acme.xml")
    full = {u.get("id"): next(v.get("value") for v in u.iterfind(".//variable")
                              if v.get("name") == "directory_full_name")
            for u in users.iterfind(".//user")}
    assert full["1002"] == "Bob Baker"
    sounds = text(build, "sounds.txt").splitlines()
    # the menu names the directory (key 3): one name prompt per user, spoken from it
    assert sorted(s for s in sounds if s.startswith("names/")) == \
        sorted(f"names/{n}.wav" for n in full.values())
    macros = xml(build, "lang/languages.xml")
    say = macros.find(".//language[@name='en-US']//macro[@name='directory_result_say_name']")
    assert say is not None
    assert [a.get("data") for a in say.iter("action")] == ["$${zp_sounds}/names/$1.wav"]
    menu = macros.find(".//language[@name='en-US']//macro[@name='directory_result_menu']")
    assert menu is not None and [a.get("data") for a in menu.iter("action")] == \
        ["directory/dir-to_select_entry.wav"]


def test_names_are_spoken_only_for_accounts_with_a_directory(us01: LoadedInventory) -> None:
    build = render(us01, _secrets())
    sounds = {line for path, f in build.files.items() if path.endswith("/sounds.txt")
              for line in f.data.decode().splitlines()}
    with_dir = {f"names/{directory_name(u.name)}.wav" for a in us01.model.accounts
                if uses_directory(a.pbx) for u in a.users}
    without = {f"names/{directory_name(u.name)}.wav" for a in us01.model.accounts
               if not uses_directory(a.pbx) for u in a.users} - with_dir
    assert with_dir and without  # both kinds of account are in us01
    assert {s for s in sounds if s.startswith("names/")} == with_dir


def test_switches_serve_their_data_center_and_its_pair(us01: LoadedInventory) -> None:
    ny = us01.node("us-east-ny-a-switch1")
    va = us01.node("us-east-va-b-switch2")
    riyadh = us01.node("sa-riyadh-a-switch1")
    assert [a.id for a in served_accounts(us01.model, ny)] == ["northwind"]
    assert [a.id for a in served_accounts(us01.model, va)] == ["northwind"]  # the pair's sites
    assert [a.id for a in served_accounts(us01.model, riyadh)] == ["wingtip"]


def test_zone_switches_for_dispatcher_sets(us01: LoadedInventory, mini: LoadedInventory) -> None:
    assert [p.name for p in zone_switches(us01, "us-east-ny", "b")] == \
        ["us-east-ny-b-switch1", "us-east-ny-b-switch2"]
    assert [p.node.address for p in zone_switches(us01, "us-east-ny", "a")] == \
        ["10.3.1.14", "10.3.1.15"]
    assert [p.name for p in zone_switches(load_inventory(INVENTORIES / "lab"), "lab1", "a")] \
        == ["lab1-a-switch1", "lab1-a-switch2"]
    targets = esl_targets(select_switches(mini, zone="lab2"))
    assert [(t.name, t.host, t.port) for t in targets] == [
        ("lab2-a-switch1", "127.1.2.14", 8021), ("lab2-b-switch1", "127.1.2.24", 8021)]
    over = esl_targets(select_switches(mini, switch="lab2-a-switch1"), "127.0.0.1:9")
    assert (over[0].host, over[0].port) == ("127.0.0.1", 9)


def test_rendezvous_numbers_meet_on_one_switch(build: Build, mini: LoadedInventory) -> None:
    """Conferences, park lots and slots and paging groups live on one switch: every proxy of
    the data center lists the same switches in the same order (set 5) and sends those
    numbers to the first one up; a switch sends a call for one it did not get that way (a
    transfer) out to the proxy."""
    sets5 = {}
    for proxy in ("lab1-a-proxy", "lab1-b-proxy"):
        lines = build.files[f"{proxy}/kamailio/dispatcher.list"].data.decode().splitlines()
        sets5[proxy] = [ln.split()[1] for ln in lines if ln.startswith("5 ")]
        cfg = build.files[f"{proxy}/kamailio/kamailio.cfg"].data.decode()
        assert ('#!define RENDEZVOUS "^(([*]757100|[*]767100|7100|800|801|802|803|8800|8900)'
                '@acme[.]lab[.]zpctl[.]test)$"' in cfg)
        assert 'ds_select_dst("5", "8")' in cfg
    switches = sorted((p for p in mini.nodes() if p.role.value == "switch" and p.dc.id == "lab1"),
                      key=lambda p: p.name)
    want = [f"sip:{p.node.address}:{p.node.ports.sips};transport=tls" for p in switches]
    assert sets5["lab1-a-proxy"] == sets5["lab1-b-proxy"] == want
    rdv = xml(build, "dialplan/acme.xml").find(".//extension[@name='zp-rendezvous']")
    assert rdv is not None
    conds = {c.get("field"): c.get("expression") for c in rdv.iter("condition")}
    assert conds["${sip_h_X-ZP-Rendezvous}"] == "^$"
    assert conds["destination_number"] == r"^(\*757100|\*767100|7100|800|801|802|803|8800|8900)$"
    [(app, data), _] = actions(build, "zp-rendezvous")
    assert app == "bridge" and data.startswith("{^^:" + NEXT_PROXY_ONLY_IF_DOWN + "}[leg_timeout=60,"
                                               "sip_route_uri=sip:")


def test_pins_are_digits_non_trivial_and_stable() -> None:
    pins = {pin_digits(f"seed-{i}", 6, True) for i in range(300)}
    assert all(len(p) == 6 and p.isdigit() for p in pins)
    assert not any(len(set(p)) == 1 or p in ("123456", "654321") for p in pins)
    assert pin_digits("same", 8, True) == pin_digits("same", 8, True)
    assert len(pin_digits("x", 12, True)) == 12


@pytest.mark.parametrize(("patterns", "matches", "misses"), [
    (["+1900*"], ["+1900", "+19005551234"], ["+1800555", "1900"]),
    (["anonymous"], ["anonymous", "Anonymous"], ["anon"]),
    (["+12125550100", "42"], ["+12125550100", "42"], ["+121255501000", "421"]),
])
def test_number_patterns(patterns: list[str], matches: list[str], misses: list[str]) -> None:
    rx = number_regex(patterns)
    assert rx is not None
    for m in matches:
        assert re.search(rx, m), m
    for m in misses:
        assert not re.search(rx, m), m


def test_lab_renders_its_switches(tmp_path: Path) -> None:
    build = render(load_inventory(INVENTORIES / "lab"), _secrets())
    assert sorted({p.split("/")[0] for p in build.files if "/freeswitch/" in p}) == [
        "lab1-a-switch1", "lab1-a-switch2", "lab1-b-switch1", "lab2-a-switch1", "lab2-b-switch1"]


def test_an_account_without_pbx_still_renders(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    shutil.copytree(MINI, inv)
    f = inv / "accounts" / "acme.yml"
    f.write_text(f.read_text().split("\npbx:\n")[0] + "\n")
    build = render(load_inventory(inv), _secrets())
    assert f"{SW}/dialplan/acme.xml" in build.files
    assert "<menu " not in build.files[f"{SW}/autoload_configs/ivr.conf.xml"].data.decode()
