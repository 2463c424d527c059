"""``tollgate usage CUSTOMER [--start DAY] [--end DAY]``: a customer's requests per day and the quota left.

Reads ``GET /v1/customers/{id}/usage`` (the customer named by name or id, as in the resource commands);
the table names APIs by name.  Without dates: the last 7 UTC days up to today.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape

from tollgate import render
from tollgate.adminclient import AdminClient, AdminError
from tollgate.cli_resources import RESOURCES, OutputOpt, TokenOpt, UrlOpt, resolve
from tollgate.render import Output

DEFAULT_DAYS = 7


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a day (YYYY-MM-DD)", param_hint=option) from None


def _table(report: dict[str, Any], api_names: dict[str, str], plan: str | None) -> None:
    console = render.stdout()
    quota = report.get("quota")
    limit = f"{quota['limit']} per {quota['period'].lower()}" if quota else "none"
    console.print(f"customer {escape(report['customer_name'])}  plan {escape(plan or '-')}  quota {escape(limit)}")
    rows = [
        {
            "day": d["day"],
            "requests": d["requests"],
            "quota_remaining": d["quota_remaining"],
            "apis": [f"{api_names.get(a, a)}={n}" for a, n in sorted(d["apis"].items())],
        }
        for d in report["days"]
    ]
    console.print(render.table(rows, ("day", "requests", "quota_remaining", "apis")))


def usage(
    customer: Annotated[str, typer.Argument(help="customer name or id", show_default=False)],
    start: Annotated[str | None, typer.Option("--start", help="first UTC day, YYYY-MM-DD", show_default=False)] = None,
    end: Annotated[str | None, typer.Option("--end", help="last UTC day (default: today)", show_default=False)] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Requests per day (per API) and the quota remaining for a customer."""
    last = _day(end, "--end") or datetime.now(UTC).date()
    first = _day(start, "--start") or last - timedelta(days=DEFAULT_DAYS - 1)
    try:
        with AdminClient(url, token) as client:
            item = resolve(client, RESOURCES["customers"], customer, None)
            report = client.get(f"/v1/customers/{item['id']}/usage", start=first.isoformat(), end=last.isoformat())
            if output is not Output.table:
                render.data(report, output)
                return
            api_names = {a["id"]: a["name"] for a in client.list_all("/v1/apis")}
            plan = client.get(f"/v1/customers/{item['id']}/plan").get("plan_name")
    except AdminError as exc:
        render.error(exc)
        raise typer.Exit(1) from None
    _table(report, api_names, plan)


def register(root: typer.Typer) -> None:
    root.command("usage")(usage)
