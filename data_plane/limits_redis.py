"""Redis counter store: shared by every worker process on every machine, exact.

**One script per request.**  ``LUA_CHECK`` reads the customer's quota counter and token bucket,
decides, and updates both in one ``EVALSHA`` — Redis runs a script atomically, so two workers can
never both take the last token or the last unit of quota (no read-then-write race).  Keys carry
their own expiry: a bucket expires once it would be full again (an absent bucket *is* a full one),
a quota counter some time after its period ends (its key names the period, so a new period starts
from zero without any reset job).  Time comes from the worker's clock (``now``), so the store can be
tested with an injected clock; a worker whose clock is behind refills nothing and never moves a
bucket's timestamp backwards.

**Batching.**  ``check`` never awaits: it queues ``(keys, args, future)`` and schedules a flush with
``loop.call_soon``; the flush sends every check queued during that event-loop iteration as one
pipeline of EVALSHA calls (one round trip, one coroutine per batch, not per request) and resolves
each future from its reply.  At most ``max_in_flight`` pipelines are outstanding; checks arriving
meanwhile wait for the next one, so batches grow with load instead of connections.  NOSCRIPT replies
(a restarted or flushed Redis) load the script and re-send just those checks.

**Redis unreachable.**  A connection error or timeout marks the store unavailable, logs once, and
starts one reconnect task (PING with exponential backoff and full jitter, 0.1 s -> 5 s).  Meanwhile
checks are decided at once, without touching the network, by the fail mode:

* ``open`` (default): a per-worker :class:`MemoryStore` decides (``fallback_checks`` counts them for
  metrics).  Limits become per worker for the outage, and the quota counted during it is not added
  to Redis afterwards.
* ``closed``: an ``UNAVAILABLE`` decision (the caller answers 503 "rate limiter unavailable").

A check whose reply was lost in a timeout may have been applied by Redis; it is then counted twice
(once there, once by the fallback) — the error is on the side of the limit, never above it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from data_plane.limits_memory import MemoryStore
from data_plane.periods import PeriodCache
from data_plane.ratelimit import QUOTA, THROTTLE, UNAVAILABLE, Decision, LimitPolicy, bucket_key, quota_key
from data_plane.resp import RespConnection, RespConnectionError, RespError, encode, encode_args

log = logging.getLogger("tollgate.limits")

FAIL_OPEN = "open"
FAIL_CLOSED = "closed"

# Seconds a quota counter outlives its period: a worker whose clock is a little behind still finds it.
QUOTA_KEY_GRACE = 3600

LUA_CHECK = """
-- KEYS[1] token bucket hash {t = tokens, ts = time of last update}; KEYS[2] quota counter
-- ARGV: now (s), rate (tokens/s; 0 = no throttle), burst, quota limit (-1 = no quota), quota key ttl (s)
-- returns {admitted 1|0, refused by 0 none|1 throttle|2 quota, tokens left ("-1" = no throttle), quota used}
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local used = 0
if limit >= 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local tokens = -1
if rate > 0 then
  tokens = burst
  local b = redis.call('HMGET', KEYS[1], 't', 'ts')
  if b[1] then
    tokens = tonumber(b[1])
    local last = tonumber(b[2])
    if now > last then
      tokens = math.min(burst, tokens + (now - last) * rate)
    else
      now = last -- this worker's clock is behind: no refill, and never move the timestamp back
    end
  end
  if tokens < 1 then
    return {0, 1, tostring(tokens), used}
  end
  -- the token is spent even if the quota refuses below (ratelimit.py module docstring)
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
end
if limit >= 0 then
  if used >= limit then
    return {0, 2, tostring(tokens), used}
  end
  used = redis.call('INCR', KEYS[2])
  if used == 1 then
    redis.call('EXPIRE', KEYS[2], ARGV[5])
  end
end
return {1, 0, tostring(tokens), used}
"""
LUA_CHECK_SHA = hashlib.sha1(LUA_CHECK.encode()).hexdigest()
# Every check is EVALSHA <sha> 2 <bucket key> <quota key> <5 args>: the first three parts are constant.
_EVALSHA_PREFIX = b"*10\r\n" + encode_args((b"EVALSHA", LUA_CHECK_SHA, 2))
_SCRIPT_LOAD = encode(b"SCRIPT", b"LOAD", LUA_CHECK)
_PING = encode(b"PING")

_UNREACHABLE = (RespConnectionError, OSError, TimeoutError)


class StoreError(Exception):
    """Redis answered, but not as the script promises (a bug or a foreign server): fail the batch."""


def _parse_url(url: str) -> tuple[str, int, int]:
    """``redis://host:port/db`` -> (host, port, db); only what the limiter needs (no auth/TLS yet)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", ""):
        raise ValueError(f"TOLLGATE_REDIS_URL: unsupported scheme {parts.scheme!r} (redis://host:port/db)")
    db = parts.path.strip("/")
    return parts.hostname or "127.0.0.1", parts.port or 6379, int(db) if db else 0


class _Check:
    __slots__ = ("future", "customer_id", "policy", "adjustment", "args", "quota_limit", "reset", "window")

    def __init__(
        self,
        future: asyncio.Future[Decision],
        customer_id: str,
        policy: LimitPolicy,
        adjustment: int,
        args: tuple[Any, ...],
        quota_limit: int,
        reset: float,
        window: int,
    ) -> None:
        self.future = future
        self.customer_id = customer_id
        self.policy = policy
        self.adjustment = adjustment
        self.args = args
        self.quota_limit = quota_limit
        self.reset = reset
        self.window = window


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tg:",
        fail_mode: str = FAIL_OPEN,
        now: Callable[[], float] = time.time,
        batch: bool = True,
        max_in_flight: int = 2,
        timeout: float = 0.5,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        if fail_mode not in (FAIL_OPEN, FAIL_CLOSED):
            raise ValueError(f"fail_mode must be {FAIL_OPEN!r} or {FAIL_CLOSED!r}, got {fail_mode!r}")
        # One lean pipelined connection (data_plane/resp.py); no client-side retries: a failure must
        # reach us at once so the fail mode decides, and our own reconnect loop is the only retry.
        self.host, self.port, self.db = _parse_url(url)
        self.timeout = timeout
        self._conn: RespConnection | None = None
        self.prefix = prefix
        self.fail_mode = fail_mode
        self.now = now
        self.batch = batch
        self.max_in_flight = max_in_flight
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.fallback = MemoryStore(now)
        self.available = True
        self.fallback_checks = 0  # checks decided by the memory fallback (a metric)
        self.unavailable_checks = 0  # checks refused because Redis was unreachable (fail closed)
        self.outages = 0
        self.batches_sent = 0
        self._periods = PeriodCache()
        self._pending: list[_Check] = []
        self._scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ hot path

    def check(self, customer_id: str, policy: LimitPolicy, adjustment: int = 0) -> Decision | asyncio.Future[Decision]:
        if not self.available:
            return self._degraded(customer_id, policy, adjustment)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = self.now()
        quota = policy.quota
        throttle = policy.throttle
        qlimit = -1
        reset = 0.0
        window = 0
        if quota is not None:
            start, end, pid = self._periods.current(quota.period, now)
            qkey = self.prefix + quota_key(customer_id, pid)
            qlimit = quota.limit + adjustment
            reset = end - now
            window = end - start
        else:
            qkey = self.prefix + quota_key(customer_id, "-")  # unused by the script; same hash slot
        bkey = self.prefix + bucket_key(customer_id, policy)
        args = (
            bkey,
            qkey,
            repr(now),
            repr(throttle.rate) if throttle is not None else "0",
            throttle.burst if throttle is not None else 0,
            qlimit,
            math.ceil(reset) + QUOTA_KEY_GRACE,
        )
        fut: asyncio.Future[Decision] = loop.create_future()
        item = _Check(fut, customer_id, policy, adjustment, args, qlimit, reset, window)
        if not self.batch:
            self._spawn([item])
            return fut
        self._pending.append(item)
        if not self._scheduled and self._in_flight < self.max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _degraded(self, customer_id: str, policy: LimitPolicy, adjustment: int) -> Decision:
        if self.fail_mode == FAIL_OPEN:
            self.fallback_checks += 1
            return self.fallback.check(customer_id, policy, adjustment)
        self.unavailable_checks += 1
        return Decision(False, UNAVAILABLE, policy, retry_after=1.0)

    # ------------------------------------------------------------------ batching

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch = self._pending
        self._pending = []
        self._spawn(batch)

    def _spawn(self, batch: list[_Check]) -> None:
        assert self._loop is not None
        self._in_flight += 1
        task = self._loop.create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        if self._pending and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    async def _send(self, batch: list[_Check]) -> None:
        try:
            for attempt in range(2):
                results = await self._pipeline(batch)
                self.batches_sent += 1
                retry: list[_Check] = []
                for item, res in zip(batch, results, strict=True):
                    if isinstance(res, RespError) and str(res).startswith("NOSCRIPT"):
                        retry.append(item)
                    elif isinstance(res, Exception):
                        log.error("rate limit script failed: %s", res)
                        self._resolve(item, self._degraded(item.customer_id, item.policy, item.adjustment))
                    else:
                        self._resolve(item, self._decision(item, res))
                if not retry:
                    return
                if attempt == 0:
                    # Redis restarted or its script cache was flushed: load once, re-send these checks.
                    conn = await self._connection()
                    [loaded] = await conn.execute([_SCRIPT_LOAD], timeout=self.timeout)
                    if isinstance(loaded, RespError):
                        raise StoreError(f"SCRIPT LOAD failed: {loaded}")
                batch = retry
            raise StoreError("script still missing after SCRIPT LOAD")
        except _UNREACHABLE as exc:
            self._outage(exc)
            self._resolve_degraded(batch)
        except StoreError as exc:
            log.error("rate limit store error: %s", exc)
            self._resolve_degraded(batch)
        except BaseException:
            self._resolve_degraded(batch)  # cancelled (shutdown): never leave a request hanging
            raise

    async def _connection(self) -> RespConnection:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await RespConnection.open(self.host, self.port, timeout=self.timeout, db=self.db)
        return conn

    async def ping(self) -> None:
        """Connect (if needed) and round-trip a PING; raises RespConnectionError/OSError if unreachable."""
        conn = await self._connection()
        [pong] = await conn.execute([_PING], timeout=self.timeout)
        if isinstance(pong, RespError):
            raise StoreError(str(pong))

    async def _pipeline(self, batch: list[_Check]) -> list[Any]:
        conn = await self._connection()
        prefix = _EVALSHA_PREFIX
        return await conn.execute([prefix + encode_args(item.args) for item in batch], timeout=self.timeout)

    def _resolve_degraded(self, batch: list[_Check]) -> None:
        for item in batch:
            if not item.future.done():
                self._resolve(item, self._degraded(item.customer_id, item.policy, item.adjustment))

    @staticmethod
    def _resolve(item: _Check, decision: Decision) -> None:
        if not item.future.done():
            item.future.set_result(decision)

    @staticmethod
    def _decision(item: _Check, res: list[Any]) -> Decision:
        admitted, refused_by, tokens_raw, used = res
        tokens = float(tokens_raw)
        policy = item.policy
        qlimit = item.quota_limit
        has_quota = qlimit >= 0
        if admitted:
            return Decision(
                True,
                "",
                policy,
                tokens=tokens,
                quota_remaining=qlimit - int(used) if has_quota else -1,
                quota_limit=qlimit,
                quota_reset=item.reset,
                quota_window=item.window,
            )
        if refused_by == 1:
            assert policy.throttle is not None
            return Decision(
                False,
                THROTTLE,
                policy,
                retry_after=(1.0 - tokens) / policy.throttle.rate,
                tokens=tokens,
                quota_remaining=max(0, qlimit - int(used)) if has_quota else -1,
                quota_limit=qlimit,
                quota_reset=item.reset,
                quota_window=item.window,
            )
        return Decision(
            False,
            QUOTA,
            policy,
            retry_after=item.reset,
            tokens=tokens,
            quota_remaining=0,
            quota_limit=qlimit,
            quota_reset=item.reset,
            quota_window=item.window,
        )

    # ------------------------------------------------------------------ outages

    def _outage(self, exc: BaseException) -> None:
        if not self.available:
            return
        self.available = False
        self.outages += 1
        what = "per-worker counters" if self.fail_mode == FAIL_OPEN else "503 for metered requests"
        log.warning("rate limit store (Redis) unreachable (%s: %s); %s until it is back", type(exc).__name__, exc, what)
        assert self._loop is not None
        self._reconnect_task = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self.backoff_initial
        down_since = time.monotonic()
        while True:
            # Jittered: many workers losing Redis at once do not come back in lock step.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.backoff_max)
            try:
                await self.ping()
            except (*_UNREACHABLE, StoreError):
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                continue
            self.available = True
            log.warning("rate limit store (Redis) reachable again after %.1f s", time.monotonic() - down_since)
            return

    async def close(self) -> None:
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self._pending:
            self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
