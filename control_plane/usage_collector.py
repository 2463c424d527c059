"""Usage counted in Redis, collected into the database exactly once (issue 17, item 0).

With ``TOLLGATE_REDIS_URL`` the workers' check script counts each admitted request in the customer's
usage hash (``<prefix>{customer}:u``) in the same atomic call that takes its quota, so a worker killed
at any moment loses no count and the quota and the billing record cannot disagree
(``data_plane/limits/redis.py``).  Its fields are ``<api>|<route>|<plan>|<hour>|<status class>|<overage>``
(the hour as epoch seconds; the status class is 5 until the request ends and the worker moves it).

This task, in every control-plane replica that has the Redis URL, every ``interval`` seconds:

1. sets ``<prefix>usage:collector`` with a TTL of ``MARKER_TTL``: the workers count usage in Redis only
   while that key exists, and in their own metering otherwise (so a request is counted by exactly one);
2. SCANs every master for live hashes and **renames** each to ``<key>c:<batch id>`` (RENAME is atomic:
   a check landing a moment later starts a new hash; of two replicas only one rename succeeds);
3. reads each renamed hash and applies it with ``services.usage.ingest_batch`` under its batch id, in one
   transaction, then deletes it.  A replica that dies between 2 and 3 leaves the renamed key, which the
   next sweep (of any replica) finds and applies; one that dies after the commit leaves a key whose batch
   id is already recorded, so applying it again adds nothing.  Exactly once, either way.

A status move that lands after its request's provisional count was collected is a batch with -1 on the
5xx row and +1 on the final one: the row sums are exact once both are applied (and a day's total, which
reports, quotas and the usage webhooks read, never sees the move at all).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from control_plane.schemas import UsageBatchIn
from control_plane.schemas.plans import UsageCountIn
from control_plane.services import usage as usage_svc
from data_plane.errors import LimitStoreError, RespError
from data_plane.limits.redis import COLLECTOR_KEY
from data_plane.limits.redisurl import parse_redis_url
from data_plane.limits.resp import encode
from data_plane.limits.topology import open_topology

log = logging.getLogger(__name__)

MARKER_TTL = 30  # seconds the workers keep counting in Redis after the last sweep of any replica
SCAN_COUNT = 1000
_NO_SCRIPT = b""  # the collector runs no script: nothing to load on NOSCRIPT


class UsageCollector:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        url: str,
        prefix: str = "tg:",
        tls_files: dict[str, str | None] | None = None,
        interval: float = 1.0,
        replica: str = "",
    ) -> None:
        self._sessions = sessions
        self.target = parse_redis_url(url, tls_files)  # ValueError (URL masked) at start-up, not later
        self._topology = open_topology(self.target, _NO_SCRIPT)
        self.prefix = prefix
        self.interval = interval
        self.replica = replica or uuid.uuid4().hex
        escaped = re.escape(prefix)
        self._live = re.compile(escaped + r"\{([^{}]+)\}:u")
        self._renamed = re.compile(escaped + r"\{([^{}]+)\}:uc:([0-9a-f]{32})")
        self._pattern = prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") + "{*}:u*"
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.sweeps = 0
        self.collected = 0  # requests moved into the database (net of status moves)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tollgate-usage-collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._topology.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
                if self._failing:
                    log.warning("usage collection from Redis works again")
                    self._failing = False
            except (LimitStoreError, OSError, TimeoutError) as exc:
                if not self._failing:  # once per outage: the counts wait in Redis, nothing is lost
                    log.warning("cannot collect usage from Redis (%s); retrying", self.target.redact(str(exc)))
                    self._failing = True
                self._topology.reset()
            await asyncio.sleep(self.interval)

    async def sweep(self) -> int:
        """One round (module docstring); the number of requests it moved into the database."""
        marker = self.prefix + COLLECTOR_KEY
        await self._run_checked([marker], [encode(b"SET", marker, self.replica, b"EX", MARKER_TTL)])
        live: list[str] = []
        renamed: list[str] = []
        for node in await self._topology.masters():
            cursor = b"0"
            while True:
                [reply] = await self._topology.run_on(
                    node, [encode(b"SCAN", cursor, b"MATCH", self._pattern, b"COUNT", SCAN_COUNT)]
                )
                if isinstance(reply, RespError):
                    raise LimitStoreError(f"SCAN on {node.name}: {reply}")
                cursor, keys = reply
                for raw in keys:
                    key = raw.decode()
                    if self._live.fullmatch(key):
                        live.append(key)
                    elif self._renamed.fullmatch(key):
                        renamed.append(key)  # left by a sweep that stopped before applying it
                if cursor in (b"0", 0):
                    break
        if live:
            targets = [f"{key}c:{uuid.uuid4().hex}" for key in live]
            replies = await self._topology.run(
                live, [encode(b"RENAME", k, t) for k, t in zip(live, targets, strict=True)]
            )
            for target, reply in zip(targets, replies, strict=True):
                if not isinstance(reply, RespError):
                    renamed.append(target)  # an error: the hash is gone (another replica took it)
        moved = 0
        for key in renamed:
            moved += await self._apply(key)
        self.sweeps += 1
        self.collected += moved
        return moved

    async def _run_checked(self, keys: list[str], commands: list[bytes]) -> list[Any]:
        replies = await self._topology.run(keys, commands)
        for reply in replies:
            if isinstance(reply, RespError):
                raise LimitStoreError(str(reply))
        return replies

    async def _apply(self, key: str) -> int:
        match = self._renamed.fullmatch(key)
        assert match is not None
        customer_id, batch_id = match.group(1), match.group(2)
        [flat] = await self._run_checked([key], [encode(b"HGETALL", key)])
        fields = {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        batch = usage_batch(customer_id, batch_id, fields)
        if batch.counts:
            await run_in_threadpool(self._ingest, batch)
        await self._run_checked([key], [encode(b"DEL", key)])
        return sum(c.count for c in batch.counts)

    def _ingest(self, batch: UsageBatchIn) -> None:
        with self._sessions.begin() as session:
            usage_svc.ingest_batch(session=session, batch=batch)


def usage_batch(customer_id: str, batch_id: str, fields: dict[str, int]) -> UsageBatchIn:
    """A collected hash as the batch a worker would have sent (``model_construct``: these counts are
    signed, a status move being -1 on one class and +1 on another; a field that does not parse is
    logged and skipped, never applied as something else)."""
    counts: list[UsageCountIn] = []
    for field, n in sorted(fields.items()):
        parts = field.split("|")
        if len(parts) != 6 or not n:
            if n:
                log.error("usage field %r of customer %s not understood; skipped", field, customer_id)
            continue
        api_id, route_id, plan_id, hour_text, klass, over = parts
        try:
            hour = datetime.fromtimestamp(int(hour_text), UTC)
        except (ValueError, OverflowError, OSError):
            log.error("usage field %r of customer %s not understood; skipped", field, customer_id)
            continue
        counts.append(
            UsageCountIn.model_construct(
                customer_id=customer_id,
                api_id=api_id,
                route_id=route_id,
                plan_id=plan_id or None,
                hour=hour,
                day=hour.date(),
                status_class=f"{klass}xx",
                count=n,
                overage=n if over == "1" else 0,
            )
        )
    return UsageBatchIn.model_construct(batch_id=batch_id, node_id="redis", counts=counts)
