"""Redis pieces shared by the limiter tests: a redis-server of the test's own (to stop and start
at will), deleting a test's keys, and awaiting a limit decision whichever store made it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from data_plane.limits.policy import Decision
from tests.integration.harness import free_port

REDIS_SERVER = "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parents[2]


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        asyncio.run(self._wait_up())

    async def _wait_up(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    await client.ping()
                    return
                except OSError:
                    pass
                except aioredis.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "redis-server did not start"
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


async def resolve(x: Decision | asyncio.Future[Decision]) -> Decision:
    """The decision of a check: at once (memory store) or after its batch's round trip (Redis)."""
    return x if isinstance(x, Decision) else await x


def delete_prefix(url: str, prefix: str) -> None:
    """Delete the keys a test wrote under its own prefix (tests share the machine's Redis)."""

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(run())


def two_processes_check(url: str, prefix: str, n: int = 100) -> list[dict[str, int]]:
    """Two real processes (tests/integration/limit_check_client.py), ``n`` concurrent checks each,
    started together against the store at ``url``: what each admitted (``quota`` and ``burst``)."""
    go_file = Path(f"/tmp/{prefix.replace(':', '-')}go")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(Path(__file__).with_name("limit_check_client.py"))
    procs = [
        subprocess.Popen([sys.executable, script, url, prefix, str(go_file), str(n)], stdout=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    try:
        go_file.touch()  # both start their checks at once
        outs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        go_file.unlink(missing_ok=True)
    assert all(p.returncode == 0 for p in procs)
    return outs
