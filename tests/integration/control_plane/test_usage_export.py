"""Usage export (``GET /v1/usage/export``) on SQLite and PostgreSQL: batches of both formats in, CSV and
JSON Lines out per hour and per day, filters, names of deleted things, bad ranges, and streaming."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from control_plane.migrate import alembic_config
from control_plane.models import UsageHourly
from control_plane.schemas import UsageBatchIn
from control_plane.services.usage import ingest_batch
from control_plane.services.usage_export import CHUNK_BYTES, COLUMNS
from tests.integration.control_plane.conftest import ADMIN_HEADERS
from tests.integration.control_plane.factories import created, make_api, make_route, make_upstream

USAGE = "/cluster/v1/usage"
EXPORT = "/v1/usage/export"


def _world(client: TestClient) -> dict[str, Any]:
    up = make_upstream(client)
    shop = make_api(client, "shop", base_path="/shop", auth="api_key")
    other = make_api(client, "other", base_path="/other", auth="api_key")
    items = make_route(client, shop["id"], up["id"], "/items/{id}", methods=["GET", "PUT"])
    health = make_route(client, shop["id"], up["id"], "/health")
    ping = make_route(client, other["id"], up["id"], "/ping")
    plan = created(client.post("/v1/usage-plans", json={"name": "gold", "apis": [{"api_id": shop["id"]}]}))
    acme = created(client.post("/v1/customers", json={"name": "acme"}))
    beta = created(client.post("/v1/customers", json={"name": "beta inc."}))
    return {"shop": shop, "other": other, "items": items, "health": health, "ping": ping, "plan": plan}, acme, beta


def _post(client: TestClient, headers: dict[str, str], counts: list[dict[str, Any]], batch_id: str = "") -> bool:
    body = {"batch_id": batch_id or str(uuid.uuid4()), "node_id": "n1", "counts": counts}
    r = client.post(USAGE, json=body, headers=headers)
    assert r.status_code == 200, r.text
    return bool(r.json()["applied"])


def _entry(customer: str, api: str, route: str, klass: str, hour: str, count: int, plan: str | None) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "api_id": api,
        "route_id": route,
        "plan_id": plan,
        "status_class": klass,
        "hour": hour,
        "day": hour[:10],
        "count": count,
    }


def _csv(client: TestClient, **params: str) -> list[dict[str, str]]:
    r = client.get(EXPORT, params={"format": "csv", **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith('attachment; filename="usage-')
    reader = csv.reader(io.StringIO(r.text))
    header = next(reader)
    assert tuple(header) == COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


def _jsonl(client: TestClient, **params: str) -> list[dict[str, Any]]:
    r = client.get(EXPORT, params={"format": "jsonl", **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in r.text.splitlines()]


def _ingest_sample(client: TestClient, cluster_headers: dict[str, str]) -> tuple[dict[str, Any], str, str]:
    w, acme, beta = _world(client)
    a, b = acme["id"], beta["id"]
    shop, other, items, health, ping, gold = (
        w["shop"]["id"],
        w["other"]["id"],
        w["items"]["id"],
        w["health"]["id"],
        w["ping"]["id"],
        w["plan"]["id"],
    )
    new = [
        _entry(a, shop, items, "2xx", "2026-11-30T22:00:00Z", 5, gold),
        _entry(a, shop, items, "4xx", "2026-11-30T22:00:00Z", 2, gold),
        _entry(a, shop, items, "2xx", "2026-11-30T23:00:00Z", 3, gold),
        _entry(a, shop, health, "5xx", "2026-12-01T00:00:00Z", 1, gold),
        _entry(b, other, ping, "2xx", "2026-11-30T23:00:00+00:00", 7, None),
        _entry("deleted-meanwhile", shop, items, "2xx", "2026-11-30T23:00:00Z", 100, None),  # dropped
    ]
    batch_id = str(uuid.uuid4())
    assert _post(client, cluster_headers, new, batch_id) is True
    assert _post(client, cluster_headers, new, batch_id) is False  # a replay adds nothing
    # the same key again in another batch: added up
    assert _post(client, cluster_headers, [_entry(a, shop, items, "2xx", "2026-11-30T22:00:00Z", 1, gold)])
    # a worker from before the export: days only
    old = [{"customer_id": a, "api_id": shop, "day": "2026-11-30", "count": 4}]
    assert _post(client, cluster_headers, old)
    return w, a, b


def test_old_and_new_batches_export_per_hour_as_csv(client: TestClient, cluster_headers: dict[str, str]) -> None:
    w, a, b = _ingest_sample(client, cluster_headers)
    got = _csv(client, start="2026-11-30", end="2026-12-01", granularity="hour")
    gold = w["plan"]["id"]
    items, health, ping = w["items"], w["health"], w["ping"]
    shop, other = w["shop"]["id"], w["other"]["id"]

    def row(period: str, cust: str, cname: str, api: str, aname: str, route: str, path: str, methods: str, **kw: str):
        return {
            "period_start": period,
            "customer_id": cust,
            "customer_name": cname,
            "api_id": api,
            "api_name": aname,
            "route_id": route,
            "route_path": path,
            "methods": methods,
            "status_class": kw.get("klass", "2xx"),
            "plan_id": kw.get("plan", gold),
            "plan_name": "gold" if kw.get("plan", gold) else "",
            "requests": kw["n"],
            "overage_requests": kw.get("overage", "0"),
        }

    expected = [
        # the old worker's day, at 00:00 with route, status class and plan unknown
        row("2026-11-30T00:00:00Z", a, "acme", shop, "shop", "", "", "", klass="", plan="", n="4"),
        row("2026-11-30T22:00:00Z", a, "acme", shop, "shop", items["id"], "/items/{id}", "GET PUT", n="6"),
        row("2026-11-30T22:00:00Z", a, "acme", shop, "shop", items["id"], "/items/{id}", "GET PUT", klass="4xx", n="2"),
        row("2026-11-30T23:00:00Z", a, "acme", shop, "shop", items["id"], "/items/{id}", "GET PUT", n="3"),
        row("2026-11-30T23:00:00Z", b, "beta inc.", other, "other", ping["id"], "/ping", "", plan="", n="7"),
        row("2026-12-01T00:00:00Z", a, "acme", shop, "shop", health["id"], "/health", "", klass="5xx", n="1"),
    ]
    assert sorted(got, key=lambda r: (r["period_start"], r["customer_id"] != a)) == expected
    assert [r["period_start"] for r in got] == sorted(r["period_start"] for r in got)  # in time order

    # the daily report (what quotas use) and the export agree, day by day
    for day, n in (("2026-11-30", 4 + 6 + 2 + 3), ("2026-12-01", 1)):
        report = client.get(f"/v1/customers/{a}/usage", params={"start": day, "end": day}).json()
        assert report["days"][0]["requests"] == n
        assert sum(int(r["requests"]) for r in got if r["customer_id"] == a and r["period_start"][:10] == day) == n


def test_day_granularity_sums_hours_as_json_lines_and_filters(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    w, a, b = _ingest_sample(client, cluster_headers)
    days = _jsonl(client, start="2026-11-30", end="2026-12-01", granularity="day")
    assert all(list(d) == list(COLUMNS) for d in days)
    by = {(d["period_start"], d["customer_id"], d["route_id"], d["status_class"]): d["requests"] for d in days}
    items = w["items"]["id"]
    assert by == {
        ("2026-11-30T00:00:00Z", a, "", ""): 4,
        ("2026-11-30T00:00:00Z", a, items, "2xx"): 9,  # 22:00 (5 + 1) + 23:00 (3)
        ("2026-11-30T00:00:00Z", a, items, "4xx"): 2,
        ("2026-11-30T00:00:00Z", b, w["ping"]["id"], "2xx"): 7,
        ("2026-12-01T00:00:00Z", a, w["health"]["id"], "5xx"): 1,
    }
    assert all(isinstance(d["requests"], int) for d in days)
    assert sum(d["requests"] for d in days) == 23

    only_b = _jsonl(client, start="2026-11-30", end="2026-12-01", customer_id=b)
    assert [(d["customer_name"], d["requests"]) for d in only_b] == [("beta inc.", 7)]
    only_shop = _jsonl(client, start="2026-11-30", end="2026-12-01", api_id=w["shop"]["id"])
    assert {d["customer_id"] for d in only_shop} == {a} and sum(d["requests"] for d in only_shop) == 16
    # a date-time range: [23:00, 00:00) is one hour
    hour = _jsonl(client, start="2026-11-30T23:00:00Z", end="2026-12-01T00:00:00Z", granularity="hour")
    assert sorted(d["requests"] for d in hour) == [3, 7]
    # date-times with an offset are converted to UTC: 00:00+01:00 is 23:00Z
    shifted = _jsonl(client, start="2026-12-01T00:00:00+01:00", end="2026-12-01T01:00:00+01:00", granularity="hour")
    assert sorted(d["requests"] for d in shifted) == [3, 7]
    assert _csv(client, start="2025-01-01", end="2025-01-31") == []  # nothing: the header alone


def test_deleted_route_api_and_customer_export_with_their_ids(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    w, a, b = _ingest_sample(client, cluster_headers)
    assert client.delete(f"/v1/apis/{w['shop']['id']}/routes/{w['health']['id']}").status_code == 204
    assert client.delete(f"/v1/apis/{w['other']['id']}").status_code == 204
    assert client.delete(f"/v1/customers/{b}").status_code == 204
    got = _csv(client, start="2026-11-30", end="2026-12-01", granularity="day")
    health = next(r for r in got if r["route_id"] == w["health"]["id"])
    assert (health["route_path"], health["methods"], health["api_name"], health["requests"]) == ("", "", "shop", "1")
    ping = next(r for r in got if r["route_id"] == w["ping"]["id"])
    assert (ping["customer_id"], ping["customer_name"], ping["api_id"], ping["api_name"]) == (
        b,
        "",
        w["other"]["id"],
        "",
    )
    assert ping["route_path"] == "" and ping["requests"] == "7"


def test_bad_ranges_and_parameters_are_422_before_anything_streams(client: TestClient) -> None:
    def loc(**params: str) -> tuple[list[Any], str]:
        r = client.get(EXPORT, params=params)
        assert r.status_code == 422, r.text
        err = r.json()["detail"][0]
        return err["loc"], err["msg"]

    assert loc(start="2026-12-02", end="2026-12-01") == (["query", "end"], "end must be after start")
    assert loc(start="2026-01-01", end="2027-02-05") == (["query", "end"], "at most 400 days per export")
    where, msg = loc(start="2026-12-01T10:30:00Z", end="2026-12-02", granularity="hour")
    assert where == ["query", "start"] and "on the hour" in msg
    where, msg = loc(start="2026-12-01T10:00:00Z", end="2026-12-02")  # granularity day (the default)
    assert where == ["query", "start"] and "00:00 UTC" in msg
    where, msg = loc(start="yesterday", end="2026-12-02")
    assert where == ["query", "start"] and "not a day" in msg
    assert loc(start="2026-02-30", end="2026-03-01")[0] == ["query", "start"]
    assert loc(start="2026-12-01", end="2026-12-02", granularity="week")[0] == ["query", "granularity"]
    assert loc(start="2026-12-01", end="2026-12-02", format="xml")[0] == ["query", "format"]
    assert loc(end="2026-12-02")[0] == ["query", "start"]
    # a full 400 days is fine
    assert client.get(EXPORT, params={"start": "2026-01-01", "end": "2027-02-04"}).status_code == 200


def test_malformed_batch_entries_are_refused_whole(client: TestClient, cluster_headers: dict[str, str]) -> None:
    _, acme, _ = _world(client)
    good = {"customer_id": acme["id"], "api_id": "a1", "count": 1}
    for bad in (
        {"hour": "2026-11-30T22:30:00Z"},  # not on the hour
        {"hour": "2026-11-30T22:00:00Z", "day": "2026-12-01"},  # not the hour's day
        {"hour": "2026-11-30T23:00:00-01:00", "day": "2026-11-30"},  # 00:00Z on the 1st
        {"hour": "2026-11-30T22:00:00Z", "status_class": "6xx"},
        {},  # neither day nor hour
    ):
        body = {"batch_id": str(uuid.uuid4()), "counts": [{**good, **bad}]}
        assert client.post(USAGE, json=body, headers=cluster_headers).status_code == 422, bad
    assert _jsonl(client, start="2026-11-30", end="2026-12-01") == []  # nothing half-written


def test_admin_token_required(client: TestClient) -> None:
    r = client.get(EXPORT, params={"start": "2026-12-01", "end": "2026-12-01"}, headers={"Authorization": ""})
    assert r.status_code == 401


def test_a_large_export_streams_in_bounded_chunks_from_a_streaming_cursor(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    w, a, _ = _world(client)
    shop, items, gold = w["shop"]["id"], w["items"]["id"], w["plan"]["id"]
    customers = [a["id"]] + [created(client.post("/v1/customers", json={"name": f"c{i:03d}"}))["id"] for i in range(19)]
    hours = [f"2026-11-{d:02d}T{h:02d}:00:00Z" for d in range(1, 11) for h in range(24)]  # 240 hours
    counts = [_entry(c, shop, items, "2xx", hour, 1 + i % 7, gold) for i, c in enumerate(customers) for hour in hours]
    assert len(counts) == 4800
    assert _post(client, cluster_headers, counts)
    expected_total = sum(c["count"] for c in counts)

    engine = client.app.state.engine  # type: ignore[attr-defined]
    seen: list[tuple[bool, str]] = []

    def on_execute(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "usage_hourly" in statement:
            seen.append((bool(context.execution_options.get("stream_results")), type(cursor).__name__))

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        messages = asyncio.run(_call(client, "/v1/usage/export", "start=2026-11-01&end=2026-11-10&granularity=hour"))
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)

    start, *bodies = messages
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert "content-length" not in headers  # streamed: the length is not known up front
    chunks = [m["body"] for m in bodies if m["body"]]
    assert len(chunks) > 10  # many chunks, not one body
    assert max(len(c) for c in chunks) < CHUNK_BYTES + 1024  # each about CHUNK_BYTES, whatever the export
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 1 + 4800 and sum(int(line.rsplit(",", 2)[1]) for line in lines[1:]) == expected_total
    # the query asked for a streaming cursor (server-side on PostgreSQL)
    assert seen and all(stream for stream, _ in seen)
    if engine.dialect.name == "postgresql":
        assert all(kind == "ServerCursor" for _, kind in seen)


async def _call(client: TestClient, path: str, query: str) -> list[dict[str, Any]]:
    """The app's ASGI messages for one GET (the test client would join the body into one)."""
    messages: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in ADMIN_HEADERS.items()] + [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        "state": {},
    }
    await client.app(scope, receive, send)  # type: ignore[arg-type]
    return messages


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_the_migration_keeps_earlier_daily_usage_exportable(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0015_idempotency")
    engine = create_engine(empty_database, poolclass=NullPool)
    try:
        cid = str(uuid.uuid4())
        with engine.begin() as conn:  # the schema of that revision: plain SQL, not today's models
            now = datetime.now(UTC)
            conn.execute(
                text(
                    "INSERT INTO customers (id, name, metadata, status, created_at, updated_at)"
                    " VALUES (:id, 'acme', '{}', 'active', :now, :now)"
                ),
                {"id": cid, "now": now},
            )
            conn.execute(
                text("INSERT INTO usage_counts (customer_id, day, api_id, count) VALUES (:c, :d, 'a1', 7)"),
                {"c": cid, "d": date(2026, 11, 30)},
            )
        command.upgrade(config, "head")
        with Session(engine) as session:
            (row,) = session.execute(select(UsageHourly)).scalars()
            assert (row.hour, row.customer_id, row.api_id, row.route_id, row.status_class, row.plan_id) == (
                datetime(2026, 11, 30, tzinfo=UTC),
                cid,
                "a1",
                "",
                "",
                "",
            )
            assert (row.day, row.count) == (date(2026, 11, 30), 7)
            # an old worker's count for the same day lands on the very same row (the keys compare equal)
            old = UsageBatchIn(
                batch_id="b1", counts=[{"customer_id": cid, "api_id": "a1", "day": "2026-11-30", "count": 2}]
            )
            assert ingest_batch(session=session, batch=old) is True
            session.commit()
            assert [r.count for r in session.execute(select(UsageHourly)).scalars()] == [9]
    finally:
        engine.dispose()
