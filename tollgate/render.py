"""Output for the admin commands: Rich tables for people, JSON or YAML for scripts (``--output``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tollgate.adminclient import AdminError


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


PIPE_WIDTH = 200  # Rich assumes 80 columns off a terminal; ids alone take 36


def stdout() -> Console:
    # Built per call: the test runner swaps sys.stdout, and a pipe should get no colour codes.
    return Console(file=sys.stdout, soft_wrap=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) if isinstance(v, dict) else str(v) for v in value) or "-"
    if isinstance(value, dict):  # a nested object (a throttle, a health check): key=value, not a repr
        shown = [f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else cell(v)}" for k, v in value.items()]
        return ", ".join(s for s, v in zip(shown, value.values(), strict=True) if v is not None) or "-"
    if isinstance(value, str) and len(value) > 19 and value[4:5] == "-" and value[10:11] == "T":
        return value[:19].replace("T", " ")  # ISO timestamps: to the second is enough in a table
    return str(value)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None) -> Table:
    # A column empty in every row (a key's secret outside `create`, no last error) only takes room.
    if rows:
        columns = [c for c in columns if c in ("id", "name") or not all(_empty(r.get(c)) for r in rows)]
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold", no_wrap=c == "id")
    for row in rows:
        t.add_row(*(Text(cell(row.get(c))) for c in columns))  # Text: values are never markup
    return t


def record(item: dict[str, Any], columns: Sequence[str]) -> Table:
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for c in columns:
        t.add_row(c, Text(cell(item.get(c))))
    return t


def data(value: Any, output: Output) -> None:
    """Print plain data as JSON or YAML (the table form is the caller's)."""
    if output is Output.json:
        sys.stdout.write(json.dumps(value, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(value, sort_keys=False, allow_unicode=True))


def error(exc: AdminError | str) -> None:
    stderr().print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
