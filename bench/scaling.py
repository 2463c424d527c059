"""``tollgate worker --processes N``: does a second process scale?  Measured on a 2-core machine.

The goal (#7) is throughput of case (e) with two processes on two cores >= 1.6 x one process.  A
fair direct measurement needs the load generator and the backend on cores of their own, which a
2-core machine does not have: pinning the proxy to both cores starves wrk, pinning wrk anywhere
takes a core from the proxy.  So this script measures what scaling depends on instead, with every
process unpinned (the kernel spreads proxy, wrk and the backend over both cores):

* **CPU per request** of the proxy, one process vs N.  Processes that share nothing (SO_REUSEPORT,
  own event loop, own limiter state) cost the same per request; contention or imbalance shows up
  as a higher figure.  ``projected`` = N x (CPU/request with 1) / (CPU/request with N): the
  throughput ratio on N dedicated cores if each process filled its core at that cost.  It errs
  low: a process that has a whole core to itself batches more events per loop turn and spends
  less per request.
* **Balance**: each process's share of the requests (its limiter's admitted count on /status).
* nginx with 1 and N worker processes through the same method, as the reference for what the
  method reports for a proxy known to scale.

    .venv/bin/python bench/scaling.py [--duration 8] [--warmup 2] [--processes 2] [--connections 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    PYTHON,
    RESULTS,
    Procs,
    backend_conf,
    cpu_times,
    ensure_tools,
    free_port,
    free_ports,
    http_get,
    install_signal_handlers,
    log,
    proxy_conf,
    run_wrk,
    start_nginx,
    wait_port,
)
from proxy import KEY, NO_ACCESS_LOG, Env, plan_snapshot


def start_tollgate(procs: Procs, env: Env, processes: int) -> tuple[Any, int, list[int]]:
    snapshot_file = env.workdir / "snapshot-e.json"
    snapshot_file.write_bytes(plan_snapshot(env).to_json())
    port, status_port = free_port(), free_ports(processes)
    status_ports = [status_port + i for i in range(processes)]
    argv = [PYTHON, "-m", "tollgate", "worker", "--snapshot", str(snapshot_file), "--port", str(port)]
    argv += ["--status-port", str(status_port), "--cache-dir", str(env.workdir / f"cache-{processes}")]
    argv += ["--log-level", "warning", "--processes", str(processes), *NO_ACCESS_LOG]
    proc = procs.start(f"worker-x{processes}", argv)
    # Ready means every child answers on its status port, not just the first one on the shared port.
    for sp in status_ports:
        wait_port(sp, proc, f"tollgate worker (status port {sp})")
    wait_port(port, proc, "tollgate worker")
    return proc, port, status_ports


def admitted(status_ports: list[int]) -> list[int]:
    out = []
    for sp in status_ports:
        status, body = http_get(sp, "/status")
        out.append(json.loads(body)["limiter"]["decisions"]["admitted"] if status == 200 else 0)
    return out


def measure(
    what: str,
    proc: Any,
    port: int,
    args: argparse.Namespace,
    tools: dict[str, str],
    env: Env,
    headers: tuple[str, ...],
    status_ports: list[int] | None = None,
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/bench/items/1"
    status, body = http_get(port, "/bench/items/1", headers=headers)
    if status != 200:
        raise RuntimeError(f"{what}: sanity request answered {status}: {body[:200]!r}")
    wrk = dict(connections=args.connections, headers=headers, core=None, threads=2)
    if args.warmup > 0:
        run_wrk(tools["wrk"], env.workdir, url, seconds=args.warmup, **wrk)  # type: ignore[arg-type]
    before = admitted(status_ports) if status_ports else []
    cpu0 = sum(cpu_times(proc.pid))
    res = run_wrk(tools["wrk"], env.workdir, url, seconds=args.duration, **wrk)  # type: ignore[arg-type]
    cpu = sum(cpu_times(proc.pid)) - cpu0
    row: dict[str, Any] = {
        "what": what,
        "rps": res.rps,
        "p99_ms": res.p99_ms,
        "cores_used": cpu / res.seconds if res.seconds else 0.0,
        "cpu_us_per_req": cpu / res.requests * 1e6 if res.requests else 0.0,
        "errors": res.errors,
    }
    if status_ports:
        after = admitted(status_ports)
        served = [a - b for a, b in zip(after, before, strict=True)]
        row["shares"] = [round(s / max(1, sum(served)), 2) for s in served]
    log(
        f"  {what}: {res.rps:.0f} req/s, proxy {row['cores_used']:.2f} cores, "
        f"{row['cpu_us_per_req']:.1f} us/req" + (f", shares {row['shares']}" if "shares" in row else "")
    )
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--connections", type=int, default=100)
    args = p.parse_args()
    install_signal_handlers()
    tools = ensure_tools()
    n = args.processes
    log(f"every process unpinned; wrk -t2 -c{args.connections}; case (e): key auth + plan (memory) + balancing")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-scaling-") as tmp:
        procs = Procs(Path(tmp))
        try:
            ports = (free_port(), free_port())
            env = Env(backend_ports=ports, workdir=Path(tmp))
            start_nginx(procs, tools["nginx"], "backend", backend_conf(env.workdir, ports), ports[1], core=None)
            for count in (1, n):
                proc, port, status_ports = start_tollgate(procs, env, count)
                rows.append(measure(f"tollgate x{count}", proc, port, args, tools, env, KEY, status_ports))
                procs.stop(proc)
            for count in (1, n):
                port = free_port()
                conf = proxy_conf(env.workdir, port, ports, processes=count)
                proc = start_nginx(procs, tools["nginx"], f"proxy-x{count}", conf, port, core=None)
                rows.append(measure(f"nginx x{count}", proc, port, args, tools, env, ()))
                procs.stop(proc)
        except KeyboardInterrupt:
            return 130
        finally:
            procs.stop_all()
    log("")
    log(f"{'':<14} {'req/s':>9} {'cores':>6} {'cpu us/req':>10} {'p99 ms':>7}  shares")
    for r in rows:
        shares = " ".join(f"{s:.2f}" for s in r.get("shares", []))
        log(
            f"{r['what']:<14} {r['rps']:>9.0f} {r['cores_used']:>6.2f} {r['cpu_us_per_req']:>10.1f} "
            f"{r['p99_ms']:>7.2f}  {shares}"
        )
    by = {r["what"]: r for r in rows}
    summary = {}
    for name in ("tollgate", "nginx"):
        one, many = by[f"{name} x1"], by[f"{name} x{n}"]
        projected = n * one["cpu_us_per_req"] / many["cpu_us_per_req"]
        summary[name] = round(projected, 2)
        log(
            f"{name}: projected throughput on {n} dedicated cores = {projected:.2f} x one process "
            f"(CPU/request {one['cpu_us_per_req']:.1f} -> {many['cpu_us_per_req']:.1f} us)"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"processes": n, "rows": rows, "projected": summary}, indent=2))
    log(f"wrote {out.relative_to(RESULTS.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
