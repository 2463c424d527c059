"""The Python cost of one proxied request, without sockets: µs per request on the request path.

Drives a real :class:`ClientConnection` and pooled :class:`UpstreamConnection` objects with the
fake transports of ``tests/fakes.py`` (shared with the unit tests): feed a request, hand the
upstream connection a canned response, repeat.  What is left is exactly the worker's own Python
work (parse callbacks, route, head building, balancing, pooling, timers) — the part an
optimisation in data_plane can change — with no syscalls and no other process in the way, so
before/after comparisons are steady even on a busy machine.

Cases mirror bench/proxy.py: ``c`` routing, ``d`` + API-key auth, ``e`` + usage plan (memory
store; also meters usage into a spool in a temporary directory), ``es`` = (e) on the store shared by
the processes of ``worker --processes N`` (data_plane/limits/shared.py), ``g`` = (e) + access log (to a
temporary file, flushed by the loop as in a worker); ``pc``, ``pi``, ``px``: (e) with the CORS, IP
rules and transform policies of bench/proxy.py's cases of the same names; ``pt``: (e) with its
tracing policy at 1 % (the sampled requests' records go to a sink that keeps the last one: the
export thread's work is not the request path's).

    .venv/bin/python bench/hotpath.py [--requests 200000] [--repeat 5] [--cases c,d,e,g]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from data_plane import snapshot as snap
from data_plane.http.upstream import UpstreamConnection
from data_plane.limits.shared import create_table
from data_plane.observe.accesslog import open_access_log
from data_plane.server import Worker
from data_plane.settings import WorkerSettings
from data_plane.snapshot import Plan, PlanApi, PlanQuota, PlanThrottle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.fakes
from tests.fakes import FakeTransport  # noqa: E402  (shared with the unit tests)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import BENCH_ORIGIN, CORS_POLICY, IP_POLICY, TRACING_POLICY, TRANSFORM_POLICY  # noqa: E402

POLICIES = {"pc": CORS_POLICY, "pi": IP_POLICY, "px": TRANSFORM_POLICY, "pt": TRACING_POLICY}

KEY = "tg_benchkey_0123456789abcdefghijklmnopqrstuvwxyz"
REQUEST = (
    b"GET /bench/items/1?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\n"
    b"Accept: */*\r\nAccept-Encoding: gzip\r\n\r\n"
)
REQUEST_WITH_KEY = REQUEST[:-2] + b"x-api-key: " + KEY.encode() + b"\r\n\r\n"
CASES = ("c", "d", "e", "es", "g", "pc", "pi", "px", "pt")
BODY = b'{"ok":true,"service":"tollgate-bench-backend","note":"fixed body of about one hundred bytes"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 28 Nov 2026 09:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s" % (len(BODY), BODY)
)


def snapshot(case: str) -> snap.Snapshot:
    targets = (snap.Target(id="t0", host="127.0.0.1", port=9001), snap.Target(id="t1", host="127.0.0.1", port=9002))
    upstream = snap.Upstream(id="u1", name="backends", targets=targets)
    routes = (snap.Route(id="r0", path="/", upstream_id="u1"), snap.Route(id="r1", path="/{proxy+}", upstream_id="u1"))
    api = snap.Api(id="a1", name="bench", routes=routes)
    s = snap.Snapshot(revision=1, upstreams=(upstream,), apis=(api,))
    if case == "c":
        return s.sealed()
    api = dataclasses.replace(api, auth="api_key")
    customer = snap.Customer(id="c1", name="bench", api_ids=(api.id,))
    key = snap.ApiKey(id="k1", customer_id="c1", key_hash=hashlib.sha256(KEY.encode()).hexdigest(), prefix=KEY[:11])
    s = dataclasses.replace(s, apis=(api,), customers=(customer,), keys=(key,))
    if case == "d":
        return s.sealed()
    plan = Plan(
        id="p1",
        name="bench",
        throttle=PlanThrottle(rate=1e6, burst=1_000_000),
        quota=PlanQuota(limit=1_000_000_000, period="DAY"),
        apis=(PlanApi(api_id=api.id),),
    )
    s = dataclasses.replace(s, plans=(plan,), customers=(dataclasses.replace(customer, plan_id="p1"),))
    if case in POLICIES:
        s = dataclasses.replace(s, apis=(dataclasses.replace(api, policies=POLICIES[case]),))
    return s.sealed()


class LastRecord:
    """A span sink for ``pt``: what OtlpTracer.add costs the loop (one append), without the thread."""

    def __init__(self) -> None:
        self.last: object = None

    def add(self, record: object) -> None:
        self.last = record


def build_worker(loop: asyncio.AbstractEventLoop, case: str, tmp: Path) -> Worker:
    # access_log "off": the worker opens its log in start(), which this bench does not call (g sets it below)
    shared = None
    if case == "es":  # (e) on the counters table the processes of `worker --processes N` share
        shared = tmp / "limits.shm"
        create_table(shared)
    worker = Worker(WorkerSettings(cache_dir=tmp, access_log="off", shared_limits=shared), loop)
    if case == "g":
        worker.observer.access = open_access_log(str(tmp / "access.log"), loop)
    if case == "pt":
        worker.policy_env.tracer = LastRecord()
    worker.apply(snapshot(case))
    assert worker.config is not None
    for pool in worker.config.pools.values():
        conn = UpstreamConnection(pool)
        conn.connection_made(FakeTransport(keep=False))
        pool.put(conn)
    return worker


def run(n: int, case: str) -> float:
    from data_plane.http.protocol import ClientConnection

    loop = uvloop.new_event_loop()
    tmp = tempfile.TemporaryDirectory(prefix="tollgate-hotpath-")
    request = REQUEST if case == "c" else REQUEST_WITH_KEY
    if case == "pc":
        request = request[:-2] + b"Origin: " + BENCH_ORIGIN.encode() + b"\r\n\r\n"
    worker = build_worker(loop, case, Path(tmp.name))
    try:
        client = ClientConnection(worker)
        client_transport = FakeTransport(keep=False)
        client.connection_made(client_transport)
        feed_client = client.data_received
        tick = loop.run_until_complete
        start = time.process_time()
        for i in range(n):
            feed_client(request)
            conn = client.active.conn  # type: ignore[union-attr]
            conn.data_received(RESPONSE)  # type: ignore[union-attr]
            if i % 256 == 0:
                tick(asyncio.sleep(0))  # let the loop reap cancelled timers, as a running worker does
        elapsed = time.process_time() - start
        assert client.active is None and client_transport.written > n * len(BODY), "responses did not complete"
        assert not client_transport.closed, "the bench connection must stay open"
        if case in ("e", "es", "g") or case in POLICIES:
            assert worker.observer.admitted == n, "the limiter did not admit every request"
        return elapsed / n * 1e6
    finally:
        worker.observer.close()
        worker.metering.spool.close()
        loop.close()
        tmp.cleanup()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = p.parse_args()
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if case not in CASES:
            p.error(f"unknown case {case!r}")
        runs = sorted(run(args.requests, case) for _ in range(args.repeat))
        # CPU time of this process, min over runs: the least disturbed by other processes on the machine.
        median = runs[len(runs) // 2]
        print(
            f"case {case}: python request path: min {runs[0]:.2f} us/req, median {median:.2f} us/req "
            f"({args.requests} x {args.repeat})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
