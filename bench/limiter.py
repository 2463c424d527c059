"""Limiter check throughput and latency: memory store vs Redis store (batched and unbatched).

50 concurrent callers (coroutines standing in for exchanges, spread over ``--customers``) each
loop ``check -> wait for the decision`` for a few seconds, against a policy that always admits
(large burst and quota), so every check runs the full script.  Prints checks/s and p50/p99 latency
per store, and for Redis the checks and script calls per pipeline: one customer's checks in a batch
share one call, so ``--customers 50`` (one caller each) is the case with nothing to coalesce.

    .venv/bin/python bench/limiter.py [--redis redis://127.0.0.1:6379/15] [--seconds 3] [--callers 50]
        [--customers 10]

Numbers on a shared 2-core machine are noisy; compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
import uvloop

from data_plane.limits.memory import MemoryStore
from data_plane.limits.periods import DAY
from data_plane.limits.policy import Decision, LimitPolicy, Quota, Throttle
from data_plane.limits.redis import RedisStore

POLICY = LimitPolicy(throttle=Throttle(rate=1e9, burst=1_000_000_000), quota=Quota(limit=1_000_000_000, period=DAY))


async def run(store: Any, callers: int, seconds: float, customers: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        customer = f"bench-{i % customers}"
        perf = time.perf_counter
        while perf() < stop:
            t0 = perf()
            d = store.check(customer, POLICY)
            if not isinstance(d, Decision):
                d = await d
            assert d.allowed, d
            latencies.append(perf() - t0)
            if isinstance(store, MemoryStore):
                await asyncio.sleep(0)  # let the other callers run, as exchanges would

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return len(latencies), latencies


def report(name: str, n: int, latencies: list[float], seconds: float) -> None:
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    print(f"{name:<22} {n / seconds:>10,.0f} checks/s   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")


async def main(url: str, seconds: float, callers: int, customers: int) -> None:
    print(f"{callers} concurrent callers of {customers} customers, {seconds:g} s per store")
    n, lat = await run(MemoryStore(), callers, seconds, customers)
    report("memory", n, lat, seconds)
    for batch in (True, False):
        prefix = f"tgbench:{uuid.uuid4().hex}:"
        store = RedisStore(url, prefix=prefix, batch=batch, fail_mode="closed")
        await store.ping()
        n, lat = await run(store, callers, seconds, customers)
        name = "redis batched" if batch else "redis unbatched"
        report(name, n, lat, seconds)
        if batch:
            print(f"{'':<22} {n / max(1, store.batches_sent):>10.1f} checks per pipeline (mean)")
            # one script call per customer in a batch (coalescing, data_plane/limits/redis.py)
            print(f"{'':<22} {store.calls_sent / max(1, store.batches_sent):>10.1f} script calls per pipeline (mean)")
        await store.close()
        client = aioredis.Redis.from_url(url)  # cleanup with redis-py (off the measured path)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--callers", type=int, default=50)
    ap.add_argument("--customers", type=int, default=10, help="callers are spread over this many customers")
    a = ap.parse_args()
    uvloop.run(main(a.redis, a.seconds, a.callers, a.customers))
