"""Admin commands that are not list/get/create/update/delete of one resource: key rotation, a customer's
subscription, quota adjustments, target health, JWKS refresh, the audit log, the config revision.

Each is a thin call of one admin API operation (``tests/integration/test_cli_coverage.py`` checks that
every operation of the API has a command).  Resources are named as everywhere in the CLI: by name or id.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from tollgate import render
from tollgate.adminclient import AdminClient
from tollgate.cli_resources import RESOURCES, OutputOpt, RefArg, TokenOpt, UrlOpt, resolve, run_admin
from tollgate.render import Output

CustomerOpt = Annotated[str, typer.Option("--customer", help="the customer (name or id)", show_default=False)]


def _print(value: Any, output: Output, columns: tuple[str, ...]) -> None:
    if output is Output.table:
        render.stdout().print(render.record(value, columns))
    else:
        render.data(value, output)


def _customer(client: AdminClient, ref: str) -> dict[str, Any]:
    return resolve(client, RESOURCES["customers"], ref, None)


# ---------------------------------------------------------------------------- keys


def rotate_key(
    ref: RefArg,
    customer: CustomerOpt,
    grace: Annotated[int, typer.Option("--grace", min=0, help="seconds the old key keeps working")] = 0,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Issue a new key in place of one (prefix, name or id); the old one stops after --grace seconds."""

    def body(client: AdminClient) -> None:
        item = resolve(client, RESOURCES["keys"], ref, customer)
        path = f"/v1/customers/{item['customer_id']}/keys/{item['id']}/rotate"
        _print(client.post(path, {"grace_seconds": grace}), output, ("id", "prefix", "name", "expires_at", "key"))

    run_admin(url, token, body)


# ---------------------------------------------------------------------------- customers


def subscription(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """Show a customer's plan and billing cycle (set it with `customers update NAME plan=PLAN`)."""

    def body(client: AdminClient) -> None:
        sub = client.get(f"/v1/customers/{_customer(client, ref)['id']}/plan")
        _print(sub, output, ("plan_name", "billing_anchor", "time_zone", "period_start", "period_end"))

    run_admin(url, token, body)


# ---------------------------------------------------------------------------- usage


def adjust(
    customer: RefArg,
    extra: Annotated[int, typer.Argument(help="requests added to this period's quota (negative: taken away)")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Add extra quota for a customer's current period."""

    def body(client: AdminClient) -> None:
        result = client.post(f"/v1/customers/{_customer(client, customer)['id']}/usage/adjust", {"extra": extra})
        _print(result, output, ("period", "period_start", "period_end", "extra", "limit"))

    run_admin(url, token, body)


def set_remaining(
    customer: RefArg,
    remaining: Annotated[int, typer.Argument(min=0, help="what is left of this period's quota afterwards")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Set what is left of a customer's quota this period."""

    def body(client: AdminClient) -> None:
        path = f"/v1/customers/{_customer(client, customer)['id']}/usage/remaining"
        result = client.request("PUT", path, json={"remaining": remaining})
        _print(result, output, ("period", "period_start", "period_end", "extra", "limit", "used", "remaining"))

    run_admin(url, token, body)


def plan_usage(
    plan: RefArg,
    start: Annotated[str | None, typer.Option("--start", help="first UTC day, YYYY-MM-DD", show_default=False)] = None,
    end: Annotated[str | None, typer.Option("--end", help="last UTC day", show_default=False)] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Usage of every subscriber of a plan."""

    def body(client: AdminClient) -> None:
        item = resolve(client, RESOURCES["plans"], plan, None)
        params = {k: v for k, v in (("start", start), ("end", end)) if v}
        report = client.get(f"/v1/usage-plans/{item['id']}/usage", **params)
        if output is not Output.table:
            render.data(report, output)
            return
        rows = [
            {"customer": c.get("customer_name"), "requests": sum(d["requests"] for d in c.get("days", []))}
            for c in report.get("customers", [])
        ]
        render.stdout().print(render.table(rows, ("customer", "requests"), title=f"plan {item['name']}"))

    run_admin(url, token, body)


# ---------------------------------------------------------------------------- upstreams and apis


def health(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """Each target of an upstream as every worker sees it (healthy or not)."""

    def body(client: AdminClient) -> None:
        item = resolve(client, RESOURCES["upstreams"], ref, None)
        report = client.get(f"/v1/upstreams/{item['id']}/health")
        if output is not Output.table:
            render.data(report, output)
            return
        rows = [
            {
                "target": f"{t['host']}:{t['port']}",
                "weight": t["weight"],
                "nodes": [f"{n}={'healthy' if h.get('healthy') else 'unhealthy'}" for n, h in t["nodes"].items()],
            }
            for t in report["targets"]
        ]
        render.stdout().print(render.table(rows, ("target", "weight", "nodes")))

    run_admin(url, token, body)


def refresh_jwks(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """Fetch an API's JWKS (jwt_jwks_url) now, after the identity provider rotated its keys."""

    def body(client: AdminClient) -> None:
        item = resolve(client, RESOURCES["apis"], ref, None)
        _print(client.post(f"/v1/apis/{item['id']}/jwks/refresh", None), output, ("kids", "fetched_at", "last_error"))

    run_admin(url, token, body)


def openapi(
    ref: RefArg,
    yaml_format: Annotated[bool, typer.Option("--yaml", help="YAML instead of JSON")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print an API's OpenAPI document (what `tollgate sdk` generates from)."""

    def body(client: AdminClient) -> None:
        item = resolve(client, RESOURCES["apis"], ref, None)
        suffix = "yaml" if yaml_format else "json"
        sys.stdout.write(client.send("GET", f"/v1/apis/{item['id']}/openapi.{suffix}").text.rstrip("\n") + "\n")

    run_admin(url, token, body)


def portal_invite(
    ref: RefArg,
    key_limit: Annotated[
        int, typer.Option("--key-limit", min=0, max=100, help="live keys the customer may hold through the portal")
    ] = 3,
    ttl: Annotated[int, typer.Option("--ttl", min=60, max=30 * 86400, help="seconds the one-time link stays valid")] = 7
    * 86400,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Invite a customer to the portal: prints a one-time link (shown once) to send them."""

    def body(client: AdminClient) -> None:
        item = _customer(client, ref)
        issued = client.post(f"/v1/customers/{item['id']}/portal-invites", {"ttl_seconds": ttl, "key_limit": key_limit})
        _print(issued, output, ("url", "expires_at", "key_limit"))

    run_admin(url, token, body)


# ---------------------------------------------------------------------------- audit, config


def audit(
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="newest entries to show")] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Who changed what (newest first)."""

    def body(client: AdminClient) -> None:
        items = client.get("/v1/audit", limit=limit)["items"]
        if output is not Output.table:
            render.data(items, output)
            return
        columns = ("at", "token_name", "method", "path", "resource_id", "detail")
        render.stdout().print(render.table(items, columns))

    run_admin(url, token, body)


def status(url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """The config revision and hash the workers should be on, and how many are."""

    def body(client: AdminClient) -> None:
        config = client.get("/v1/config")
        nodes = client.list_all("/v1/nodes")
        summary = {
            **config,
            "nodes": len(nodes),
            "nodes_in_sync": sum(1 for n in nodes if n.get("in_sync")),
        }
        _print(summary, output, tuple(summary))

    run_admin(url, token, body)


def schema(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Print the JSON Schema of the declarative config (for editors: yaml-language-server)."""

    def body(client: AdminClient) -> None:
        sys.stdout.write(json.dumps(client.get("/v1/config/schema"), indent=2) + "\n")

    run_admin(url, token, body)


# resource group -> extra commands (added to the groups cli_resources builds)
EXTRA: dict[str, dict[str, Callable[..., None]]] = {
    "keys": {"rotate": rotate_key},
    "customers": {"plan": subscription, "invite": portal_invite},
    "upstreams": {"health": health},
    "apis": {"refresh-jwks": refresh_jwks, "openapi": openapi},
}
USAGE: dict[str, Callable[..., None]] = {"adjust": adjust, "set-remaining": set_remaining, "plan": plan_usage}
ROOT: dict[str, Callable[..., None]] = {"audit": audit, "status": status, "schema": schema}


def register(root: typer.Typer) -> None:
    for name, fn in ROOT.items():
        root.command(name)(fn)
