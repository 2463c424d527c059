"""Redis stopped mid-test: fail-open falls back to per-worker counters, fail-closed refuses; both are
exact again (counting in Redis) once the same port answers again.

Runs its own ``redis-server`` on a free port (no persistence), leaving the machine's service alone.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from data_plane.limits.periods import DAY
from data_plane.limits.policy import UNAVAILABLE, Decision, LimitPolicy, Quota
from data_plane.limits.redis import RedisStore
from tests.integration.redis_support import OwnRedis, resolve

POLICY = LimitPolicy(quota=Quota(limit=5, period=DAY))


async def checks(store: RedisStore, customer: str, n: int) -> list[Decision]:
    pending = [store.check(customer, POLICY) for _ in range(n)]
    return list(await asyncio.gather(*(resolve(p) for p in pending)))


async def wait_for(cond: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_fail_open_and_fail_closed_across_a_redis_restart(own_redis: OwnRedis) -> None:
    async def body() -> None:
        opened = RedisStore(own_redis.url, fail_mode="open", backoff_initial=0.05, backoff_max=0.2)
        closed = RedisStore(own_redis.url, fail_mode="closed", backoff_initial=0.05, backoff_max=0.2)
        assert sum(d.allowed for d in await checks(opened, "c-open", 3)) == 3
        assert sum(d.allowed for d in await checks(closed, "c-closed", 3)) == 3

        await asyncio.to_thread(own_redis.stop)
        # The first check after the stop discovers the outage; later ones never touch the network.
        during_open = await checks(opened, "c-open", 8)
        during_closed = await checks(closed, "c-closed", 8)
        assert not opened.available and not closed.available
        assert opened.outages == 1 and opened.fallback_checks >= 8
        # fail-open: the per-worker memory counters decide, with the same quota (they start from zero)
        assert sum(d.allowed for d in during_open) == 5
        assert all(d.limit != UNAVAILABLE for d in during_open)
        # fail-closed: every check is refused as unavailable (the caller answers 503)
        assert all(d.limit == UNAVAILABLE and not d.allowed for d in during_closed)
        assert closed.unavailable_checks >= 8

        await asyncio.to_thread(own_redis.start)
        await wait_for(lambda: opened.available and closed.available)
        fallback_before = opened.fallback_checks
        # exact again, counted in Redis (the restarted server is empty: no persistence)
        assert sum(d.allowed for d in await checks(opened, "c-open", 8)) == 5
        assert sum(d.allowed for d in await checks(closed, "c-closed", 8)) == 5
        assert opened.fallback_checks == fallback_before
        client = aioredis.Redis.from_url(own_redis.url)
        keys = [k async for k in client.scan_iter(match="tg:{c-open}:q:*")]
        assert len(keys) == 1 and int(await client.get(keys[0])) == 5
        await client.aclose()
        await opened.close()
        await closed.close()

    asyncio.run(body())
