"""Usage plans on the request path: throughput and p99 of one worker with key auth, for a customer
on a generous plan with the memory store, the same with the Redis store, and a customer without a
plan (no limiter call at all).  50 concurrent connections; ``wrk`` when installed, else an asyncio
client (the output says which).  Standalone worker (``--snapshot``), echo backend, all on 127.0.0.1.
Also measures the Redis store alone (checks/s through ``RedisStore.check``), since the phase-1
bench found the redis-py call path to be the likely bottleneck.  Prints numbers; asserts nothing.

    .venv/bin/python bench/plans.py [--seconds 5] [--connections 50] [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_plane.snapshot import Snapshot  # noqa: E402
from tests.integration.harness import Cluster  # noqa: E402

KEYS = {"planned": "bench-key-planned-0123456789abcdef", "unplanned": "bench-key-unplanned-0123456789abcdef"}


def snapshot(echo_port: int) -> Snapshot:
    doc = {
        "schema_version": "1.3",
        "revision": 1,
        "upstreams": [{"id": "u", "name": "u", "targets": [{"id": "t", "host": "127.0.0.1", "port": echo_port}]}],
        "apis": [
            {
                "id": "a",
                "name": "a",
                "base_path": "/a",
                "auth": "api_key",
                "routes": [{"id": "r", "path": "/{proxy+}", "upstream_id": "u"}],
            }
        ],
        "plans": [
            {
                "id": "p",
                "name": "generous",
                "throttle": {"rate": 1e6, "burst": 1_000_000},
                "quota": {"limit": 10**12, "period": "MONTH"},
                "apis": [{"api_id": "a"}],
            }
        ],
        "customers": [
            {"id": "c-planned", "name": "planned", "plan_id": "p"},
            {"id": "c-unplanned", "name": "unplanned", "api_ids": ["a"]},
        ],
        "keys": [
            {
                "id": f"k-{name}",
                "customer_id": f"c-{name}",
                "key_hash": hashlib.sha256(key.encode()).hexdigest(),
                "prefix": name[:6],
            }
            for name, key in KEYS.items()
        ],
    }
    return Snapshot.from_dict(doc)


def run_wrk(url: str, key: str, seconds: int, connections: int) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"x-api-key: {key}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"    warning: {non2xx.group(1)} non-2xx responses")
    return rps, p99


async def run_asyncio(url: str, key: str, seconds: int, connections: int) -> tuple[float, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, headers={"x-api-key": key}, timeout=10) as client:

        async def loop() -> None:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                await client.get(url)
                latencies.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(0.99 * (len(latencies) - 1))]


async def store_alone(url: str, n: int = 20000) -> float:
    from data_plane.limits.policy import Decision, LimitPolicy, Quota, Throttle
    from data_plane.limits.redis import RedisStore

    prefix = f"tgbench:{uuid.uuid4().hex}:"
    store = RedisStore(url, prefix=prefix)
    policy = LimitPolicy(Throttle(1e6, 1_000_000), Quota(10**12, "MONTH"))
    start = time.perf_counter()
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        async with sem:
            d = store.check(f"c{i % 50}", policy)
            if not isinstance(d, Decision):
                await d

    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await store.close()
    client = aioredis.Redis.from_url(url)  # cleanup with redis-py, off the measured path
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = ap.parse_args()
    tool = "wrk" if shutil.which("wrk") else "asyncio client (httpx)"
    print(f"load generator: {tool}; {args.connections} connections, {args.seconds}s per case")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp))
        try:
            echo = cluster.echo("bench")
            snap = Path(tmp) / "snapshot.json"
            snap.write_bytes(snapshot(echo.port).to_json())
            prefix = f"tgbench:{uuid.uuid4().hex}:"
            cases = [
                ("no plan (direct grant)", "unplanned", ()),
                ("plan, memory store", "planned", ()),
                ("plan, redis store", "planned", ("--redis-url", args.redis)),
            ]
            for label, who, extra in cases:
                w = cluster.worker(
                    snapshot=snap, name=f"w-{who}-{len(results)}", extra=extra, env={"TOLLGATE_REDIS_PREFIX": prefix}
                )
                url = f"{w.url}/a/x"
                assert httpx.get(url, headers={"x-api-key": KEYS[who]}).status_code == 200
                if tool == "wrk":
                    rps, p99 = run_wrk(url, KEYS[who], args.seconds, args.connections)
                else:
                    rps, p99 = asyncio.run(run_asyncio(url, KEYS[who], args.seconds, args.connections))
                results[label] = rps
                print(f"  {label:28s} {rps:10.0f} req/s   p99 {p99:7.2f} ms")
                w.proc.stop()
        finally:
            cluster.close()
    mem, red = results["plan, memory store"], results["plan, redis store"]
    print(f"redis vs memory: {100 * (1 - red / mem):+.1f}% throughput cost (goal < 15%)")
    rate = asyncio.run(store_alone(args.redis))
    print(f"redis store alone (RedisStore.check, 50 concurrent callers): {rate:.0f} checks/s")


if __name__ == "__main__":
    main()
