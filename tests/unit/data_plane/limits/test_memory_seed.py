"""MemoryStore.seed: a counter starts from the control plane's count only for the same period."""

from __future__ import annotations

from data_plane.limits.memory import MemoryStore
from data_plane.limits.periods import DAY, period_start
from data_plane.limits.policy import LimitPolicy, Quota, Throttle

NOW = 1_764_720_000.0 + 3600 * 5  # 2025-12-03T05:00Z


def _store() -> MemoryStore:
    return MemoryStore(lambda: NOW)


def test_seed_of_the_current_period_is_taken() -> None:
    store = _store()
    start = period_start(DAY, NOW)
    assert store.seed([{"customer_id": "c", "period": DAY, "start": start, "end": start + 86400, "used": 8}]) == 1
    policy = LimitPolicy(quota=Quota(10, DAY))
    assert [store.check("c", policy).allowed for _ in range(3)] == [True, True, False]
    assert store.check("other", policy).quota_remaining == 9  # unseeded customers start from zero


def test_seed_of_another_period_or_kind_is_ignored() -> None:
    store = _store()
    start = period_start(DAY, NOW)
    store.seed(
        [
            {"customer_id": "old", "period": DAY, "start": start - 86400, "end": start, "used": 9},
            {"customer_id": "kind", "period": "MONTH", "start": start, "end": start + 86400, "used": 9},
            {"customer_id": "bad", "period": DAY},  # not understood: skipped
        ]
    )
    policy = LimitPolicy(quota=Quota(10, DAY))
    assert store.check("old", policy).quota_remaining == 9
    assert store.check("kind", policy).quota_remaining == 9


def test_seed_survives_a_first_check_refused_by_the_throttle() -> None:
    store = _store()
    start = period_start(DAY, NOW)
    store.seed([{"customer_id": "c", "period": DAY, "start": start, "end": start + 86400, "used": 9}])
    policy = LimitPolicy(throttle=Throttle(rate=0.001, burst=1), quota=Quota(10, DAY))
    first = store.check("c", policy)
    assert first.allowed and first.quota_remaining == 0
    assert store.check("c", policy).limit == "throttle"
    other = LimitPolicy(quota=Quota(10, DAY), throttle_scope="x")
    assert store.check("c", other).limit == "quota"  # 10 of 10: the seed of 9 plus the one admitted
