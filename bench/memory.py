"""Worker memory and compile time with a large snapshot.

Builds a snapshot of ``--apis`` APIs x ``--routes`` routes (default 1,000 x 10 = 10,000 routes: a
mix of literal, ``{param}`` and greedy templates, every API on its own host and base path), times
parsing + validation and compilation in this process, then starts a real worker from it (pinned
to core 0, nginx backend on core 1) and prints the worker's VmRSS (from /proc) before and after
load that walks many different routes.  With API-key auth built (the snapshot grows a key table),
it also adds ``--keys`` keys over ``--customers`` customers (default one per 10 keys).  The last line
of output is one JSON object with the figures.  The two sizes of issue 21:

    .venv/bin/python bench/memory.py --apis 100 --routes 10 --keys 10000 --customers 1000          # the 10k row
    .venv/bin/python bench/memory.py --apis 1000 --routes 10 --keys 1000000 --customers 100000     # 1M keys

    .venv/bin/python bench/memory.py [--apis 1000] [--routes 10] [--keys 100000] [--customers N] [--duration 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    LOAD_CORE,
    PROXY_CORE,
    PYTHON,
    RESULTS,
    Procs,
    backend_conf,
    ensure_tools,
    free_port,
    http_get,
    install_signal_handlers,
    log,
    run_wrk,
    start_nginx,
    vm_rss_kib,
    wait_port,
)
from proxy import needs_auth

from data_plane import snapshot as snap
from data_plane.compiler import compile_snapshot

# wrk walks the APIs round-robin so the whole table (not one hot entry) is touched under load.
WALK_LUA = """
local apis = tonumber(os.getenv("BENCH_APIS"))
local i = 0
request = function()
  i = i + 1
  local a = i % apis
  wrk.headers["Host"] = "api" .. a .. ".bench.test"
  return wrk.format("GET", "/v1/api" .. a .. "/items/" .. i)
end
"""


def big_snapshot(
    apis: int, routes: int, backend_ports: tuple[int, ...], keys: int = 0, customers: int = 0
) -> snap.Snapshot:
    targets = tuple(snap.Target(id=f"t{i}", host="127.0.0.1", port=p) for i, p in enumerate(backend_ports))
    upstream = snap.Upstream(id="u", name="backends", targets=targets)
    shapes = ("/items", "/items/{id}", "/items/{id}/detail", "/orders/{order}/lines/{line}", "/files/{path+}")
    out = []
    for a in range(apis):
        rs = []
        for r in range(routes):
            base = shapes[r % len(shapes)]
            path = base if r < len(shapes) else f"/v{r}{base}"
            rs.append(snap.Route(id=f"a{a}r{r}", path=path, upstream_id="u", methods=("GET",)))
        out.append(
            snap.Api(
                id=f"a{a}", name=f"api{a}", base_path=f"/v1/api{a}", hosts=(f"api{a}.bench.test",), routes=tuple(rs)
            )
        )
    # Keys: one customer per 10 keys, each granted one API.  The APIs stay auth "none" so the wrk walk
    # needs no key: what is measured is the key table's memory, not key checks.
    n_customers = customers or (keys + 9) // 10
    customer_rows = tuple(
        snap.Customer(id=f"c{c}", name=f"customer{c}", api_ids=(f"a{c % apis}",)) for c in range(n_customers)
    )
    key_rows = tuple(
        snap.ApiKey(
            id=f"k{k}",
            customer_id=f"c{k % n_customers}",
            key_hash=hashlib.sha256(f"tg_bench_{k:08d}".encode()).hexdigest(),
            prefix=f"tg_{k:08d}",
        )
        for k in range(keys)
    )
    return snap.Snapshot(
        revision=1, upstreams=(upstream,), apis=tuple(out), customers=customer_rows, keys=key_rows
    ).sealed()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apis", type=int, default=1000)
    p.add_argument("--routes", type=int, default=10, help="routes per API (>= 2)")
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--customers", type=int, default=0, help="default: one per 10 keys")
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    install_signal_handlers()
    tools = ensure_tools()
    why = needs_auth()
    if why is not None:
        log(f"keys: skipped: {why}")
        args.keys = 0

    results: dict[str, object] = {"apis": args.apis, "routes_per_api": args.routes, "keys": args.keys}
    with tempfile.TemporaryDirectory(prefix="tollgate-memory-") as tmp:
        procs = Procs(Path(tmp))
        try:
            ports = (free_port(), free_port())
            start_nginx(procs, tools["nginx"], "backend", backend_conf(Path(tmp), ports), ports[1], core=LOAD_CORE)
            snapshot = big_snapshot(args.apis, args.routes, ports, args.keys, args.customers)
            wire = snapshot.to_json()
            t0 = time.perf_counter()
            parsed = snap.Snapshot.from_json(wire)
            t1 = time.perf_counter()
            compile_snapshot(parsed)
            t2 = time.perf_counter()
            results.update(
                snapshot_bytes=len(wire),
                parse_validate_s=round(t1 - t0, 3),
                compile_s=round(t2 - t1, 3),
            )
            log(f"snapshot: {args.apis * args.routes} routes, {args.keys} keys, {len(wire) / 1e6:.1f} MB JSON")
            log(f"parse + validate: {t1 - t0:.3f} s, compile: {t2 - t1:.3f} s (this process)")

            file = Path(tmp) / "big.json"
            file.write_bytes(wire)
            port = free_port()
            argv = [PYTHON, "-m", "tollgate", "worker", "--snapshot", str(file), "--port", str(port)]
            argv += ["--status-port", "0", "--cache-dir", f"{tmp}/cache", "--log-level", "warning"]
            argv += ["--access-log", "off"]
            t3 = time.perf_counter()
            worker = procs.start("worker", argv, core=PROXY_CORE)
            wait_port(port, worker, "tollgate worker", timeout=120)
            results["worker_ready_s"] = round(time.perf_counter() - t3, 2)
            a = args.apis - 1
            status, body = http_get(port, f"/v1/api{a}/items/3", host=f"api{a}.bench.test")
            if status != 200:
                raise RuntimeError(f"sanity request answered {status}: {body[:200]!r}")
            rss_before = vm_rss_kib(worker.pid)
            os.environ["BENCH_APIS"] = str(args.apis)  # read by WALK_LUA in wrk (which inherits the environment)
            url = f"http://127.0.0.1:{port}/"
            res = run_wrk(tools["wrk"], Path(tmp), url, seconds=args.duration, connections=50, request_lua=WALK_LUA)
            rss_after = vm_rss_kib(worker.pid)
        except KeyboardInterrupt:
            return 130
        finally:
            procs.stop_all()
    results.update(rss_before_mib=round(rss_before / 1024, 1), rss_after_mib=round(rss_after / 1024, 1))
    results["worker_rss_mib"] = results["rss_after_mib"]
    results["load"] = res.as_dict()
    log(f"worker ready in {results['worker_ready_s']} s (process start + parse + compile)")
    log(f"worker VmRSS: {rss_before / 1024:.1f} MiB idle, {rss_after / 1024:.1f} MiB after {res.requests} requests")
    log(f"(load: {res.rps:.0f} req/s over {args.apis} APIs; errors: {res.errors or 'none'})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    log(f"wrote {out.relative_to(RESULTS.parents[1])}")
    print(json.dumps(results), flush=True)  # the last line: one JSON object
    return 0


if __name__ == "__main__":
    sys.exit(main())
