"""``tollgate usage [show] CUSTOMER [--start DAY] [--end DAY]``: a customer's requests per day and the
quota left; ``tollgate usage export``: every customer's usage of a period as CSV or JSON Lines.

``show`` reads ``GET /v1/customers/{id}/usage`` (the customer named by name or id, as in the resource
commands); the table names APIs by name.  Without dates: the last 7 UTC days up to today.  It is the
group's default command, so ``tollgate usage acme`` still works (a customer called ``export`` or
``show`` needs ``tollgate usage show NAME``).

``export`` streams ``GET /v1/usage/export`` (docs/usage-export.md) to stdout or to ``--output FILE``
as it arrives, never holding it whole; a file is written beside its name and renamed into place
once the export is complete, so an interrupted export leaves no partial file behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.markup import escape
from typer.core import TyperGroup

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
            "overage": d.get("overage", 0),
            "quota_remaining": d["quota_remaining"],
            "apis": [f"{api_names.get(a, a)}={n}" for a, n in sorted(d["apis"].items())],
        }
        for d in report["days"]
    ]
    console.print(render.table(rows, ("day", "requests", "overage", "quota_remaining", "apis")))


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


class Granularity(StrEnum):
    hour = "hour"
    day = "day"


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def export(
    start: Annotated[
        str | None,
        typer.Option(
            "--start", help="first UTC day YYYY-MM-DD, or a date-time on the hour (default: the 1st of this month)"
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="last UTC day (inclusive), or a date-time (exclusive) (default: today)"),
    ] = None,
    granularity: Annotated[
        Granularity, typer.Option("--granularity", help="a row per UTC hour or day")
    ] = Granularity.day,
    fmt: Annotated[Format, typer.Option("--format", help="csv (with a header row) or jsonl")] = Format.csv,
    customer: Annotated[
        str | None, typer.Option("--customer", help="only this customer (name or id)", show_default=False)
    ] = None,
    api: Annotated[str | None, typer.Option("--api", help="only this API (name or id)", show_default=False)] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to FILE instead of stdout", show_default=False)
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Requests per customer, API, route, status class and plan, per hour or day, streamed as CSV or JSON Lines."""
    today = datetime.now(UTC).date()
    params = {
        "start": start or today.replace(day=1).isoformat(),
        "end": end or today.isoformat(),
        "granularity": granularity.value,
        "format": fmt.value,
    }
    try:
        with AdminClient(url, token) as client:
            if customer is not None:
                params["customer_id"] = (
                    customer if _is_id(customer) else resolve(client, RESOURCES["customers"], customer, None)["id"]
                )
            if api is not None:
                params["api_id"] = api if _is_id(api) else resolve(client, RESOURCES["apis"], api, None)["id"]
            with client.stream("/v1/usage/export", params=params) as response:
                if output is None:
                    _copy(response.iter_bytes(), sys.stdout.buffer)
                else:
                    _write_file(response.iter_bytes(), output)
    except AdminError as exc:
        render.error(exc)
        raise typer.Exit(1) from None


def _is_id(ref: str) -> bool:
    """A UUID is taken as an id as it is (a deleted customer's usage is still exportable by id)."""
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


def _copy(chunks: Any, out: BinaryIO) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()


def _write_file(chunks: Any, path: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or Path("."))
    except OSError as exc:
        raise AdminError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            _copy(chunks, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _ShowByDefault(TyperGroup):
    """``tollgate usage CUSTOMER`` is ``tollgate usage show CUSTOMER``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if args and self.get_command(ctx, args[0]) is None and args[0] not in ctx.help_option_names:
            args = ["show", *args]
        return super().parse_args(ctx, args)


usage_app = typer.Typer(
    cls=_ShowByDefault,
    help="Usage: a customer's requests per day (show, the default), every customer's usage of a period (export).",
    no_args_is_help=True,
)
usage_app.command("show")(usage)
usage_app.command("export")(export)


def register(root: typer.Typer) -> None:
    root.add_typer(usage_app, name="usage")
