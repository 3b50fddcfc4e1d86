"""Formatting command results: stdout carries data (table, JSON or YAML), stderr the logs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table (no colours, easy to grep)."""
    cells = [[str(c).upper() for c in columns]]
    cells += [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def emit(fmt: str, data: Any, rows: Sequence[dict[str, Any]] | None = None,
         columns: Sequence[str] | None = None, text: str | None = None) -> None:
    """Print ``data`` as JSON or YAML, or as a table / text for humans."""
    if fmt == "json":
        click.echo(json.dumps(_plain(data), indent=2, sort_keys=False))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True).rstrip())
    elif rows is not None and columns is not None:
        click.echo(table(rows, columns))
    elif text is not None:
        click.echo(text)
    else:
        click.echo(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True).rstrip())


def info(message: str) -> None:
    """A progress or log line for humans, on stderr."""
    click.echo(message, err=True)
