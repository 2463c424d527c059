"""``tollgate certificates add|list|show|update|delete``: TLS certificates over the admin API.

Their own commands rather than a :data:`~tollgate.cli_resources.RESOURCES` entry: the chain and the key
come from files (``--cert``, ``--key``), never from the command line, and the key is only ever sent.
Certificates are named by id or name, like the other resources.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tollgate import render
from tollgate.adminclient import AdminClient, AdminError
from tollgate.cli_resources import OutputOpt, RefArg, Resource, TokenOpt, UrlOpt, resolve
from tollgate.render import Output

CERTIFICATES = Resource(
    "certificates",
    "certificate",
    "/v1/certificates",
    ("id", "name", "snis", "default", "subject", "issuer", "sans", "not_before", "not_after", "fingerprint_sha256"),
)
LIST_COLUMNS = ("id", "name", "snis", "default", "subject", "not_after")

CertOpt = Annotated[Path | None, typer.Option("--cert", help="PEM chain file: the leaf first", show_default=False)]
KeyOpt = Annotated[Path | None, typer.Option("--key", help="PEM private key file (unencrypted)", show_default=False)]
SniOpt = Annotated[
    list[str] | None, typer.Option("--sni", help="server name or *.wildcard (repeat for more)", show_default=False)
]
NameOpt = Annotated[str | None, typer.Option("--name", help="default: the first server name", show_default=False)]

app = typer.Typer(help="TLS certificates the workers serve by SNI (the private key goes in, never out).")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError(f"cannot read the {what} file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _run(url: str | None, token: str | None, body: Callable[[AdminClient], None]) -> None:
    try:
        with AdminClient(url, token) as client:
            body(client)
    except AdminError as exc:
        render.error(exc)
        raise typer.Exit(1) from None


def _show(item: dict[str, Any], output: Output) -> None:
    if output is Output.table:
        render.stdout().print(render.record(item, CERTIFICATES.columns))
    else:
        render.data(item, output)


@app.command("add")
def add(
    cert: CertOpt = None,
    key: KeyOpt = None,
    sni: SniOpt = None,
    default: Annotated[bool, typer.Option("--default", help="serve it to clients whose name matches none")] = False,
    name: NameOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Add a certificate from a PEM chain and its private key."""
    if cert is None or key is None:
        raise typer.BadParameter("give both --cert FILE and --key FILE")

    def body(client: AdminClient) -> None:
        doc: dict[str, Any] = {"cert": _read(cert, "certificate"), "key": _read(key, "key"), "snis": sni or []}
        doc["default"] = default
        if name is not None:
            doc["name"] = name
        _show(client.post(CERTIFICATES.path, doc), output)

    _run(url, token, body)


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """List certificates (never their keys)."""

    def body(client: AdminClient) -> None:
        items = client.list_all(CERTIFICATES.path)
        if output is Output.table:
            render.stdout().print(render.table(items, LIST_COLUMNS))
        else:
            render.data(items, output)

    _run(url, token, body)


@app.command("show")
def show(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """Show one certificate: subject, SANs, issuer, validity, fingerprint."""
    _run(url, token, lambda client: _show(resolve(client, CERTIFICATES, ref, None), output))


@app.command("update")
def update(
    ref: RefArg,
    cert: CertOpt = None,
    key: KeyOpt = None,
    sni: SniOpt = None,
    no_snis: Annotated[bool, typer.Option("--no-snis", help="answer for no server name")] = False,
    default: Annotated[
        bool | None, typer.Option("--default/--no-default", help="make it (or stop it being) the default")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="rename", show_default=False)] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Change a certificate: renew it (--cert and --key together), its server names (--sni replaces them all),
    the default, its name."""
    if (cert is None) != (key is None):
        raise typer.BadParameter("renewing needs both --cert FILE and --key FILE")

    def body(client: AdminClient) -> None:
        item = resolve(client, CERTIFICATES, ref, None)
        doc: dict[str, Any] = {}
        if cert is not None and key is not None:
            doc["cert"], doc["key"] = _read(cert, "certificate"), _read(key, "key")
        if sni or no_snis:
            doc["snis"] = list(sni or [])
        if default is not None:
            doc["default"] = default
        if name is not None:
            doc["name"] = name
        _show(client.patch(f"{CERTIFICATES.path}/{item['id']}", doc), output)

    _run(url, token, body)


@app.command("delete")
def delete(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a certificate (the workers stop serving it with the next snapshot)."""

    def body(client: AdminClient) -> None:
        item = resolve(client, CERTIFICATES, ref, None)
        client.delete(f"{CERTIFICATES.path}/{item['id']}")
        render.stderr().print(f"deleted certificate {item['name']} ({item['id']})")

    _run(url, token, body)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="certificates")
