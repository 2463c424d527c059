"""Config propagation at size: time from an admin write being acknowledged to every worker serving it.

For each size (``--sizes keys:customers:routes,...``; default the 10k-key row of earlier runs and the
issue 21 row: 1,000,000 keys, 100,000 customers, 10,000 routes) the database is seeded straight
through SQLAlchemy core (bulk inserts, pre-hashed keys: not a million admin calls), then a control
plane and ``--workers`` workers start as real processes on 127.0.0.1, and it measures:

* ``full_sync_s``: a worker with an empty cache, from its start to serving the current revision;
* ``key_p50_ms`` / ``key_p99_ms``: a key created, revoked or rotated -> every worker at that revision;
* ``route_p50_ms`` / ``route_p99_ms``: a route added, changed or removed -> every worker at that revision;
* ``write_p99_ms``: the admin write itself (request -> response) while the workers sync;
* ``restart_s``: a worker restarted with its cache (snapshot + delta journal) serving again;
* ``worker_rss_mib`` (largest of the workers) and ``cp_rss_mib`` (VmRSS).

Prints numbers, asserts nothing; the last line is one JSON object (``rows``: one object per size).

    .venv/bin/python bench/propagation.py [--workers 4] [--changes 20] [--sizes 10000:1000:1000,1000000:100000:10000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.harness import Cluster, wait_until  # noqa: E402


class BigCluster(Cluster):
    """The test harness with start-up waits long enough for a million keys."""

    def wait_http(self, proc: Any, url: str, timeout: float = 900.0, verify: Any = True) -> None:
        super().wait_http(proc, url, timeout=timeout, verify=verify)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_all(status_urls: list[str], revision: int, timeout: float = 600.0) -> list[float]:
    """When each worker reported ``revision`` (perf_counter), in the order of ``status_urls``."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5.0) as client:

        async def one(url: str) -> float:
            rev = None
            while rev is None or rev < revision:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} stuck at revision {rev} (< {revision})")
                try:
                    rev = (await client.get(url)).json()["revision"]
                except httpx.TimeoutException:
                    continue  # the worker's loop is busy (a full snapshot being applied): ask again
                if rev is None or rev < revision:
                    await asyncio.sleep(0.002)
            return time.perf_counter()

        return list(await asyncio.gather(*(one(u) for u in status_urls)))


def _answers_fast(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def seed(url: str, keys: int, customers: int, routes: int, backend_port: int) -> dict[str, str]:
    """Bulk rows through SQLAlchemy core: one upstream, routes in APIs of 10, customers each granted
    one API, keys spread over the customers (sha256 of a known value, so the bench can call with one)."""
    from sqlalchemy import insert, update

    from control_plane import models
    from control_plane.db import make_engine
    from control_plane.migrate import upgrade

    upgrade(url)
    engine = make_engine(url)
    now = models.utcnow()
    stamp = {"created_at": now, "updated_at": now}
    up_id = str(uuid.uuid4())
    api_ids = [str(uuid.uuid4()) for _ in range(max(1, routes // 10))]
    customer_ids = [str(uuid.uuid4()) for _ in range(customers)]
    with engine.begin() as db:
        db.execute(
            insert(models.Upstream),
            [
                {
                    "id": up_id,
                    "name": "bench",
                    "algorithm": "round_robin",
                    "connect_timeout": 5,
                    "read_timeout": 60,
                    "retries": 0,
                    **stamp,
                }
            ],
        )
        db.execute(
            insert(models.Target),
            [
                {
                    "id": str(uuid.uuid4()),
                    "upstream_id": up_id,
                    "host": "127.0.0.1",
                    "port": backend_port,
                    "weight": 100,
                    **stamp,
                }
            ],
        )
        db.execute(
            insert(models.Api),
            [
                {
                    "id": a,
                    "name": f"api{i}",
                    "base_path": f"/api{i}",
                    "hosts": [],
                    "auth": "api_key",
                    "strip_base_path": True,
                    **stamp,
                }
                for i, a in enumerate(api_ids)
            ],
        )
        db.execute(
            insert(models.Route),
            [
                {
                    "id": str(uuid.uuid4()),
                    "api_id": api_ids[r // 10],
                    "path": f"/res{r % 10}/{{id}}",
                    "methods": ["GET"],
                    "upstream_id": up_id,
                    **stamp,
                }
                for r in range(routes)
            ],
        )
        for i in range(0, customers, 20_000):
            chunk = customer_ids[i : i + 20_000]
            db.execute(
                insert(models.Customer),
                [{"id": c, "name": f"cust{i + j}", "status": "active", **stamp} for j, c in enumerate(chunk)],
            )
            db.execute(
                insert(models.CustomerApiGrant),
                [{"customer_id": c, "api_id": api_ids[(i + j) % len(api_ids)]} for j, c in enumerate(chunk)],
            )
        for i in range(0, keys, 50_000):
            db.execute(
                insert(models.ApiKey),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "customer_id": customer_ids[k % customers],
                        "key_hash": hashlib.sha256(f"bench-key-{k}".encode()).hexdigest(),
                        "prefix": f"tg_{k:08x}",
                        "created_at": now,
                    }
                    for k in range(i, min(keys, i + 50_000))
                ],
            )
        db.execute(update(models.ConfigState).values(revision=models.ConfigState.revision + 1))
    engine.dispose()
    return {"upstream": up_id, "api": api_ids[0], "customer": customer_ids[0]}


def run_size(
    keys: int, customers: int, routes: int, workers: int, changes: int, keep_logs: Path | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"keys": keys, "customers": customers, "routes": routes, "workers": workers}
    with tempfile.TemporaryDirectory(prefix="tollgate-propagation-") as tmp:
        cluster = BigCluster(Path(tmp))
        try:
            backend = cluster.echo("b")
            url = f"sqlite:///{tmp}/bench.db"
            t = time.perf_counter()
            ids = seed(url, keys, customers, routes, backend.port)
            row["seed_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            cp = cluster.control_plane(url)
            row["cp_start_s"] = round(time.perf_counter() - t, 1)
            revision = cp.revision()
            ws = []
            for i in range(workers):  # one after another: the time of one worker, the machine otherwise quiet
                t = time.perf_counter()
                w = cluster.worker(cp, name=f"w{i}")
                w.wait_revision(revision, timeout=900)
                ws.append(w)
                row.setdefault("full_sync_each_s", []).append(round(time.perf_counter() - t, 2))
            row["full_sync_s"] = max(row["full_sync_each_s"])
            # after the swap a worker settles its heap (gc) and writes its cache: let that finish first
            for i, w in enumerate(ws):
                wait_until(lambda w=w: _answers_fast(f"{w.status_url}/status"), timeout=900, what="worker settled")
                # and its cache written (in a thread, after the swap): the packed companion is last
                cache = cluster.tmp / f"w{i}-cache"
                wait_until(lambda c=cache: any(c.glob("*.packed")), timeout=900, what="worker cache written")
            status_urls = [f"{w.status_url}/status" for w in ws]
            key_times: list[float] = []
            route_times: list[float] = []
            writes: list[float] = []
            served: list[dict[str, Any]] = []  # each change: when each worker served it (the slowest show)
            with cp.admin() as admin:
                admin.timeout = 60

                def timed(method: str, path: str, body: Any = None) -> dict[str, Any]:
                    sent = time.perf_counter()
                    r = admin.request(method, path, json=body)
                    acked = time.perf_counter()
                    writes.append((acked - sent) * 1000)
                    r.raise_for_status()
                    rev = admin.get("/v1/config").json()["revision"]
                    done = asyncio.run(wait_all(status_urls, rev))
                    each = [round((d - acked) * 1000, 1) for d in done]
                    served.append({"change": f"{method} {path.rsplit('/', 1)[-1][:12]}", "workers_ms": each})
                    return {"ms": max(each), "body": r.json() if r.content else None}

                cid = ids["customer"]
                for i in range(changes):
                    made = timed("POST", f"/v1/customers/{cid}/keys", {})
                    key_times.append(made["ms"])
                    kid = made["body"]["id"]
                    rotated = timed("POST", f"/v1/customers/{cid}/keys/{kid}/rotate", {})
                    key_times.append(rotated["ms"])
                    key_times.append(timed("DELETE", f"/v1/customers/{cid}/keys/{rotated['body']['id']}")["ms"])
                    # a route added, changed and removed again (each one route change)
                    routes_path = f"/v1/apis/{ids['api']}/routes"
                    added = timed("POST", routes_path, {"path": f"/bench{i}", "upstream_id": ids["upstream"]})
                    route_times.append(added["ms"])
                    rid = added["body"]["id"]
                    route_times.append(timed("PATCH", f"{routes_path}/{rid}", {"path": f"/bench{i}/{{id}}"})["ms"])
                    route_times.append(timed("DELETE", f"{routes_path}/{rid}")["ms"])
            row.update(
                key_p50_ms=round(statistics.median(key_times), 1),
                key_p99_ms=round(pct(key_times, 99), 1),
                route_p50_ms=round(statistics.median(route_times), 1),
                route_p99_ms=round(pct(route_times, 99), 1),
                write_p99_ms=round(pct(writes, 99), 1),
                slowest=sorted(served, key=lambda c: -max(c["workers_ms"]))[:3],
                worker_rss_mib=round(max(rss_mib(w.proc.proc.pid) for w in ws if w.proc.proc), 1),
                cp_rss_mib=round(rss_mib(cp.proc.proc.pid), 1) if cp.proc.proc else None,
            )
            # restart one worker with its cache (snapshot + journal), control plane still up
            w = ws[0]
            port, status_port = w.port, int(w.status_url.rsplit(":", 1)[1])
            w.proc.stop()
            t = time.perf_counter()
            again = cluster.worker(
                cp, name="w0", port=port, status_port=status_port, cache_dir=cluster.tmp / "w0-cache"
            )
            again.wait_revision(cp.revision(), timeout=900)
            row["restart_s"] = round(time.perf_counter() - t, 2)
        finally:
            cluster.close()
            if keep_logs is not None:  # the processes' logs, for reading where a slow change went
                keep_logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy(log, keep_logs / f"{keys}-{log.name}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    rounds = "rounds of key create/rotate/revoke + route add/change/remove"
    parser.add_argument("--changes", type=int, default=20, help=rounds)
    parser.add_argument("--sizes", default="10000:1000:1000,1000000:100000:10000", help="keys:customers:routes,...")
    parser.add_argument("--keep-logs", type=Path, help="copy the processes' logs into this folder")
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        keys, customers, routes = (int(x) for x in size.split(":"))
        row = run_size(keys, customers, routes, args.workers, args.changes, args.keep_logs)
        print(
            f"{keys} keys / {customers} customers / {routes} routes, {args.workers} workers: "
            f"key p50 {row['key_p50_ms']} ms p99 {row['key_p99_ms']} ms; route p50 {row['route_p50_ms']} ms "
            f"p99 {row['route_p99_ms']} ms; full sync {row['full_sync_s']} s; restart {row['restart_s']} s; "
            f"write p99 {row['write_p99_ms']} ms; worker RSS {row['worker_rss_mib']} MiB; "
            f"CP RSS {row['cp_rss_mib']} MiB",
            flush=True,
        )
        rows.append(row)
    print(json.dumps({**rows[-1], "rows": rows}))


if __name__ == "__main__":
    main()
