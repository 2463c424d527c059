"""The Redis store on a real 3-master Redis Cluster (started once for the module, AUTH on): exact limits
across two processes, each customer's counters in its hash slot's node, MOVED after a resharding,
ASK during one, the script loaded per node after SCRIPT FLUSH, and the password masked in /status."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from control_plane.schemas import UsageBatchIn
from control_plane.usage_collector import UsageCollector
from data_plane.limits.periods import DAY
from data_plane.limits.policy import LimitPolicy, Quota, Throttle
from data_plane.limits.redis import RedisStore
from data_plane.limits.topology import ClusterTopology
from tests.integration.redis_servers import RedisCluster, require_binaries
from tests.integration.redis_support import resolve, two_processes_check

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "cluster-secret-3f9"


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    require_binaries()
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"), password=PASSWORD)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def quota(limit: int) -> LimitPolicy:
    return LimitPolicy(quota=Quota(limit=limit, period=DAY))


async def admitted(store: RedisStore, customer: str, policy: LimitPolicy, n: int) -> int:
    pending = [store.check(customer, policy) for _ in range(n)]
    decisions = [await resolve(p) for p in pending]
    assert all(d.limit != "unavailable" for d in decisions), decisions
    return sum(d.allowed for d in decisions)


def topology(store: RedisStore) -> ClusterTopology:
    topo = store._topology
    assert isinstance(topo, ClusterTopology)
    return topo


def test_two_processes_share_exact_limits_on_the_cluster(rc: RedisCluster) -> None:
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    outs = two_processes_check(rc.url, prefix)
    assert sum(o["quota"] for o in outs) == 100  # 200 concurrent checks, quota 100
    assert sum(o["burst"] for o in outs) == 100
    owner = rc.owner(key_slot(b"cust-cluster"))
    keys = owner.client().keys(f"{prefix}*")
    assert len(keys) == 2  # bucket and quota counter, both on the slot's owner
    others = [s for s in rc.servers if s is not owner]
    assert all(not s.client().keys(f"{prefix}*") for s in others)


def test_customers_spread_over_the_masters_one_call_each(rc: RedisCluster) -> None:
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    customers = [f"c{i}" for i in range(30)]

    async def body() -> None:
        store = RedisStore(rc.url, prefix=prefix, fail_mode="closed")
        pending = {c: [store.check(c, quota(3)) for _ in range(5)] for c in customers}
        for c, checks in pending.items():
            decisions = [await resolve(p) for p in checks]
            assert [d.allowed for d in decisions] == [True] * 3 + [False] * 2, c
            assert [d.quota_remaining for d in decisions[:3]] == [2, 1, 0]
        assert store.calls_sent == len(customers)  # one script call per customer, on its node
        assert store.status()["slots_served"] == 16384 and len(store.status()["nodes"]) == 3
        await store.close()

    asyncio.run(body())
    used = set()
    for c in customers:
        owner = rc.owner(key_slot(c.encode()))
        [key] = owner.client().keys(f"{prefix}{{{c}}}:*")
        assert int(owner.client().get(key)) == 3
        used.add(owner.port)
    assert len(used) == 3  # the customers' slots are spread over all three masters


def test_moved_after_resharding_keeps_the_count(rc: RedisCluster) -> None:
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    customer = f"moved-{uuid.uuid4().hex[:6]}"
    slot = key_slot(customer.encode())

    async def body() -> None:
        store = RedisStore(rc.url, prefix=prefix, fail_mode="closed")
        assert await admitted(store, customer, quota(5), 2) == 2
        source = rc.owner(slot)
        target = next(s for s in rc.servers if s is not source)
        await asyncio.to_thread(rc.migrate_slot, slot, source, target)
        topo = topology(store)
        # the store still routes the slot to the old owner: it answers MOVED, the call follows it
        assert topo.slots[slot] is not None and topo.slots[slot].port == source.port
        assert await admitted(store, customer, quota(5), 5) == 3  # the counter moved with its slot
        assert topo.redirects >= 1 and topo.slots[slot].port == target.port
        refreshes = topo.refreshes
        deadline = time.monotonic() + 5
        while topo.refreshes == refreshes:  # the background slot-map refresh MOVED asked for (<= 1/s)
            assert time.monotonic() < deadline, "no slot-map refresh after MOVED"
            await asyncio.sleep(0.02)
        assert await admitted(store, customer, quota(5), 1) == 0
        await store.close()

    asyncio.run(body())


def same_slot(name: str, prefix: str) -> str:
    """Another customer id whose hash slot is ``name``'s."""
    slot = key_slot(name.encode())
    return next(c for i in range(1_000_000) if key_slot((c := f"{prefix}{i}").encode()) == slot)


def test_ask_while_a_slot_is_migrating(rc: RedisCluster) -> None:
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    customer = f"ask-{uuid.uuid4().hex[:6]}"
    newcomer = same_slot(customer, "new-")
    slot = key_slot(customer.encode())
    source = rc.owner(slot)
    target = next(s for s in rc.servers if s is not source)
    both = LimitPolicy(throttle=Throttle(rate=0.001, burst=100), quota=Quota(limit=5, period=DAY))

    async def body() -> None:
        opened = RedisStore(rc.url, prefix=prefix, fail_mode="open")
        closed = RedisStore(rc.url, prefix=prefix, fail_mode="closed")
        assert await admitted(closed, customer, both, 2) == 2  # both keys exist, on the source
        await opened.ping()
        # half-way: the keys are on the target, the slot still MIGRATING: the source answers ASK
        await asyncio.to_thread(rc.migrate_slot, slot, source, target, finalize=False)
        assert await admitted(closed, customer, both, 5) == 3
        topo = topology(closed)
        assert topo.redirects >= 1
        assert topo.slots[slot] is not None and topo.slots[slot].port == source.port  # ASK changes no route
        # A customer with no keys yet: Redis refuses a multi-key script on the importing node with
        # TRYAGAIN until the slot is settled; after the retries, the fail mode decides.
        refused = [await resolve(closed.check(newcomer, both)) for _ in range(2)]
        assert [d.limit for d in refused] == ["unavailable", "unavailable"]
        fallback = [await resolve(opened.check(newcomer, both)) for _ in range(2)]
        assert all(d.allowed for d in fallback) and opened.fallback_checks == 2
        assert closed.available and opened.available  # one slot in flux is no outage
        await asyncio.to_thread(rc.finalize, slot, target)
        assert await admitted(closed, newcomer, both, 7) == 5  # counted in Redis again (MOVED: the new owner)
        await opened.close()
        await closed.close()

    try:
        asyncio.run(body())
        assert not source.client().keys(f"{prefix}*")
        [qkey] = target.client().keys(f"{prefix}{{{customer}}}:q:*")
        assert int(target.client().get(qkey)) == 5
    finally:
        rc.finalize(slot, target)  # the module's cluster stays consistent whatever happened


def test_script_loaded_again_on_every_node_after_a_flush(rc: RedisCluster) -> None:
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    customers = [f"f{i}" for i in range(12)]

    async def body() -> None:
        store = RedisStore(rc.url, prefix=prefix, fail_mode="closed")
        for c in customers:
            assert await admitted(store, c, quota(4), 2) == 2
        for s in rc.servers:
            s.client().script_flush()
        pending = {c: [store.check(c, quota(4)) for _ in range(3)] for c in customers}
        for checks in pending.values():
            assert sum([(await resolve(p)).allowed for p in checks]) == 2
        await store.close()

    asyncio.run(body())


def test_status_names_the_nodes_and_masks_the_password(rc: RedisCluster) -> None:
    async def body() -> None:
        store = RedisStore(rc.url, fail_mode="closed")
        await store.ping()
        status = store.status()
        await store.close()
        assert status["mode"] == "cluster" and len(status["nodes"]) == 3
        assert PASSWORD not in json.dumps(status) and ":***@" in status["url"]

    asyncio.run(body())


class _Collected(UsageCollector):
    """The collector with its database write replaced by a list: the cluster side is under test here
    (the database side runs on SQLite and PostgreSQL in control_plane/test_usage_collector.py)."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(None, url=url, prefix=prefix)  # type: ignore[arg-type]
        self.batches: list[UsageBatchIn] = []

    def _ingest(self, batch: UsageBatchIn) -> None:
        self.batches.append(batch)


def test_usage_counted_by_the_script_and_collected_from_every_master(rc: RedisCluster) -> None:
    prefix = f"tg{uuid.uuid4().hex[:8]}:"
    customers = [f"u{i}" for i in range(24)]

    async def body() -> None:
        store = RedisStore(rc.url, prefix=prefix, fail_mode="closed")
        store.collecting = True  # as if the marker were there
        for c in customers:
            decisions = [await resolve(store.check(c, quota(2), 0, None, "api", "route", "plan")) for _ in range(3)]
            assert [d.allowed for d in decisions] == [True, True, False]
            for d in decisions[:2]:
                assert d.usage.startswith("api|route|plan|")
                store.settle(c, d.usage, 201, False)
        await store.close()  # sends the moves still queued
        collector = _Collected(rc.url, prefix)
        try:
            assert await collector.sweep() == 2 * len(customers)
            marker = f"{prefix}usage:collector"
            assert rc.owner(key_slot(marker.encode())).client().get(marker) is not None
            got = {b.counts[0].customer_id: [(c.status_class, c.count) for c in b.counts] for b in collector.batches}
            assert got == {c: [("2xx", 2)] for c in customers}
            owners = {rc.owner(key_slot(f"{prefix}{{{c}}}:u".encode())).port for c in customers}
            assert len(owners) > 1  # the customers' hashes were on several masters, all collected
            assert await collector.sweep() == 0
        finally:
            await collector.stop()

    asyncio.run(body())
