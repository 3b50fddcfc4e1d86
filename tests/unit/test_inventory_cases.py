"""Every kind of bad inventory: exit code 3, and each problem named by file, line, field, reason.

How it works: each file in ``inventory_cases/`` is one case.  It names a valid base inventory
(``lab``: a frozen copy of the shipped lab in ``fixtures/lab``; ``india-mini``:
``fixtures/india-mini``; ``site-mini``: ``tests/integration/fixtures/site-mini``, a site with local
survivability), a list of edits to make to a copy of it, and the problems the copy must produce::

    description: duplicate extension within an account
    base: lab
    edits:
      - file: accounts/acme.yml
        replace: {old: 'extension: "1002"', new: 'extension: "1001"'}
      # or  write: "<whole file>"   (create or overwrite)   or  delete: true
    expect:
      - {file: accounts/acme.yml, line: 40, field: users[1].extension, reason: duplicate extension}

``file``, ``line`` and ``field`` must match exactly (``line`` may be omitted where no line is
known); ``reason`` is a substring.  The expected problems must be *all* the problems: one
actual problem per expected one, nothing left over, so a case also proves that a mistake is
reported once and drags no noise along.  A ``replace`` must find its ``old`` text exactly
once, so a case cannot silently stop applying when the base inventory changes.

Each case runs three ways: the library (``load_inventory`` raises ``InventoryError``), the CLI
with ``-o json`` (exit 3, the problems on stdout) and the CLI in table mode (exit 3,
``FILE:LINE: FIELD: REASON`` lines on stderr), never with a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from zpctl.cli.main import main
from zpctl.errors import ExitCode, InventoryError, Problem
from zpctl.model import load_inventory

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "inventory_cases"
# A frozen copy of the lab inventory: cases quote its exact text and line numbers.
BASES = {"lab": HERE / "fixtures" / "lab", "india-mini": HERE / "fixtures" / "india-mini",
         "site-mini": HERE.parent / "integration" / "fixtures" / "site-mini"}

CASE_KEYS = {"description", "base", "edits", "expect"}
EXPECT_KEYS = {"file", "line", "field", "reason"}
EDIT_KINDS = ("replace", "write", "delete")


@dataclass(frozen=True)
class Expected:
    file: str
    line: int | None  # None: not checked
    field: str
    reason: str  # a substring of the actual reason

    def matches(self, p: Problem, file: str) -> bool:
        return (file == self.file and self.field == p.field and self.reason in p.reason
                and (self.line is None or self.line == p.line))

    def __str__(self) -> str:
        return f"{self.file}:{self.line if self.line is not None else '?'}: {self.field}: " \
               f"...{self.reason}..."


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    base: str
    edits: list[dict[str, Any]]
    expect: list[Expected]

    def build(self, dest: Path) -> Path:
        """Copy the base inventory to ``dest`` and apply the edits; return ``dest``."""
        shutil.copytree(BASES[self.base], dest)
        for edit in self.edits:
            target = dest / edit["file"]
            if "replace" in edit:
                old, new = edit["replace"]["old"], edit["replace"]["new"]
                text = target.read_text(encoding="utf-8")
                found = text.count(old)
                assert found == 1, (f"{self.name}: replace in {edit['file']}: {old!r} occurs "
                                    f"{found} times, expected once")
                target.write_text(text.replace(old, new), encoding="utf-8")
            elif "write" in edit:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(edit["write"], encoding="utf-8")
            else:
                assert target.exists(), f"{self.name}: delete {edit['file']}: no such file"
                target.unlink()
        return dest


def _load_case(path: Path) -> Case:
    """Parse and sanity-check one case file (a malformed case fails loudly, not vacuously)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    name = path.stem
    assert isinstance(raw, dict), f"{name}: a case is a mapping"
    assert set(raw) <= CASE_KEYS, f"{name}: unknown keys {sorted(set(raw) - CASE_KEYS)}"
    assert raw.get("description"), f"{name}: description is required"
    assert raw.get("base") in BASES, f"{name}: base must be one of {sorted(BASES)}"
    edits = raw.get("edits") or []
    for e in edits:
        kinds = [k for k in EDIT_KINDS if k in e]
        assert "file" in e, f"{name}: an edit names its file"
        assert len(kinds) == 1, f"{name}: an edit does one of {EDIT_KINDS}"
        assert set(e) == {"file", kinds[0]}, f"{name}: unknown edit keys in {e}"
        if kinds[0] == "replace":
            assert set(e["replace"]) == {"old", "new"}, f"{name}: replace takes old and new"
        if kinds[0] == "delete":
            assert e["delete"] is True, f"{name}: delete: true"
    expect = raw.get("expect") or []
    assert expect, f"{name}: a case expects at least one problem"
    out = []
    for x in expect:
        assert {"file", "field", "reason"} <= set(x) <= EXPECT_KEYS, f"{name}: bad expectation {x}"
        assert x["reason"], f"{name}: an empty reason matches anything"
        out.append(Expected(x["file"], x.get("line"), x["field"], x["reason"]))
    return Case(name, raw["description"], raw["base"], edits, out)


CASES = [_load_case(p) for p in sorted(CASES_DIR.glob("*.yml"))]


def _check(case: Case, problems: list[Problem], rel: Any) -> None:
    """Each expected problem matches a distinct actual one, and nothing is left over."""
    left = list(problems)
    missing = []
    for exp in case.expect:
        hit = next((p for p in left if exp.matches(p, rel(p.file))), None)
        if hit is None:
            missing.append(exp)
        else:
            left.remove(hit)
    actual = "\n".join(f"  {rel(p.file)}:{p.line}: {p.field}: {p.reason}" for p in problems)
    report = (f"{case.name} ({case.description})\n"
              + "".join(f"expected, not reported: {m}\n" for m in missing)
              + "".join(f"reported, not expected: {rel(p.file)}:{p.line}: {p.field}: {p.reason}\n"
                        for p in left)
              + f"all reported:\n{actual}")
    assert not missing, report
    assert not left, report


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err
    assert "internal error" not in err


def test_there_are_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("base", sorted(BASES))
def test_base_is_valid(base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv"
    shutil.copytree(BASES[base], inv)
    load_inventory(inv)
    assert main(["-o", "json", "inventory", "validate", str(inv)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["valid"] is True
    _no_traceback(err)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_library_reports_every_problem(case: Case, tmp_path: Path) -> None:
    root = case.build(tmp_path / "inv")
    with pytest.raises(InventoryError) as info:
        load_inventory(root)
    assert info.value.exit_code == ExitCode.INVALID_INVENTORY == 3

    def rel(file: str) -> str:
        return Path(file).relative_to(root).as_posix()

    _check(case, info.value.problems, rel)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_json_lists_every_problem(case: Case, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    case.build(tmp_path / "inv")
    monkeypatch.chdir(tmp_path)  # a relative inventory path: problems name files relative too
    assert main(["-o", "json", "inventory", "validate", "inv"]) == 3
    out, err = capsys.readouterr()
    _no_traceback(err)
    doc = json.loads(out)
    assert doc["valid"] is False
    problems = [Problem(**p) for p in doc["problems"]]
    assert all(p.file == "inv" or p.file.startswith("inv/") for p in problems)
    _check(case, problems, lambda f: f.removeprefix("inv/"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_table_names_file_line_field_reason(case: Case, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    case.build(tmp_path / "inv")
    monkeypatch.chdir(tmp_path)
    assert main(["inventory", "validate", "inv"]) == 3
    out, err = capsys.readouterr()
    assert out == ""  # data on stdout only; the problems are an error message on stderr
    _no_traceback(err)
    n = len(case.expect)
    assert f"inventory is invalid ({n} problem{'s' if n != 1 else ''})" in err
    lines = [ln.strip() for ln in err.splitlines()[1:]]
    for exp in case.expect:
        line = str(exp.line) if exp.line is not None else "[0-9]+"
        field = f"{re.escape(exp.field)}: " if exp.field else ""
        pattern = re.compile(f"{re.escape('inv/' + exp.file)}(:{line})?: {field}(?P<reason>.*)")
        assert any((m := pattern.fullmatch(ln)) and exp.reason in m["reason"] for ln in lines), \
            f"{case.name}: no line like {pattern.pattern!r} with {exp.reason!r} in:\n{err}"
