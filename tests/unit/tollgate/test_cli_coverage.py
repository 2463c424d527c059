"""Every operation of the admin API (``/v1``) has a `tollgate` command.

The operations come from the app's own OpenAPI document; :data:`COMMANDS` says which command calls
each.  An operation added to the API without a command (or without a line here) fails with its
method and path named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from control_plane.app import create_app
from control_plane.settings import Settings
from tollgate.cli import app

# (method, path) -> the command that calls it
COMMANDS: dict[tuple[str, str], str] = {
    ("POST", "/v1/upstreams"): "upstreams create",
    ("GET", "/v1/upstreams"): "upstreams list",
    ("GET", "/v1/upstreams/{upstream_id}"): "upstreams get",
    ("PATCH", "/v1/upstreams/{upstream_id}"): "upstreams update",
    ("DELETE", "/v1/upstreams/{upstream_id}"): "upstreams delete",
    ("GET", "/v1/upstreams/{upstream_id}/health"): "upstreams health",
    ("POST", "/v1/upstreams/{upstream_id}/targets"): "targets create",
    ("GET", "/v1/upstreams/{upstream_id}/targets"): "targets list",
    ("GET", "/v1/upstreams/{upstream_id}/targets/{target_id}"): "targets get",
    ("PATCH", "/v1/upstreams/{upstream_id}/targets/{target_id}"): "targets update",
    ("DELETE", "/v1/upstreams/{upstream_id}/targets/{target_id}"): "targets delete",
    ("POST", "/v1/apis/import"): "import",
    ("GET", "/v1/apis/{api_id}/openapi.json"): "apis openapi",
    ("GET", "/v1/apis/{api_id}/openapi.yaml"): "apis openapi",
    ("GET", "/v1/apis/{api_id}/sdk"): "sdk",
    ("POST", "/v1/apis"): "apis create",
    ("GET", "/v1/apis"): "apis list",
    ("GET", "/v1/apis/{api_id}"): "apis get",
    ("PATCH", "/v1/apis/{api_id}"): "apis update",
    ("DELETE", "/v1/apis/{api_id}"): "apis delete",
    ("POST", "/v1/apis/{api_id}/jwks/refresh"): "apis refresh-jwks",
    ("POST", "/v1/apis/{api_id}/cache/purge"): "apis purge-cache",
    ("POST", "/v1/apis/{api_id}/routes"): "routes create",
    ("GET", "/v1/apis/{api_id}/routes"): "routes list",
    ("GET", "/v1/apis/{api_id}/routes/{route_id}"): "routes get",
    ("PATCH", "/v1/apis/{api_id}/routes/{route_id}"): "routes update",
    ("DELETE", "/v1/apis/{api_id}/routes/{route_id}"): "routes delete",
    ("POST", "/v1/customers"): "customers create",
    ("GET", "/v1/customers"): "customers list",
    ("GET", "/v1/customers/{customer_id}"): "customers get",
    ("PATCH", "/v1/customers/{customer_id}"): "customers update",
    ("DELETE", "/v1/customers/{customer_id}"): "customers delete",
    ("POST", "/v1/customers/{customer_id}/portal-invites"): "customers invite",
    ("POST", "/v1/customers/{customer_id}/keys"): "keys create",
    ("GET", "/v1/customers/{customer_id}/keys"): "keys list",
    ("GET", "/v1/customers/{customer_id}/keys/{key_id}"): "keys get",
    ("DELETE", "/v1/customers/{customer_id}/keys/{key_id}"): "keys delete",
    ("POST", "/v1/customers/{customer_id}/keys/{key_id}/rotate"): "keys rotate",
    ("POST", "/v1/certificates"): "certificates add",
    ("GET", "/v1/certificates"): "certificates list",
    ("GET", "/v1/certificates/{certificate_id}"): "certificates show",
    ("PATCH", "/v1/certificates/{certificate_id}"): "certificates update",
    ("DELETE", "/v1/certificates/{certificate_id}"): "certificates delete",
    ("GET", "/v1/customers/{customer_id}/plan"): "customers plan",
    ("PUT", "/v1/customers/{customer_id}/plan"): "customers update",  # plan=NAME
    ("DELETE", "/v1/customers/{customer_id}/plan"): "customers update",  # plan=null
    ("GET", "/v1/customers/{customer_id}/usage"): "usage show",
    ("POST", "/v1/customers/{customer_id}/usage/adjust"): "usage adjust",
    ("PUT", "/v1/customers/{customer_id}/usage/remaining"): "usage set-remaining",
    ("POST", "/v1/usage-plans"): "plans create",
    ("GET", "/v1/usage-plans"): "plans list",
    ("GET", "/v1/usage-plans/{plan_id}"): "plans get",
    ("PATCH", "/v1/usage-plans/{plan_id}"): "plans update",
    ("DELETE", "/v1/usage-plans/{plan_id}"): "plans delete",
    ("GET", "/v1/usage-plans/{plan_id}/usage"): "usage plan",
    ("GET", "/v1/config"): "status",
    ("GET", "/v1/config/snapshot"): "snapshot export",
    ("GET", "/v1/nodes"): "nodes list",
    ("POST", "/v1/admin-tokens"): "admin-tokens create",
    ("GET", "/v1/admin-tokens"): "admin-tokens list",
    ("DELETE", "/v1/admin-tokens/{token_id}"): "admin-tokens delete",
    ("GET", "/v1/audit"): "audit",
    ("POST", "/v1/config/apply"): "apply",  # and diff (dry_run)
    ("GET", "/v1/config/export"): "dump",
    ("GET", "/v1/config/schema"): "schema",
    ("GET", "/v1/plugins"): "plugins list",
    ("GET", "/v1/usage/export"): "usage export",
    ("POST", "/v1/webhooks"): "webhooks create",
    ("GET", "/v1/webhooks"): "webhooks list",
    ("GET", "/v1/webhooks/{webhook_id}"): "webhooks get",
    ("PATCH", "/v1/webhooks/{webhook_id}"): "webhooks update",
    ("DELETE", "/v1/webhooks/{webhook_id}"): "webhooks delete",
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): "webhooks deliveries",
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"): "webhooks retry",
}

HTTP_METHODS = ("get", "put", "post", "patch", "delete")


def admin_operations(tmp_path: Path) -> list[tuple[str, str]]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        data_dir=tmp_path,
        cluster_token="c" * 32,
        admin_token="a" * 32,
        migrate_on_start=False,
    )
    document: dict[str, Any] = create_app(settings).openapi()  # built from the routes; no database is opened
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method in HTTP_METHODS
        if method in item
    ]


def cli_commands() -> set[str]:
    out: set[str] = set()

    def walk(command: Any, prefix: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            out.add(prefix)
            return
        for name, sub in subcommands.items():
            walk(sub, f"{prefix} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


def test_every_admin_operation_has_a_command(tmp_path: Path) -> None:
    operations = admin_operations(tmp_path)
    assert len(operations) > 50  # the walk found the API
    missing = [f"{m} {p}" for m, p in operations if (m, p) not in COMMANDS]
    assert not missing, (
        "admin API operations without a `tollgate` command: "
        + "; ".join(missing)
        + " (add a command, then list it in COMMANDS in tests/unit/tollgate/test_cli_coverage.py)"
    )
    commands = cli_commands()
    unknown = sorted({f"{c!r} (for {m} {p})" for (m, p), c in COMMANDS.items() if c not in commands})
    assert not unknown, f"COMMANDS names commands the CLI does not have: {', '.join(unknown)}"
    gone = sorted(f"{m} {p}" for m, p in COMMANDS if (m, p) not in set(operations))
    assert not gone, f"COMMANDS lists operations the API no longer has: {', '.join(gone)}"
