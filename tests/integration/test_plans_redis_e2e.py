"""Usage plans on Redis through real worker processes: two workers share one Redis and stay exact
(quota and burst), metering matches the admitted count, and a Redis outage (a test-owned
``redis-server``) gives fail-open traffic / fail-closed 503s, exact again once Redis is back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import port_open, require_service
from tests.integration.harness import Cluster, Worker, wait_until
from tests.integration.plans_support import PlanGateway, build_gateway, burst
from tests.integration.redis_support import OwnRedis, delete_prefix

MACHINE_REDIS = "redis://127.0.0.1:6379/15"
FAST_METERING = {"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> PlanGateway:
    """Control plane, backend and APIs for the module; each test starts its own workers."""
    return build_gateway(module_cluster.control_plane(), [], module_cluster.echo("plans-redis"))


def _start_workers(cluster: Cluster, gw: PlanGateway, url: str, prefix: str, modes: list[str]) -> list[Worker]:
    gw.workers = [
        cluster.worker(
            gw.cp,
            name=f"redis-worker-{i}-{uuid.uuid4().hex[:6]}",
            extra=("--redis-url", url, "--limit-fail-mode", mode),
            env={**FAST_METERING, "TOLLGATE_REDIS_PREFIX": prefix},
        )
        for i, mode in enumerate(modes)
    ]
    gw.sync()
    return gw.workers


@pytest.fixture
def shared(module_cluster: Cluster, gw: PlanGateway) -> Iterator[PlanGateway]:
    require_service("Redis", port_open(6379), "127.0.0.1:6379")
    prefix = f"tgtest:{uuid.uuid4().hex}:"
    workers = _start_workers(module_cluster, gw, MACHINE_REDIS, prefix, ["closed", "closed"])
    yield gw
    for w in workers:
        w.proc.stop()
    delete_prefix(MACHINE_REDIS, prefix)


def test_two_workers_on_one_redis_are_exact(shared: PlanGateway) -> None:
    quota_plan = shared.plan(quota={"limit": 100, "period": "DAY"})
    qcid, _, qkey = shared.customer(quota_plan["id"])
    ports = [w.port for w in shared.workers]
    replies = burst([(ports[i % 2], "/shop/other", qkey) for i in range(200)])
    assert sum(r.status == 200 for r in replies) == 100
    assert sum(r.status == 429 for r in replies) == 100
    shared.wait_usage(qcid, 100)  # metered by both workers, delivered exactly once

    burst_plan = shared.plan(throttle={"rate": 0.001, "burst": 100})
    _, _, bkey = shared.customer(burst_plan["id"])
    replies = burst([(ports[i % 2], "/shop/other", bkey) for i in range(200)])
    assert sum(r.status == 200 for r in replies) == 100
    assert {r.status for r in replies} == {200, 429}


def test_redis_outage_fail_open_and_fail_closed(module_cluster: Cluster, gw: PlanGateway, own_redis: OwnRedis) -> None:
    workers = _start_workers(module_cluster, gw, own_redis.url, "tg:", ["open", "closed"])
    plan = gw.plan(quota={"limit": 5, "period": "DAY"})
    _, _, key = gw.customer(plan["id"])
    assert [gw.get("/shop/other", key, worker=1).status_code for _ in range(2)] == [200, 200]

    own_redis.stop()
    # fail-open: the worker's own memory counters decide (quota 5, counted from zero for the outage)
    opened = [gw.get("/shop/other", key, worker=0).status_code for _ in range(7)]
    assert opened == [200] * 5 + [429] * 2
    closed = gw.get("/shop/other", key, worker=1)
    assert closed.status_code == 503 and closed.json()["message"] == "rate limiter unavailable"
    assert closed.headers["retry-after"] == "1"
    status = workers[0].status()["limiter"]
    assert status["available"] is False and status["fallback_checks"] >= 7
    opened_w, closed_w = workers
    assert opened_w.metric("tollgate_limiter_available") == 0
    assert opened_w.metric("tollgate_limiter_outages_total") == 1
    assert (opened_w.metric("tollgate_limiter_fallback_checks_total") or 0) >= 7
    assert opened_w.metric("tollgate_limiter_unavailable_checks_total") == 0
    assert closed_w.metric("tollgate_limiter_available") == 0
    assert (closed_w.metric("tollgate_limiter_unavailable_checks_total") or 0) >= 1
    assert closed_w.metric("tollgate_limiter_fallback_checks_total") == 0

    own_redis.start()  # same port, empty (no persistence)
    for w in workers:
        wait_until(lambda w=w: w.status()["limiter"]["available"], timeout=20, what="redis back")
        assert w.metric("tollgate_limiter_available") == 1
    # exact again, shared by both workers: 5 in total
    statuses = [gw.get("/shop/other", key, worker=i % 2).status_code for i in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    for w in workers:
        w.proc.stop()
