"""Usage metering on the worker: count admitted requests, ship them to the control plane in batches.

``record(customer_id, api_id, route_id, plan_id, status)`` is the hot-path call, made once per
admitted request of a known customer when its exchange *ends* (the status class is known only
then): one dict increment keyed by ``(customer, api, route, plan, status // 100, UTC hour start)``,
every member a value the exchange already holds; the hour comes from a cached current hour,
recomputed only when the clock leaves it.  Every ``interval`` seconds the counts are *cut* into a
batch::

    {"batch_id": uuid4, "node_id": ...,
     "counts": [{"customer_id", "api_id", "route_id", "plan_id" (null: none), "status_class": "2xx",
                 "hour": "YYYY-MM-DDTHH:00:00Z", "day": "YYYY-MM-DD", "count"}]}

(``day`` is the hour's UTC day, kept so a control plane that knows only days still takes the batch;
an entry is an object, so a later member, such as an overage count, is one more key) which is first
written to the spool (``usage_spool.Spool``: atomic file per batch) and only then
sent, oldest batch first, through a pluggable :class:`UsageSender`.  A batch leaves the spool only
after the sender returned (the control plane answered 2xx).  A failure stops the round (order is
kept) and the next round waits with exponential backoff.  A new :class:`Metering` on the same
directory (a restarted worker) sends what the previous one left, before anything newer.  ``close``
cuts what is still in memory into the spool.  What can still be lost: counts of the last
``interval`` seconds if the process is killed without ``close`` (SIGKILL, power loss).

**Contract of ``POST /cluster/v1/usage``** (control plane side; cluster token as bearer):
the body is one batch as above.  The endpoint must be idempotent by ``batch_id``: a worker whose
2xx got lost re-sends the same batch, so the control plane records the batch id in the same
transaction that adds the counts, and answers 2xx without adding anything when the id is already
recorded.  2xx = applied (or already applied); 400/413/422 = malformed, never retried (the worker
moves the batch to ``rejected/``); anything else (401, 5xx, timeouts) = retried later, in order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from data_plane.errors import UsageRejected, UsageSendError
from data_plane.metering.spool import Spool

log = logging.getLogger("tollgate.usage")

USAGE_PATH = "/cluster/v1/usage"
HOUR: Final = 3600

# (customer id, api id, route id, plan id ("" : none), status // 100, UTC hour start in epoch seconds)
UsageKey = tuple[str, str, str, str, int, int, bool]


def status_class(status_hundreds: int) -> str:
    """``"2xx"`` for 2.  An ending that set no status (0) never reaches here in practice; it would be
    the gateway's failure, so it is counted as 5xx rather than lost (the control plane accepts 1xx-5xx)."""
    return f"{status_hundreds}xx" if 1 <= status_hundreds <= 5 else "5xx"


def batch_entries(counts: dict[UsageKey, int]) -> list[dict[str, Any]]:
    """The wire form of cut counts (sorted, so a batch file reads in a stable order)."""
    hours: dict[int, tuple[str, str]] = {}
    out: list[dict[str, Any]] = []
    for (customer_id, api_id, route_id, plan_id, klass, hour, overage), n in sorted(counts.items()):
        stamps = hours.get(hour)
        if stamps is None:
            at = datetime.fromtimestamp(hour, UTC)
            stamps = hours[hour] = (at.strftime("%Y-%m-%dT%H:00:00Z"), at.strftime("%Y-%m-%d"))
        out.append(
            {
                "customer_id": customer_id,
                "api_id": api_id,
                "route_id": route_id,
                "plan_id": plan_id or None,
                "status_class": status_class(klass),
                "hour": stamps[0],
                "day": stamps[1],
                "count": n,
                **({"overage": n} if overage else {}),  # beyond the plan's quota (an overage plan)
            }
        )
    return out


def refusal_entries(refusals: dict[tuple[str, int, int], int]) -> list[dict[str, Any]]:
    """The wire form of cut refusal counts: ``{"api_id", "status", "hour", "count"}``, sorted."""
    out: list[dict[str, Any]] = []
    for (api_id, status, hour), n in sorted(refusals.items()):
        stamp = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H:00:00Z")
        out.append({"api_id": api_id, "status": status, "hour": stamp, "count": n})
    return out


class UsageSender(Protocol):
    async def send(self, batch: dict[str, Any]) -> None:
        """Return when the control plane applied the batch; raise :class:`UsageSendError` otherwise."""
        ...


class HttpUsageSender:
    """POSTs batches to the control plane's ``/cluster/v1/usage`` with the cluster token."""

    def __init__(
        self,
        base_url: str,
        cluster_token: str | None,
        *,
        node_id: str = "",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            verify=verify,
            headers={"authorization": f"Bearer {cluster_token or ''}", "x-tollgate-node-id": node_id},
        )

    async def send(self, batch: dict[str, Any]) -> None:
        try:
            resp = await self._client.post(USAGE_PATH, json=batch)
        except httpx.HTTPError as exc:
            raise UsageSendError(f"control plane unreachable: {type(exc).__name__}") from exc
        if 200 <= resp.status_code < 300:
            return
        if resp.status_code in (400, 413, 422):
            raise UsageRejected(f"control plane refused usage batch ({resp.status_code}): {resp.text[:200]}")
        raise UsageSendError(f"control plane answered {resp.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


class Metering:
    def __init__(
        self,
        node_id: str,
        spool_dir: Path,
        sender: UsageSender | None,
        *,
        interval: float = 1.0,
        now: Callable[[], float] = time.time,
        backoff_max: float = 60.0,
    ) -> None:
        self.node_id = node_id
        self.sender = sender  # None: standalone worker, batches are only spooled
        self.interval = interval
        self.now = now
        self.backoff_max = backoff_max
        self.spool = Spool(spool_dir)  # loads what a previous process left; sent before anything new
        self.counts: dict[UsageKey, int] = {}
        self.refusals: dict[tuple[str, int, int], int] = {}  # (api id, status, UTC hour start) -> count
        self.delivered_batches = 0
        self.failed_sends = 0
        self.rejected_batches = 0  # moved to rejected/: their counts never reach the control plane
        self._hour = 0  # the cached current UTC hour: its start (epoch seconds) and end
        self._hour_start = 0.0
        self._hour_end = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    # ------------------------------------------------------------------ hot path

    def record(
        self, customer_id: str, api_id: str, route_id: str, plan_id: str, status: int, overage: bool = False
    ) -> None:
        """Count one admitted request that ended with ``status`` (synchronous, O(1)); ``plan_id`` "" for none;
        ``overage``: admitted beyond the quota of an overage plan (counted apart as well)."""
        now = self.now()
        if not (self._hour_start <= now < self._hour_end):
            hour = int(now // HOUR) * HOUR
            self._hour = hour
            self._hour_start = float(hour)
            self._hour_end = float(hour + HOUR)
        key = (customer_id, api_id, route_id, plan_id, status // 100, self._hour, overage)
        self.counts[key] = self.counts.get(key, 0) + 1

    def refused(self, api_id: str, status: int) -> None:
        """Count one request of ``api_id`` the gateway answered itself with ``status`` (401, 403, 413,
        429, ...: never forwarded, never billed), per UTC hour: the console's refusal counts."""
        now = self.now()
        if not (self._hour_start <= now < self._hour_end):
            hour = int(now // HOUR) * HOUR
            self._hour = hour
            self._hour_start = float(hour)
            self._hour_end = float(hour + HOUR)
        key = (api_id, status, self._hour)
        self.refusals[key] = self.refusals.get(key, 0) + 1

    # ------------------------------------------------------------------ batches

    def cut(self) -> Path | None:
        """Move the in-memory counts into a new spooled batch (None when there is nothing to count)."""
        if not self.counts and not self.refusals:
            return None
        counts, self.counts = self.counts, {}
        refusals, self.refusals = self.refusals, {}
        batch: dict[str, Any] = {
            "batch_id": str(uuid.uuid4()),
            "node_id": self.node_id,
            "counts": batch_entries(counts),
        }
        if refusals:
            batch["refusals"] = refusal_entries(refusals)
        try:
            return self.spool.write(batch)
        except OSError as exc:
            # Disk trouble: keep the counts in memory (merged back) rather than lose them.
            for key, n in counts.items():
                self.counts[key] = self.counts.get(key, 0) + n
            for rkey, n in refusals.items():
                self.refusals[rkey] = self.refusals.get(rkey, 0) + n
            log.error("cannot spool usage batch: %s; keeping the counts in memory", exc)
            return None

    async def deliver(self) -> bool:
        """Send spooled batches oldest first; stop at the first failure.  True when the spool is empty."""
        if self.sender is None:
            return True  # nothing to deliver to: the spool is the record (standalone mode)
        async with self._lock:
            for path in self.spool.pending():
                batch = self.spool.read(path)
                if batch is None:  # unreadable: the spool moved it to rejected/
                    self.rejected_batches += 1
                    continue
                try:
                    await self.sender.send(batch)
                except UsageRejected as rejected:  # distinct names: mypyc shares one per function
                    log.error("%s; batch %s moved to rejected/", rejected, batch["batch_id"])
                    self.spool.reject(path)
                    self.rejected_batches += 1
                    continue
                except UsageSendError as failed:
                    self.failed_sends += 1
                    if not self._failing:
                        where = self.spool.directory
                        log.warning("usage not delivered (%s); batches stay spooled in %s", failed, where)
                        self._failing = True
                    return False
                self.spool.remove(path)
                self.delivered_batches += 1
            if self._failing:
                log.warning("usage delivery resumed; spool drained")
                self._failing = False
            return True

    async def flush(self) -> bool:
        self.cut()
        return await self.deliver()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            try:
                ok = await self.flush()
            except Exception:  # never let metering die: the counts stay in memory / spool
                log.exception("usage flush failed")
                ok = False
            # After a failure, back off (with jitter) so a fleet does not stampede a recovering control plane.
            delay = self.interval if ok else min(self.backoff_max, delay * 2) * random.uniform(0.5, 1.0)

    async def close(self, *, deliver: bool = False) -> None:
        """Stop the timer and spool what is still in memory; optionally try one last delivery."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.cut()
        if deliver:
            await self.deliver()
        self.spool.close()
