"""Balancer algorithms: distribution, exclusion, health, ring stability."""

from __future__ import annotations

import collections

import pytest

from data_plane.balancer import ConsistentHash, LeastRequest, SmoothWeightedRoundRobin, WeightedRandom, make_balancer
from data_plane.health import TargetState


class T:
    def __init__(self, label: str, weight: int = 100) -> None:
        self.label = label
        self.weight = weight
        self.state = TargetState()

    def __repr__(self) -> str:
        return self.label


def _count(balancer, n: int, **kw) -> collections.Counter[str]:
    return collections.Counter(balancer.pick(**kw).label for _ in range(n))


def test_round_robin_is_exact_per_window_and_smooth() -> None:
    a, b, c = T("a", 1), T("b", 2), T("c", 3)
    rr = SmoothWeightedRoundRobin([a, b, c])
    picks = [rr.pick().label for _ in range(600)]
    assert collections.Counter(picks) == {"a": 100, "b": 200, "c": 300}
    for i in range(0, 600, 6):
        assert sorted(picks[i : i + 6]) == ["a", "b", "b", "c", "c", "c"]
    assert "ccc" not in "".join(picks[:6])  # smooth: no burst of the heaviest


def test_weight_zero_is_drained_and_unavailable_is_skipped() -> None:
    a, b, c = T("a"), T("b", 0), T("c")
    rr = SmoothWeightedRoundRobin([a, b, c])
    assert set(_count(rr, 10)) == {"a", "c"}
    c.state.available = False
    assert _count(rr, 10) == {"a": 10}
    a.state.available = False
    assert rr.pick() is None


def test_panic_uses_every_target_when_none_is_healthy() -> None:
    a, b = T("a"), T("b")
    for t in (a, b):
        t.state.available = t.state.healthy = False
    for cls in (SmoothWeightedRoundRobin, WeightedRandom, LeastRequest, ConsistentHash):
        assert cls([a, b]).pick() is None
        assert cls([a, b], panic=True).pick() in (a, b)


@pytest.mark.parametrize("algorithm", ["round_robin", "random", "least_request", "consistent_hash"])
def test_exclude_prefers_another_target_but_falls_back(algorithm: str) -> None:
    a, b = T("a"), T("b")
    bal = make_balancer(algorithm, [a, b])
    for i in range(50):
        assert bal.pick(exclude=(a,), key=b"k%d" % i) is b
    assert bal.pick(exclude=(a, b), key=b"k") in (a, b)  # both tried: better than failing
    b.state.available = False
    assert bal.pick(exclude=(a,), key=b"k") is a


def test_weighted_random_follows_weights() -> None:
    seen = _count(WeightedRandom([T("a", 1), T("b", 3)]), 8000)
    assert 0.2 < seen["a"] / 8000 < 0.3


def test_least_request_prefers_fewer_in_flight_per_weight() -> None:
    a, b = T("a"), T("b")
    a.state.in_flight = 5
    assert _count(LeastRequest([a, b]), 100) == {"b": 100}
    heavy, light = T("heavy", 400), T("light", 100)
    heavy.state.in_flight = 2  # (2+1)/400 < (0+1)/100
    assert _count(LeastRequest([heavy, light]), 100) == {"heavy": 100}


def test_consistent_hash_is_stable_and_moves_only_the_removed_share() -> None:
    a, b, c = T("10.0.0.1:80"), T("10.0.0.2:80"), T("10.0.0.3:80")
    ring = ConsistentHash([a, b, c])
    keys = [b"user-%d" % i for i in range(3000)]
    before = {k: ring.pick(key=k) for k in keys}
    assert all(ring.pick(key=k) is before[k] for k in keys)
    share = collections.Counter(t.label for t in before.values())
    assert all(700 < n < 1300 for n in share.values()), share
    smaller = ConsistentHash([a, b])
    for k in keys:
        if before[k] is not c:
            assert smaller.pick(key=k) is before[k]
    # An unavailable target's keys go to the next owner; the others stay put.
    c.state.available = False
    for k in keys[:500]:
        assert ring.pick(key=k) is (before[k] if before[k] is not c else smaller.pick(key=k))
