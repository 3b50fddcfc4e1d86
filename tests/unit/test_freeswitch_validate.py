"""The FreeSWITCH validator: a valid render passes; every kind of violation is caught.

How it works: the small switch inventory (fixtures/switch-mini) is rendered once and the
tree of one switch (lab1-a-switch1) is the base, which must validate clean.  Each file in
``freeswitch_cases/`` is one case: an edit to one file of that tree and the violation it
must produce (file exactly, element and reason as substrings)::

    description: a weak TLS version is refused
    file: sip_profiles/zpctl.xml
    replace: {old: 'value="tlsv1.2,tlsv1.3"', new: 'value="tlsv1,tlsv1.2"'}
    # or  regex: {old: RE, new: TEXT}   or  write: "<whole file>"
    expect: {file: sip_profiles/zpctl.xml, element: "param[@name='tls-version']",
             reason: "tlsv1 is below TLS 1.2"}

A ``replace`` must find its text (the first occurrence is replaced), so a case cannot
silently stop applying when the templates change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import INVENTORIES, shipped_inventories
from zpctl.cli.main import main
from zpctl.errors import ExitCode, RenderError
from zpctl.model import load_inventory
from zpctl.render import Build, render
from zpctl.render.freeswitch_validate import (
    Violation,
    check_build,
    switch_trees,
    validate_build,
    validate_conf,
    validate_dir,
)
from zpctl.secrets import Secrets

HERE = Path(__file__).resolve().parent
MINI = HERE / "fixtures" / "switch-mini"
CASES_DIR = HERE / "freeswitch_cases"
HOST = "lab1-a-switch1"


def _secrets() -> Secrets:
    return Secrets(Path("/nonexistent"), {"esl_password": "esl-pw-test", "topoh_mask_key": "k",
                                          "db_password": "p", "auth_nonce_secret": "n"})


@pytest.fixture(scope="module")
def mini_build() -> Build:
    return render(load_inventory(MINI), _secrets())


@pytest.fixture(scope="module")
def base(mini_build: Build) -> dict[str, bytes]:
    return switch_trees({p: f.data for p, f in mini_build.files.items()})[HOST]


def _cases() -> list[Path]:
    return sorted(CASES_DIR.glob("*.yml"))


def test_there_are_many_cases() -> None:
    assert len(_cases()) >= 45


def test_the_base_tree_is_clean(base: dict[str, bytes]) -> None:
    assert validate_conf(base) == []


@pytest.mark.parametrize("inventory", [*shipped_inventories(), MINI], ids=lambda p: p.name)
def test_every_rendered_switch_validates(inventory: Path) -> None:
    build = render(load_inventory(inventory), _secrets())
    assert validate_build(build) == []


def test_us01_has_switches_and_they_validate() -> None:
    build = render(load_inventory(INVENTORIES / "us01"), _secrets())
    trees = switch_trees({p: f.data for p, f in build.files.items()})
    assert len(trees) == 64  # 16 data centers x 2 zones x 2 switches
    check_build(build)  # raises on any violation


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.stem)
def test_violation_is_caught(case: Path, base: dict[str, bytes]) -> None:
    doc = yaml.safe_load(case.read_text(encoding="utf-8"))
    assert set(doc) <= {"description", "file", "replace", "regex", "write", "expect"}, case.name
    tree = dict(base)
    name = doc["file"]
    if "write" in doc:
        tree[name] = doc["write"].encode()
    else:
        text = tree[name].decode()
        if "replace" in doc:
            old, new = doc["replace"]["old"], doc["replace"]["new"]
            assert old in text, f"{case.name}: {old!r} not found in {name}"
            text = text.replace(old, new, 1)
        else:
            old, new = doc["regex"]["old"], doc["regex"]["new"]
            text, n = re.subn(old, new, text)
            assert n, f"{case.name}: regex {old!r} matched nothing in {name}"
        tree[name] = text.encode()
    found = validate_conf(tree)
    exp = doc["expect"]
    hits = [v for v in found if v.file == exp["file"] and exp["element"] in v.element
            and exp["reason"] in v.reason]
    assert hits, f"{case.name}: expected {exp}, got:\n" + "\n".join(map(str, found))


def test_violations_name_file_element_and_reason(base: dict[str, bytes]) -> None:
    tree = dict(base)
    tree["sip_profiles/zpctl.xml"] = tree["sip_profiles/zpctl.xml"].replace(
        b'value="tlsv1.2,tlsv1.3"', b'value="tlsv1.2, sslv3"')
    found = validate_conf(tree, f"{HOST}/freeswitch/")
    assert Violation(f"{HOST}/freeswitch/sip_profiles/zpctl.xml",
                     "/include/profile[@name='zpctl']/settings[1]/param[@name='tls-version']",
                     "tls-version must be comma-separated without spaces (FreeSWITCH ignores "
                     "unknown tokens silently): 'tlsv1.2, sslv3'") in found
    assert str(found[0]).startswith(f"{HOST}/freeswitch/sip_profiles/zpctl.xml: /include/")


def test_check_build_raises_render_error(mini_build: Build) -> None:
    broken = Build(dict(mini_build.files))
    path = f"{HOST}/freeswitch/autoload_configs/callcenter.conf.xml"
    f = broken.files[path]
    broken.files[path] = type(f)(f.data.replace(b'value="round-robin"', b'value="fifo"'), f.mode)
    with pytest.raises(RenderError) as info:
        check_build(broken)
    assert info.value.exit_code == ExitCode.RENDER_FAILED == 4
    assert "callcenter.conf.xml" in info.value.message
    assert "param[@name='strategy']" in info.value.message
    assert "unknown strategy 'fifo'" in info.value.message


def test_validate_a_written_tree(mini_build: Build, tmp_path: Path) -> None:
    mini_build.write(tmp_path / "out")
    assert validate_dir(tmp_path / "out" / HOST / "freeswitch") == []
    (tmp_path / "out" / HOST / "freeswitch" / "stray.xml").write_text("<include/>")
    found = validate_dir(tmp_path / "out" / HOST / "freeswitch")
    assert any("stray.xml" in v.file and "not reached" in v.reason for v in found)


def test_zpctl_render_fails_with_exit_4_on_a_violation(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI hook: a template change FreeSWITCH would misread stops `zpctl render`."""
    import zpctl.render.freeswitch as fsr  # noqa: PLC0415

    monkeypatch.setattr(fsr, "tls_versions", lambda _v: "tlsv1.2, tlsv1.3")
    code = main(["render", str(MINI), "--out", str(tmp_path / "out"), "--no-check"])
    _, err = capsys.readouterr()
    assert code == 4
    assert "FreeSWITCH config problem" in err
    assert "sip_profiles/zpctl.xml: /include/profile[@name='zpctl']/settings[1]/" \
           "param[@name='tls-version']: tls-version must be comma-separated without spaces" in err
    assert not (tmp_path / "out").exists()  # nothing written
    monkeypatch.undo()
    assert main(["render", str(MINI), "--out", str(tmp_path / "out"), "--no-check"]) == 0
