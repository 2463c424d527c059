"""``tollgate import`` and ``tollgate sdk``: API structure in and client SDKs out, through the admin API."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from tollgate import render
from tollgate.cli_resources import TokenOpt, UrlOpt
from tollgate.yamlsource import SourceError, load

if TYPE_CHECKING:
    from tollgate.adminclient import AdminClient

# Importing a large document and generating an SDK take seconds on the control plane.
TIMEOUT = 180.0


def register(app: typer.Typer) -> None:
    app.command("import")(import_openapi)
    app.command("sdk")(sdk)


def import_openapi(
    document: Annotated[Path, typer.Argument(help="OpenAPI 3.0/3.1 document (.json, .yaml or .yml)", exists=True)],
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="Upstream (name or id) of routes without x-tollgate-upstream")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would change")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create or update an API from an OpenAPI document (idempotent; routes not in the document are removed)."""
    from tollgate.adminclient import AdminClient, AdminError

    # Read here first, as `apply` reads its file: syntax errors and duplicate keys (which a YAML parser
    # would silently resolve to the last one) are file:line:col before anything is sent, and the
    # server's errors (JSON pointers into the document) are mapped back to lines.
    try:
        source = load(document)
    except SourceError as exc:
        render.stderr().print(escape(str(exc)))
        raise typer.Exit(1) from None
    content_type = "application/json" if document.suffix.lower() == ".json" else "application/yaml"
    params = {**({"upstream_id": upstream} if upstream else {}), "dry_run": "true" if dry_run else "false"}
    try:
        with AdminClient(url, token, timeout=TIMEOUT) as admin:
            response = admin.send(
                "POST",
                "/v1/apis/import",
                params=params,
                content=document.read_bytes(),
                headers={"content-type": content_type},
            )
            result: dict[str, Any] = response.json()
    except AdminError as exc:
        errors = exc.errors() if exc.status == 422 else []
        if not errors:
            render.error(exc)
        for loc, msg in errors:
            path = "/".join(str(p) for p in loc) or "(document)"
            render.stderr().print(f"{escape(source.where(loc))}: {escape(path)}: {escape(msg)}")
        raise typer.Exit(1) from None
    diff = result["diff"]
    name = result["api"]["name"] if result["api"] else "(new api)"
    verb = "would change" if dry_run else ("created" if result["created"] else "updated")
    if not result["changed"]:
        typer.echo(f"{name}: up to date, nothing changed")
        return
    typer.echo(f"{name}: {verb}")
    for field, change in diff["api"].items():
        typer.echo(f"  api.{field}: {json.dumps(change)}")
    for kind, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
        for route in diff[kind]:
            typer.echo(f"  {sign} {','.join(route['methods']) or 'ANY'} {route['path']}")


def sdk(
    api: Annotated[str, typer.Argument(help="API name (or id)")],
    lang: Annotated[str, typer.Option("--lang", help="SDK language")] = "python",
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to unpack the package into")] = Path("."),
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a generated client SDK for an API and unpack it (then: pip install DIR/<name>-client)."""
    from tollgate.adminclient import AdminClient, AdminError

    try:
        with AdminClient(url, token, timeout=TIMEOUT) as admin:
            api_id = _find_api(admin, api)["id"]
            data = admin.send("GET", f"/v1/apis/{api_id}/sdk", params={"lang": lang}, headers={"accept": "*/*"}).content
    except AdminError as exc:
        render.error(exc)
        raise typer.Exit(1) from None
    top = extract(data, output)
    typer.echo(f"wrote {output / top}  (install: pip install {output / top})")


def _find_api(admin: AdminClient, name_or_id: str) -> dict[str, Any]:
    from tollgate.adminclient import AdminError

    for item in admin.iterate("/v1/apis"):
        if name_or_id in (item["name"], item["id"]):
            return dict(item)
    message = f"no api named {name_or_id!r}"
    raise AdminError(message, status=404, detail=message)


def extract(data: bytes, output: Path) -> str:
    """Unpack the SDK zip; refuses members that would land outside ``output``.  Returns the top folder."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        for name in names:
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or not parts:
                raise typer.BadParameter(f"refusing unsafe path in the SDK archive: {name!r}")
        output.mkdir(parents=True, exist_ok=True)
        zf.extractall(output)
    return PurePosixPath(names[0]).parts[0]
