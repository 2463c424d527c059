"""Usage counted where the quota is (issue 17, item 0): with Redis, the check script counts each
admitted request in the customer's usage hash and the control plane collects it from there, so a
worker killed with SIGKILL right after its traffic loses no count, and the quota and the billing
record agree; each request ends in its own status class; a worker whose control plane does not
collect from Redis keeps metering by itself."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.helpers import port_open, require_service
from tests.integration.harness import Cluster, Worker, wait_until
from tests.integration.plans_support import PlanGateway, build_gateway
from tests.integration.redis_support import delete_prefix

REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def prefix() -> Iterator[str]:
    require_service("Redis", port_open(6379), "127.0.0.1:6379")
    p = f"tgcrash:{uuid.uuid4().hex}:"
    yield p
    delete_prefix(REDIS, p)


def _gateway(cluster: Cluster, prefix: str, collect: bool) -> PlanGateway:
    env = {"TOLLGATE_REDIS_URL": REDIS, "TOLLGATE_REDIS_PREFIX": prefix, "TOLLGATE_USAGE_COLLECT_INTERVAL": "0.2"}
    cp = cluster.control_plane(name=f"cp-{uuid.uuid4().hex[:6]}", extra_env=env if collect else None)
    return build_gateway(cp, [], cluster.lab(f"lab-{uuid.uuid4().hex[:6]}"))


def _worker(cluster: Cluster, gw: PlanGateway, prefix: str, flush: str = "60") -> Worker:
    # A flush interval of a minute: what the control plane gets before the kill did not come from the
    # worker's own metering.
    w = cluster.worker(
        gw.cp,
        name=f"crash-worker-{uuid.uuid4().hex[:6]}",
        extra=("--redis-url", REDIS),
        env={"TOLLGATE_REDIS_PREFIX": prefix, "TOLLGATE_USAGE_FLUSH_INTERVAL": flush},
    )
    gw.workers = [w]
    gw.sync()
    return w


def _export(gw: PlanGateway, customer_id: str) -> list[dict[str, Any]]:
    day = datetime.now(UTC).date().isoformat()
    with gw.admin() as a:
        r = a.get(
            "/v1/usage/export",
            params={"start": day, "end": day, "granularity": "hour", "format": "jsonl", "customer_id": customer_id},
        )
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line]


def _by_class(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row["status_class"]] = out.get(row["status_class"], 0) + int(row["requests"])
    return {k: v for k, v in out.items() if v}


def test_sigkill_after_traffic_loses_no_count(module_cluster: Cluster, prefix: str) -> None:
    gw = _gateway(module_cluster, prefix, collect=True)
    w = _worker(module_cluster, gw, prefix)
    wait_until(lambda: w.status()["limiter"]["redis"]["usage_in_redis"], timeout=15, what="usage counted in Redis")
    plan = gw.plan(quota={"limit": 600, "period": "DAY"})
    cid, _, key = gw.customer(plan["id"])

    with httpx.Client(base_url=w.url, headers={"x-api-key": key}, timeout=10.0) as c:
        statuses = [c.get("/shop/other").status_code for _ in range(501)]
    assert statuses == [200] * 501
    w.proc.kill()  # SIGKILL: no shutdown, no flush, the minute-long flush interval never came

    gw.wait_usage(cid, 501, timeout=30)  # every admitted request, collected from Redis exactly once
    wait_until(lambda: _by_class(_export(gw, cid)).get("2xx", 0) >= 500, timeout=10, what="status classes settled")
    classes = _by_class(_export(gw, cid))
    assert sum(classes.values()) == 501
    assert set(classes) <= {"2xx", "5xx"}  # a move the kill cut off leaves its request as 5xx, never lost

    # the quota counted the same requests: a new worker admits exactly the 99 left
    w2 = _worker(module_cluster, gw, prefix)
    with httpx.Client(base_url=w2.url, headers={"x-api-key": key}, timeout=10.0) as c:
        more = [c.get("/shop/other").status_code for _ in range(101)]
    assert more == [200] * 99 + [429] * 2
    gw.wait_usage(cid, 600, timeout=30)
    w2.proc.stop()
    assert gw.usage_today(cid) == 600  # the graceful stop flushed nothing twice


def test_status_classes_are_settled(module_cluster: Cluster, prefix: str) -> None:
    gw = _gateway(module_cluster, prefix, collect=True)
    w = _worker(module_cluster, gw, prefix)
    wait_until(lambda: w.status()["limiter"]["redis"]["usage_in_redis"], timeout=15, what="usage counted in Redis")
    plan = gw.plan(throttle={"rate": 1000, "burst": 1000})
    cid, _, key = gw.customer(plan["id"])
    with httpx.Client(base_url=w.url, headers={"x-api-key": key}, timeout=10.0) as c:
        assert [c.get("/shop/other").status_code for _ in range(7)] == [200] * 7
        gw.echo.control(status=404)
        assert [c.get("/shop/other").status_code for _ in range(3)] == [404] * 3
        gw.echo.control(status=503)
        assert [c.get("/shop/other").status_code for _ in range(2)] == [503] * 2
        gw.echo.control(status=200)
    wait_until(lambda: _by_class(_export(gw, cid)) == {"2xx": 7, "4xx": 3, "5xx": 2}, timeout=15, what="by class")
    assert w.status()["limiter"]["redis"]["lost_status_moves"] == 0
    assert gw.usage_today(cid) == 12
    w.proc.stop()


def test_without_a_collector_the_worker_meters_itself(module_cluster: Cluster, prefix: str) -> None:
    gw = _gateway(module_cluster, prefix, collect=False)
    w = _worker(module_cluster, gw, prefix, flush="0.2")
    plan = gw.plan(quota={"limit": 50, "period": "DAY"})
    cid, _, key = gw.customer(plan["id"])
    with httpx.Client(base_url=w.url, headers={"x-api-key": key}, timeout=10.0) as c:
        assert [c.get("/shop/other").status_code for _ in range(20)] == [200] * 20
    gw.wait_usage(cid, 20)
    assert w.status()["limiter"]["redis"]["usage_in_redis"] is False
    w.proc.stop()
    assert gw.usage_today(cid) == 20
