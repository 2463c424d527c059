"""Token bucket arithmetic and the memory store with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from data_plane.limits.memory import MemoryStore
from data_plane.limits.periods import DAY
from data_plane.limits.policy import QUOTA, THROTTLE, LimitPolicy, Quota, Throttle, take_token


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_take_token_refills_continuously_up_to_burst() -> None:
    th = Throttle(rate=2.0, burst=3)
    ok, tokens, wait = take_token(0.0, 100.0, 100.25, th)  # half a token refilled: not enough
    assert (ok, tokens, wait) == (False, 0.5, pytest.approx(0.25))
    ok, tokens, _ = take_token(0.0, 100.0, 100.5, th)
    assert ok and tokens == pytest.approx(0.0)
    ok, tokens, _ = take_token(0.0, 100.0, 200.0, th)  # a long pause refills to burst, not beyond
    assert ok and tokens == pytest.approx(2.0)


def test_take_token_clock_going_backwards_refills_nothing() -> None:
    ok, tokens, wait = take_token(0.5, 100.0, 99.0, Throttle(rate=1.0, burst=5))
    assert not ok and tokens == 0.5 and wait == pytest.approx(0.5)


def test_burst_then_fractional_rate_with_retry_after() -> None:
    clock = Clock(1000.0)
    store = MemoryStore(clock)
    policy = LimitPolicy(throttle=Throttle(rate=0.5, burst=3))  # one request every 2 s after the burst
    assert [store.check("c1", policy).allowed for _ in range(4)] == [True, True, True, False]
    refused = store.check("c1", policy)
    assert refused.limit == THROTTLE and refused.retry_after == pytest.approx(2.0)
    clock.t += 1.0
    refused = store.check("c1", policy)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    clock.t += 1.0
    d = store.check("c1", policy)
    assert d.allowed and d.tokens == pytest.approx(0.0)
    assert not store.check("c1", policy).allowed
    # refusals consumed nothing: exactly one token 2 s later
    clock.t += 2.0
    assert store.check("c1", policy).allowed
    assert not store.check("c1", policy).allowed


def test_buckets_are_per_customer_and_per_scope() -> None:
    store = MemoryStore(Clock(0.0))
    plan = LimitPolicy(throttle=Throttle(rate=1.0, burst=1))
    override = LimitPolicy(throttle=Throttle(rate=1.0, burst=1), throttle_scope="api1:GET /pets/{id}")
    assert store.check("c1", plan).allowed
    assert not store.check("c1", plan).allowed
    assert store.check("c2", plan).allowed
    assert store.check("c1", override).allowed
    assert not store.check("c1", override).allowed


def test_quota_refusal_spends_the_throttle_token_but_no_quota() -> None:
    clock = Clock(datetime(2024, 3, 10, 18, tzinfo=UTC).timestamp())
    store = MemoryStore(clock)
    policy = LimitPolicy(throttle=Throttle(rate=1.0, burst=2), quota=Quota(limit=1, period=DAY))
    first = store.check("c1", policy)
    assert first.allowed and first.quota_remaining == 0 and first.quota_limit == 1
    refused = store.check("c1", policy)
    assert refused.limit == QUOTA and refused.retry_after == pytest.approx(6 * 3600)
    assert refused.tokens == pytest.approx(0.0)  # the documented choice: the token is gone
    assert store.check("c1", policy).limit == THROTTLE
    # an adjustment (extra quota granted for this period) lets one more through
    clock.t += 1.0
    assert store.check("c1", policy, adjustment=1).allowed


def test_quota_resets_at_the_next_period_and_entries_expire() -> None:
    clock = Clock(datetime(2024, 3, 10, 23, 59, 59, tzinfo=UTC).timestamp())
    store = MemoryStore(clock, sweep_interval=0.0)
    policy = LimitPolicy(quota=Quota(limit=1, period=DAY), throttle=Throttle(rate=10.0, burst=5))
    assert store.check("c1", policy).allowed
    d = store.check("c1", policy)
    assert d.limit == QUOTA and d.retry_after == pytest.approx(1.0)
    clock.t += 1.0
    assert store.check("c1", policy).allowed  # new day, new counter
    clock.t += 2 * 86400
    store.check("c2", LimitPolicy(throttle=Throttle(rate=1.0, burst=1)))
    assert len(store) == 1  # c1's bucket (full) and both of its old day counters are gone


def test_invalid_limits_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="throttle.rate"):
        Throttle(rate=0.0, burst=1)
    with pytest.raises(ValueError, match="throttle.burst"):
        Throttle(rate=1.0, burst=0)
    with pytest.raises(ValueError, match="quota.period"):
        Quota(limit=1, period="YEAR")
    with pytest.raises(ValueError, match="quota.limit"):
        Quota(limit=-1, period=DAY)


def test_store_choice_follows_settings(tmp_path: Path) -> None:
    import asyncio

    from data_plane.limits.redis import RedisStore
    from data_plane.limits.stores import open_metering, open_store
    from data_plane.settings import WorkerSettings

    assert isinstance(open_store(WorkerSettings.from_env({})), MemoryStore)
    settings = WorkerSettings.from_env(
        {"TOLLGATE_REDIS_URL": "redis://127.0.0.1:1/0", "TOLLGATE_LIMIT_FAIL_MODE": "closed"}
    )
    store = open_store(settings)
    assert isinstance(store, RedisStore) and store.fail_mode == "closed"
    asyncio.run(store.close())
    # standalone (no control plane): a meter that only spools
    meter = open_metering(WorkerSettings.from_env({"TOLLGATE_WORKER_CACHE_DIR": str(tmp_path)}))
    assert meter.sender is None and meter.spool.directory.parent == tmp_path
    meter.spool.close()
    with pytest.raises(ValueError, match="fail_mode"):
        open_store(WorkerSettings.from_env({"TOLLGATE_REDIS_URL": "redis://x", "TOLLGATE_LIMIT_FAIL_MODE": "ajar"}))
