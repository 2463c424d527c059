"""In-process counter store: the embedded default, exact for one worker process.

Also the Redis store's fallback while Redis is unreachable (fail-open).  Everything runs on the
event loop thread, so a check is a plain read-modify-write with no locking and decides at once.
Entries expire like the Redis keys do: a bucket once it would be full again, a quota counter once
its period is over; a sweep at most every ``sweep_interval`` seconds drops them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from data_plane.periods import PeriodCache
from data_plane.ratelimit import QUOTA, THROTTLE, Decision, LimitPolicy, bucket_key, quota_key, take_token


class MemoryStore:
    def __init__(self, now: Callable[[], float] = time.time, *, sweep_interval: float = 60.0) -> None:
        self.now = now
        self.sweep_interval = sweep_interval
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill time, full again at]
        self._quotas: dict[str, list[int]] = {}  # key -> [used, period end]
        self._periods = PeriodCache()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._buckets) + len(self._quotas)

    def check(self, customer_id: str, policy: LimitPolicy, adjustment: int = 0) -> Decision:
        now = self.now()
        if now >= self._next_sweep:
            self._sweep(now)
        quota = policy.quota
        qkey = ""
        used = 0
        qlimit = -1
        reset = 0.0
        window = 0
        if quota is not None:
            start, end, pid = self._periods.current(quota.period, now)
            qkey = quota_key(customer_id, pid)
            entry = self._quotas.get(qkey)
            used = entry[0] if entry is not None else 0
            qlimit = quota.limit + adjustment
            reset = end - now
            window = end - start
        tokens = -1.0
        throttle = policy.throttle
        if throttle is not None:
            bkey = bucket_key(customer_id, policy)
            bucket = self._buckets.get(bkey)
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
                    retry_after=wait,
                    tokens=tokens,
                    quota_remaining=max(0, qlimit - used) if quota is not None else -1,
                    quota_limit=qlimit,
                    quota_reset=reset,
                    quota_window=window,
                )
            # The token is spent even if the quota refuses below (see ratelimit's module docstring).
            full_at = now + (throttle.burst - tokens) / throttle.rate
            if bucket is None:
                self._buckets[bkey] = [tokens, now, full_at]
            else:
                bucket[0], bucket[1], bucket[2] = tokens, now, full_at
        if quota is not None:
            if used >= qlimit:
                return Decision(
                    False,
                    QUOTA,
                    policy,
                    retry_after=reset,
                    tokens=tokens,
                    quota_remaining=0,
                    quota_limit=qlimit,
                    quota_reset=reset,
                    quota_window=window,
                )
            entry = self._quotas.get(qkey)
            if entry is None:
                self._quotas[qkey] = [1, int(now + reset)]
            else:
                entry[0] += 1
            used += 1
        return Decision(
            True,
            "",
            policy,
            tokens=tokens,
            quota_remaining=qlimit - used if quota is not None else -1,
            quota_limit=qlimit,
            quota_reset=reset,
            quota_window=window,
        )

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.sweep_interval
        for key in [k for k, b in self._buckets.items() if b[2] <= now]:
            del self._buckets[key]
        for key in [k for k, q in self._quotas.items() if q[1] <= now]:
            del self._quotas[key]

    async def close(self) -> None:
        self._buckets.clear()
        self._quotas.clear()
