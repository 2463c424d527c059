"""In-process counter store: the embedded default, exact for one worker process.

Also the Redis store's fallback while Redis is unreachable (fail-open).  Everything runs on the
event loop thread, so a check is a plain read-modify-write with no locking and decides at once.

Counters are nested dicts keyed by strings the request path already holds, so a check formats no
key: buckets by throttle scope, then customer id; quota counters by period id, then customer id.
Entries expire like the Redis keys do: a bucket once it would be full again, a period's counters
once the period is over; a sweep at most every ``sweep_interval`` seconds drops them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from data_plane.limits.periods import Cycle, PeriodCache
from data_plane.limits.policy import QUOTA, THROTTLE, Decision, LimitPolicy, take_token


class _Period:
    """The quota counters of one period (one ``period_id``): customer id -> requests counted."""

    __slots__ = ("end", "used")

    def __init__(self, end: int) -> None:
        self.end = end
        self.used: dict[str, int] = {}


class MemoryStore:
    def __init__(self, now: Callable[[], float] = time.time, *, sweep_interval: float = 60.0) -> None:
        self.now = now
        self.sweep_interval = sweep_interval
        # scope -> customer id -> [tokens, last refill time, full again at]
        self._buckets: dict[str, dict[str, list[float]]] = {}
        self._quotas: dict[str, _Period] = {}  # period id -> counters
        self._periods = PeriodCache()
        self._next_sweep = 0.0
        # customer id -> (period kind, period start, requests used): what the control plane had counted
        # when this worker started, taken by the customer's first check of that period (seed)
        self._seeds: dict[str, tuple[str, int, int]] = {}

    def seed(self, entries: list[dict[str, object]]) -> int:
        """Start quota counters from what the control plane has counted (``GET /cluster/v1/usage/current``),
        so a restarted worker does not give a period's quota back.  Each counter takes its seed when
        the customer's first check finds the same period (kind and start); the number of seeds kept."""
        for e in entries:
            try:
                customer_id = str(e["customer_id"])
                seed = (str(e["period"]), int(e["start"]), int(e["used"]))  # type: ignore[call-overload]
            except (KeyError, TypeError, ValueError):
                continue  # a newer control plane's entry this worker does not understand
            self._seeds[customer_id] = seed
        return len(self._seeds)

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values())) + sum(len(p.used) for p in self._quotas.values())

    def check(
        self,
        customer_id: str,
        policy: LimitPolicy,
        adjustment: int = 0,
        cycle: Cycle | None = None,
        api_id: str = "",
        route_id: str = "",
        plan_id: str = "",
    ) -> Decision:
        now = self.now()
        if now >= self._next_sweep:
            self._sweep(now)
        quota = policy.quota
        counters: dict[str, int] | None = None
        used = 0
        qlimit = -1
        ceiling = -1
        reset = 0.0
        window = 0
        if quota is not None:
            # the customer's billing cycle, else the UTC calendar (data_plane/limits/periods.py)
            start, end, pid = (cycle if cycle is not None else self._periods).current(quota.period, now)
            period = self._quotas.get(pid)
            if period is None:
                period = self._quotas[pid] = _Period(end)
            counters = period.used
            used = counters.get(customer_id, -1)
            if used < 0:  # the customer's first check in this period
                used = self._seeded(customer_id, quota.period, start) if self._seeds else 0
                if used:
                    counters[customer_id] = used  # kept even if this check is refused below
            qlimit = quota.limit + adjustment
            ceiling = quota.ceiling(adjustment) if quota.overage else qlimit
            reset = end - now
            window = end - start
        tokens = -1.0
        throttle = policy.throttle
        if throttle is not None:
            buckets = self._buckets.get(policy.throttle_scope)
            if buckets is None:
                buckets = self._buckets[policy.throttle_scope] = {}
            bucket = buckets.get(customer_id)
            if bucket is None:
                ok, tokens, wait = take_token(float(throttle.burst), now, now, throttle)
            else:
                ok, tokens, wait = take_token(bucket[0], bucket[1], now, throttle)
            if not ok:
                # Refused by the throttle: nothing consumed, state untouched.
                return Decision(
                    False,
                    THROTTLE,
                    policy,
                    wait,
                    tokens,
                    max(0, qlimit - used) if quota is not None else -1,
                    qlimit,
                    reset,
                    window,
                )
            # The token is spent even if the quota refuses below (see ratelimit's module docstring).
            full_at = now + (throttle.burst - tokens) / throttle.rate
            if bucket is None:
                buckets[customer_id] = [tokens, now, full_at]
            else:
                bucket[0] = tokens
                bucket[1] = now
                bucket[2] = full_at
        if counters is None:
            return Decision(True, "", policy, 0.0, tokens, -1, qlimit, reset, window)
        if used >= ceiling:
            return Decision(False, QUOTA, policy, reset, tokens, 0, qlimit, reset, window)
        used += 1
        counters[customer_id] = used
        over = used > qlimit  # (an overage quota: admitted beyond the limit)
        return Decision(True, "", policy, 0.0, tokens, 0 if over else qlimit - used, qlimit, reset, window, over)

    def _seeded(self, customer_id: str, period: str, start: int) -> int:
        seed = self._seeds.pop(customer_id, None)
        if seed is None or seed[0] != period or seed[1] != start:
            return 0  # no seed, or one of another period (the plan or the cycle changed since)
        return seed[2]

    def settle(self, customer_id: str, usage: str, status: int, overage: bool) -> None:
        """Never called: this store's decisions carry no ``usage`` (the worker's metering counts)."""

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.sweep_interval
        for scope, buckets in list(self._buckets.items()):
            for key in [k for k, b in buckets.items() if b[2] <= now]:
                del buckets[key]
            if not buckets:
                del self._buckets[scope]
        for pid in [p for p, period in self._quotas.items() if period.end <= now]:
            del self._quotas[pid]

    async def close(self) -> None:
        self._buckets.clear()
        self._quotas.clear()
