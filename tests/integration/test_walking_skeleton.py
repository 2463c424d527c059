"""End to end: register an upstream with two targets, an API and routes through the admin API,
then send traffic through a real worker process and check what the real backends received."""

from __future__ import annotations

import collections
import socket

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create, free_port


@pytest.fixture(scope="module")
def gateway(module_cluster: Cluster) -> tuple[ControlPlane, Worker, Backend, Backend, dict[str, str]]:
    cluster = module_cluster
    one = cluster.echo("one")
    two = cluster.echo("two")
    cp = cluster.control_plane()
    with cp.admin() as admin:
        upstream = create(admin, "/v1/upstreams", {"name": "orders-svc"})
        create(admin, f"/v1/upstreams/{upstream['id']}/targets", {"host": "127.0.0.1", "port": one.port, "weight": 1})
        create(admin, f"/v1/upstreams/{upstream['id']}/targets", {"host": "127.0.0.1", "port": two.port, "weight": 2})
        api = create(admin, "/v1/apis", {"name": "orders", "base_path": "/orders"})
        for path, methods in (("/items/{id}", ["GET", "PUT"]), ("/items", ["POST"]), ("/{proxy+}", [])):
            body = {"path": path, "methods": methods, "upstream_id": upstream["id"]}
            create(admin, f"/v1/apis/{api['id']}/routes", body)
    worker = cluster.worker(cp)
    worker.wait_revision(cp.revision())
    return cp, worker, one, two, {"upstream": upstream["id"], "api": api["id"]}


def test_request_reaches_backend_with_base_path_stripped(gateway) -> None:
    _, worker, *_ = gateway
    r = httpx.post(
        f"{worker.url}/orders/items?debug=1&x=%20y",
        content=b'{"sku": 42}',
        headers={"content-type": "application/json", "x-forwarded-for": "10.1.2.3", "connection": "keep-alive"},
    )
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/items"
    assert seen["query"] == "debug=1&x=%20y"
    assert seen["body"] == '{"sku": 42}'
    h = seen["headers"]
    assert h["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == f"127.0.0.1:{worker.port}"
    assert h["x-request-id"] and h["x-request-id"] == r.headers["x-request-id"]
    assert "keep-alive" not in {k for k, _ in seen["header_list"]}
    assert [v for k, v in seen["header_list"] if k == "connection"] == []
    assert h["host"].startswith("127.0.0.1:")
    assert r.headers["via"] == "1.1 tollgate"


def test_chunked_request_body_is_forwarded(gateway) -> None:
    _, worker, *_ = gateway

    def body():
        yield b"hello "
        yield b"chunked "
        yield b"world"

    r = httpx.put(f"{worker.url}/orders/items/7", content=body())
    assert r.status_code == 200
    assert r.json()["body"] == "hello chunked world"
    assert r.json()["path"] == "/items/7"


def test_traffic_follows_target_weights(gateway) -> None:
    _, worker, one, two, _ = gateway
    seen = collections.Counter()
    with httpx.Client(base_url=worker.url) as client:
        for _ in range(300):
            seen[client.get("/orders/items/1").json()["server"]] += 1
    # Smooth weighted round-robin is exact over every window of sum(weights) requests.
    assert seen == {"one": 100, "two": 200}


def test_greedy_route_and_errors(gateway) -> None:
    _, worker, *_ = gateway
    with httpx.Client(base_url=worker.url) as client:
        r = client.delete("/orders/anything/deep/below")
        assert r.status_code == 200 and r.json()["path"] == "/anything/deep/below"
        # A literal/param route that does not take the method falls through to the greedy route.
        assert client.delete("/orders/items/3").json()["path"] == "/items/3"
        r = client.get("/nowhere")
        assert r.status_code == 404
        assert r.json() == {"message": "no route matches", "request_id": r.headers["x-request-id"]}
        r = client.get("/orders/../admin")
        assert r.status_code in (400, 404)


def test_unreachable_target_gives_502(cluster: Cluster) -> None:
    cp = cluster.control_plane()
    dead_port = free_port()  # nothing listens there
    with cp.admin() as admin:
        up = create(admin, "/v1/upstreams", {"name": "dead", "connect_timeout": 1.0})
        create(admin, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": dead_port})
        api = create(admin, "/v1/apis", {"name": "dead", "base_path": "/dead"})
        create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
    worker = cluster.worker(cp)
    worker.wait_revision(cp.revision())
    r = httpx.get(f"{worker.url}/dead/x")
    assert r.status_code == 502
    assert r.json()["message"] == "upstream connection failed"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_slow_upstream_gives_504(cluster: Cluster) -> None:
    # A backend that accepts and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        cp = cluster.control_plane()
        with cp.admin() as admin:
            up = create(admin, "/v1/upstreams", {"name": "slow", "read_timeout": 0.5})
            create(admin, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": silent.getsockname()[1]})
            api = create(admin, "/v1/apis", {"name": "slow", "base_path": "/slow"})
            create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
        worker = cluster.worker(cp)
        worker.wait_revision(cp.revision())
        r = httpx.get(f"{worker.url}/slow/x", timeout=10)
        assert r.status_code == 504
        assert r.json()["message"] == "upstream timed out"
    finally:
        silent.close()


def test_route_change_is_served_without_restart(gateway) -> None:
    cp, worker, one, _, ids = gateway
    with cp.admin() as admin:
        api = create(admin, "/v1/apis", {"name": "billing", "base_path": "/billing"})
        create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/invoices/{id}", "upstream_id": ids["upstream"]})
    worker.wait_revision(cp.revision())
    r = httpx.get(f"{worker.url}/billing/invoices/9")
    assert r.status_code == 200 and r.json()["path"] == "/invoices/9"
