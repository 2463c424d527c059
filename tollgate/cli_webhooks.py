"""``tollgate webhooks create|list|get|update|delete|deliveries|retry``: webhook endpoints over the admin API.

Their own commands rather than a :data:`~tollgate.cli_resources.RESOURCES` entry: the signing secret and
the ``Authorization`` value come from files (``--secret-file``, ``--authorization-file``), never from the
command line (shell history, ``ps``), and ``create`` prints the secret (generated unless given) this
once.  Endpoints are named by id or URL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tollgate import render
from tollgate.adminclient import AdminClient, AdminError
from tollgate.cli_resources import OutputOpt, Resource, TokenOpt, UrlOpt, resolve
from tollgate.render import Output

WEBHOOKS = Resource(
    "webhooks",
    "webhook",
    "/v1/webhooks",
    ("id", "url", "event_types", "enabled", "description", "has_authorization", "created_at", "secret"),
    label=lambda item: str(item["url"]),
)
LIST_COLUMNS = ("id", "url", "event_types", "enabled", "description")
DELIVERY_COLUMNS = (
    "id",
    "event_type",
    "event_id",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "delivered_at",
)
EVENT_TYPES = (
    "tollgate.request.usage",
    "tollgate.quota.threshold_reached",
    "tollgate.key.created",
    "tollgate.key.revoked",
    "tollgate.key.expiring",
    "*",
)

RefArg = Annotated[str, typer.Argument(help="webhook id or URL", show_default=False)]
EventOpt = Annotated[
    list[str] | None,
    typer.Option("--event", help=f"event type to send (repeat for more): {', '.join(EVENT_TYPES)}", show_default=False),
]
DescriptionOpt = Annotated[str | None, typer.Option("--description", show_default=False)]
SecretFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--secret-file", help="read the signing secret from this file (default: generated)", show_default=False
    ),
]
AuthFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--authorization-file",
        help="read an Authorization header value sent with every delivery (e.g. 'Bearer <api key>') from this file",
        show_default=False,
    ),
]

app = typer.Typer(help="Webhook endpoints: signed CloudEvents for billing systems (usage, quota thresholds, keys).")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
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
        columns = tuple(c for c in WEBHOOKS.columns if c in item)
        render.stdout().print(render.record(item, columns))
    else:
        render.data(item, output)


@app.command("create")
def create(
    url_: Annotated[str, typer.Argument(metavar="URL", help="http:// or https:// URL events are POSTed to")],
    event: EventOpt = None,
    description: DescriptionOpt = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="create it switched off")] = False,
    secret_file: SecretFileOpt = None,
    authorization_file: AuthFileOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Add an endpoint (all event types unless --event).  Prints the signing secret this once."""

    def body(client: AdminClient) -> None:
        doc: dict[str, Any] = {"url": url_, "enabled": not disabled}
        if event:
            doc["event_types"] = list(event)
        if description is not None:
            doc["description"] = description
        if secret_file is not None:
            doc["secret"] = _read(secret_file, "secret")
        if authorization_file is not None:
            doc["authorization"] = _read(authorization_file, "authorization")
        _show(client.post(WEBHOOKS.path, doc), output)
        render.stderr().print("the secret is shown this once: keep it where the receiver verifies signatures")

    _run(url, token, body)


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """List endpoints (never their secrets)."""

    def body(client: AdminClient) -> None:
        items = client.list_all(WEBHOOKS.path)
        if output is Output.table:
            render.stdout().print(render.table(items, LIST_COLUMNS))
        else:
            render.data(items, output)

    _run(url, token, body)


@app.command("get")
def get(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """Show one endpoint."""
    _run(url, token, lambda client: _show(resolve(client, WEBHOOKS, ref, None), output))


@app.command("update")
def update(
    ref: RefArg,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="send to this URL from now on", show_default=False)
    ] = None,
    event: EventOpt = None,
    description: DescriptionOpt = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", help="switch it on or off")] = None,
    secret_file: SecretFileOpt = None,
    authorization_file: AuthFileOpt = None,
    no_authorization: Annotated[bool, typer.Option("--no-authorization", help="stop sending one")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Change an endpoint: its URL, event types (--event replaces them all), description, on/off, secret."""

    def body(client: AdminClient) -> None:
        item = resolve(client, WEBHOOKS, ref, None)
        doc: dict[str, Any] = {}
        if endpoint_url is not None:
            doc["url"] = endpoint_url
        if event:
            doc["event_types"] = list(event)
        if description is not None:
            doc["description"] = description
        if enabled is not None:
            doc["enabled"] = enabled
        if secret_file is not None:
            doc["secret"] = _read(secret_file, "secret")
        if authorization_file is not None:
            doc["authorization"] = _read(authorization_file, "authorization")
        elif no_authorization:
            doc["authorization"] = None
        _show(client.patch(f"{WEBHOOKS.path}/{item['id']}", doc), output)

    _run(url, token, body)


@app.command("delete")
def delete(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete an endpoint and its deliveries."""

    def body(client: AdminClient) -> None:
        item = resolve(client, WEBHOOKS, ref, None)
        client.delete(f"{WEBHOOKS.path}/{item['id']}")
        render.stderr().print(f"deleted webhook {item['id']}")

    _run(url, token, body)


@app.command("deliveries")
def deliveries(
    ref: RefArg,
    status: Annotated[
        str | None, typer.Option("--status", help="pending | delivered | failed", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="newest first")] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """An endpoint's deliveries, newest first: event, status, attempts, last answer or error, next attempt."""

    def body(client: AdminClient) -> None:
        item = resolve(client, WEBHOOKS, ref, None)
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        page = client.get(f"{WEBHOOKS.path}/{item['id']}/deliveries", **params)
        if output is Output.table:
            render.stdout().print(render.table(page["items"], DELIVERY_COLUMNS))
        else:
            render.data(page["items"], output)

    _run(url, token, body)


@app.command("retry")
def retry(
    ref: RefArg,
    delivery_id: Annotated[str, typer.Argument(help="delivery id (see `tollgate webhooks deliveries`)")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Send a delivery again now (a failed one, or one the receiver lost)."""

    def body(client: AdminClient) -> None:
        item = resolve(client, WEBHOOKS, ref, None)
        out = client.post(f"{WEBHOOKS.path}/{item['id']}/deliveries/{delivery_id}/retry", {})
        if output is Output.table:
            render.stdout().print(render.record(out, DELIVERY_COLUMNS))
        else:
            render.data(out, output)

    _run(url, token, body)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="webhooks")
