"""Redis counter store: shared by every worker process on every machine, exact.

**One script call per customer and batch.**  ``LUA_CHECK`` reads the customer's quota counter and
token bucket, decides, and updates both in one ``EVALSHA`` — Redis runs a script atomically, so two workers can
never both take the last token or the last unit of quota (no read-then-write race).  Keys carry
their own expiry: a bucket expires once it would be full again (an absent bucket *is* a full one),
a quota counter some time after its period ends (its key names the period, so a new period starts
from zero without any reset job).  Time comes from the worker's clock (``now``), so the store can be
tested with an injected clock; a worker whose clock is behind refills nothing and never moves a
bucket's timestamp backwards.

**Batching.**  ``check`` never awaits: it queues ``(keys, args, future)`` and schedules a flush with
``loop.call_soon``; the flush sends every check queued during that event-loop iteration as one
pipeline (one round trip, one coroutine per batch, not per request) and resolves each future from
its reply.  Checks in a batch with the same keys and limits (one customer's concurrent requests)
are *coalesced*: one EVALSHA with ``n`` = how many, which the script decides as ``n`` requests in
a row (the first ones that fit take tokens and quota, the rest are refused, exactly as ``n``
separate calls would have gone), so a busy customer costs Redis one script run per batch instead
of one per request.  At most ``max_in_flight`` pipelines are outstanding; checks arriving
meanwhile wait for the next one, so batches grow with load instead of connections.

**Where the calls go** is the topology's business (``limits/topology.py``, from ``TOLLGATE_REDIS_URL``
parsed by ``limits/redisurl.py``): one server (plain, TLS, ACL), the master Sentinel names, or each
customer's slot owner in a Redis Cluster; it loads the script where a server answers NOSCRIPT and
follows MOVED / ASK.  The store only names each call's first key.

**Redis unreachable.**  A connection error or timeout marks the store unavailable, logs once, and
starts one reconnect task (PING with exponential backoff and full jitter, 0.1 s -> 5 s).  Meanwhile
checks are decided at once, without touching the network, by the fail mode:

* ``open`` (default): a per-worker :class:`MemoryStore` decides (``fallback_checks`` counts them for
  metrics).  Limits become per worker for the outage, and the quota counted during it is not added
  to Redis afterwards.
* ``closed``: an ``UNAVAILABLE`` decision (the caller answers 503 "rate limiter unavailable").

A failover is an outage like any other: the lost connection (or a READONLY reply from a demoted
master) starts the reconnect task, whose ``ping`` asks the sentinels / the cluster again.

A check whose reply was lost in a timeout may have been applied by Redis; it is then counted twice
(once there, once by the fallback) — the error is on the side of the limit, never above it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from data_plane.errors import RespConnectionError, UnexpectedReply
from data_plane.limits.memory import MemoryStore
from data_plane.limits.periods import Cycle, PeriodCache
from data_plane.limits.policy import (
    QUOTA,
    THROTTLE,
    UNAVAILABLE,
    Decision,
    LimitPolicy,
    bucket_key,
    quota_key,
    usage_key,
)
from data_plane.limits.redisurl import parse_redis_url
from data_plane.limits.resp import encode, encode_args
from data_plane.limits.topology import open_topology

log = logging.getLogger("tollgate.limits")

FAIL_OPEN = "open"
FAIL_CLOSED = "closed"

# Seconds a quota counter outlives its period: a worker whose clock is a little behind still finds it.
QUOTA_KEY_GRACE = 3600
# Key names cached per throttle scope or period (RedisStore._bucket_keys, ...): customers at most.
MAX_CACHED_KEYS = 100_000

LUA_CHECK = """
-- KEYS[1] token bucket hash {t = tokens, ts = time of last update}; KEYS[2] quota counter; KEYS[3] usage hash
-- ARGV: now (s), rate (tokens/s; 0 = no throttle), burst, quota limit (-1 = no quota), quota key ttl (s),
--       n = requests checked together, in arrival order, as if one after the other,
--       usage field prefix ("" = usage not counted here), the quota's limit where overage starts (-1: none)
-- returns {tokens before them ("-1" = no throttle), quota used before them, passed the throttle, admitted}
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local n = tonumber(ARGV[6])
local used = 0
if limit >= 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local tokens = -1
local passed = n
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
  -- each request needs one whole token; a refused one consumes nothing (and so neither do the rest)
  passed = math.min(n, math.floor(tokens))
  if passed > 0 then
    -- tokens are spent even by requests the quota refuses below (ratelimit.py module docstring)
    local left = tokens - passed
    redis.call('HSET', KEYS[1], 't', tostring(left), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[1], math.ceil((burst - left) / rate * 1000) + 1000)
  end
end
local admitted = passed
if limit >= 0 then
  admitted = math.max(0, math.min(passed, limit - used))
  if admitted > 0 then
    if redis.call('INCRBY', KEYS[2], admitted) == admitted then
      redis.call('EXPIRE', KEYS[2], ARGV[5])
    end
  end
end
-- usage: counted where the quota is, in the same script (a worker killed now loses nothing).  Fields
-- "<api>|<route>|<plan>|<hour>|<status class>|<overage>", status class 5 until the request ends (moved
-- then: RedisStore.settle); the control plane collects the hash (control_plane/usage_collector.py)
local field = ARGV[7]
if field ~= '' and admitted > 0 then
  local over = 0
  local qlimit = tonumber(ARGV[8])
  if qlimit >= 0 then
    over = math.max(0, math.min(admitted, used + admitted - qlimit))
  end
  if admitted > over then
    redis.call('HINCRBY', KEYS[3], field .. '|5|0', admitted - over)
  end
  if over > 0 then
    redis.call('HINCRBY', KEYS[3], field .. '|5|1', over)
  end
end
return {tostring(tokens), used, passed, admitted}
"""
LUA_CHECK_SHA = hashlib.sha1(LUA_CHECK.encode()).hexdigest()
# Every call is EVALSHA <sha> 3 <bucket key> <quota key> <usage key> <8 args>: the first three parts are constant.
_EVALSHA_PREFIX = b"*14\r\n" + encode_args((b"EVALSHA", LUA_CHECK_SHA, 3))
_SCRIPT_LOAD = encode(b"SCRIPT", b"LOAD", LUA_CHECK)

_UNREACHABLE = (RespConnectionError, OSError, TimeoutError)


# What the script needs besides the time and the count (see _Check.group)
Group = tuple[str, str, str, int, int, int, str, str, int]
# The key whose presence says a control plane collects usage from Redis (control_plane/usage_collector.py)
COLLECTOR_KEY = "usage:collector"


class _Check:
    """One queued check.  ``group`` is what the script needs besides the time and the count: checks
    with equal groups (same customer, policy and adjustment) in one batch become one script call."""

    __slots__ = (
        "future",
        "customer_id",
        "policy",
        "adjustment",
        "group",
        "now",
        "quota_limit",
        "reset",
        "window",
        "cycle",
        "usage",
    )

    def __init__(
        self,
        future: asyncio.Future[Decision],
        customer_id: str,
        policy: LimitPolicy,
        adjustment: int,
        group: Group,
        now: float,
        quota_limit: int,
        reset: float,
        window: int,
        cycle: Cycle | None = None,
        usage: str = "",
    ) -> None:
        self.future = future
        self.customer_id = customer_id
        self.policy = policy
        self.adjustment = adjustment
        self.group = group  # (bucket key, quota key, rate, burst, quota ceiling, quota key ttl, usage key,
        #                      usage field prefix, quota limit)
        self.now = now
        self.quota_limit = quota_limit
        self.reset = reset
        self.window = window
        self.cycle = cycle  # the customer's billing cycle: the fallback's periods if Redis fails
        self.usage = usage  # "<api>|<route>|<plan>|<hour>" when the script counts the usage, else ""


def _remember(cache: dict[str, str], customer_id: str, key: str) -> str:
    """Cache a formatted key name; a full map starts over (it is only a cache of names)."""
    if len(cache) >= MAX_CACHED_KEYS:
        cache.clear()
    cache[customer_id] = key
    return key


def coalesce(batch: list[_Check]) -> list[list[_Check]]:
    """The batch's checks grouped by script arguments, groups in order of first arrival and checks
    in arrival order within each: what the script decides for a group of n equals n calls in a row."""
    groups: dict[Group, list[_Check]] = {}
    for item in batch:
        same = groups.get(item.group)
        if same is None:
            groups[item.group] = [item]
        else:
            same.append(item)
    return list(groups.values())


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
        timeout: float | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        tls_files: dict[str, str | None] | None = None,
    ) -> None:
        if fail_mode not in (FAIL_OPEN, FAIL_CLOSED):
            raise ValueError(f"fail_mode must be {FAIL_OPEN!r} or {FAIL_CLOSED!r}, got {fail_mode!r}")
        # One lean pipelined connection per server (data_plane/limits/resp.py); no client-side retries: a
        # failure must reach us at once so the fail mode decides, and our own reconnect loop is the only retry.
        self.target = parse_redis_url(url, tls_files)  # ValueError (URL masked) before anything connects
        if timeout is not None:
            self.target = dataclasses.replace(self.target, timeout=timeout)
        self.timeout = self.target.timeout
        self._topology = open_topology(self.target, _SCRIPT_LOAD)
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
        self.calls_sent = 0  # script calls: checks coalesced per customer make fewer than checks
        self.lost_moves = 0  # status moves lost (outage, error): those requests stay counted as 5xx
        self._periods = PeriodCache()
        # Redis key names cached by the strings the request already has (as the memory store keys
        # its counters), so a check formats no key: throttle scope -> customer id -> bucket key,
        # period id -> customer id -> quota key (dropped when the period ends).  Each customer map
        # holds at most MAX_CACHED_KEYS names (customers come and go over a worker's life).
        self._bucket_keys: dict[str, dict[str, str]] = {}
        self._quota_keys: dict[str, dict[str, str]] = {}
        self._period_ends: dict[str, int] = {}
        self._no_quota_keys: dict[str, str] = {}
        self._rate_args: dict[float, str] = {}  # throttle rate -> the script's argument
        self._usage_keys: dict[str, str] = {}  # customer id -> usage hash key
        self.collecting = False  # a control plane collects usage from Redis: the script counts it
        self._hour_start = 0.0
        self._hour_end = 0.0
        self._hour_text = ""
        self._moves: dict[tuple[str, str, str], int] = {}  # (usage key, from field, to field) -> count
        self._pending: list[_Check] = []
        self._scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ hot path

    def check(
        self,
        customer_id: str,
        policy: LimitPolicy,
        adjustment: int = 0,
        cycle: Cycle | None = None,
        api_id: str = "",
        route_id: str = "",
        plan_id: str = "",
    ) -> Decision | asyncio.Future[Decision]:
        """``api_id`` / ``route_id`` / ``plan_id``: what the request's usage is counted under, by the
        script itself while a control plane collects usage from Redis (:attr:`collecting`)."""
        if not self.available:
            return self._degraded(customer_id, policy, adjustment, cycle)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = self.now()
        quota = policy.quota
        throttle = policy.throttle
        qlimit = -1
        ceiling = -1
        reset = 0.0
        window = 0
        if quota is not None:
            # the customer's billing cycle, else the UTC calendar (data_plane/limits/periods.py)
            start, end, pid = (cycle if cycle is not None else self._periods).current(quota.period, now)
            qkeys = self._quota_keys.get(pid)
            if qkeys is None:
                qkeys = self._new_period(pid, end, now)
            qkey = qkeys.get(customer_id)
            if qkey is None:
                qkey = _remember(qkeys, customer_id, self.prefix + quota_key(customer_id, pid))
            qlimit = quota.limit + adjustment
            # the script's "limit" is where requests are refused: an overage quota's ceiling (policy.py)
            ceiling = quota.ceiling(adjustment) if quota.overage else qlimit
            reset = end - now
            window = end - start
        else:
            qkey = self._no_quota_keys.get(customer_id)
            if qkey is None:  # unused by the script; same hash slot as the bucket
                qkey = _remember(self._no_quota_keys, customer_id, self.prefix + quota_key(customer_id, "-"))
        bkeys = self._bucket_keys.get(policy.throttle_scope)
        if bkeys is None:
            bkeys = self._bucket_keys[policy.throttle_scope] = {}
        bkey = bkeys.get(customer_id)
        if bkey is None:
            bkey = _remember(bkeys, customer_id, self.prefix + bucket_key(customer_id, policy))
        if throttle is not None:
            rate = self._rate_args.get(throttle.rate)
            if rate is None:
                rate = self._rate_args[throttle.rate] = repr(throttle.rate)
            burst = throttle.burst
        else:
            rate = "0"
            burst = 0
        if self.collecting and api_id:
            if not (self._hour_start <= now < self._hour_end):
                self._new_hour(now)
            usage = f"{api_id}|{route_id}|{plan_id}|{self._hour_text}"
            ukey = self._usage_keys.get(customer_id)
            if ukey is None:
                ukey = _remember(self._usage_keys, customer_id, self.prefix + usage_key(customer_id))
        else:
            usage = ""
            ukey = qkey  # unused by the script (same slot)
        overage_from = qlimit if quota is not None and quota.overage else -1
        group = (bkey, qkey, rate, burst, ceiling, math.ceil(reset) + QUOTA_KEY_GRACE, ukey, usage, overage_from)
        fut: asyncio.Future[Decision] = loop.create_future()
        item = _Check(fut, customer_id, policy, adjustment, group, now, qlimit, reset, window, cycle, usage)
        if not self.batch:
            self._spawn([item])
            return fut
        self._pending.append(item)
        if not self._scheduled and self._in_flight < self.max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _new_hour(self, now: float) -> None:
        hour = int(now // 3600) * 3600
        self._hour_start = float(hour)
        self._hour_end = float(hour + 3600)
        self._hour_text = str(hour)

    def settle(self, customer_id: str, usage: str, status: int, overage: bool) -> None:
        """A request the script counted (its decision's ``usage``) ended with ``status``: move its
        count from the provisional 5xx to its status class, sent with the next pipeline.  A move lost
        to an outage or a crash leaves the request counted, as 5xx (what a request that never got its
        answer is): totals never depend on it."""
        klass = status // 100
        if klass == 5 or not 1 <= klass <= 5:
            return
        ukey = self._usage_keys.get(customer_id)
        if ukey is None:
            ukey = _remember(self._usage_keys, customer_id, self.prefix + usage_key(customer_id))
        over = "|1" if overage else "|0"
        move = (ukey, usage + "|5" + over, f"{usage}|{klass}{over}")
        self._moves[move] = self._moves.get(move, 0) + 1
        if not self._scheduled and self._in_flight < self.max_in_flight and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _take_moves(self) -> tuple[list[str], list[bytes]]:
        """The pending status moves as commands (two HINCRBYs each) and the keys that route them."""
        moves, self._moves = self._moves, {}
        keys: list[str] = []
        commands: list[bytes] = []
        for (ukey, provisional, final), n in moves.items():
            keys.append(ukey)
            commands.append(encode(b"HINCRBY", ukey, provisional, -n))
            keys.append(ukey)
            commands.append(encode(b"HINCRBY", ukey, final, n))
        return keys, commands

    def start_collector_watch(self, interval: float = 5.0) -> None:
        self._watch_task = asyncio.get_running_loop().create_task(self.watch_collector(interval))

    async def watch_collector(self, interval: float = 5.0) -> None:
        """Count usage in the check script only while a control plane says (a key with a TTL it
        refreshes) that it collects it from here; otherwise the worker's own metering counts it, so a
        request is counted by exactly one of the two.  Runs until cancelled."""
        key = self.prefix + COLLECTOR_KEY
        command = encode(b"EXISTS", key)
        while True:
            if self.available:
                try:
                    [reply] = await self._topology.run([key], [command])
                    collecting = reply == 1
                except (*_UNREACHABLE, UnexpectedReply):
                    collecting = False  # the checks are the fallback's now: its metering is the worker's
                if collecting != self.collecting:
                    log.info(
                        "usage %s",
                        "counted in Redis (collected by the control plane)"
                        if collecting
                        else "counted by the worker (no control plane collects it from Redis)",
                    )
                    self.collecting = collecting
            await asyncio.sleep(interval)

    def _new_period(self, pid: str, end: int, now: float) -> dict[str, str]:
        """The key cache of a period seen for the first time; caches of ended periods are dropped."""
        for old in [p for p, e in self._period_ends.items() if e <= now]:
            del self._period_ends[old]
            self._quota_keys.pop(old, None)
        self._period_ends[pid] = end
        keys: dict[str, str] = {}
        self._quota_keys[pid] = keys
        return keys

    def _degraded(self, customer_id: str, policy: LimitPolicy, adjustment: int, cycle: Cycle | None = None) -> Decision:
        if self.fail_mode == FAIL_OPEN:
            self.fallback_checks += 1
            return self.fallback.check(customer_id, policy, adjustment, cycle)
        self.unavailable_checks += 1
        return Decision(False, UNAVAILABLE, policy, retry_after=1.0)

    # ------------------------------------------------------------------ batching

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending and not self._moves:
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
        if (self._pending or self._moves) and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    async def _send(self, batch: list[_Check]) -> None:
        try:
            groups = coalesce(batch)
            results = await self._pipeline(groups)
            self.batches_sent += 1
            for group, res in zip(groups, results, strict=True):
                if isinstance(res, Exception):  # an error reply (NOSCRIPT was retried by the topology)
                    log.error("rate limit script failed: %s", res)
                    self._resolve_degraded(group)
                else:
                    self._resolve_group(group, res)
        except _UNREACHABLE as lost:
            self._outage(lost)
            self._resolve_degraded(batch)
        except UnexpectedReply as exc:
            log.error("rate limit store error: %s", exc)
            self._resolve_degraded(batch)
        except BaseException:
            self._resolve_degraded(batch)  # cancelled (shutdown): never leave a request hanging
            raise

    async def ping(self) -> None:
        """(Re)discover and round-trip to the server(s); raises RespConnectionError/OSError if unreachable."""
        await self._topology.connect()

    def status(self) -> dict[str, Any]:
        """Where the counters are, for ``/status`` (the URL with its secrets masked)."""
        return {
            **self._topology.status(),
            "outages": self.outages,
            "unacked_batches": self._topology.unacked_batches,
            "usage_in_redis": self.collecting,  # a control plane collects usage from here: the script counts it
            "lost_status_moves": self.lost_moves,
        }

    async def _pipeline(self, groups: list[list[_Check]]) -> list[Any]:
        """The script calls of a batch, after the status moves waiting to go (their replies dropped)."""
        prefix = _EVALSHA_PREFIX
        keys, commands = self._take_moves() if self._moves else ([], [])
        moved = len(commands)
        for group in groups:
            bkey, qkey, rate, burst, ceiling, ttl, ukey, usage, overage_from = group[0].group
            now = group[-1].now  # the latest clock reading: the group is decided as of the flush
            commands.append(
                prefix
                + encode_args((bkey, qkey, ukey, repr(now), rate, burst, ceiling, ttl, len(group), usage, overage_from))
            )
            keys.append(bkey)  # the topology routes by it (a Cluster slot: the {customer} hash tag)
        self.calls_sent += len(commands) - moved
        try:
            results = await self._topology.run(keys, commands)
        except BaseException:
            if moved:
                self.lost_moves += moved // 2
            raise
        if moved:
            for reply in results[:moved]:
                if isinstance(reply, Exception):
                    self.lost_moves += 1
                    log.error("usage status move failed: %s", reply)
            return results[moved:]
        return results

    def _resolve_degraded(self, batch: list[_Check]) -> None:
        for item in batch:
            if not item.future.done():
                self._resolve(item, self._degraded(item.customer_id, item.policy, item.adjustment, item.cycle))

    @staticmethod
    def _resolve(item: _Check, decision: Decision) -> None:
        if not item.future.done():
            item.future.set_result(decision)

    def _resolve_group(self, group: list[_Check], res: list[Any]) -> None:
        """Decisions for a group the script checked together: the i-th check is decided as if it came
        right after the first i (``passed`` got through the throttle, the first ``admitted`` of those
        also through the quota)."""
        try:
            tokens_raw, used_raw, passed, admitted = res
            tokens0 = float(tokens_raw)
            used = int(used_raw)
        except (TypeError, ValueError) as bad:
            log.error("rate limit script answered %r: %s", res, bad)
            self._resolve_degraded(group)
            return
        for i, item in enumerate(group):
            self._resolve(item, self._decision(item, i, tokens0, used, passed, admitted))

    @staticmethod
    def _decision(item: _Check, i: int, tokens0: float, used: int, passed: int, admitted: int) -> Decision:
        policy = item.policy
        qlimit = item.quota_limit
        has_quota = qlimit >= 0
        throttle = policy.throttle
        if i >= passed:  # refused by the throttle: the tokens are what the ones before left
            assert throttle is not None
            tokens = tokens0 - passed
            return Decision(
                False,
                THROTTLE,
                policy,
                (1.0 - tokens) / throttle.rate,
                tokens,
                max(0, qlimit - used - admitted) if has_quota else -1,
                qlimit,
                item.reset,
                item.window,
            )
        tokens = tokens0 - (i + 1) if throttle is not None else -1.0
        if i >= admitted:  # through the throttle (its token spent), refused by the quota
            return Decision(False, QUOTA, policy, item.reset, tokens, 0, qlimit, item.reset, item.window)
        remaining = qlimit - used - (i + 1) if has_quota else -1
        if remaining < 0 and has_quota:  # an overage quota admitted it beyond the limit
            return Decision(True, "", policy, 0.0, tokens, 0, qlimit, item.reset, item.window, True, item.usage)
        return Decision(True, "", policy, 0.0, tokens, remaining, qlimit, item.reset, item.window, False, item.usage)

    # ------------------------------------------------------------------ outages

    def _outage(self, exc: BaseException) -> None:
        if not self.available:
            return
        self.available = False
        self.outages += 1
        what = "per-worker counters" if self.fail_mode == FAIL_OPEN else "503 for metered requests"
        log.warning(
            "rate limit store (Redis) unreachable (%s: %s); %s until it is back",
            type(exc).__name__,
            self.target.redact(str(exc)),
            what,
        )
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
            except (*_UNREACHABLE, UnexpectedReply):
                self._topology.reset()
                continue
            self.available = True
            log.warning("rate limit store (Redis) reachable again after %.1f s", time.monotonic() - down_since)
            return

    async def close(self) -> None:
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self._pending or self._moves:
            self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._topology.close()
