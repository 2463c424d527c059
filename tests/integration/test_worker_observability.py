"""Worker /metrics and the JSON access log, through real worker processes.

One echo backend, one lab backend (its health probe can be switched to fail), one dead port.  The
metrics worker runs with ``--access-log off``, the log worker writes its access log to a file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from data_plane.snapshot import Api, ApiAuth, ApiKey, Customer, HealthCheck, Route, Snapshot, Target, Upstream
from tests.integration.harness import Cluster, Worker, free_port, wait_until

KEY = "tg_0a1b2c3d_obsobsobsobsobsobsobsobsobsobs"
QUERY_KEY = "tg_9f8e7d6c_querykeyquerykeyquerykeyqu"
ACCESS_FIELDS = {
    "time",
    "request_id",
    "api",
    "route",
    "customer_id",
    "method",
    "path",
    "status",
    "upstream",
    "latency_ms",
    "bytes_in",
    "bytes_out",
    "client_ip",
    "peer_ip",
}


def _snapshot(path: Path, echo_port: int, lab_port: int, dead_port: int) -> Path:
    def key(id_: str, secret: str) -> ApiKey:
        return ApiKey(id=id_, customer_id="cust-1", key_hash=hashlib.sha256(secret.encode()).hexdigest(), prefix=id_)

    def api(name: str, upstream: str, **kw: Any) -> Api:
        route = Route(id=f"r-{name}", path="/{proxy+}", upstream_id=upstream, methods=("GET",))
        return Api(id=f"a-{name}", name=name, base_path=f"/{name}", routes=(route,), **kw)

    check = HealthCheck(path="/health", interval=0.2, timeout=0.5, healthy_threshold=1, unhealthy_threshold=1)
    snap = Snapshot(
        revision=7,
        upstreams=(
            Upstream(id="u-echo", name="echo", targets=(Target(id="t-echo", host="127.0.0.1", port=echo_port),)),
            Upstream(id="u-dead", name="dead", targets=(Target(id="t-dead", host="127.0.0.1", port=dead_port),)),
            Upstream(
                id="u-lab",
                name="lab",
                health_check=check,
                targets=(Target(id="t-lab", host="127.0.0.1", port=lab_port),),
            ),
        ),
        apis=(
            api("shop", "u-echo"),
            api("broken", "u-dead"),
            api("probed", "u-lab"),
            api("secure", "u-echo", auth="api_key"),
            api("secureq", "u-echo", auth="api_key", auth_settings=ApiAuth(key_query="api_key")),
        ),
        customers=(Customer(id="cust-1", name="acme", api_ids=("a-secure", "a-secureq")),),
        keys=(key("tg_0a1b2c3d", KEY), key("tg_9f8e7d6c", QUERY_KEY)),
    )
    path.write_bytes(snap.sealed().to_json())
    return path


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    echo = c.echo("obs")
    lab = c.lab("obs")
    snap = _snapshot(c.tmp / "obs-snapshot.json", echo.port, lab.port, free_port())
    access = c.tmp / "access.log"
    metrics_worker = c.worker(snapshot=snap, name="metrics-worker", extra=("--access-log", "off"))
    log_worker = c.worker(snapshot=snap, name="log-worker", extra=("--access-log", str(access)))
    return {"metrics": metrics_worker, "log": log_worker, "access": access, "echo": echo, "lab": lab, "snapshot": snap}


def _scrape(status_url: str) -> dict[str, list[Any]]:
    text = httpx.get(f"{status_url}/metrics", timeout=5.0).text
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        families.setdefault(family.name, []).extend(family.samples)
    return families


def _value(samples: list[Any], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


def test_metrics_count_requests_by_status_class_and_time_them(gw: dict[str, Any]) -> None:
    w = gw["metrics"]
    with httpx.Client(base_url=w.url, timeout=5.0) as client:
        for i in range(7):
            assert client.get(f"/shop/item/{i}").status_code == 200
        for i in range(3):
            assert client.get(f"/nowhere/{i}").status_code == 404
        for i in range(2):
            assert client.get(f"/broken/{i}").status_code == 502
    m = _scrape(w.status_url)
    requests = m["tollgate_requests"]
    assert _value(requests, "tollgate_requests_total", api="shop", route="GET /shop/{proxy+}", status_class="2xx") == 7
    assert _value(requests, "tollgate_requests_total", api="", route="", status_class="4xx") == 3
    assert _value(requests, "tollgate_requests_total", api="broken", status_class="5xx") == 2
    assert sum(s.value for s in requests if s.name == "tollgate_requests_total") == 12
    hist = m["tollgate_request_duration_seconds"]
    assert _value(hist, "tollgate_request_duration_seconds_count", api="shop") == 7
    assert sum(s.value for s in hist if s.name == "tollgate_request_duration_seconds_count") == 12
    assert _value(hist, "tollgate_request_duration_seconds_bucket", api="shop", le="+Inf") == 7
    assert _value(m["tollgate_config_revision"], "tollgate_config_revision") == 7
    assert (
        _value(m["tollgate_config_applied_timestamp_seconds"], "tollgate_config_applied_timestamp_seconds") or 0
    ) > 0
    reasons = {s.labels["reason"]: s.value for s in m["tollgate_rate_limited"] if s.name.endswith("_total")}
    assert reasons == {"throttle": 0, "quota": 0, "unavailable": 0}
    # --access-log off: no JSON access line in the process output
    assert '"request_id"' not in w.proc.log()


def test_target_health_gauge_follows_active_checks(gw: dict[str, Any]) -> None:
    w, lab = gw["metrics"], gw["lab"]
    target = f"127.0.0.1:{lab.port}"

    def health() -> float | None:
        return _value(
            _scrape(w.status_url)["tollgate_upstream_target_healthy"],
            "tollgate_upstream_target_healthy",
            upstream="lab",
            target=target,
        )

    assert wait_until(lambda: health() == 1, timeout=5, what="lab target healthy")
    lab.control(probe="fail")
    try:
        wait_until(lambda: health() == 0, timeout=5, what="lab target unhealthy in /metrics")
    finally:
        lab.control(probe="ok")
    wait_until(lambda: health() == 1, timeout=5, what="lab target healthy again")


PENDING, UNBATCHED = "tollgate_usage_pending_batches", "tollgate_usage_unbatched_requests"
DELIVERED, FAILED = "tollgate_usage_delivered_batches_total", "tollgate_usage_failed_sends_total"
REJECTED = "tollgate_usage_rejected_batches_total"


def _metered_requests(w: Worker, n: int) -> None:
    """``n`` requests of a known customer (metered), and one anonymous request (not metered)."""
    with httpx.Client(base_url=w.url, timeout=5.0) as client:
        for _ in range(n):
            assert client.get("/secure/x", headers={"x-api-key": KEY}).status_code == 200
        assert client.get("/shop/anonymous").status_code == 200


def test_usage_metrics_show_batches_the_control_plane_cannot_take(module_cluster: Cluster, gw: dict[str, Any]) -> None:
    c = module_cluster
    port, cache = free_port(), c.tmp / "unsent-cache"
    cache.mkdir()
    shutil.copy(gw["snapshot"], cache / f"snapshot-{port}.json")  # last-known-good: serves without the control plane
    w = c.worker(
        name="unsent-worker",
        port=port,
        cache_dir=cache,
        extra=("--control-plane", f"http://127.0.0.1:{free_port()}", "--access-log", "off"),  # nobody listens
        env={"TOLLGATE_CLUSTER_TOKEN": "obs-token", "TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"},
    )
    w.wait_revision(7)
    assert [w.metric(name) for name in (PENDING, UNBATCHED, DELIVERED, FAILED, REJECTED)] == [0, 0, 0, 0, 0]
    _metered_requests(w, 4)
    wait_until(
        lambda: (w.metric(PENDING) or 0) >= 1 and (w.metric(FAILED) or 0) >= 1 and w.metric(UNBATCHED) == 0,
        timeout=10,
        what="usage spooled and a failed send",
    )
    assert w.metric(DELIVERED) == 0 and w.metric(REJECTED) == 0
    pending = w.metric(PENDING)
    assert pending == w.status()["limiter"]["usage"]["pending_batches"]
    spooled = [json.loads(p.read_bytes()) for p in cache.glob("usage-*/*.json")]
    assert len(spooled) == pending
    assert sum(n["count"] for b in spooled for n in b["counts"]) == 4  # the gauge counts these batches
    w.proc.stop()


def test_usage_metrics_count_requests_in_memory_then_in_the_spool(module_cluster: Cluster, gw: dict[str, Any]) -> None:
    c = module_cluster
    port, status_port, cache = free_port(), free_port(), c.tmp / "meter-cache"

    def start() -> Worker:
        # a standalone worker: batches are only spooled; no cut for an hour, so counts stay in memory
        return c.worker(
            snapshot=gw["snapshot"],
            name="meter-worker",
            port=port,
            status_port=status_port,  # with the port, names the spool directory: the restart finds it
            cache_dir=cache,
            extra=("--access-log", "off"),
            env={"TOLLGATE_USAGE_FLUSH_INTERVAL": "3600"},
        )

    w = start()
    assert w.metric(UNBATCHED) == 0 and w.metric(PENDING) == 0
    _metered_requests(w, 3)
    assert w.metric(UNBATCHED) == 3 and w.metric(PENDING) == 0
    assert w.proc.stop(signal.SIGTERM) == 0  # shutdown cuts the counts into the spool
    w = start()
    assert w.metric(PENDING) == 1 and w.metric(UNBATCHED) == 0
    assert w.metric(DELIVERED) == 0 and w.metric(FAILED) == 0  # nothing to deliver to
    w.proc.stop()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_access_log_has_one_json_line_per_request_and_no_credentials(gw: dict[str, Any]) -> None:
    w, access, echo = gw["log"], gw["access"], gw["echo"]
    with httpx.Client(base_url=w.url, timeout=5.0) as client:
        r = client.get("/shop/a/b?page=2", headers={"x-request-id": "obs-req-1"})
        assert r.status_code == 200
        assert client.get("/secure/x", headers={"x-api-key": KEY}).status_code == 200
        assert client.get("/secureq/y", params={"api_key": QUERY_KEY}).status_code == 200
        assert client.get("/secure/x", headers={"x-api-key": KEY + "wrong"}).status_code == 403
        assert client.get("/missing").status_code == 404
    lines = wait_until(lambda: len(v := _lines(access)) >= 5 and v, timeout=5, what="5 access-log lines")
    assert len(lines) == 5
    assert all(set(line) == ACCESS_FIELDS for line in lines), lines
    first = lines[0]
    assert first["request_id"] == "obs-req-1" and first["method"] == "GET" and first["path"] == "/shop/a/b"
    assert first["api"] == "shop" and first["route"] == "GET /shop/{proxy+}" and first["status"] == 200
    assert first["upstream"] == f"127.0.0.1:{echo.port}" and first["bytes_out"] == len(r.content)
    assert first["latency_ms"] > 0 and first["bytes_in"] == 0 and first["client_ip"] == "127.0.0.1"
    assert first["peer_ip"] == "127.0.0.1"
    assert [line["status"] for line in lines] == [200, 200, 200, 403, 404]
    assert lines[1]["customer_id"] == "cust-1" and lines[2]["customer_id"] == "cust-1"
    assert lines[4]["api"] == "" and lines[4]["route"] == "" and lines[4]["upstream"] == ""
    text = access.read_text()
    assert KEY not in text and QUERY_KEY not in text and "api_key" not in text

    # shutdown flushes what is buffered
    with httpx.Client(base_url=w.url, timeout=5.0) as client:
        assert client.get("/shop/last").status_code == 200
    assert w.proc.stop(signal.SIGTERM) == 0
    assert _lines(access)[-1]["path"] == "/shop/last"
