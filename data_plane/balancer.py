"""Load-balancing algorithms over an upstream's targets.

Each balancer is built once per snapshot from the upstream's targets and answers ``pick()``;
one method, so tests and the pipeline can swap implementations freely.  Targets with weight 0
are drained: never picked, while requests already sent to them finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T", covariant=True)


class Weighted(Protocol):
    weight: int


class Balancer(Protocol[T]):
    def pick(self, exclude: object = None) -> T | None:
        """The next target, avoiding ``exclude`` when another one exists; None when none is usable."""
        ...


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round-robin: weights 5:1:1 give a,a,b,a,c,a,a, never bursts.

    Each pick adds every peer's weight to its running score, takes the highest score and
    subtracts the total weight from it.  Over any window of sum(weights) picks each peer is
    chosen exactly ``weight`` times.
    """

    __slots__ = ("_peers", "_weights", "_current", "_total", "_single")

    def __init__(self, targets: Sequence[Weighted]) -> None:
        live = [t for t in targets if t.weight > 0]
        self._peers = live
        self._weights = [t.weight for t in live]
        self._current = [0] * len(live)
        self._total = sum(self._weights)
        self._single = live[0] if len(live) == 1 else None

    def pick(self, exclude: object = None) -> Weighted | None:
        if self._single is not None:
            return self._single
        peers = self._peers
        if not peers:
            return None
        current = self._current
        weights = self._weights
        best = -1
        best_score = 0
        for i in range(len(peers)):
            score = current[i] + weights[i]
            current[i] = score
            if (best < 0 or score > best_score) and peers[i] is not exclude:
                best = i
                best_score = score
        if best < 0:
            best = 0
            best_score = current[0]
        current[best] = best_score - self._total
        return peers[best]


def make_balancer(algorithm: str, targets: Sequence[Weighted]) -> SmoothWeightedRoundRobin:
    # Other algorithms (least_request, consistent_hash, random) arrive with the balancing issue;
    # until then every upstream is balanced round-robin by weight.
    return SmoothWeightedRoundRobin(targets)
