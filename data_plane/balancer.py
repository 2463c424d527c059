"""Load-balancing algorithms over an upstream's targets.

Each balancer is built once per snapshot from the upstream's targets and answers one method,
``pick(exclude, key)``: the next target, skipping targets that are unavailable (active check
down or passively ejected: ``target.state``) and the ones in ``exclude`` (targets a retry already
tried; an excluded target is still returned when it is the only usable one).  Targets with
weight 0 are drained: never picked, while requests already sent to them finish.  With ``panic``
on, an upstream whose targets are all unavailable is balanced over all of them (Envoy's panic
mode) instead of answering 503.

Per-target in-flight counts (``least_request``) live on ``target.state``, which survives
snapshot swaps, so a config change does not make a loaded target look idle.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from typing import Protocol

from data_plane.health import TargetState

# Consistent-hash ring points per 100 weight units (a target with the default weight 100 gets 160,
# as in Envoy's ketama-style ring); each target gets at least MIN_VNODES.
VNODES_PER_100 = 160
MIN_VNODES = 8


class Target(Protocol):
    weight: int
    state: TargetState
    label: str


def _usable(t: Target, exclude: Sequence[object] | None) -> bool:
    st = t.state
    return (st.available or st.check_available()) and (exclude is None or t not in exclude)


class _Base:
    __slots__ = ("peers", "panic")

    def __init__(self, targets: Sequence[Target], panic: bool) -> None:
        self.peers = [t for t in targets if t.weight > 0]
        self.panic = panic

    def _fallback(self, exclude: Sequence[object] | None) -> Target | None:
        """Nothing usable outside ``exclude``: an excluded usable one, else (panic) any one."""
        peers = self.peers
        if exclude is not None:
            for t in peers:
                if t.state.available or t.state.check_available():
                    return t
        if self.panic and peers:
            return random.choice(peers)
        return None


class SmoothWeightedRoundRobin(_Base):
    """nginx's smooth weighted round-robin: weights 5:1:1 give a,a,b,a,c,a,a, never bursts.

    Each pick adds every usable peer's weight to its running score, takes the highest score and
    subtracts the total usable weight from it.  Over any window of sum(weights) picks each peer is
    chosen exactly ``weight`` times while the set of usable peers does not change.
    """

    __slots__ = ("_current",)

    def __init__(self, targets: Sequence[Target], panic: bool = False) -> None:
        super().__init__(targets, panic)
        self._current = [0] * len(self.peers)

    def pick(self, exclude: Sequence[object] | None = None, key: bytes = b"") -> Target | None:
        peers = self.peers
        current = self._current
        best = -1
        best_score = 0
        total = 0
        for i in range(len(peers)):
            t = peers[i]
            st = t.state
            if not (st.available or st.check_available()) or (exclude is not None and t in exclude):
                continue
            w = t.weight
            total += w
            score = current[i] + w
            current[i] = score
            if best < 0 or score > best_score:
                best = i
                best_score = score
        if best < 0:
            return self._fallback(exclude)
        current[best] = best_score - total
        return peers[best]


class WeightedRandom(_Base):
    __slots__ = ("_cumulative", "_total")

    def __init__(self, targets: Sequence[Target], panic: bool = False) -> None:
        super().__init__(targets, panic)
        acc = 0
        self._cumulative = []
        for t in self.peers:
            acc += t.weight
            self._cumulative.append(acc)
        self._total = acc

    def pick(self, exclude: Sequence[object] | None = None, key: bytes = b"") -> Target | None:
        peers = self.peers
        if not peers:
            return None
        t = peers[bisect.bisect_right(self._cumulative, random.random() * self._total)]
        if _usable(t, exclude):
            return t
        rest = [p for p in peers if _usable(p, exclude)]  # slow path: only when something is down
        if not rest:
            return self._fallback(exclude)
        return random.choices(rest, weights=[p.weight for p in rest])[0]


class LeastRequest(_Base):
    """Power of two random choices: of two random usable targets, the one with the fewest
    requests in flight per unit of weight (``(in_flight + 1) / weight``)."""

    __slots__ = ()

    def __init__(self, targets: Sequence[Target], panic: bool = False) -> None:
        super().__init__(targets, panic)

    def pick(self, exclude: Sequence[object] | None = None, key: bytes = b"") -> Target | None:
        peers = self.peers
        n = len(peers)
        if n == 0:
            return None
        if n == 1:
            return peers[0] if _usable(peers[0], exclude) else self._fallback(exclude)
        i = random.randrange(n)
        j = random.randrange(n - 1)
        if j >= i:
            j += 1
        a = peers[i]
        b = peers[j]
        if not (_usable(a, exclude) and _usable(b, exclude)):
            rest = [p for p in peers if _usable(p, exclude)]  # slow path: only when something is down
            if not rest:
                return self._fallback(exclude)
            if len(rest) == 1:
                return rest[0]
            a, b = random.sample(rest, 2)
        # Cross-multiplied to compare (in_flight + 1) / weight without division.
        la = (a.state.in_flight + 1) * b.weight
        lb = (b.state.in_flight + 1) * a.weight
        if la == lb:
            return a if random.random() < 0.5 else b
        return a if la < lb else b


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class ConsistentHash(_Base):
    """A hash ring with virtual nodes keyed by each target's ``host:port``: removing a target moves
    only the keys it owned; adding one takes only its own share."""

    __slots__ = ("_points", "_owners")

    def __init__(self, targets: Sequence[Target], panic: bool = False) -> None:
        super().__init__(targets, panic)
        ring: list[tuple[int, int]] = []
        for idx, t in enumerate(self.peers):
            vnodes = max(MIN_VNODES, (t.weight * VNODES_PER_100 + 50) // 100)
            base = t.label.encode()
            ring += ((_point(b"%s#%d" % (base, v)), idx) for v in range(vnodes))
        ring.sort()
        self._points = [p for p, _ in ring]
        self._owners = [self.peers[i] for _, i in ring]

    def pick(self, exclude: Sequence[object] | None = None, key: bytes = b"") -> Target | None:
        owners = self._owners
        n = len(owners)
        if n == 0:
            return None
        start = bisect.bisect_left(self._points, _point(key))
        t = owners[start % n]
        if _usable(t, exclude):
            return t
        # Walk clockwise past unusable owners (slow path: only when something is down or excluded).
        checked = {id(t)}
        distinct = len(self.peers)
        for k in range(1, n):
            if len(checked) >= distinct:
                break
            t = owners[(start + k) % n]
            if _usable(t, exclude):
                return t
            checked.add(id(t))
        return self._fallback(exclude)


Balancer = SmoothWeightedRoundRobin | WeightedRandom | LeastRequest | ConsistentHash

_ALGORITHMS: dict[str, type[Balancer]] = {
    "round_robin": SmoothWeightedRoundRobin,
    "random": WeightedRandom,
    "least_request": LeastRequest,
    "consistent_hash": ConsistentHash,
}


def make_balancer(algorithm: str, targets: Sequence[Target], panic: bool = False) -> Balancer:
    return _ALGORITHMS[algorithm](targets, panic)
