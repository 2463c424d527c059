"""Billing cycles on subscriptions (issue 17): anchor and time zone through the admin API, into the
snapshot, and the periods reports and adjustments use; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from data_plane.limits.periods import Cycle
from data_plane.snapshot import Snapshot
from tests.integration.control_plane.factories import created, make_api, make_route, make_upstream, revision


def _world(client: TestClient, period: str = "MONTH") -> tuple[str, str, str]:
    up = make_upstream(client)
    api = make_api(client, f"shop-{uuid.uuid4().hex[:6]}", base_path=f"/s{uuid.uuid4().hex[:6]}", auth="api_key")
    make_route(client, api["id"], up["id"], "/{p+}")
    body = {
        "name": f"p-{uuid.uuid4().hex[:6]}",
        "quota": {"limit": 100, "period": period},
        "apis": [{"api_id": api["id"]}],
    }
    plan = created(client.post("/v1/usage-plans", json=body))
    cust = created(client.post("/v1/customers", json={"name": f"c-{uuid.uuid4().hex[:6]}"}))
    return cust["id"], plan["id"], api["id"]


def _snapshot_customer(client: TestClient, cluster_headers: dict[str, str], customer_id: str) -> Any:
    r = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=cluster_headers)
    snap = Snapshot.from_json(r.content)
    return next(c for c in snap.customers if c.id == customer_id)


def test_an_anchored_subscription_has_its_cycle_in_the_api_and_the_snapshot(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    cust, plan, _ = _world(client)
    r = client.put(
        f"/v1/customers/{cust}/plan",
        json={"plan_id": plan, "billing_anchor": "2026-01-31T09:00:00", "time_zone": "Europe/Paris"},
    )
    assert r.status_code == 200, r.text
    sub = r.json()
    paris = ZoneInfo("Europe/Paris")
    assert datetime.fromisoformat(sub["billing_anchor"]) == datetime(2026, 1, 31, 9, 0, tzinfo=paris)
    assert sub["time_zone"] == "Europe/Paris"
    entry = _snapshot_customer(client, cluster_headers, cust)
    assert entry.billing_anchor == int(datetime(2026, 1, 31, 9, tzinfo=paris).timestamp())
    assert entry.time_zone == "Europe/Paris" and entry.cycle_since > 0
    now = datetime.now(UTC).timestamp()
    cycle = Cycle(entry.billing_anchor, entry.time_zone, entry.cycle_since)
    start, end = cycle.bounds("MONTH", now)
    assert datetime.fromisoformat(sub["period_start"]).timestamp() == start
    assert datetime.fromisoformat(sub["period_end"]).timestamp() == end
    assert datetime.fromtimestamp(end, paris).strftime("%H:%M") == "09:00"  # cycles end at the anchor's time
    assert start >= entry.cycle_since  # the first cycle under a new anchor starts when it was set
    assert client.get(f"/v1/customers/{cust}/plan").json() == sub


def test_moving_plan_keeps_the_cycle_and_a_new_anchor_starts_a_new_one(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    cust, plan, api = _world(client)
    other = created(
        client.post(
            "/v1/usage-plans",
            json={
                "name": f"o-{uuid.uuid4().hex[:6]}",
                "quota": {"limit": 5, "period": "MONTH"},
                "apis": [{"api_id": api}],
            },
        )
    )
    client.put(f"/v1/customers/{cust}/plan", json={"plan_id": plan, "billing_anchor": "2026-01-15T00:00:00Z"})
    since = _snapshot_customer(client, cluster_headers, cust).cycle_since
    moved = client.put(f"/v1/customers/{cust}/plan", json={"plan_id": other["id"]}).json()
    assert moved["plan_id"] == other["id"] and moved["billing_anchor"].startswith("2026-01-15T00:00:00")
    assert _snapshot_customer(client, cluster_headers, cust).cycle_since == since  # same cycle, usage carries over
    rev = revision(client)
    client.put(f"/v1/customers/{cust}/plan", json={"plan_id": other["id"], "billing_anchor": "2026-01-15T00:00:00Z"})
    assert _snapshot_customer(client, cluster_headers, cust).cycle_since == since  # the same anchor again: nothing new
    assert revision(client) > rev
    client.put(f"/v1/customers/{cust}/plan", json={"plan_id": other["id"], "billing_anchor": "2026-01-20T00:00:00Z"})
    changed = _snapshot_customer(client, cluster_headers, cust)
    assert changed.cycle_since >= since and changed.billing_anchor == int(datetime(2026, 1, 20, tzinfo=UTC).timestamp())
    back = client.put(f"/v1/customers/{cust}/plan", json={"plan_id": other["id"], "billing_anchor": None}).json()
    assert back["billing_anchor"] is None and back["time_zone"] is None
    plain = _snapshot_customer(client, cluster_headers, cust)
    assert (plain.billing_anchor, plain.time_zone, plain.cycle_since) == (0, "", 0)  # the UTC calendar again


def test_a_zone_alone_gives_calendar_periods_in_that_zone(client: TestClient) -> None:
    cust, plan, _ = _world(client, period="DAY")
    sub = client.put(f"/v1/customers/{cust}/plan", json={"plan_id": plan, "time_zone": "America/New_York"}).json()
    end = datetime.fromisoformat(sub["period_end"])
    assert end.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") == "00:00"
    assert datetime.fromisoformat(sub["period_end"]) - datetime.fromisoformat(sub["period_start"]) <= timedelta(days=1)


def test_bad_cycles_are_422_and_nothing_is_written(client: TestClient) -> None:
    cust, plan, _ = _world(client)
    for body, where in (
        ({"plan_id": plan, "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"plan_id": plan, "billing_anchor": "next tuesday"}, "billing_anchor"),
        ({"plan_id": plan, "billing_anchor": "2026-02-30T00:00:00"}, "billing_anchor"),
    ):
        r = client.put(f"/v1/customers/{cust}/plan", json=body)
        assert r.status_code == 422 and where in str(r.json()["detail"][0]["loc"]), r.text
    assert client.get(f"/v1/customers/{cust}/plan").json()["plan_id"] is None  # not subscribed by a bad request


def test_adjustments_and_reports_follow_the_cycle(client: TestClient, cluster_headers: dict[str, str]) -> None:
    cust, plan, api = _world(client)
    client.put(f"/v1/customers/{cust}/plan", json={"plan_id": plan, "billing_anchor": "2026-01-10T12:00:00Z"})
    adj = client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 7}).json()
    entry = _snapshot_customer(client, cluster_headers, cust)
    start, end = Cycle(entry.billing_anchor, "", entry.cycle_since).bounds("MONTH", datetime.now(UTC).timestamp())
    assert adj["period_start"] == datetime.fromtimestamp(start, UTC).date().isoformat()
    assert adj["period_end"] == datetime.fromtimestamp(end - 1, UTC).date().isoformat()
    assert (entry.quota_extra, entry.quota_extra_start, entry.quota_extra_end) == (7, start, end)
    today = datetime.now(UTC).date().isoformat()
    report = client.get(f"/v1/customers/{cust}/usage", params={"start": today, "end": today}).json()
    assert report["days"][0]["quota_remaining"] == 107
