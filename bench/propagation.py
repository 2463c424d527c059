"""Config propagation: time from an admin write being acknowledged to every worker serving it.

Starts a control plane (SQLite in a temp dir unless --database-url) and N workers as real
processes on 127.0.0.1, makes M route changes one after another and, after each acknowledged
write, polls every worker's status port until all run the new revision.  Then measures snapshot
build (database -> snapshot), parse (JSON -> validated snapshot) and compile (snapshot -> lookup
tables) for a large config.  Prints numbers; asserts nothing.

    .venv/bin/python bench/propagation.py [--workers 4] [--changes 50] [--routes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.harness import Cluster, create  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def wait_all(status_urls: list[str], revision: int) -> float:
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def one(url: str) -> None:
            while (await client.get(url)).json()["revision"] != revision:
                await asyncio.sleep(0.001)

        await asyncio.gather(*(one(u) for u in status_urls))
    return time.perf_counter()


def propagation(workers: int, changes: int, database_url: str | None) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp))
        try:
            backend = cluster.echo("b")
            cp = cluster.control_plane(database_url)
            ws = [cluster.worker(cp, name=f"w{i}") for i in range(workers)]
            with cp.admin() as admin:
                up = create(admin, "/v1/upstreams", {"name": "bench"})
                create(admin, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": backend.port})
                api = create(admin, "/v1/apis", {"name": "bench", "base_path": "/bench"})
                for w in ws:
                    w.wait_revision(cp.revision())
                urls = [f"{w.status_url}/status" for w in ws]
                times = []
                for i in range(changes):
                    r = admin.post(f"/v1/apis/{api['id']}/routes", json={"path": f"/r{i}", "upstream_id": up["id"]})
                    acked = time.perf_counter()
                    r.raise_for_status()
                    revision = admin.get("/v1/config").json()["revision"]
                    done = asyncio.run(wait_all(urls, revision))
                    times.append((done - acked) * 1000)
            return times
        finally:
            cluster.close()


def build_and_compile(routes: int, keys: int) -> dict[str, float]:
    from control_plane.db import make_engine, make_session_factory
    from control_plane.migrate import upgrade
    from control_plane.models import Api, ApiKey, Customer, CustomerApiGrant, Route, Target, Upstream
    from control_plane.snapshots.build import build_snapshot
    from data_plane.compiler import compile_snapshot
    from data_plane.snapshot import Snapshot

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        with sessions.begin() as s:
            up = Upstream(name="u", algorithm="round_robin", connect_timeout=5, read_timeout=60, retries=0)
            s.add(up)
            s.flush()
            s.add(Target(upstream_id=up.id, host="127.0.0.1", port=9000, weight=100))
            per_api = 10
            for a in range(routes // per_api):
                api = Api(name=f"api{a}", base_path=f"/api{a}", hosts=[], auth="none", strip_base_path=True)
                s.add(api)
                s.flush()
                for r in range(per_api):
                    s.add(Route(api_id=api.id, path=f"/res{r}/{{id}}", methods=["GET"], upstream_id=up.id))
            # Keys of 1,000 customers, each granted the first API (only hashes are stored).
            customers = [Customer(name=f"cust{c}") for c in range(max(1, keys // 10))]
            s.add_all(customers)
            s.flush()
            first_api = s.query(Api).filter_by(name="api0").one()
            s.add_all(CustomerApiGrant(customer_id=c.id, api_id=first_api.id) for c in customers)
            s.add_all(
                ApiKey(
                    customer_id=customers[k % len(customers)].id,
                    key_hash=hashlib.sha256(f"bench-key-{k}".encode()).hexdigest(),
                    prefix=f"tg_{k:08x}",
                )
                for k in range(keys)
            )
        t0 = time.perf_counter()
        with sessions() as s:
            snap = build_snapshot(s)
        t1 = time.perf_counter()
        data = snap.to_json()
        t2 = time.perf_counter()
        parsed = Snapshot.from_json(data)
        t3 = time.perf_counter()
        compile_snapshot(parsed)
        t4 = time.perf_counter()
        engine.dispose()
    return {
        "routes": routes,
        "keys": keys,
        "snapshot_bytes": len(data),
        "build_ms": (t1 - t0) * 1000,
        "serialise_ms": (t2 - t1) * 1000,
        "parse_validate_ms": (t3 - t2) * 1000,
        "compile_ms": (t4 - t3) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--database-url", default=None, help="control-plane database (default: SQLite in a temp dir)")
    args = parser.parse_args()

    times = propagation(args.workers, args.changes, args.database_url)
    print(f"propagation to {args.workers} workers over {args.changes} changes (ms, write acknowledged -> all serving):")
    print(
        f"  p50 {statistics.median(times):.1f}   p99 {pct(times, 99):.1f}   max {max(times):.1f}   "
        f"mean {statistics.fmean(times):.1f}"
    )
    big = build_and_compile(args.routes, args.keys)
    print(f"snapshot of {big['routes']} routes and {big['keys']} keys ({big['snapshot_bytes'] / 1024:.0f} KiB):")
    print(
        f"  build {big['build_ms']:.1f} ms   serialise {big['serialise_ms']:.1f} ms   "
        f"parse+validate {big['parse_validate_ms']:.1f} ms   compile {big['compile_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
