"""Tollgate vs nginx, in one run so the ratios are fair (``make bench``).

Layout (2-core machine): the proxy under test (Tollgate worker, or nginx as reverse proxy) is
pinned to core 0; wrk and the nginx backend (one worker process, fixed ~100-byte answer,
keep-alive) to core 1.  Every case gets a warm-up, then a measured wrk run; latency percentiles
come from a wrk Lua ``done()`` hook.  The table shows each case's ratio to (b) nginx-as-proxy
and to (a) wrk straight to the backend.  Absolute numbers move with whatever else the machine
runs: compare ratios within one run.  ``--repeat N`` goes N rounds over all the cases (each round
restarts each proxy) and shows medians: a slow spell of a shared VM then hits every case alike.

Cases are declarative (:data:`CASES`): a snapshot builder, extra worker args, wrk headers,
connections, and a ``requires`` probe.  A case whose feature is not in the code yet prints
"skipped: feature not built"; adding it later means writing its builder.

    .venv/bin/python bench/proxy.py [--duration 8] [--warmup 2] [--connections 50] [--repeat 1] [--cases a,b,c]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    LOAD_CORE,
    PROXY_CORE,
    PYTHON,
    RESULTS,
    Procs,
    WrkResult,
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
    start_redis_cluster,
    wait_port,
)

from data_plane import snapshot as snap
from data_plane.settings import WorkerSettings
from data_plane.snapshot import Plan, PlanApi, PlanQuota, PlanThrottle

# ------------------------------------------------------------------------------ feature probes
# Each returns None when the feature is in the code, else why the case is skipped.  They look at
# the snapshot contract and the worker settings (the schema is the capability flag), so they
# turn true by themselves when the feature branches merge.


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def needs_nothing() -> str | None:
    return None


def needs_auth() -> str | None:
    present = _fields(snap.Snapshot) & {"customers", "keys", "api_keys", "consumers"}
    return None if present and _has_module("data_plane.auth") else "feature not built (API-key auth)"


def needs_plans() -> str | None:
    present = _fields(snap.Snapshot) & {"plans", "usage_plans"}
    return None if present and _has_module("data_plane.limits.policy") else "feature not built (usage plans)"


def needs_redis() -> str | None:
    if needs_plans():
        return needs_plans()
    return None if any("redis" in f for f in _fields(WorkerSettings)) else "feature not built (Redis limit store)"


def needs_tls() -> str | None:
    return None if "tls_port" in _fields(WorkerSettings) else "feature not built (worker TLS listener)"


def needs_policies() -> str | None:
    return None if "policies" in _fields(snap.Api) else "feature not built (traffic policies)"


def needs_observability() -> str | None:
    f = _fields(WorkerSettings)
    return None if any("access_log" in x for x in f) else "feature not built (metrics + access log)"


def needs_tracing() -> str | None:
    built = "otlp_endpoint" in _fields(WorkerSettings) and _has_module("data_plane.observe.otlp")
    return None if built else "feature not built (tracing policy)"


# ------------------------------------------------------------------------------ snapshots


MACHINE_REDIS_URL = "redis://127.0.0.1:6379/15"


@dataclass(frozen=True)
class Env:
    """What a case builder can use: the run's ports and scratch directory."""

    backend_ports: tuple[int, int]
    workdir: Path
    status_ports: dict[str, int] = dataclasses.field(default_factory=dict)  # case key -> worker status port
    redis_url: str = MACHINE_REDIS_URL  # the bench's own redis-server on the load core, when it could start one
    redis_cluster_url: str = ""  # case fc: a 3-master Redis Cluster of the bench's own, on the load core
    # the certificate both TLS-terminating proxies serve (ECDSA P-256, self-signed for localhost)
    tls_cert: Path | None = None
    tls_key: Path | None = None


def routing_snapshot(env: Env) -> snap.Snapshot:
    """One API on any host, a greedy route, round-robin over the two backend server blocks."""
    targets = tuple(snap.Target(id=f"t{i}", host="127.0.0.1", port=p) for i, p in enumerate(env.backend_ports))
    upstream = snap.Upstream(id="u1", name="backends", targets=targets, connect_timeout=2.0, read_timeout=10.0)
    route = snap.Route(id="r1", path="/{proxy+}", upstream_id="u1")
    root = snap.Route(id="r0", path="/", upstream_id="u1")
    api = snap.Api(id="a1", name="bench", base_path="/", routes=(root, route))
    return snap.Snapshot(revision=1, upstreams=(upstream,), apis=(api,)).sealed()


BENCH_KEY = "tg_benchkey_0123456789abcdefghijklmnopqrstuvwxyz"


def auth_snapshot(env: Env) -> snap.Snapshot:
    """(c) + API-key auth: one customer granted the API, one key (the snapshot carries its hash)."""
    base = routing_snapshot(env)
    api = dataclasses.replace(base.apis[0], auth="api_key")
    customer = snap.Customer(id="c1", name="bench", api_ids=(api.id,))
    key = snap.ApiKey(
        id="k1", customer_id="c1", key_hash=hashlib.sha256(BENCH_KEY.encode()).hexdigest(), prefix=BENCH_KEY[:11]
    )
    return dataclasses.replace(base, apis=(api,), customers=(customer,), keys=(key,), hash="").sealed()


def plan_snapshot(env: Env) -> snap.Snapshot:
    """(d) + a usage plan generous enough never to refuse during a run: every request goes through
    the limiter (throttle and quota checked, RateLimit-* headers built, usage metered)."""
    base = auth_snapshot(env)
    plan = Plan(
        id="p1",
        name="bench",
        throttle=PlanThrottle(rate=1e6, burst=1_000_000),
        quota=PlanQuota(limit=1_000_000_000, period="DAY"),
        apis=(PlanApi(api_id=base.apis[0].id),),
    )
    customer = dataclasses.replace(base.customers[0], plan_id=plan.id)
    return dataclasses.replace(base, plans=(plan,), customers=(customer,), hash="").sealed()


def with_policies(policies: dict[str, Any]) -> Callable[[Env], snap.Snapshot]:
    """(e) with these traffic policies on the API (cases p*: each policy's cost next to e)."""

    def build(env: Env) -> snap.Snapshot:
        base = plan_snapshot(env)
        api = dataclasses.replace(base.apis[0], policies=policies)
        return dataclasses.replace(base, apis=(api,), hash="").sealed()

    return build


BENCH_ORIGIN = "https://app.example.com"
CORS_POLICY = {"cors": {"allow_origins": [BENCH_ORIGIN, "https://*.example.net"], "expose_headers": ["X-Total"]}}
IP_POLICY = {"ip_rules": {"allow": ["10.0.0.0/8", "127.0.0.0/8", "2001:db8::/32"], "deny": ["127.0.0.2/32"]}}
TRANSFORM_POLICY = {
    "request_transform": {
        "set_headers": {"X-Customer": "$customer_id"},
        "remove_headers": ["Cookie"],
        "path_prefix": {"from": "/bench", "to": "/bench"},
    },
    "response_transform": {"set_headers": {"X-Served-By": "tollgate"}, "remove_headers": ["Server"]},
}
# One customer, one path: after the first request every one is a hit (auth and plan limits still run).
CACHE_POLICY = {"cache": {"ttl": 3600}}


def plugin_snapshot(env: Env) -> snap.Snapshot:
    """(e) + the ab-split plugin on the API (tollgate/plugins/builtin/ab_split.py): a request view
    built, a BLAKE2b hash of the sticky header, one upstream header line added per request."""
    base = plan_snapshot(env)
    split = {"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}], "sticky_header": "x-user-id"}
    api = dataclasses.replace(base.apis[0], policies={"plugins": [{"name": "ab-split", "config": split}]})
    return dataclasses.replace(base, apis=(api,), hash="").sealed()


def needs_plugins() -> str | None:
    if needs_plans():
        return needs_plans()
    return None if _has_module("data_plane.policies.plugins") else "feature not built (Python plugins)"


# (e) + tracing at 1 %: every request reads or starts a W3C trace and sends its traceparent upstream;
# one in a hundred is recorded and exported (OTLP/HTTP to the nginx backend on the load core, whose
# ``location /`` answers the POSTs 200: the "{otlp}" worker argument)
TRACING_POLICY = {"tracing": {"sample_ratio": 0.01}}


# One prefix per bench run: counters of earlier runs (or of tests sharing the server) never mix in.
REDIS_PREFIX = f"tgbench:{os.getpid()}:{int(time.time())}:"
NO_ACCESS_LOG = ("--access-log", "off")


# ------------------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    kind: str  # "backend" (wrk -> backend) | "nginx" (nginx proxy) | "tollgate"
    snapshot: Callable[[Env], snap.Snapshot] | None = None
    worker_args: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()  # extra request headers, "Name: value"
    connections: int | None = None  # None: --connections
    path: str = "/bench/items/1"
    requires: Callable[[], str | None] = needs_nothing
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the worker
    scrape_metrics: bool = False  # GET the status port's /metrics once, between warm-up and measurement
    tls: bool = False  # the client speaks HTTPS to the proxy (same certificate for nginx and Tollgate)


KEY = (f"x-api-key: {BENCH_KEY}",)

# Cases c-f and h-i run with --access-log off (the default is stdout): they measure the request
# path, not a log pipe.  (g) turns everything on: access log to a file, metrics scraped.
CASES: tuple[Case, ...] = (
    Case("a", "wrk -> backend (no proxy)", "backend"),
    Case("b", "nginx reverse proxy, upstream keepalive", "nginx"),
    Case("c", "tollgate: routing + round-robin [log off]", "tollgate", routing_snapshot, NO_ACCESS_LOG),
    Case("d", "tollgate: + API-key auth [log off]", "tollgate", auth_snapshot, NO_ACCESS_LOG, KEY, requires=needs_auth),
    Case(
        "e",
        "tollgate: + usage plan, memory [log off]",
        "tollgate",
        plan_snapshot,
        NO_ACCESS_LOG,
        KEY,
        requires=needs_plans,
    ),
    Case(
        "f",
        "tollgate: + usage plan, Redis [log off]",
        "tollgate",
        plan_snapshot,
        (*NO_ACCESS_LOG, "--redis-url", "{redis}"),
        KEY,
        requires=needs_redis,
        env=(("TOLLGATE_REDIS_PREFIX", REDIS_PREFIX),),
    ),
    # (f) on a 3-master Redis Cluster (the bench's own, on the load core with wrk and the backend):
    # the same customer's checks go to its slot's node; the goal is >= 0.85 x (f) (docs/redis.md)
    Case(
        "fc",
        "tollgate: + usage plan, Redis Cluster [log off]",
        "tollgate",
        plan_snapshot,
        (*NO_ACCESS_LOG, "--redis-url", "{redis_cluster}"),
        KEY,
        requires=needs_redis,
        env=(("TOLLGATE_REDIS_PREFIX", REDIS_PREFIX),),
    ),
    Case(
        "g",
        "tollgate: (e) + access log file + metrics",
        "tollgate",
        plan_snapshot,
        ("--access-log", "{workdir}/access.log"),
        KEY,
        requires=needs_observability,
        scrape_metrics=True,
    ),
    # (e) with two worker processes sharing the port (SO_REUSEPORT).  On this 2-core machine both are
    # pinned to the proxy core like every proxy case (core 1 belongs to wrk and the backend), so
    # this measures the cost of the split, not a second core's gain.
    Case(
        "e2",
        "tollgate: (e), --processes 2 on one core [log off]",
        "tollgate",
        plan_snapshot,
        (*NO_ACCESS_LOG, "--processes", "2"),
        KEY,
        requires=needs_plans,
    ),
    # (h) and (i) are defined on case (e).
    Case(
        "h",
        "tollgate: (e), Connection: close [log off]",
        "tollgate",
        plan_snapshot,
        NO_ACCESS_LOG,
        (*KEY, "Connection: close"),
        requires=needs_plans,
    ),
    Case(
        "i",
        "tollgate: (e), 1 connection [log off]",
        "tollgate",
        plan_snapshot,
        NO_ACCESS_LOG,
        KEY,
        1,
        requires=needs_plans,
    ),
    Case("i0", "wrk -> backend, 1 connection (latency base)", "backend", connections=1),
    # nginx under the same conditions as (h) and (i), so those two have a fair reference too.
    Case("hn", "nginx proxy, Connection: close", "nginx", headers=("Connection: close",)),
    Case("in", "nginx proxy, 1 connection", "nginx", connections=1),
    # Traffic policies (issue 16), each on (e): what a route using it pays next to e.
    Case(
        "pc",
        "tollgate: (e) + CORS, Origin sent [log off]",
        "tollgate",
        with_policies(CORS_POLICY),
        NO_ACCESS_LOG,
        (*KEY, f"Origin: {BENCH_ORIGIN}"),
        requires=needs_policies,
    ),
    Case(
        "pi",
        "tollgate: (e) + IP allow/deny rules [log off]",
        "tollgate",
        with_policies(IP_POLICY),
        NO_ACCESS_LOG,
        KEY,
        requires=needs_policies,
    ),
    Case(
        "px",
        "tollgate: (e) + request/response transforms [log off]",
        "tollgate",
        with_policies(TRANSFORM_POLICY),
        NO_ACCESS_LOG,
        KEY,
        requires=needs_policies,
    ),
    Case(
        "pk",
        "tollgate: (e) + response cache, all hits [log off]",
        "tollgate",
        with_policies(CACHE_POLICY),
        NO_ACCESS_LOG,
        KEY,
        requires=needs_policies,
    ),
    # the issue asks: at 1 % sampling, within 3 % of e's throughput
    Case(
        "pt",
        "tollgate: (e) + tracing 1 %, OTLP export [log off]",
        "tollgate",
        with_policies(TRACING_POLICY),
        (*NO_ACCESS_LOG, "--otlp-endpoint", "{otlp}"),
        KEY,
        requires=needs_tracing,
    ),
    # TLS termination (issue 15): the same certificate (ECDSA P-256) and the ciphers each side negotiates
    # by default with wrk (TLS 1.3, AES-256-GCM); compare t with tn and th with thn.
    Case("tn", "nginx proxy over HTTPS, keep-alive", "nginx", tls=True),
    Case(
        "t",
        "tollgate: (e) over HTTPS, keep-alive [log off]",
        "tollgate",
        plan_snapshot,
        NO_ACCESS_LOG,
        KEY,
        requires=needs_tls,
        tls=True,
    ),
    Case("thn", "nginx proxy over HTTPS, Connection: close", "nginx", headers=("Connection: close",), tls=True),
    Case(
        "th",
        "tollgate: (e) over HTTPS, Connection: close [log off]",
        "tollgate",
        plan_snapshot,
        NO_ACCESS_LOG,
        (*KEY, "Connection: close"),
        requires=needs_tls,
        tls=True,
    ),
    # issue 16: a Python plugin on the route, next to (e)
    Case(
        "pl",
        "tollgate: (e) + ab-split plugin [log off]",
        "tollgate",
        plugin_snapshot,
        NO_ACCESS_LOG,
        (*KEY, "x-user-id: bench-user-7"),
        requires=needs_plugins,
    ),
)


# ------------------------------------------------------------------------------ running


def start_redis(procs: Procs) -> str:
    """A redis-server of the bench's own, pinned to the load core like the backend it stands beside:
    an unpinned server (the machine's) would take its CPU from whichever core is busy, the proxy's
    included.  Falls back to the machine's Redis when redis-server is not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        log(f"redis-server not found: case f uses the machine's Redis ({MACHINE_REDIS_URL}), unpinned")
        return MACHINE_REDIS_URL
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = procs.start("redis", argv, core=LOAD_CORE)
    wait_port(port, proc, "redis-server")
    log(f"redis-server of the bench on 127.0.0.1:{port} -> core {LOAD_CORE}")
    return f"redis://127.0.0.1:{port}/0"


def start_worker(procs: Procs, env: Env, case: Case) -> tuple[Any, int, int]:
    assert case.snapshot is not None
    snapshot_file = env.workdir / f"snapshot-{case.key}.json"
    snapshot_file.write_bytes(case.snapshot(env).to_json())
    port = free_port()
    args = list(case.worker_args)
    children = int(args[args.index("--processes") + 1]) if "--processes" in args else 1
    status_port = env.status_ports[case.key] = free_ports(children)  # child i: status_port + i
    argv = [PYTHON, "-m", "tollgate", "worker", "--snapshot", str(snapshot_file), "--port", str(port)]
    argv += ["--status-port", str(status_port), "--cache-dir", str(env.workdir / "cache"), "--log-level", "warning"]
    otlp = f"http://127.0.0.1:{env.backend_ports[0]}/v1/traces"  # the nginx backend answers the POSTs 200
    argv += [
        a.replace("{workdir}", str(env.workdir))
        .replace("{redis}", env.redis_url)
        .replace("{redis_cluster}", env.redis_cluster_url)
        .replace("{otlp}", otlp)
        for a in case.worker_args
    ]
    tls_port = 0
    if case.tls:
        tls_port = free_port()
        argv += ["--tls-port", str(tls_port), "--tls-cert", str(env.tls_cert), "--tls-key", str(env.tls_key)]
    proc = procs.start(f"worker-{case.key}", argv, core=PROXY_CORE, env=dict(case.env))
    try:
        # Ready = every child process answers on its status port, not just the first on the shared port.
        for i in range(children):
            wait_port(status_port + i, proc, f"tollgate worker (status port {status_port + i})")
        wait_port(port, proc, "tollgate worker")
        if tls_port:
            wait_port(tls_port, proc, "tollgate worker (TLS)")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{procs.log_tail(f'worker-{case.key}')}") from None
    return proc, port, tls_port


@dataclass
class Round:
    """One measured wrk run of a case, and the proxy's CPU time during it."""

    run: WrkResult
    cpu_user: float
    cpu_sys: float


def run_case(case: Case, args: argparse.Namespace, procs: Procs, env: Env, tools: dict[str, str]) -> Round:
    """Start the case's proxy, warm up, measure once, stop it."""
    proc = None
    tls_port = 0
    if case.kind == "backend":
        port = env.backend_ports[0]
    elif case.kind == "nginx":
        port = free_port()
        tls = None
        if case.tls:
            assert env.tls_cert is not None and env.tls_key is not None
            tls_port = free_port()
            tls = (tls_port, env.tls_cert, env.tls_key)
        conf = proxy_conf(env.workdir, port, env.backend_ports, tls=tls)
        proc = start_nginx(procs, tools["nginx"], "proxy", conf, tls_port or port, core=PROXY_CORE)
    else:
        proc, port, tls_port = start_worker(procs, env, case)
    try:
        status, body = http_get(tls_port or port, case.path, headers=case.headers, tls=case.tls)
        if status != 200:
            raise RuntimeError(f"case {case.key}: sanity request answered {status}: {body[:200]!r}")
        url = f"https://localhost:{tls_port}{case.path}" if case.tls else f"http://127.0.0.1:{port}{case.path}"
        conns = case.connections or args.connections
        if args.warmup > 0:
            run_wrk(tools["wrk"], env.workdir, url, seconds=args.warmup, connections=conns, headers=case.headers)
        if case.scrape_metrics:
            status, body = http_get(env.status_ports[case.key], "/metrics")
            if status != 200 or b"tollgate_" not in body:
                raise RuntimeError(f"case {case.key}: /metrics answered {status}: {body[:200]!r}")
        cpu0 = cpu_times(proc.pid) if proc is not None else (0.0, 0.0)
        run = run_wrk(tools["wrk"], env.workdir, url, seconds=args.duration, connections=conns, headers=case.headers)
        cpu1 = cpu_times(proc.pid) if proc is not None else (0.0, 0.0)
    finally:
        if proc is not None:
            procs.stop(proc)
    if run.errors:
        log(f"  warning: case {case.key} had errors: {run.errors}")
    return Round(run, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])


def summarise(case: Case, rounds: list[Round], args: argparse.Namespace, measures_cpu: bool) -> dict[str, Any]:
    """With several rounds: the run with the median req/s, and the median p50/p99 over the runs (a
    stall of the VM in one run moves one sample, not the figure)."""
    runs = [r.run for r in rounds]
    res = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    conns = case.connections or args.connections
    out = {"case": case.key, "title": case.title, "connections": conns, **res.as_dict()}
    if len(runs) > 1:
        out["p50_ms"] = statistics.median(r.p50_ms for r in runs)
        out["p99_ms"] = statistics.median(r.p99_ms for r in runs)
        out["runs"] = [r.as_dict() for r in runs]
    requests = sum(r.requests for r in runs)
    # The proxy's own CPU per request: robust to other load on the machine (unlike req/s).
    out["proxy_cpu_us_per_req"] = None
    out["proxy_sys_share"] = None
    user, system = sum(r.cpu_user for r in rounds), sum(r.cpu_sys for r in rounds)
    if measures_cpu and requests:
        out["proxy_cpu_us_per_req"] = round((user + system) / requests * 1e6, 1)
        out["proxy_sys_share"] = round(system / (user + system), 2) if user + system > 0 else None
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    by = {r["case"]: r for r in rows if "rps" in r}
    base_b, base_a = by.get("b", {}).get("rps"), by.get("a", {}).get("rps")
    log("")
    log(
        f"{'case':<4} {'what':<48} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs b':>6} {'vs a':>6} "
        f"{'cpu us/req':>10} {'sys':>4}"
    )
    for r in rows:
        if "skipped" in r:
            log(f"{r['case']:<4} {r['title']:<48} skipped: {r['skipped']}")
            continue
        vb = f"{r['rps'] / base_b:.2f}" if base_b else "-"
        va = f"{r['rps'] / base_a:.2f}" if base_a else "-"
        log(
            f"{r['case']:<4} {r['title']:<48} {r['connections']:>5} {r['rps']:>9.0f} "
            f"{r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {vb:>6} {va:>6} {r['proxy_cpu_us_per_req'] or '-':>10} "
            f"{r.get('proxy_sys_share') or '-':>4}"
        )
    log("(ratios: within this run only; the machine is shared, absolute req/s are noisy;")
    log(" cpu us/req = the proxy process's user+system CPU per request, steadier than req/s under contention;")
    log(" sys = the kernel's share of that CPU: socket reads and writes)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per case (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per case (default 2; 0 = none)")
    p.add_argument("--connections", type=int, default=50, help="wrk keep-alive connections (default 50)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over all cases, one measured run each; the table shows medians (default 1)",
    )
    p.add_argument("--cases", default=",".join(c.key for c in CASES), help="comma-separated case keys")
    args = p.parse_args(argv)
    wanted = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = set(wanted) - {c.key for c in CASES}
    if unknown:
        p.error(f"unknown case(s): {', '.join(sorted(unknown))}")

    install_signal_handlers()
    tools = ensure_tools()
    log(f"pinning: tollgate worker and nginx proxy -> core {PROXY_CORE}; wrk and nginx backend -> core {LOAD_CORE}")
    log(
        f"{args.warmup:g}s warm-up + {args.duration:g}s measured per case and round, {args.repeat} round(s), "
        f"{args.connections} connections" + (" (medians)" if args.repeat > 1 else "")
    )
    rounds: dict[str, list[Round]] = {}
    skipped: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            ports = (free_port(), free_port())
            env = Env(backend_ports=ports, workdir=Path(tmp))
            start_nginx(procs, tools["nginx"], "backend", backend_conf(env.workdir, ports), ports[1], core=LOAD_CORE)
            if any(c.key in wanted and "{redis}" in c.worker_args for c in CASES):
                env = dataclasses.replace(env, redis_url=start_redis(procs))
            if any(c.key in wanted and "{redis_cluster}" in c.worker_args for c in CASES):
                env = dataclasses.replace(env, redis_cluster_url=start_redis_cluster(procs, core=LOAD_CORE))
            if any(c.key in wanted and c.tls for c in CASES):
                from tollgate.selfsigned import ensure_localhost_certificate

                cert, key = ensure_localhost_certificate(env.workdir / "tls")
                env = dataclasses.replace(env, tls_cert=cert, tls_key=key)
            cases: list[Case] = []
            for case in CASES:
                if case.key not in wanted:
                    continue
                why = case.requires()
                if why is not None:
                    skipped[case.key] = {"case": case.key, "title": case.title, "skipped": why}
                    log(f"[{case.key}] {case.title}: skipped: {why}")
                    continue
                cases.append(case)
            # Rounds over all cases rather than a case's runs back to back: a slow spell of the VM
            # then lands on every case alike instead of on the one that happened to be running.
            for n in range(args.repeat):
                for case in cases:
                    which = f" (round {n + 1}/{args.repeat})" if args.repeat > 1 else ""
                    log(f"[{case.key}] {case.title}{which} ...")
                    rounds.setdefault(case.key, []).append(run_case(case, args, procs, env, tools))
                    r = rounds[case.key][-1].run
                    log(f"  {r.rps:.0f} req/s, p50 {r.p50_ms:.3f} ms, p99 {r.p99_ms:.3f} ms")
        except KeyboardInterrupt:
            log("interrupted; stopping what the bench started")
            return 130
        finally:
            procs.stop_all()
    rows = [
        skipped[c.key] if c.key in skipped else summarise(c, rounds[c.key], args, c.kind != "backend")
        for c in CASES
        if c.key in skipped or c.key in rounds
    ]
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "duration": args.duration,
        "warmup": args.warmup,
        "connections": args.connections,
        "repeat": args.repeat,
        "pinning": {"proxy": PROXY_CORE, "load_and_backend": LOAD_CORE},
    }
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    log(f"wrote {out.relative_to(RESULTS.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
