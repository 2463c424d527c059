"""Limiter check throughput and latency: memory store vs Redis store (batched and unbatched).

50 concurrent callers (coroutines standing in for exchanges, spread over ``--customers``) each
loop ``check -> wait for the decision`` for a few seconds, against a policy that always admits
(large burst and quota), so every check runs the full script.  Prints checks/s and p50/p99 latency
per store, and for Redis the checks and script calls per pipeline: one customer's checks in a batch
share one call, so ``--customers 50`` (one caller each) is the case with nothing to coalesce.

    .venv/bin/python bench/limiter.py [--redis redis://127.0.0.1:6379/15] [--seconds 3] [--callers 50]
        [--customers 10] [--cluster [URL]] [--redis-py]

``--cluster`` adds the Redis Cluster store: against URL (``redis+cluster://host:port,...``), or, given
alone, a 3-master cluster this script starts on free ports (and stops).  ``--redis-py`` adds what the
store chose not to use on the hot path: redis-py's own pipelines (``Redis.pipeline`` and, with
``--cluster``, ``RedisCluster``, which refuses EVALSHA in its pipelines, with one call per
customer, concurrently) running the same script, batched the same way, so the rows
show what the lean connection (limits/resp.py) buys (docs/redis.md).

Numbers on a shared 2-core machine are noisy; compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

from data_plane.limits.memory import MemoryStore
from data_plane.limits.periods import DAY
from data_plane.limits.policy import Decision, LimitPolicy, Quota, Throttle
from data_plane.limits.redis import LUA_CHECK, RedisStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Procs, start_redis_cluster  # noqa: E402

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


class RedisPyBatcher:
    """The store's batching (checks of one event-loop iteration in one pipeline, one script call per
    customer) over a redis-py pipeline instead of limits/resp.py: the alternative the store measured."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.pending: list[tuple[str, asyncio.Future[Decision]]] = []
        self.scheduled = False
        self.sha = ""

    async def load(self) -> None:
        self.sha = await self.client.script_load(LUA_CHECK)  # RedisCluster sends it to every primary

    def check(self, customer: str, policy: LimitPolicy) -> asyncio.Future[Decision]:
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self.pending.append((customer, fut))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return fut

    def flush(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, []
        asyncio.get_running_loop().create_task(self.send(batch))

    async def send(self, batch: list[tuple[str, asyncio.Future[Decision]]]) -> None:
        groups: dict[str, list[asyncio.Future[Decision]]] = {}
        for customer, fut in batch:
            groups.setdefault(customer, []).append(fut)
        now = repr(time.time())
        big = 10**9
        calls = [
            (self.sha, 2, f"{self.prefix}{{{c}}}:t:", f"{self.prefix}{{{c}}}:q:D", now, big, big, big, 90000, len(f))
            for c, f in groups.items()
        ]
        if hasattr(self.client, "get_primaries"):
            # redis-py refuses EVALSHA in a cluster pipeline ("blocked when running redis in cluster
            # mode"): concurrent single calls over its connection pools are what it offers
            replies = await asyncio.gather(*(self.client.evalsha(*call) for call in calls))
        else:
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(*call)
            replies = await pipe.execute()
        for (_, futs), reply in zip(groups.items(), replies, strict=True):
            for fut in futs:
                fut.set_result(Decision(bool(reply[3]), "", POLICY))


async def cleanup(url: str, prefix: str) -> None:
    if url.startswith("redis+cluster://"):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        seeds = [ClusterNode(h, int(p)) for h, p in (a.split(":") for a in url.split("://")[1].split(","))]
        cluster = RedisCluster(startup_nodes=seeds)
        await cluster.initialize()
        for node in cluster.get_primaries():
            client = aioredis.Redis(host=node.host, port=node.port)
            async for k in client.scan_iter(match=f"{prefix}*", count=1000):
                await client.delete(k)  # one by one: keys of different slots may not go in one DEL
            await client.aclose()
        await cluster.aclose()
        return
    client = aioredis.Redis.from_url(url)  # cleanup with redis-py (off the measured path)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def store_rows(name: str, url: str, callers: int, seconds: float, customers: int, batched: bool) -> float:
    prefix = f"tgbench:{uuid.uuid4().hex}:"
    store = RedisStore(url, prefix=prefix, batch=batched, fail_mode="closed")
    await store.ping()
    n, lat = await run(store, callers, seconds, customers)
    report(name, n, lat, seconds)
    if batched:
        print(f"{'':<22} {n / max(1, store.batches_sent):>10.1f} checks per pipeline (mean)")
        # one script call per customer in a batch (coalescing, data_plane/limits/redis.py)
        print(f"{'':<22} {store.calls_sent / max(1, store.batches_sent):>10.1f} script calls per pipeline (mean)")
    await store.close()
    await cleanup(url, prefix)
    return n / seconds


async def redis_py_row(name: str, url: str, callers: int, seconds: float, customers: int) -> float:
    prefix = f"tgbench:{uuid.uuid4().hex}:"
    if url.startswith("redis+cluster://"):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        seeds = [ClusterNode(h, int(p)) for h, p in (a.split(":") for a in url.split("://")[1].split(","))]
        client: Any = RedisCluster(startup_nodes=seeds)
        await client.initialize()
    else:
        client = aioredis.Redis.from_url(url)
    batcher = RedisPyBatcher(client, prefix)
    await batcher.load()
    n, lat = await run(batcher, callers, seconds, customers)
    report(name, n, lat, seconds)
    await client.aclose()
    await cleanup(url, prefix)
    return n / seconds


async def main(url: str, seconds: float, callers: int, customers: int, cluster: str | None, redis_py: bool) -> None:
    print(f"{callers} concurrent callers of {customers} customers, {seconds:g} s per store")
    n, lat = await run(MemoryStore(), callers, seconds, customers)
    report("memory", n, lat, seconds)
    single = await store_rows("redis batched", url, callers, seconds, customers, True)
    await store_rows("redis unbatched", url, callers, seconds, customers, False)
    if redis_py:
        await redis_py_row("redis-py pipeline", url, callers, seconds, customers)
    if cluster is not None:
        rate = await store_rows("cluster batched", cluster, callers, seconds, customers, True)
        print(f"{'':<22} {rate / single:>10.2f} x redis batched")
        if redis_py:
            await redis_py_row("redis-py cluster", cluster, callers, seconds, customers)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--callers", type=int, default=50)
    ap.add_argument("--customers", type=int, default=10, help="callers are spread over this many customers")
    ap.add_argument("--cluster", nargs="?", const="start", default=None, help="redis+cluster:// URL, or start one")
    ap.add_argument("--redis-py", action="store_true", help="also measure redis-py's pipelines (the alternative)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-limiter-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            cluster_url = start_redis_cluster(procs) if a.cluster == "start" else a.cluster
            uvloop.run(main(a.redis, a.seconds, a.callers, a.customers, cluster_url, a.redis_py))
        finally:
            procs.stop_all()
