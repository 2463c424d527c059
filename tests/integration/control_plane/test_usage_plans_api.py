"""Usage plans over the admin API (SQLite and PostgreSQL): CRUD and validation, subscriptions, usage
ingestion idempotency, reports, adjustments, and what reaches the snapshot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from data_plane.snapshot import Snapshot
from tests.integration.control_plane.factories import created, make_api, make_route, make_upstream, revision

USAGE = "/cluster/v1/usage"


def _world(client: TestClient) -> dict[str, Any]:
    up = make_upstream(client)
    api = make_api(client, "shop", base_path="/shop", auth="api_key")
    make_route(client, api["id"], up["id"], "/items/{id}", methods=["GET", "PUT"])
    make_route(client, api["id"], up["id"], "/health")
    other = make_api(client, "other", base_path="/other", auth="api_key", rate_limit_headers=False)
    return {"up": up, "api": api, "other": other}


def _plan(client: TestClient, api_id: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "gold", "throttle": {"rate": 0.5, "burst": 3}, "quota": {"limit": 10, "period": "DAY"}}
    body["apis"] = [{"api_id": api_id, "overrides": [{"method": "get", "path": "/items/{id}", "rate": 1, "burst": 1}]}]
    return created(client.post("/v1/usage-plans", json={**body, **fields}))


def _snapshot(client: TestClient, cluster_headers: dict[str, str]) -> Snapshot:
    r = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=cluster_headers)
    return Snapshot.from_json(r.content)


def _loc(response: Any) -> list[Any]:
    assert response.status_code == 422, response.text
    return list(response.json()["detail"][0]["loc"])


def test_plan_crud_validation_and_snapshot(client: TestClient, cluster_headers: dict[str, str]) -> None:
    w = _world(client)
    plan = _plan(client, w["api"]["id"], description="the good one")
    assert plan["throttle"] == {"rate": 0.5, "burst": 3} and plan["quota"] == {"limit": 10, "period": "DAY"}
    assert plan["apis"][0]["overrides"] == [{"method": "GET", "path": "/items/{id}", "rate": 1.0, "burst": 1}]
    assert client.get(f"/v1/usage-plans/{plan['id']}").json() == plan
    listing = client.get("/v1/usage-plans", params={"limit": 1}).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == plan["id"]

    # 422 naming the field
    assert _loc(client.post("/v1/usage-plans", json={"name": "x", "throttle": {"rate": 0, "burst": 1}})) == [
        "body",
        "throttle",
        "rate",
    ]
    assert _loc(client.post("/v1/usage-plans", json={"name": "x", "quota": {"limit": 5, "period": "YEAR"}}))[:3] == [
        "body",
        "quota",
        "period",
    ]
    assert _loc(client.post("/v1/usage-plans", json={"name": "x", "apis": [{"api_id": "nope"}]})) == [
        "body",
        "apis",
        0,
        "api_id",
    ]
    bad_override = {
        "api_id": w["api"]["id"],
        "overrides": [{"method": "POST", "path": "/items/{id}", "rate": 1, "burst": 1}],
    }
    assert _loc(client.post("/v1/usage-plans", json={"name": "x", "apis": [bad_override]})) == [
        "body",
        "apis",
        0,
        "overrides",
        0,
        "path",
    ]
    assert client.post("/v1/usage-plans", json={"name": "gold"}).status_code == 409

    # PATCH: clear the throttle, keep the rest
    patched = client.patch(f"/v1/usage-plans/{plan['id']}", json={"throttle": None})
    assert patched.status_code == 200 and patched.json()["throttle"] is None and patched.json()["quota"]

    snap = _snapshot(client, cluster_headers)
    assert tuple(map(int, snap.schema_version.split("."))) >= (1, 3)  # plans came with 1.3
    (sp,) = snap.plans
    assert sp.id == plan["id"] and sp.throttle is None and sp.quota is not None and sp.quota.limit == 10
    assert sp.apis[0].overrides[0].method == "GET"
    assert {a.name: a.rate_limit_headers for a in snap.apis} == {"shop": True, "other": False}


def test_subscription_grants_and_delete_conflict(client: TestClient, cluster_headers: dict[str, str]) -> None:
    w = _world(client)
    plan = _plan(client, w["api"]["id"])
    cust = created(client.post("/v1/customers", json={"name": "acme", "api_ids": [w["other"]["id"]]}))
    assert client.get(f"/v1/customers/{cust['id']}/plan").json()["plan_id"] is None
    before = revision(client)
    r = client.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": plan["id"]})
    assert r.status_code == 200
    sub = r.json()
    assert (sub["customer_id"], sub["plan_id"], sub["plan_name"]) == (cust["id"], plan["id"], "gold")
    assert sub["billing_anchor"] is None and sub["time_zone"] is None  # UTC calendar periods
    assert revision(client) == before + 1
    assert client.get(f"/v1/customers/{cust['id']}").json()["plan_id"] == plan["id"]
    assert _loc(client.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": "nope"})) == ["body", "plan_id"]
    assert client.put("/v1/customers/nope/plan", json={"plan_id": plan["id"]}).status_code == 404

    (c,) = _snapshot(client, cluster_headers).customers
    assert c.plan_id == plan["id"] and c.api_ids == (w["other"]["id"],)  # direct grants unchanged

    r = client.delete(f"/v1/usage-plans/{plan['id']}")
    assert r.status_code == 409 and "subscribed" in r.json()["detail"]
    assert client.delete(f"/v1/customers/{cust['id']}/plan").status_code == 204
    assert client.get(f"/v1/customers/{cust['id']}/plan").json()["plan_id"] is None
    assert client.delete(f"/v1/usage-plans/{plan['id']}").status_code == 204
    assert client.get(f"/v1/usage-plans/{plan['id']}").status_code == 404


def _batch(customer_id: str, api_id: str, counts: dict[str, int], batch_id: str | None = None) -> dict[str, Any]:
    return {
        "batch_id": batch_id or str(uuid.uuid4()),
        "node_id": "n1",
        "counts": [{"customer_id": customer_id, "api_id": api_id, "day": d, "count": n} for d, n in counts.items()],
    }


def test_usage_ingestion_is_idempotent_and_reported(client: TestClient, cluster_headers: dict[str, str]) -> None:
    w = _world(client)
    plan = _plan(client, w["api"]["id"])
    cust = created(client.post("/v1/customers", json={"name": "acme"}))
    client.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": plan["id"]})
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    before = revision(client)

    batch = _batch(cust["id"], w["api"]["id"], {today.isoformat(): 3, yesterday.isoformat(): 2})
    assert client.post(USAGE, json=batch).status_code == 401  # cluster token only
    first = client.post(USAGE, json=batch, headers=cluster_headers)
    assert first.status_code == 200 and first.json()["applied"] is True
    again = client.post(USAGE, json=batch, headers=cluster_headers)
    assert again.status_code == 200 and again.json()["applied"] is False  # replay: not counted twice
    more = _batch(cust["id"], w["api"]["id"], {today.isoformat(): 4})
    more["counts"].append({"customer_id": cust["id"], "api_id": w["other"]["id"], "day": today.isoformat(), "count": 5})
    more["counts"].append(
        {"customer_id": "deleted-customer", "api_id": w["api"]["id"], "day": today.isoformat(), "count": 9}
    )
    assert client.post(USAGE, json=more, headers=cluster_headers).json()["applied"] is True
    assert (
        client.post(USAGE, json={"batch_id": "x", "counts": [{"day": "nope"}]}, headers=cluster_headers).status_code
        == 422
    )
    assert revision(client) == before  # usage is not config

    r = client.get(
        f"/v1/customers/{cust['id']}/usage", params={"start": yesterday.isoformat(), "end": today.isoformat()}
    )
    assert r.status_code == 200, r.text
    days = {d["day"]: d for d in r.json()["days"]}
    assert days[yesterday.isoformat()]["requests"] == 2
    assert days[today.isoformat()]["requests"] == 12
    assert days[today.isoformat()]["apis"] == {w["api"]["id"]: 7, w["other"]["id"]: 5}
    # quota 10/DAY counts only the plan's APIs
    assert days[today.isoformat()]["quota_remaining"] == 3 and days[yesterday.isoformat()]["quota_remaining"] == 8

    plan_report = client.get(
        f"/v1/usage-plans/{plan['id']}/usage", params={"start": today.isoformat(), "end": today.isoformat()}
    )
    (row,) = plan_report.json()["customers"]
    assert row["customer_id"] == cust["id"] and row["days"][0]["requests"] == 12

    bad = client.get(
        f"/v1/customers/{cust['id']}/usage", params={"start": today.isoformat(), "end": yesterday.isoformat()}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "end"

    # adjust: extra quota for the current period, in the snapshot, bumps the revision
    adj = client.post(f"/v1/customers/{cust['id']}/usage/adjust", json={"extra": 5})
    assert adj.status_code == 200, adj.text
    assert adj.json()["extra"] == 5 and adj.json()["limit"] == 15 and adj.json()["period_start"] == today.isoformat()
    assert client.post(f"/v1/customers/{cust['id']}/usage/adjust", json={"extra": 2}).json()["extra"] == 7
    assert revision(client) == before + 2
    r = client.get(f"/v1/customers/{cust['id']}/usage", params={"start": today.isoformat(), "end": today.isoformat()})
    assert r.json()["days"][0]["quota_remaining"] == 10  # 10 + 7 - 7
    (c,) = _snapshot(client, cluster_headers).customers
    now = datetime.now(UTC).timestamp()
    assert c.quota_extra == 7 and c.quota_extra_start <= now < c.quota_extra_end

    nobody = created(client.post("/v1/customers", json={"name": "noplan"}))
    assert client.post(f"/v1/customers/{nobody['id']}/usage/adjust", json={"extra": 1}).status_code == 409
