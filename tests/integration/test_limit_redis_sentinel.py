"""The Redis store behind Sentinel (a master, a replica, three sentinels; passwords on both): exact limits
across two processes, and a failover under traffic — the master killed, fail closed refuses and fail
open counts per worker while the sentinels promote the replica, then counting continues on the new
master from where the old one stopped."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_plane.limits.periods import DAY
from data_plane.limits.policy import UNAVAILABLE, Decision, LimitPolicy, Quota
from data_plane.limits.redis import RedisStore
from tests.integration.redis_servers import SentinelSet, require_binaries
from tests.integration.redis_support import resolve, two_processes_check

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "master-secret-81c"
SENTINEL_PASSWORD = "sentinel-secret-5d2"


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    require_binaries()
    s = SentinelSet(tmp_path_factory.mktemp("redis-sentinel"), PASSWORD, SENTINEL_PASSWORD)
    try:
        yield s.start()
    finally:
        s.stop()


def test_two_processes_share_exact_limits_through_sentinel(sentinels: SentinelSet) -> None:
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    outs = two_processes_check(sentinels.url(), prefix)
    assert sum(o["quota"] for o in outs) == 100  # 200 concurrent checks, quota 100
    assert sum(o["burst"] for o in outs) == 100
    assert len(sentinels.master.client().keys(f"{prefix}*")) == 2  # counted on the master


async def batch(store: RedisStore, customer: str, policy: LimitPolicy, n: int) -> list[Decision]:
    pending = [store.check(customer, policy) for _ in range(n)]
    return [await resolve(p) for p in pending]


def test_failover_under_traffic(sentinels: SentinelSet) -> None:
    """Runs last in the module: it kills the master for good."""
    quota = 60
    policy = LimitPolicy(quota=Quota(limit=quota, period=DAY))
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    old_master, replica = sentinels.master, sentinels.replica

    async def body() -> None:
        fast = {"backoff_initial": 0.05, "backoff_max": 0.2}
        # wait_replicas=1: a decision is answered once the replica has its count (none lost in a failover)
        closed = RedisStore(sentinels.url("wait_replicas=1&wait_timeout=20"), prefix=prefix, fail_mode="closed", **fast)
        opened = RedisStore(sentinels.url(), prefix=prefix, fail_mode="open", **fast)
        admitted = {"closed": 0, "open": 0}  # decided by Redis
        refused_unavailable = 0
        for _ in range(4):  # 20 of 60 before the failover
            admitted["closed"] += sum(d.allowed for d in await batch(closed, "cust-closed", policy, 5))
            admitted["open"] += sum(d.allowed for d in await batch(opened, "cust-open", policy, 5))
        assert admitted == {"closed": 20, "open": 20}
        assert closed.status()["master"] == f"127.0.0.1:{old_master.port}"
        assert closed.status()["unacked_batches"] == 0

        old_master.kill()  # between two batches of the traffic below: no reply is lost in flight
        deadline = time.monotonic() + 20
        open_fallback_admitted = 0
        while not (closed.available and opened.available and closed.outages and opened.outages):
            assert time.monotonic() < deadline, "no failover in time"
            decisions = await batch(closed, "cust-closed", policy, 5)
            refused_unavailable += sum(d.limit == UNAVAILABLE for d in decisions)
            admitted["closed"] += sum(d.allowed for d in decisions)
            before = opened.fallback_checks
            decisions = await batch(opened, "cust-open", policy, 5)
            if opened.fallback_checks > before:
                open_fallback_admitted += sum(d.allowed for d in decisions)
            else:
                admitted["open"] += sum(d.allowed for d in decisions)
            await asyncio.sleep(0.02)
        # during the failover: fail closed refused (503), fail open admitted from per-worker counters
        assert refused_unavailable > 0 and closed.unavailable_checks == refused_unavailable
        assert open_fallback_admitted > 0 and opened.fallback_checks > 0
        assert closed.status()["master"] == f"127.0.0.1:{replica.port}"
        assert sentinels.current_master_port() == replica.port

        # after it: the new master carries on from the old one's counts, exactly.  One batch first: the
        # new master has no script yet, and the NOSCRIPT resend waits for replicas a second time
        admitted["closed"] += sum(d.allowed for d in await batch(closed, "cust-closed", policy, 5))
        admitted["open"] += sum(d.allowed for d in await batch(opened, "cust-open", policy, 5))
        unacked = closed.status()["unacked_batches"]
        for _ in range(20):
            admitted["closed"] += sum(d.allowed for d in await batch(closed, "cust-closed", policy, 5))
            before = opened.fallback_checks
            admitted["open"] += sum(d.allowed for d in await batch(opened, "cust-open", policy, 5))
            assert opened.fallback_checks == before
        assert admitted == {"closed": quota, "open": quota}
        new_master = replica.client()
        for customer in ("cust-closed", "cust-open"):
            [key] = new_master.keys(f"{prefix}{{{customer}}}:q:*")
            assert int(new_master.get(key)) == quota
        # the new master has no replica left: every batch since waited wait_timeout for none, and says so
        assert closed.status()["unacked_batches"] == unacked + 20
        await closed.close()
        await opened.close()

    asyncio.run(body())
