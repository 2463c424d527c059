"""A stand-in worker process for the cluster-accuracy test: N concurrent checks against a shared Redis
(or, with URL ``file:PATH``, the table shared by the processes of one worker).

Usage: python limit_check_client.py URL PREFIX GO_FILE N
Waits for GO_FILE to exist (so every process fires at the same moment), then prints a JSON object
with the number of admitted checks per scenario.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from data_plane.limits.periods import DAY
from data_plane.limits.policy import Decision, LimitPolicy, Quota, Throttle
from data_plane.limits.redis import RedisStore
from data_plane.limits.shared import SharedStore

QUOTA_POLICY = LimitPolicy(quota=Quota(limit=100, period=DAY))
BURST_POLICY = LimitPolicy(throttle=Throttle(rate=0.001, burst=100))  # refills ~nothing during the test


async def main(url: str, prefix: str, go_file: str, n: int) -> None:
    store: RedisStore | SharedStore
    if url.startswith("file:"):  # the table shared by the processes of one worker
        store = SharedStore(Path(url[5:]))
    else:
        store = RedisStore(url, prefix=prefix, fail_mode="closed")
        await store.ping()  # connect before the start signal
    deadline = time.monotonic() + 30
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    results = {}
    for name, policy in (("quota", QUOTA_POLICY), ("burst", BURST_POLICY)):
        checks = [store.check("cust-cluster", policy) for _ in range(n)]
        decisions = [c if isinstance(c, Decision) else await c for c in checks]
        assert all(d.limit != "unavailable" for d in decisions)
        results[name] = sum(d.allowed for d in decisions)
    await store.close()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
