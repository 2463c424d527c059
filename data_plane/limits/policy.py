"""Throttling and quotas on the worker: policy and decision types, the token bucket, the store interface.

One request is checked once, against one :class:`LimitPolicy` (compiled per snapshot for a
plan + API + route) and one customer id::

    throttle (token bucket: rate tokens/s, bucket size burst)  ->  quota (limit per DAY/WEEK/MONTH)

Semantics (docs/architecture.md, "Usage plans"):

* A request refused by the throttle consumes nothing.
* A request admitted by the throttle but refused by the quota **does consume its throttle token**
  and consumes no quota.  The bucket measures request attempts that reach the limiter (as AWS API
  Gateway does), so a client hammering an exhausted quota is still slowed down, and the quota counts
  only requests that were actually served.
* Only admitted requests consume quota.  Requests refused earlier (auth, no route) never reach this.
* A quota with **overage** (``Quota.overage``) admits requests beyond its limit, each marked
  ``Decision.overage`` (metered as overage, billed apart), up to ``hard_cap`` requests in the period
  (then 429 like a quota without overage); an adjustment moves the limit and the cap alike.  Stores
  decide against :meth:`Quota.ceiling` (the count at which requests are refused), so the Redis script
  is the same for both kinds.

Counters belong to the customer (all its keys), keyed by customer + throttle scope for buckets and
customer + period id for quotas — never by plan or key, so rotating keys or changing plan keeps
usage.  Stores (``limits_memory.MemoryStore``, ``limits_redis.RedisStore``) implement
:class:`LimitStore`; ``ratelimit_headers`` turns a :class:`Decision` into response bytes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Protocol

from data_plane.limits.periods import PERIODS, Cycle

THROTTLE = "throttle"
QUOTA = "quota"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Throttle:
    rate: float  # tokens added per second (may be fractional: 0.5 = one request every 2 s)
    burst: int  # bucket size: requests admitted back to back after a quiet period

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"throttle.rate must be a positive number, got {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"throttle.burst must be an integer >= 1, got {self.burst!r}")

    @property
    def window(self) -> int:
        """Seconds an empty bucket takes to fill: the ``w`` of the throttle in ``RateLimit-Policy``."""
        return max(1, math.ceil(self.burst / self.rate))


# The ceiling of an overage quota without a hard cap: more requests than a period can hold.
NO_CEILING = 2**53


@dataclass(frozen=True, slots=True)
class Quota:
    limit: int
    period: str  # periods.DAY | WEEK | MONTH
    overage: bool = False  # beyond the limit: admitted as overage instead of refused
    hard_cap: int | None = None  # with overage: requests in the period at which even overage stops

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0:
            raise ValueError(f"quota.limit must be an integer >= 0, got {self.limit!r}")
        if self.period not in PERIODS:
            raise ValueError(f"quota.period must be one of {', '.join(PERIODS)}, got {self.period!r}")
        if self.hard_cap is not None and (not self.overage or self.hard_cap < self.limit):
            raise ValueError(f"quota.hard_cap needs overage and must be >= the limit, got {self.hard_cap!r}")

    def ceiling(self, adjustment: int) -> int:
        """Requests in the period at which the next one is refused (limit + adjustment without overage)."""
        if not self.overage:
            return self.limit + adjustment
        if self.hard_cap is None:
            return NO_CEILING
        return self.hard_cap + adjustment


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """The limits that apply to one route for one plan; built once per snapshot, shared by requests.

    ``throttle_scope`` names the token bucket: ``""`` is the plan-wide bucket; a per-route override
    gets its own scope (e.g. ``"<api_id>:GET /pets/{id}"``) so its bucket is separate from, and
    replaces, the plan-wide one for that route.
    """

    throttle: Throttle | None = None
    quota: Quota | None = None
    throttle_scope: str = ""
    show_headers: bool = True  # the API's switch: hide RateLimit-* / X-RateLimit-* headers
    # ratelimit_headers' cache: (quota limit, quota window, has throttle) -> header template.  Lives
    # and dies with the policy (one snapshot); not part of equality or hashing.
    header_templates: dict[tuple[int, int, bool], bytes] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )


class Decision:
    """The outcome of one check.  ``limit`` names the limit that refused the request ("" if admitted)."""

    __slots__ = (
        "allowed",
        "limit",
        "retry_after",
        "tokens",
        "quota_remaining",
        "quota_limit",
        "quota_reset",
        "quota_window",
        "policy",
        "overage",
        "usage",
    )

    def __init__(
        self,
        allowed: bool,
        limit: str,
        policy: LimitPolicy,
        retry_after: float = 0.0,
        tokens: float = -1.0,
        quota_remaining: int = -1,
        quota_limit: int = -1,
        quota_reset: float = 0.0,
        quota_window: int = 0,
        overage: bool = False,
        usage: str = "",
    ) -> None:
        self.allowed = allowed
        self.limit = limit
        self.policy = policy
        self.retry_after = retry_after  # seconds until a retry can succeed (0 when admitted)
        self.tokens = tokens  # tokens left in the bucket after this request; -1 = no throttle
        self.quota_remaining = quota_remaining  # quota left in the period after this request; -1 = no quota
        self.quota_limit = quota_limit  # plan limit + this period's adjustment; -1 = no quota
        self.quota_reset = quota_reset  # seconds until the quota period ends
        self.quota_window = quota_window  # length of the current quota period in seconds
        self.overage = overage  # admitted beyond the quota (an overage quota): metered as overage
        # the store counted this request's usage itself (the Redis script), under this field prefix:
        # the caller settles its status class there (RedisStore.settle) instead of metering it
        self.usage = usage

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, limit={self.limit!r}, retry_after={self.retry_after:.3f}, "
            f"tokens={self.tokens:.3f}, quota_remaining={self.quota_remaining}, quota_limit={self.quota_limit})"
        )


class LimitStore(Protocol):
    """Where counters live.  ``check`` both decides and consumes, atomically per request.

    Returns a :class:`Decision` when it can decide at once (the memory store always does), or an
    ``asyncio.Future`` resolved with one (the Redis store, after one batched round trip).  The caller
    handles both without a coroutine per request::

        d = store.check(customer_id, policy, adjustment)
        if isinstance(d, Decision): go(d)
        else: d.add_done_callback(lambda f: go(f.result()))

    Futures never resolve with an exception: store trouble becomes a fallback decision or an
    ``UNAVAILABLE`` one, depending on the store's fail mode.
    """

    def check(
        self,
        customer_id: str,
        policy: LimitPolicy,
        adjustment: int = 0,
        cycle: Cycle | None = None,
        api_id: str = "",
        route_id: str = "",
        plan_id: str = "",
    ) -> Decision | asyncio.Future[Decision]: ...

    def settle(self, customer_id: str, usage: str, status: int, overage: bool) -> None:
        """The end of a request whose decision carried ``usage`` (the store counted it itself)."""
        ...

    async def close(self) -> None: ...


def take_token(tokens: float, last: float, now: float, throttle: Throttle) -> tuple[bool, float, float]:
    """One token-bucket step: ``(admitted, tokens_after, retry_after)`` from the state ``(tokens, last)``.

    The bucket refills continuously at ``rate`` up to ``burst``; a request needs one whole token.  A
    clock that went backwards (another worker's clock in the Redis script) refills nothing.
    limits_redis.LUA_CHECK implements the same arithmetic; keep them in step.
    """
    elapsed = now - last
    if elapsed > 0:
        tokens = min(float(throttle.burst), tokens + elapsed * throttle.rate)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, (1.0 - tokens) / throttle.rate


def bucket_key(customer_id: str, policy: LimitPolicy) -> str:
    # {customer} is a Redis Cluster hash tag: a customer's bucket and quota land in one slot, so
    # the check script (which touches both) is valid on a cluster too.
    return "{%s}:t:%s" % (customer_id, policy.throttle_scope)  # noqa: UP031 - braces are literal here


def quota_key(customer_id: str, period_id: str) -> str:
    return "{%s}:q:%s" % (customer_id, period_id)  # noqa: UP031


def usage_key(customer_id: str) -> str:
    """The customer's usage counts in Redis (a hash, same slot as its bucket and quota)."""
    return "{%s}:u" % customer_id  # noqa: UP031
