"""Usage plans through a real control plane and a real worker (in-process memory store): throttle,
quota, overrides, hidden headers, metering (also across a control-plane outage), adjustments, key
rotation, plan changes and unsubscribing."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from tests.integration.harness import Cluster, create, wait_until
from tests.integration.plans_support import PlanGateway, build_gateway, burst, seconds_to_utc_midnight

FAST_METERING = {"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> Iterator[PlanGateway]:
    echo = module_cluster.echo("plans")
    cp = module_cluster.control_plane()
    worker = module_cluster.worker(cp, name="plans-worker", env=FAST_METERING)
    yield build_gateway(cp, [worker], echo)


def test_throttle_burst_of_50_admits_exactly_5(gw: PlanGateway) -> None:
    plan = gw.plan(throttle={"rate": 5, "burst": 5})
    cid, _, key = gw.customer(plan["id"])
    replies = burst([(gw.workers[0].port, "/shop/other", key)] * 50)
    ok = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 429]
    assert len(ok) == 5 and len(refused) == 45
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["ratelimit-policy"] == '"throttle";q=5;w=1'
        assert r.headers["ratelimit"].startswith('"throttle";r=0;t=')
        assert r.headers["x-ratelimit-limit"] == "5" and r.headers["x-ratelimit-remaining"] == "0"
        assert json.loads(r.body)["limit"] == "throttle"
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == [0, 1, 2, 3, 4]
    gw.wait_usage(cid, 5)  # only admitted requests are metered


def test_daily_quota_then_retry_after_midnight_and_adjustment(gw: PlanGateway) -> None:
    plan = gw.plan(quota={"limit": 10, "period": "DAY"})
    cid, _, key = gw.customer(plan["id"])
    statuses = [gw.get("/shop/other", key).status_code for _ in range(10)]
    assert statuses == [200] * 10
    refused = gw.get("/shop/other", key)
    expected = seconds_to_utc_midnight()
    assert refused.status_code == 429 and refused.json()["limit"] == "quota"
    assert abs(int(refused.headers["retry-after"]) - math.ceil(expected)) <= 2
    assert refused.headers["x-ratelimit-limit"] == "10" and refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-policy"] == '"quota";q=10;w=86400'
    # a request refused for auth consumes nothing and is not metered
    assert gw.get("/shop/other", "tg_wrong_key_000000000000000000").status_code == 403
    gw.wait_usage(cid, 10)

    with gw.admin() as a:
        r = a.post(f"/v1/customers/{cid}/usage/adjust", json={"extra": 2})
        assert r.status_code == 200 and r.json()["limit"] == 12
    gw.sync()
    after = [gw.get("/shop/other", key) for _ in range(3)]
    assert [r.status_code for r in after] == [200, 200, 429]
    assert after[0].headers["x-ratelimit-limit"] == "12"
    gw.wait_usage(cid, 12)


def test_route_override_applies_only_to_its_route(gw: PlanGateway) -> None:
    override = {"method": "GET", "path": "/items/{id}", "rate": 0.01, "burst": 1}
    with gw.admin() as a:
        plan = create(
            a,
            "/v1/usage-plans",
            {
                "name": "override-plan",
                "throttle": {"rate": 100, "burst": 100},
                "apis": [{"api_id": gw.apis["shop"], "overrides": [override]}],
            },
        )
    _, _, key = gw.customer(plan["id"])
    first, second = gw.get("/shop/items/1", key), gw.get("/shop/items/2", key)
    assert first.status_code == 200 and second.status_code == 429
    assert second.headers["ratelimit-policy"] == '"throttle";q=1;w=100'
    others = [gw.get("/shop/other", key) for _ in range(5)]
    assert [r.status_code for r in others] == [200] * 5
    assert others[-1].headers["x-ratelimit-limit"] == "100"


def test_rate_limit_headers_hidden_when_the_api_says_so(gw: PlanGateway) -> None:
    plan = gw.plan(["quiet"], throttle={"rate": 0.01, "burst": 1})
    _, _, key = gw.customer(plan["id"])
    ok, refused = gw.get("/quiet/other", key), gw.get("/quiet/other", key)
    assert ok.status_code == 200 and refused.status_code == 429
    for r in (ok, refused):
        assert not [h for h in r.headers if "ratelimit" in h.lower()]
    assert int(refused.headers["retry-after"]) >= 1


def test_key_rotation_keeps_the_quota_used(gw: PlanGateway) -> None:
    plan = gw.plan(quota={"limit": 3, "period": "DAY"})
    cid, key_id, key = gw.customer(plan["id"])
    assert [gw.get("/shop/other", key).status_code for _ in range(2)] == [200, 200]
    with gw.admin() as a:
        new_key = create(a, f"/v1/customers/{cid}/keys/{key_id}/rotate", {"grace_seconds": 0})["key"]
    gw.sync()
    assert gw.get("/shop/other", key).status_code == 403  # the old key is gone
    assert [gw.get("/shop/other", new_key).status_code for _ in range(2)] == [200, 429]


def test_plan_change_keeps_usage_and_unsubscribing_removes_limits_or_access(gw: PlanGateway) -> None:
    small = gw.plan(quota={"limit": 5, "period": "DAY"})
    big = gw.plan(quota={"limit": 8, "period": "DAY"})
    # plan-only: shop comes through the plan; direct: quiet is granted directly and is in the plan too
    cid, _, key = gw.customer(small["id"])
    assert [gw.get("/shop/other", key).status_code for _ in range(4)] == [200] * 4
    with gw.admin() as a:
        assert a.put(f"/v1/customers/{cid}/plan", json={"plan_id": big["id"]}).status_code == 200
    gw.sync()
    # 4 used of the new plan's 8: the usage counted so far in this period carried over
    assert [gw.get("/shop/other", key).status_code for _ in range(5)] == [200] * 4 + [429]

    with gw.admin() as a:
        assert a.delete(f"/v1/customers/{cid}/plan").status_code == 204
    gw.sync()
    denied = gw.get("/shop/other", key)
    assert denied.status_code == 403 and "not granted" in denied.text  # access came only through the plan

    both = gw.plan(["shop"], quota={"limit": 1, "period": "DAY"})
    cid2, _, key2 = gw.customer(both["id"], direct=("shop",))
    assert [gw.get("/shop/other", key2).status_code for _ in range(2)] == [200, 429]
    with gw.admin() as a:
        assert a.delete(f"/v1/customers/{cid2}/plan").status_code == 204
    gw.sync()
    # a direct grant without a plan: no limits, no headers
    replies = [gw.get("/shop/other", key2) for _ in range(3)]
    assert [r.status_code for r in replies] == [200] * 3
    assert "x-ratelimit-limit" not in replies[0].headers


def test_usage_is_delivered_after_a_control_plane_outage(gw: PlanGateway, module_cluster: Cluster) -> None:
    plan = gw.plan(quota={"limit": 1000, "period": "DAY"})
    cid, _, key = gw.customer(plan["id"])
    w = gw.workers[0]
    delivered = w.metric("tollgate_usage_delivered_batches_total") or 0
    failed = w.metric("tollgate_usage_failed_sends_total") or 0
    gw.cp.proc.stop()
    try:
        assert [gw.get("/shop/other", key).status_code for _ in range(7)] == [200] * 7
        spooled = w.status()["limiter"]["usage"]
        assert spooled["unsent_counts"] + spooled["pending_batches"] > 0
        # /metrics shows the outage: batches pile up in the spool, sends fail
        wait_until(
            lambda: (
                (w.metric("tollgate_usage_pending_batches") or 0) >= 1
                and (w.metric("tollgate_usage_failed_sends_total") or 0) > failed
            ),
            timeout=10,
            what="a spooled batch and a failed send in /metrics",
        )
    finally:
        module_cluster.restart_control_plane(gw.cp)
    gw.wait_usage(cid, 7)
    wait_until(lambda: w.metric("tollgate_usage_pending_batches") == 0, timeout=10, what="the spool drained")
    assert (w.metric("tollgate_usage_delivered_batches_total") or 0) > delivered
