"""``tollgate diff|apply -f gateway.yaml`` and ``tollgate dump``: the declarative config.

The control plane computes the changes (``POST /v1/config/apply``, ``dry_run`` for diff) and applies
them in one transaction; this module reads the file, shows the answer and turns error locations into
``gateway.yaml:LINE:COL: field.path: message``.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from tollgate import render
from tollgate.adminclient import AdminClient, AdminError
from tollgate.cli_resources import OutputOpt, TokenOpt, UrlOpt
from tollgate.render import Output
from tollgate.yamlsource import Source, SourceError, load

FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The declarative config (YAML)", show_default=False)]
PruneOpt = Annotated[bool, typer.Option("--prune", help="Also delete resources the file does not name")]

_STYLE = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}


class DumpFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def _value(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def show_changes(result: dict[str, Any]) -> None:
    console = render.stdout()
    changes = result["changes"]
    for change in changes:
        sign, colour = _STYLE[change["action"]]
        # Deleting a customer deletes its API keys (cascade): say so before anyone applies it.
        note = " (and its API keys)" if change["action"] == "delete" and change["kind"] == "customer" else ""
        console.print(f"[{colour}]{sign} {escape(change['address'])}{note}[/]")
        if change["action"] == "update":
            for name in change["fields"]:
                old, new = _value(change["before"].get(name)), _value(change["after"].get(name))
                console.print(f"    {escape(name)}: [red]{escape(old)}[/] → [green]{escape(new)}[/]")
        elif change["action"] == "create":
            shown = ", ".join(f"{k}={_value(v)}" for k, v in change["after"].items())
            console.print(f"    [dim]{escape(shown)}[/]")
    counts = {a: sum(1 for c in changes if c["action"] == a) for a in _STYLE}
    if not changes:
        console.print("no changes")
    else:
        console.print(f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete")


def _report_invalid(source: Source, exc: AdminError) -> bool:
    """Print validation errors as file:line:col; False when the error is not about the document."""
    errors = [(loc[1:], msg) for loc, msg in exc.errors() if loc[:1] == ["config"]]
    if not errors:
        return False
    console = render.stderr()
    for loc, msg in errors:
        path = ".".join(str(p) for p in loc) or "(document)"
        console.print(f"{escape(source.where(loc))}: {escape(path)}: {escape(msg)}", markup=True)
    return True


def _apply(file: Path, *, prune: bool, dry_run: bool, url: str | None, token: str | None) -> dict[str, Any]:
    try:
        source = load(file)
    except SourceError as exc:
        render.stderr().print(escape(str(exc)))
        raise typer.Exit(1) from None
    try:
        with AdminClient(url, token) as client:
            result: dict[str, Any] = client.post(
                "/v1/config/apply", {"config": source.data, "prune": prune, "dry_run": dry_run}
            )
            return result
    except AdminError as exc:
        if exc.status != 422 or not _report_invalid(source, exc):
            render.error(exc)
        raise typer.Exit(1) from None


def diff(
    file: FileOpt,
    prune: PruneOpt = False,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 2 when there are changes")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show what `apply` would change (create / update with fields / delete); changes nothing."""
    result = _apply(file, prune=prune, dry_run=True, url=url, token=token)
    if output is Output.table:
        show_changes(result)
    else:
        render.data(result, output)
    if exit_code and result["changes"]:
        raise typer.Exit(2)


def apply(
    file: FileOpt,
    prune: PruneOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Make the control plane match the file: one transaction, one new revision (none if nothing changed)."""
    result = _apply(file, prune=prune, dry_run=False, url=url, token=token)
    if output is not Output.table:
        render.data(result, output)
        return
    show_changes(result)
    if result["changed"]:
        render.stdout().print(f"applied: revision {result['revision']}")


def dump(
    file: Annotated[Path, typer.Option("--file", "-f", help="Write here instead of stdout")] = Path("-"),
    output: Annotated[DumpFormat, typer.Option("--output", "-o", help="yaml | json")] = DumpFormat.yaml,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write the current config in the declarative format (what `apply -f` takes)."""
    try:
        with AdminClient(url, token) as client:
            doc = client.get("/v1/config/export")
            revision = client.get("/v1/config")["revision"]
    except AdminError as exc:
        render.error(exc)
        raise typer.Exit(1) from None
    if output is DumpFormat.json:
        text = json.dumps(doc, indent=2) + "\n"
    else:
        header = f"# Tollgate gateway config (revision {revision}). Apply with: tollgate apply -f FILE\n"
        text = header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if str(file) == "-":
        sys.stdout.write(text)
        return
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, file)
    render.stderr().print(f"wrote revision {revision} to {escape(str(file))}")


def register(root: typer.Typer) -> None:
    root.command("diff")(diff)
    root.command("apply")(apply)
    root.command("dump")(dump)
