"""Usage export: the admitted requests of a period per customer, API, route, status class and plan,
per UTC hour or day, as CSV or JSON Lines (``GET /v1/usage/export``, ``tollgate usage export``).

**Range**: ``start`` and ``end`` are UTC days (``YYYY-MM-DD``, both inclusive) or ISO 8601 date-times
(``start`` inclusive, ``end`` exclusive; without an offset they are UTC) on the hour, at midnight for
``granularity=day``; at most :data:`MAX_EXPORT_DAYS` days.  Anything else is an :class:`Invalid` naming
the query parameter, raised before the first byte is sent.

**Streaming**: one ``SELECT`` over ``usage_hourly`` (a range scan of its primary key, which leads with
the hour; day granularity sums the hours of each day in SQL), names joined in (outer joins: a deleted
customer, API, route or plan exports with its id and empty names), executed with ``yield_per`` so
SQLAlchemy fetches :data:`ROWS_PER_FETCH` rows at a time (a server-side cursor on PostgreSQL; SQLite's
cursor steps through the result by itself).  Rows are encoded into chunks of about
:data:`CHUNK_BYTES`: what is held in memory is one fetch and one chunk, whatever the period.

**Columns** (:data:`COLUMNS`, the CSV header row and the JSON Lines keys, in this order): every value is
a string except ``requests`` and ``overage_requests`` (of ``requests``: admitted beyond the plan's quota,
billed apart), numbers; ``period_start`` is the UTC start of the hour or day
(``2026-11-30T14:00:00Z``); ``methods`` is the route's methods separated by spaces ("" = any method);
``plan_id`` is "" for requests made without a plan; route, status class and plan are "" in counts that
workers older than this export reported (per day only, kept at 00:00 of their day).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Executable, func, select
from sqlalchemy.orm import Session

from control_plane.errors import Invalid
from control_plane.models import Api, Customer, Route, UsageHourly, UsagePlan

Granularity = Literal["hour", "day"]
Format = Literal["csv", "jsonl"]

MAX_EXPORT_DAYS = 400  # a year and a month: a yearly invoice with its stragglers
ROWS_PER_FETCH = 2000
CHUNK_BYTES = 64 * 1024

COLUMNS = (
    "period_start",
    "customer_id",
    "customer_name",
    "api_id",
    "api_name",
    "route_id",
    "route_path",
    "methods",
    "status_class",
    "plan_id",
    "plan_name",
    "requests",
    "overage_requests",
)
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@dataclass(frozen=True, slots=True)
class ExportRange:
    start: datetime  # inclusive, UTC, on the hour
    end: datetime  # exclusive


def _bound(value: str, name: str, *, end: bool) -> datetime:
    loc = ("query", name)
    text = value.strip()
    if len(text) == 10:  # a day: YYYY-MM-DD
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise Invalid(name, f"{name} is not a day (YYYY-MM-DD) nor a date-time", loc=loc) from None
        at = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return at + timedelta(days=1) if end else at  # days are inclusive at both ends
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(name, f"{name} is not a day (YYYY-MM-DD) nor an ISO 8601 date-time", loc=loc) from None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if at.minute or at.second or at.microsecond:
        raise Invalid(name, f"{name} must be on the hour (usage is kept per hour)", loc=loc)
    return at


def parse_range(start: str, end: str, granularity: Granularity) -> ExportRange:
    lo = _bound(start, "start", end=False)
    hi = _bound(end, "end", end=True)
    if hi <= lo:
        raise Invalid("end", "end must be after start", loc=("query", "end"))
    if hi - lo > timedelta(days=MAX_EXPORT_DAYS):
        raise Invalid("end", f"at most {MAX_EXPORT_DAYS} days per export", loc=("query", "end"))
    if granularity == "day":
        for name, at in (("start", lo), ("end", hi)):
            if at.hour:
                raise Invalid(name, f"{name} must be at 00:00 UTC for granularity=day", loc=("query", name))
    return ExportRange(lo, hi)


def _query(rng: ExportRange, granularity: Granularity, customer_id: str | None, api_id: str | None) -> Executable:
    h = UsageHourly
    keys = (h.customer_id, h.api_id, h.route_id, h.status_class, h.plan_id)
    where = [h.hour >= rng.start, h.hour < rng.end]
    if customer_id is not None:
        where.append(h.customer_id == customer_id)
    if api_id is not None:
        where.append(h.api_id == api_id)
    if granularity == "hour":
        c = (
            select(h.hour.label("period"), *keys, h.count.label("requests"), h.overage.label("overage"))
            .where(*where)
            .subquery("c")
        )
    else:
        c = (
            select(
                h.day.label("period"), *keys, func.sum(h.count).label("requests"), func.sum(h.overage).label("overage")
            )
            .where(*where)
            .group_by(h.day, *keys)
            .subquery("c")
        )
    return (
        select(
            c.c.period,
            c.c.customer_id,
            Customer.name,
            c.c.api_id,
            Api.name,
            c.c.route_id,
            Route.path,
            Route.methods,
            c.c.status_class,
            c.c.plan_id,
            UsagePlan.name,
            c.c.requests,
            c.c.overage,
        )
        .outerjoin(Customer, Customer.id == c.c.customer_id)
        .outerjoin(Api, Api.id == c.c.api_id)
        .outerjoin(Route, Route.id == c.c.route_id)
        .outerjoin(UsagePlan, UsagePlan.id == c.c.plan_id)
        .order_by(c.c.period, c.c.customer_id, c.c.api_id, c.c.route_id, c.c.status_class, c.c.plan_id)
    )


def _period(value: date | datetime) -> str:
    if isinstance(value, datetime):  # an hour (aware UTC, from UTCDateTime)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")
    return f"{value.isoformat()}T00:00:00Z"


def rows(
    *,
    session: Session,
    rng: ExportRange,
    granularity: Granularity,
    customer_id: str | None = None,
    api_id: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The export's rows in :data:`COLUMNS` order, fetched :data:`ROWS_PER_FETCH` at a time."""
    stmt = _query(rng, granularity, customer_id, api_id)
    result = session.execute(stmt, execution_options={"yield_per": ROWS_PER_FETCH})
    last: date | datetime | None = None
    stamp = ""
    for period, cid, cname, aid, aname, rid, path, methods, klass, pid, pname, n, o in result:
        if period != last:  # rows come in period order: formatted once per hour or day
            last, stamp = period, _period(period)
        yield (
            stamp,
            cid,
            cname or "",
            aid,
            aname or "",
            rid,
            path or "",
            " ".join(methods or ()),
            klass,
            pid,
            pname or "",
            int(n),
            int(o or 0),
        )


def encode(records: Iterator[tuple[Any, ...]], fmt: Format) -> Iterator[bytes]:
    """The rows as CSV (a header row first) or JSON Lines, in chunks of about :data:`CHUNK_BYTES`."""
    buf = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180
        writer.writerow(COLUMNS)
        for record in records:
            writer.writerow(record)
            if buf.tell() >= CHUNK_BYTES:
                yield buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
    else:
        for record in records:
            buf.write(json.dumps(dict(zip(COLUMNS, record, strict=True)), ensure_ascii=False, separators=(",", ":")))
            buf.write("\n")
            if buf.tell() >= CHUNK_BYTES:
                yield buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()
