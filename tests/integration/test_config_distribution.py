"""Config distribution: push to many workers, survive control-plane outages, node status, standalone mode."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import httpx

from tests.integration.harness import Cluster, ControlPlane, create, free_port, free_ports, wait_until


def _demo(cp: ControlPlane, port: int, name: str = "svc") -> dict[str, str]:
    with cp.admin() as admin:
        up = create(admin, "/v1/upstreams", {"name": name})
        create(admin, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": port})
        api = create(admin, "/v1/apis", {"name": name, "base_path": f"/{name}"})
        create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
    return {"upstream": up["id"], "api": api["id"]}


def test_change_reaches_two_workers_quickly(cluster: Cluster) -> None:
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    ids = _demo(cp, backend.port)
    w1, w2 = cluster.worker(cp, name="w1"), cluster.worker(cp, name="w2")
    for w in (w1, w2):
        w.wait_revision(cp.revision())

    with cp.admin() as admin:
        start = time.monotonic()
        create(admin, f"/v1/apis/{ids['api']}/routes", {"path": "/fresh/{id}", "upstream_id": ids["upstream"]})
    for w in (w1, w2):
        wait_until(
            lambda w=w: httpx.get(f"{w.url}/svc/fresh/1").json()["path"] == "/fresh/1", timeout=5, what="new route"
        )
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, f"propagation took {elapsed:.2f}s"  # generous bound; real figures in bench/propagation.py

    nodes = wait_until(
        lambda: (
            (items := cp.get("/v1/nodes").json()["items"])
            and {n["id"] for n in items if n["in_sync"]} >= {"w1", "w2"}
            and items
        ),
        timeout=15,
        what="both nodes reported in sync",
    )
    by_id = {n["id"]: n for n in nodes}
    assert by_id["w1"]["revision"] == cp.revision() and by_id["w1"]["last_error"] is None
    assert by_id["w2"]["stale"] is False and by_id["w2"]["version"]


def test_outage_cache_restart_and_convergence(cluster: Cluster) -> None:
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    ids = _demo(cp, backend.port)
    cache = cluster.tmp / "w-cache"
    worker = cluster.worker(cp, name="w", cache_dir=cache)
    worker.wait_revision(cp.revision())
    served_revision = worker.status()["revision"]

    cp.proc.kill()
    # Control plane gone: traffic keeps flowing on the last-known-good config.
    for _ in range(20):
        assert httpx.get(f"{worker.url}/svc/x").status_code == 200
    wait_until(lambda: worker.status()["control_plane_connected"] is False, timeout=10, what="worker notices outage")

    # Restart the worker while the control plane is still down: it serves from its cache file.
    port = worker.port
    worker.proc.stop()
    worker = cluster.worker(cp, name="w", cache_dir=cache, port=port)
    assert worker.status()["revision"] == served_revision
    assert httpx.get(f"{worker.url}/svc/again").json()["path"] == "/again"
    assert "serving cached config" in worker.proc.log()

    # Control plane back (same database): a change made now reaches the worker.
    cluster.restart_control_plane(cp)
    with cp.admin() as admin:
        create(admin, f"/v1/apis/{ids['api']}/routes", {"path": "/after/outage", "upstream_id": ids["upstream"]})
    worker.wait_revision(cp.revision(), timeout=15)
    assert httpx.get(f"{worker.url}/svc/after/outage").json()["path"] == "/after/outage"


async def _load(url: str, stop: threading.Event, results: dict[str, int]) -> None:
    async with httpx.AsyncClient(timeout=5.0, limits=httpx.Limits(max_connections=8)) as client:

        async def one_client() -> None:
            while not stop.is_set():
                try:
                    r = await client.get(url)
                    key = "ok" if r.status_code == 200 else f"status {r.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                results[key] = results.get(key, 0) + 1

        await asyncio.gather(*(one_client() for _ in range(8)))


def test_twenty_changes_under_load_fail_no_request(cluster: Cluster) -> None:
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    ids = _demo(cp, backend.port)
    worker = cluster.worker(cp)
    worker.wait_revision(cp.revision())

    stop = threading.Event()
    results: dict[str, int] = {}
    loader = threading.Thread(target=lambda: asyncio.run(_load(f"{worker.url}/svc/load", stop, results)))
    loader.start()
    try:
        with cp.admin() as admin:
            for i in range(20):
                # Changes that rebuild the router and the upstream (new target = new balancer) each time.
                create(admin, f"/v1/apis/{ids['api']}/routes", {"path": f"/r{i}", "upstream_id": ids["upstream"]})
                if i % 5 == 0:
                    admin.patch(f"/v1/upstreams/{ids['upstream']}", json={"read_timeout": 30 + i}).raise_for_status()
        worker.wait_revision(cp.revision())
    finally:
        stop.set()
        loader.join(timeout=30)
    assert results.get("ok", 0) > 30, results  # some real load crossed the swaps (machine-dependent volume)
    assert set(results) == {"ok"}, results


def test_worker_without_cluster_token_gets_nothing(cluster: Cluster) -> None:
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    _demo(cp, backend.port)
    intruder = cluster.worker(cp, name="intruder", cluster_token="wrong-token")
    wait_until(lambda: "401" in (intruder.status()["last_error"] or ""), timeout=10, what="401 reported")
    assert intruder.status()["revision"] is None
    r = httpx.get(f"{intruder.url}/svc/x")
    assert r.status_code == 503
    assert httpx.get(f"{cp.url}/cluster/v1/snapshot", params={"wait": 0}).status_code == 401
    assert "intruder" not in {n["id"] for n in cp.get("/v1/nodes").json()["items"]}


def test_corrupt_cache_is_ignored_with_a_clear_log(cluster: Cluster) -> None:
    cache = cluster.tmp / "cache"
    port = free_port()
    cache.mkdir()
    (cache / f"snapshot-{port}.json").write_text('{"schema_version": "1.0", "revision": 3, "upstreams": [')
    # Control plane address with nothing listening: the worker must start, log, and answer 503.
    dead = ControlPlane(f"http://127.0.0.1:{free_port()}", "t", None, {})  # type: ignore[arg-type]
    worker = cluster.worker(dead, name="w", cache_dir=cache, port=port)
    assert worker.status()["revision"] is None
    assert httpx.get(f"{worker.url}/anything").status_code == 503
    wait_until(lambda: "is corrupt" in worker.proc.log(), timeout=5, what="corrupt-cache log line")


def test_deeply_nested_cache_does_not_stop_the_worker(cluster: Cluster) -> None:
    # `[` x 200,000 used to end in RecursionError out of read_cache, and the worker never started.
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    _demo(cp, backend.port)
    cache = cluster.tmp / "deep-cache"
    port = free_port()
    cache.mkdir()
    (cache / f"snapshot-{port}.json").write_bytes(b"[" * 200_000)
    worker = cluster.worker(cp, name="deep", cache_dir=cache, port=port)  # waits for /status
    assert "is corrupt (SnapshotError" in worker.proc.log()
    worker.wait_revision(cp.revision())
    assert httpx.get(f"{worker.url}/svc/after").json()["path"] == "/after"

    # ... and the good snapshot replaced the corrupt file as the new last-known-good
    def cached_revision() -> int | None:
        try:
            return int(json.loads((cache / f"snapshot-{port}.json").read_bytes())["revision"])
        except (ValueError, RecursionError):
            return None  # still the corrupt file: the cache is written just after the swap

    wait_until(lambda: cached_revision() == cp.revision(), what="the cache file rewritten")


def test_standalone_worker_from_exported_snapshot(cluster: Cluster) -> None:
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    _demo(cp, backend.port)
    out = cluster.tmp / "snap.json"
    subprocess.run(
        [sys.executable, "-m", "tollgate", "snapshot", "export", "-o", str(out)],
        # through the admin API (no database URL needed; a wrong one no longer matters)
        env={**os.environ, "TOLLGATE_ADMIN_URL": cp.url, "TOLLGATE_ADMIN_TOKEN": cp.admin_token},
        check=True,
        capture_output=True,
        timeout=60,
    )
    snap = json.loads(out.read_text())
    assert snap["revision"] == cp.revision() and len(snap["hash"]) == 64
    cp.proc.stop()
    worker = cluster.worker(None, name="solo", snapshot=out)
    assert worker.status()["revision"] == snap["revision"]
    assert httpx.get(f"{worker.url}/svc/solo").json()["path"] == "/solo"


def test_processes_share_the_port_and_each_syncs(cluster: Cluster) -> None:
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    _demo(cp, backend.port)
    port, status_port = free_port(), free_ports(2)  # child i's status listener is on status_port + i
    proc = cluster.spawn(
        "multi",
        [sys.executable, "-m", "tollgate", "worker", "--control-plane", cp.url, "--port", str(port)]
        + ["--status-port", str(status_port), "--processes", "2", "--node-id", "multi"]
        + ["--cache-dir", str(cluster.tmp / "multi-cache")],
        {"TOLLGATE_CLUSTER_TOKEN": cp.cluster_token},
    )
    revision = cp.revision()

    def synced(i: int) -> bool:
        if not proc.alive():
            raise RuntimeError(f"the supervisor exited:\n{proc.log()}")
        return bool(httpx.get(f"http://127.0.0.1:{status_port + i}/status").json()["revision"] == revision)

    for i in range(2):
        try:
            wait_until(lambda i=i: synced(i), timeout=20, what=f"process {i} synced")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- log ---\n{proc.log()}") from None
    pids = {httpx.get(f"http://127.0.0.1:{status_port + i}/status").json()["pid"] for i in range(2)}
    assert len(pids) == 2
    for _ in range(10):
        assert httpx.get(f"http://127.0.0.1:{port}/svc/x").status_code == 200
    nodes = wait_until(
        lambda: {n["id"] for n in cp.get("/v1/nodes").json()["items"]} >= {"multi-0", "multi-1"},
        timeout=15,
        what="both processes registered",
    )
    assert nodes
    assert proc.stop() == 0


def test_newer_major_schema_is_refused_and_reported(cluster: Cluster) -> None:
    """A fake control plane serves a 2.0 snapshot: the worker keeps its config and says why."""
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    _demo(cp, backend.port)
    worker = cluster.worker(cp, name="w")
    worker.wait_revision(cp.revision())
    good = worker.status()["revision"]

    auth = {"authorization": f"Bearer {cp.cluster_token}"}
    future = json.loads(httpx.get(f"{cp.url}/cluster/v1/snapshot", headers=auth, params={"wait": 0}).content)
    future["schema_version"] = "2.0"
    future["hash"] = ""
    body = json.dumps(future).encode()
    fake_port = free_port()
    fake = cluster.spawn(
        "fake-cp",
        [sys.executable, "-c", _FAKE_CP, str(fake_port)],
        {"SNAPSHOT_BODY": body.decode()},
    )
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{fake_port}/ready").status_code == 200, timeout=10, what="fake cp")
    # Restart the worker (same port, same cache) against the fake control plane.
    worker.proc.stop()
    w2 = cluster.worker(
        ControlPlane(f"http://127.0.0.1:{fake_port}", "t", fake, {}),
        name="w2",
        cache_dir=cluster.tmp / "w-cache",
        port=worker.port,
    )
    wait_until(
        lambda: "newer than this worker understands" in (w2.status()["last_error"] or ""),
        timeout=10,
        what=f"{w2.status()} {w2.proc.log()}",
    )
    assert w2.status()["revision"] == good
    assert httpx.get(f"{w2.url}/svc/x").status_code == 200


_FAKE_CP = r"""
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
body = os.environ["SNAPSHOT_BODY"].encode()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", str(len(body) if self.path.startswith("/cluster") else 0))
        self.end_headers()
        if self.path.startswith("/cluster"):
            self.wfile.write(body)
    def do_POST(self):
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
