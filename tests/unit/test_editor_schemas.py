"""The editors' JSON Schemas (schemas/*.schema.json, `zpctl inventory schema KIND`): one per
kind of inventory file, current with the model, passing every shipped inventory file and
failing the mistakes a schema can express."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import INVENTORIES, REPO
from zpctl.model.schema import FILE_KINDS, file_schema

SCHEMAS = REPO / "schemas"
LAB = INVENTORIES / "lab"


def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _kind(path: Path) -> str:
    return {"datacenters": "datacenter", "accounts": "account"}.get(path.parent.name, "platform")


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_the_shipped_schemas_are_current(kind: str) -> None:
    want = json.dumps(file_schema(kind), indent=2, sort_keys=True) + "\n"
    path = SCHEMAS / f"{kind}.schema.json"
    if os.environ.get("ZPCTL_REGEN_GOLDEN"):
        path.write_text(want)
    assert path.read_text() == want, "run: zpctl inventory schema --out-dir schemas"


SHIPPED = sorted(p for inv in INVENTORIES.iterdir() for p in
                 [inv / "platform.yml", *sorted((inv / "datacenters").glob("*.yml")),
                  *sorted((inv / "accounts").glob("*.yml"))] if p.exists())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(INVENTORIES)))
def test_every_shipped_inventory_file_passes_its_schema(path: Path) -> None:
    errors = list(_validator(_kind(path)).iter_errors(yaml.safe_load(path.read_text())))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


def _edited(rel: str, old: str, new: str) -> Any:
    text = (LAB / rel).read_text()
    assert text.count(old) == 1, old
    return yaml.safe_load(text.replace(old, new))


MISTAKES = [
    ("zone key B", "datacenters/lab1.yml", "  b:\n", "  B:\n"),
    ("bad IP", "datacenters/lab1.yml", "address: 127.0.1.1,", "address: 127.0.1.311,"),
    ("IPv6 public address", "datacenters/lab1.yml", "public_address: 127.0.1.113,",
     'public_address: "2001:db8::31",'),
    ("unknown language", "accounts/acme.yml", "    language: en-US\n", "    language: xx-YY\n"),
    ("SIP domain with a space", "platform.yml", "sip_domain: lab.zpctl.test",
     'sip_domain: "eurotel example"'),
    ("unknown currency", "accounts/acme.yml", "billing: {currency: USD}", "billing: {currency: ABC}"),
    ("unquoted extension (YAML octal)", "accounts/acme.yml", 'extension: "1001"', "extension: 0101"),
    ("unknown feature", "accounts/acme.yml", "call_recording_adhoc]", "call_recording_adhok]"),
    ("unknown India circle", "../india/accounts/aravalli.yml", "  circle: delhi\n",
     "  circle: new-delhi\n"),
    ("unknown key", "platform.yml", "  switch_tier: true\n", "  switch_tier: true\n  tier: 2\n"),
]


@pytest.mark.parametrize(("what", "rel", "old", "new"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_fails_the_schema(what: str, rel: str, old: str, new: str) -> None:
    assert not list(_validator(_kind(LAB / rel)).iter_errors(yaml.safe_load((LAB / rel).read_text())))
    assert list(_validator(_kind(LAB / rel)).iter_errors(_edited(rel, old, new))), what
