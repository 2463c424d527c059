"""Counter store shared by the processes of one worker (``tollgate worker --processes N``, issue 19 item 6).

Without Redis each process had its own memory store, so a plan's limits were N times too generous
(burst 10 -> 20 admitted with 2 processes).  This store keeps the same counters as
:mod:`data_plane.limits.memory` in one file mapped by every process (``limits-<port>.shm`` in the cache
dir, made by the supervising process), and a check is one read-modify-write under an exclusive
``flock`` on that file: exact across the processes, and a process that dies (even by SIGKILL) lets
go of the lock with its file descriptor, so a restarted child takes over where the others are.

Layout: a 16-byte header (magic, number of slots), then ``slots`` fixed records of 40 bytes: the
16-byte BLAKE2b digest of the counter's key, when the record expires (epoch seconds), two values.
A bucket record (``t`` key: throttle scope + customer) holds ``tokens, last refill`` and expires
when it would be full again; a quota record (``q`` key: period id + customer) holds ``used`` and
expires at the period's end.  An expired record is free.  Open addressing with linear probing;
a lookup walks the run of used records from the key's home slot (expired ones stay in the run,
and the first of them is reused by an insert, so the run never breaks).  A table with no free
record refuses the check (``UNAVAILABLE``) rather than count wrongly; 262144 records (10 MiB) hold
a quarter of a million customers' buckets and quotas at once.

Cost (bench/hotpath.py under callgrind, pure Python, docs/architecture.md): +23k instructions per
request over the memory store (+11 %), and two flock syscalls; the keys' digests are cached per customer.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from data_plane.limits.periods import Cycle, PeriodCache
from data_plane.limits.policy import QUOTA, THROTTLE, UNAVAILABLE, Decision, LimitPolicy, take_token

log = logging.getLogger(__name__)

MAGIC: Final = b"TGLIMIT1"
HEADER: Final = struct.Struct("<8sQ")
RECORD: Final = struct.Struct("<16sddd")
DEFAULT_SLOTS: Final = 262144
EMPTY: Final = bytes(16)
MAX_CACHED: Final = 100_000


def create_table(path: Path, slots: int = DEFAULT_SLOTS) -> None:
    """A fresh, empty table at ``path`` (the supervisor, before it starts the processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(HEADER.pack(MAGIC, slots))
        f.truncate(HEADER.size + slots * RECORD.size)
    os.replace(tmp, path)  # a process that opens it sees a whole table or none


class SharedStore:
    def __init__(self, path: Path, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        self._map = mmap.mmap(self._fd, size)
        magic, slots = HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or HEADER.size + slots * RECORD.size != size:
            raise ValueError(f"{path} is not a limits table")
        self.slots: int = slots
        self._periods = PeriodCache()
        self._seeds: dict[str, tuple[str, int, int]] = {}
        self.unavailable_checks = 0
        # record keys already digested, by scope (throttle) or period id (quota), then customer id: a
        # check on a known customer formats and hashes nothing (cleared past MAX_CACHED customers)
        self._digests: dict[str, dict[str, bytes]] = {}
        self._cached = 0

    def seed(self, entries: list[dict[str, object]]) -> int:
        """As :meth:`MemoryStore.seed`: a quota counter absent from the table starts from the control
        plane's count of its period (every process seeds from the same answer; the first to count wins)."""
        for e in entries:
            try:
                customer_id = str(e["customer_id"])
                seed = (str(e["period"]), int(e["start"]), int(e["used"]))  # type: ignore[call-overload]
            except (KeyError, TypeError, ValueError):
                continue
            self._seeds[customer_id] = seed
        return len(self._seeds)

    def _digest(self, kind: str, space: str, customer_id: str) -> bytes:
        by_customer = self._digests.get(space)
        if by_customer is None:
            if self._cached >= MAX_CACHED:
                self._digests.clear()
                self._cached = 0
            by_customer = self._digests[space] = {}
        digest = by_customer.get(customer_id)
        if digest is None:
            digest = hashlib.blake2b(f"{kind}\0{space}\0{customer_id}".encode(), digest_size=16).digest()
            by_customer[customer_id] = digest
            self._cached += 1
        return digest

    def _find(self, digest: bytes, now: float) -> tuple[int, bool]:
        """(record offset, whether it holds ``digest`` unexpired); offset -1: no free record."""
        m = self._map
        n = self.slots
        i = int.from_bytes(digest[:8], "little") % n
        free = -1
        for _ in range(n):
            at = HEADER.size + i * RECORD.size
            key, expires, _a, _b = RECORD.unpack_from(m, at)
            if key == EMPTY:
                return (free if free >= 0 else at), False
            if expires <= now:
                if free < 0:
                    free = at
            elif key == digest:
                return at, True
            i += 1
            if i == n:
                i = 0
        return free, False

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
        quota = policy.quota
        throttle = policy.throttle
        qlimit = -1
        ceiling = -1
        reset = 0.0
        window = 0
        end = 0.0
        start = 0
        qdigest = b""
        if quota is not None:
            start, qend, pid = (cycle if cycle is not None else self._periods).current(quota.period, now)
            end = float(qend)
            qdigest = self._digest("q", pid, customer_id)
            qlimit = quota.limit + adjustment
            ceiling = quota.ceiling(adjustment) if quota.overage else qlimit
            reset = end - now
            window = qend - start
        tdigest = b""
        if throttle is not None:
            tdigest = self._digest("t", policy.throttle_scope, customer_id)
        m = self._map
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            used = 0
            qat = -1
            qfound = False
            if quota is not None:
                qat, qfound = self._find(qdigest, now)
                if qat < 0:
                    return self._full(policy)
                if qfound:
                    used = int(RECORD.unpack_from(m, qat)[2])
                elif self._seeds:
                    used = self._seeded(customer_id, quota.period, start)
                    if used:  # kept even if this check is refused below
                        RECORD.pack_into(m, qat, qdigest, end, float(used), 0.0)
                        qfound = True
            tokens = -1.0
            if throttle is not None:
                tat, tfound = self._find(tdigest, now)
                if tat < 0:
                    return self._full(policy)
                if tfound:
                    _k, _e, have, last = RECORD.unpack_from(m, tat)
                    ok, tokens, wait = take_token(have, last, now, throttle)
                else:
                    ok, tokens, wait = take_token(float(throttle.burst), now, now, throttle)
                if not ok:
                    remaining = max(0, qlimit - used) if quota is not None else -1
                    return Decision(False, THROTTLE, policy, wait, tokens, remaining, qlimit, reset, window)
                full_at = now + (throttle.burst - tokens) / throttle.rate
                RECORD.pack_into(m, tat, tdigest, full_at, tokens, now)
            if quota is None:
                return Decision(True, "", policy, 0.0, tokens, -1, qlimit, reset, window)
            if used >= ceiling:
                return Decision(False, QUOTA, policy, reset, tokens, 0, qlimit, reset, window)
            used += 1
            if not qfound:  # the throttle's insert may have taken the record _find chose: look again
                qat, _ = self._find(qdigest, now)
                if qat < 0:
                    return self._full(policy)
            RECORD.pack_into(m, qat, qdigest, end, float(used), 0.0)
            over = used > qlimit
            return Decision(True, "", policy, 0.0, tokens, 0 if over else qlimit - used, qlimit, reset, window, over)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _full(self, policy: LimitPolicy) -> Decision:
        self.unavailable_checks += 1
        if self.unavailable_checks == 1 or self.unavailable_checks % 10000 == 0:
            log.error("limits table %s is full (%d records): checks refused; use --redis-url", self.path, self.slots)
        return Decision(False, UNAVAILABLE, policy, 1.0, -1.0, -1, -1, 0.0, 0)

    def _seeded(self, customer_id: str, period: str, start: int) -> int:
        seed = self._seeds.pop(customer_id, None)
        if seed is None or seed[0] != period or seed[1] != start:
            return 0
        return seed[2]

    def settle(self, customer_id: str, usage: str, status: int, overage: bool) -> None:
        """Never called: this store's decisions carry no ``usage`` (the worker's metering counts)."""

    async def close(self) -> None:
        self._map.close()
        os.close(self._fd)
