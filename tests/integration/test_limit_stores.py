"""Every counter store through the same cases (memory, shared by a worker's processes, Redis), plus
accuracy across real processes on the shared store and on Redis.

Redis tests use db 15 and a unique key prefix per test, deleted afterwards; they skip locally and
fail in CI (``CI=true``) when Redis is not reachable on 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from data_plane.limits import redis as limits_redis
from data_plane.limits.memory import MemoryStore
from data_plane.limits.periods import DAY
from data_plane.limits.policy import QUOTA, THROTTLE, Decision, LimitPolicy, Quota, Throttle
from data_plane.limits.redis import RedisStore
from data_plane.limits.shared import SharedStore, create_table
from tests.helpers import port_open, require_service
from tests.integration.redis_support import delete_prefix, resolve, two_processes_check

REDIS_URL = "redis://127.0.0.1:6379/15"
FIXED_NOW = datetime(2024, 3, 10, 18, 0, 0, tzinfo=UTC).timestamp()  # six hours to midnight UTC
ROOT = Path(__file__).resolve().parents[2]


StoreFactory = Callable[..., Any]


@pytest.fixture(params=["memory", "shared", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory ``make_store(now=...)``, called inside the test's event loop."""
    if request.param == "memory":
        yield lambda now=lambda: FIXED_NOW: MemoryStore(now)
        return
    if request.param == "shared":
        table = tmp_path / "limits.shm"
        create_table(table, slots=4096)
        yield lambda now=lambda: FIXED_NOW: SharedStore(table, now)
        return
    require_service("Redis", port_open(6379), "127.0.0.1:6379")
    prefix = f"tgtest:{uuid.uuid4().hex}:"
    yield lambda now=lambda: FIXED_NOW: RedisStore(REDIS_URL, prefix=prefix, now=now, fail_mode="closed")
    delete_prefix(REDIS_URL, prefix)


async def check_all(store: Any, n: int, customer: str, policy: LimitPolicy) -> list[Decision]:
    # Issue every check before awaiting any: concurrent callers on one event loop.
    pending = [store.check(customer, policy) for _ in range(n)]
    return list(await asyncio.gather(*(resolve(p) for p in pending)))


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def test_burst_of_50_concurrent_checks_admits_exactly_5(make_store: StoreFactory) -> None:
    async def body() -> None:
        store = make_store()
        policy = LimitPolicy(throttle=Throttle(rate=5.0, burst=5))
        decisions = await check_all(store, 50, "cust-a", policy)
        assert sum(d.allowed for d in decisions) == 5
        refused = [d for d in decisions if not d.allowed]
        assert len(refused) == 45 and all(d.limit == THROTTLE for d in refused)
        assert all(d.retry_after == pytest.approx(0.2) for d in refused)  # one token at 5/s
        await store.close()

    run(body)


def test_daily_quota_admits_10_then_refuses_until_midnight(make_store: StoreFactory) -> None:
    async def body() -> None:
        store = make_store()
        policy = LimitPolicy(quota=Quota(limit=10, period=DAY))
        decisions = await check_all(store, 15, "cust-q", policy)
        assert [d.allowed for d in decisions] == [True] * 10 + [False] * 5
        assert sorted(d.quota_remaining for d in decisions[:10]) == list(range(10))
        last = decisions[-1]
        assert last.limit == QUOTA and last.retry_after == pytest.approx(6 * 3600)
        # the counter belongs to the customer and the period, not to the policy object (plan change)
        other_plan = LimitPolicy(quota=Quota(limit=12, period=DAY))
        more = await check_all(store, 3, "cust-q", other_plan)
        assert [d.allowed for d in more] == [True, True, False]
        await store.close()

    run(body)


def test_route_override_has_its_own_bucket(make_store: StoreFactory) -> None:
    async def body() -> None:
        store = make_store()
        plan = LimitPolicy(throttle=Throttle(rate=1.0, burst=2))
        override = LimitPolicy(throttle=Throttle(rate=1.0, burst=3), throttle_scope="api-1:POST /orders")
        assert sum(d.allowed for d in await check_all(store, 5, "cust-o", plan)) == 2
        assert sum(d.allowed for d in await check_all(store, 5, "cust-o", override)) == 3
        assert sum(d.allowed for d in await check_all(store, 5, "cust-other", plan)) == 2
        await store.close()

    run(body)


def test_refill_with_injected_clock(make_store: StoreFactory) -> None:
    async def body() -> None:
        t = [FIXED_NOW]
        store = make_store(now=lambda: t[0])
        policy = LimitPolicy(throttle=Throttle(rate=0.5, burst=2))
        assert sum(d.allowed for d in await check_all(store, 4, "cust-r", policy)) == 2
        t[0] += 3.0  # 1.5 tokens
        decisions = await check_all(store, 3, "cust-r", policy)
        assert [d.allowed for d in decisions] == [True, False, False]
        assert decisions[1].retry_after == pytest.approx(1.0)
        await store.close()

    run(body)


def test_quota_starts_again_in_the_next_period(make_store: StoreFactory) -> None:
    """Past midnight the daily counter is a new one; the bucket carries over (it is not per period).
    On Redis the key names are the documented ones, and the ended day's key cache is dropped."""

    async def body() -> None:
        t = [FIXED_NOW]
        store = make_store(now=lambda: t[0])
        policy = LimitPolicy(throttle=Throttle(rate=100.0, burst=50), quota=Quota(limit=3, period=DAY))
        assert [d.allowed for d in await check_all(store, 4, "cust-p", policy)] == [True, True, True, False]
        t[0] += 6 * 3600 + 1  # 00:00:01 the next day
        decisions = await check_all(store, 4, "cust-p", policy)
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[0].quota_remaining == 2 and decisions[-1].limit == QUOTA
        if isinstance(store, RedisStore):
            assert list(store._quota_keys) == ["D2024-03-11"]  # D2024-03-10's cache is gone
            client = aioredis.Redis.from_url(REDIS_URL)
            keys = {k.decode()[len(store.prefix) :] async for k in client.scan_iter(match=f"{store.prefix}*")}
            await client.aclose()
            assert keys == {"{cust-p}:t:", "{cust-p}:q:D2024-03-10", "{cust-p}:q:D2024-03-11"}
        await store.close()

    run(body)


def test_redis_key_name_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Customers come and go over a worker's life: the cached key names per scope stay bounded,
    and a name dropped from the cache is formatted again, the same (the limits still hold)."""
    require_service("Redis", port_open(6379), "127.0.0.1:6379")
    monkeypatch.setattr(limits_redis, "MAX_CACHED_KEYS", 3)
    prefix = f"tgtest:{uuid.uuid4().hex}:"

    async def body() -> None:
        store = RedisStore(REDIS_URL, prefix=prefix, now=lambda: FIXED_NOW, fail_mode="closed")
        policy = LimitPolicy(throttle=Throttle(rate=1.0, burst=2))
        for customer in ("c1", "c2", "c3", "c4", "c5", "c1"):
            await check_all(store, 1, customer, policy)
            assert 0 < len(store._bucket_keys[""]) <= 3
        assert [d.allowed for d in await check_all(store, 2, "c1", policy)] == [False, False]  # c1: 2 taken
        await store.close()

    try:
        run(body)
    finally:
        delete_prefix(REDIS_URL, prefix)


def test_coalesced_redis_checks_decide_exactly_as_one_after_another() -> None:
    """Redis coalesces one customer's checks in a batch into one script call (n requests).  Every
    decision must equal the memory store's deciding the same checks one by one, in the serial order
    the Redis store documents (groups by first arrival, arrival order within a group; concurrent
    requests have no order of their own): who is admitted, which limit refuses, tokens and quota
    left, retry-after.  Policies 0 and 2 share the customer's quota counter, so groups interact."""
    require_service("Redis", port_open(6379), "127.0.0.1:6379")
    prefix = f"tgtest:{uuid.uuid4().hex}:"
    rng = random.Random(20261128)
    policies = [
        LimitPolicy(throttle=Throttle(rate=2.0, burst=6), quota=Quota(limit=9, period=DAY)),
        LimitPolicy(throttle=Throttle(rate=1.0, burst=3)),
        LimitPolicy(quota=Quota(limit=4, period=DAY)),
        LimitPolicy(throttle=Throttle(rate=4.0, burst=2), throttle_scope="api-1:GET /x"),
    ]
    # three batches of mixed customers, policies and adjustments, with a refill between them
    batches = [
        [(rng.choice(("c1", "c2", "c3")), rng.choice(policies), rng.choice((0, 0, 2))) for _ in range(30)]
        for _ in range(3)
    ]

    async def body() -> None:
        t = [FIXED_NOW]
        memory = MemoryStore(lambda: t[0])
        redis = RedisStore(REDIS_URL, prefix=prefix, now=lambda: t[0], fail_mode="closed")
        for batch in batches:
            # same keys and limits = one group (an adjustment changes the limit only where there is a quota)
            groups = [(c, id(p), a if p.quota else 0) for c, p, a in batch]
            first: dict[tuple[str, int, int], int] = {}
            for i, g in enumerate(groups):
                first.setdefault(g, i)
            order = sorted(range(len(batch)), key=lambda i: (first[groups[i]], i))
            serial = {i: memory.check(*batch[i]) for i in order}
            expected = [serial[i] for i in range(len(batch))]
            pending = [redis.check(c, p, a) for c, p, a in batch]
            got = [await resolve(x) for x in pending]
            for want, have in zip(expected, got, strict=True):
                assert (have.allowed, have.limit, have.quota_remaining, have.quota_limit) == (
                    want.allowed,
                    want.limit,
                    want.quota_remaining,
                    want.quota_limit,
                )
                assert have.tokens == pytest.approx(want.tokens)
                assert have.retry_after == pytest.approx(want.retry_after)
            t[0] += 0.75
        checks = sum(len(b) for b in batches)
        assert redis.calls_sent < checks / 2  # coalesced: one call per customer and policy per batch
        assert sum(d.allowed for d in got) > 0 and sum(not d.allowed for d in got) > 0
        await redis.close()

    try:
        run(body)
    finally:
        delete_prefix(REDIS_URL, prefix)


def test_two_processes_of_one_worker_share_exact_limits_without_redis(tmp_path: Path) -> None:
    """What `tollgate worker --processes 2` does without --redis-url: two real processes, 100 concurrent
    checks each, on one shared table: quota 100 and burst 100 hold exactly (each process alone had 100)."""
    table = tmp_path / "limits.shm"
    create_table(table)
    outs = two_processes_check(f"file:{table}", f"shared-{uuid.uuid4().hex}:")
    assert sum(o["quota"] for o in outs) == 100
    assert sum(o["burst"] for o in outs) == 100


def test_a_process_killed_holding_the_lock_lets_the_others_and_its_restart_go_on(tmp_path: Path) -> None:
    """flock is released with the dead process's descriptor: SIGKILL inside a check blocks nobody, and
    a restarted process (a new SharedStore on the same table) continues the counts."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    table = tmp_path / "limits.shm"
    create_table(table, slots=1024)
    policy = LimitPolicy(throttle=Throttle(rate=0.001, burst=10), quota=Quota(limit=8, period=DAY))
    first = SharedStore(table, lambda: FIXED_NOW)
    assert [first.check("cust-k", policy).allowed for _ in range(3)] == [True] * 3
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, os, sys, time
                fd = os.open({str(table)!r}, os.O_RDWR)
                fcntl.flock(fd, fcntl.LOCK_EX)
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
        if holder.stdout is not None:
            holder.stdout.close()
    restarted = SharedStore(table, lambda: FIXED_NOW)
    decisions = [restarted.check("cust-k", policy) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2  # quota 8: 3 before, 5 after
    assert decisions[-1].limit == QUOTA
    assert first.check("cust-k", policy).allowed is False  # the first process sees the same counters


def test_two_worker_processes_share_exact_limits() -> None:
    """Two real processes, 100 concurrent checks each, against one Redis: quota 100 and burst 100 hold exactly."""
    require_service("Redis", port_open(6379), "127.0.0.1:6379")
    prefix = f"tgtest:{uuid.uuid4().hex}:"
    try:
        outs = two_processes_check(REDIS_URL, prefix)
    finally:
        delete_prefix(REDIS_URL, prefix)
    assert sum(o["quota"] for o in outs) == 100
    assert sum(o["burst"] for o in outs) == 100


def test_an_overage_quota_admits_beyond_its_limit_as_overage_up_to_its_hard_cap(make_store: StoreFactory) -> None:
    async def body() -> None:
        store = make_store()
        capped = LimitPolicy(quota=Quota(limit=10, period=DAY, overage=True, hard_cap=14))
        decisions = await check_all(store, 20, "cust-over", capped)
        assert [d.allowed for d in decisions] == [True] * 14 + [False] * 6
        assert [d.overage for d in decisions[:14]] == [False] * 10 + [True] * 4
        assert [d.quota_remaining for d in decisions[8:14]] == [1, 0, 0, 0, 0, 0]
        assert all(d.limit == QUOTA and d.quota_limit == 10 for d in decisions[14:])
        # an adjustment of 5 moves the limit (15) and the cap (19) alike: with 14 used, one more
        # request is within the quota, four are overage, then refused
        more = [await resolve(store.check("cust-over", capped, 5)) for _ in range(6)]
        assert [(d.allowed, d.overage) for d in more] == [(True, False)] + [(True, True)] * 4 + [(False, False)]
        uncapped = LimitPolicy(quota=Quota(limit=3, period=DAY, overage=True))
        free = await check_all(store, 10, "cust-free", uncapped)
        assert all(d.allowed for d in free) and sum(d.overage for d in free) == 7
        await store.close()

    run(body)


def test_quota_validation_of_overage() -> None:
    with pytest.raises(ValueError, match="hard_cap"):
        Quota(limit=10, period=DAY, hard_cap=20)  # a cap without overage
    with pytest.raises(ValueError, match="hard_cap"):
        Quota(limit=10, period=DAY, overage=True, hard_cap=9)  # below the limit
    assert Quota(limit=10, period=DAY).ceiling(2) == 12
    assert Quota(limit=10, period=DAY, overage=True, hard_cap=15).ceiling(2) == 17


def test_a_customer_cycle_decides_when_its_quota_resets(make_store: StoreFactory) -> None:
    """A MONTH quota anchored on the 31st at 09:00 Paris: the 28 February cycle ends on 31 March 09:00
    Paris (07:00 UTC after the DST change); Retry-After and the reset count to that, then it resets."""
    from zoneinfo import ZoneInfo

    from data_plane.limits.periods import Cycle

    paris = ZoneInfo("Europe/Paris")
    clock = [datetime(2026, 3, 31, 8, 0, tzinfo=paris).timestamp()]
    cycle = Cycle(int(datetime(2026, 1, 31, 9, 0, tzinfo=paris).timestamp()), "Europe/Paris")

    async def body() -> None:
        store = make_store(now=lambda: clock[0])
        policy = LimitPolicy(quota=Quota(limit=2, period="MONTH"))
        first = [await resolve(store.check("cust-cycle", policy, 0, cycle)) for _ in range(3)]
        assert [d.allowed for d in first] == [True, True, False]
        assert first[2].retry_after == pytest.approx(3600) and first[0].quota_reset == pytest.approx(3600)
        assert first[0].quota_window == 31 * 86400 - 3600  # 28 Feb 09:00 CET -> 31 Mar 09:00 CEST
        # the same customer on the UTC calendar would have been in the March period all along
        utc = await resolve(store.check("cust-utc", policy))
        assert utc.quota_reset == pytest.approx(datetime(2026, 4, 1, tzinfo=UTC).timestamp() - clock[0])
        clock[0] += 3600  # 09:00 Paris: a new cycle
        again = [await resolve(store.check("cust-cycle", policy, 0, cycle)) for _ in range(3)]
        assert [d.allowed for d in again] == [True, True, False]
        await store.close()

    run(body)
