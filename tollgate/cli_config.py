"""``tollgate diff|apply -f gateway.yaml`` and ``tollgate dump``: the declarative config.

The control plane computes the changes (``POST /v1/config/apply``, ``dry_run`` for diff) and applies
them in one transaction; this module reads the file (and the certificates' ``cert_file`` / ``key_file``
it names), shows the answer and turns error locations into ``gateway.yaml:LINE:COL: field.path: message``.
``dump -f FILE`` writes each certificate's chain to ``<name>.crt`` beside FILE and never a key (the
export has none), so ``dump`` then ``diff`` shows no change.
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


def read_certificate_files(source: Source, base: Path) -> None:
    """Replace each certificate's ``cert_file`` / ``key_file`` (relative to ``base``, the file's directory)
    by the PEM they hold, as the admin API takes it.  A private key written into the file itself is
    refused: the file is meant for git."""
    for i, entry in enumerate(source.data.get("certificates") or []):
        if not isinstance(entry, dict):
            continue  # the control plane reports the shape
        if entry.get("key") is not None:
            loc: list[str | int] = ["certificates", i, "key"]
            raise SourceError(
                f"{source.where(loc)}: certificates.{i}.key: a private key is not written in the file; "
                "name its PEM file in key_file"
            )
        for field, target in (("cert_file", "cert"), ("key_file", "key")):
            ref = entry.pop(field, None)
            if ref is None:
                continue
            path = Path(str(ref)).expanduser()
            path = path if path.is_absolute() else base / path
            try:
                entry[target] = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                where = source.where(["certificates", i, field])
                reason = getattr(exc, "strerror", None) or "not a PEM (ASCII) file"
                raise SourceError(f"{where}: certificates.{i}.{field}: cannot read {path}: {reason}") from None


def _apply(file: Path, *, prune: bool, dry_run: bool, url: str | None, token: str | None) -> dict[str, Any]:
    try:
        source = load(file)
        read_certificate_files(source, file.parent)
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
    to_stdout = str(file) == "-"
    crt_files = _certificate_references(doc, None if to_stdout else file.parent)
    if output is DumpFormat.json:
        text = json.dumps(doc, indent=2) + "\n"
    else:
        header = f"# Tollgate gateway config (revision {revision}). Apply with: tollgate apply -f FILE\n"
        if doc.get("certificates"):
            header += (
                "# Private keys are never exported: to create these certificates on another control plane,\n"
                "# add key_file: NAME.key (a PEM file next to this one) to each.\n"
            )
        text = header + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)
    if to_stdout:
        sys.stdout.write(text)
        return
    for path, pem in crt_files.items():
        path.write_text(pem, encoding="ascii")
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, file)
    render.stderr().print(f"wrote revision {revision} to {escape(str(file))}")


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PEM written inline) as YAML literal blocks instead of escaped one-liners."""


_BlockDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def _certificate_references(doc: dict[str, Any], directory: Path | None) -> dict[Path, str]:
    """The dump's certificates as the file names them: written to a file, each chain goes to
    ``<name>.crt`` beside it (``cert_file``), to stdout it stays inline (``cert``).  No key: the export
    has none.  Returns the files to write."""
    files: dict[Path, str] = {}
    for i, entry in enumerate(doc.get("certificates") or []):
        pem = entry.pop("cert")
        entry.pop("cert_file", None)
        entry.pop("key_file", None)
        if directory is None:
            doc["certificates"][i] = {"name": entry["name"], "cert": pem, **entry}
            continue
        name = f"{entry['name']}.crt"
        files[directory / name] = pem
        doc["certificates"][i] = {"name": entry["name"], "cert_file": name, **entry}
    return files


def register(root: typer.Typer) -> None:
    root.command("diff")(diff)
    root.command("apply")(apply)
    root.command("dump")(dump)
