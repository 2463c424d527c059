"""The worker ↔ control-plane channel: token, snapshot long-poll, node status."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from data_plane.snapshot import Snapshot
from tests.integration.control_plane.conftest import CLUSTER_TOKEN
from tests.integration.control_plane.factories import config_hash, make_upstream

SNAPSHOT = "/cluster/v1/snapshot"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": CLUSTER_TOKEN}, {"Authorization": "Basic x"}],
)
def test_cluster_endpoints_require_the_token(client: TestClient, headers: dict[str, str]) -> None:
    for response in (
        client.get(SNAPSHOT, params={"wait": 0}, headers=headers),
        client.post("/cluster/v1/nodes/n1/status", json={}, headers=headers),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "cluster token required"}
        assert CLUSTER_TOKEN not in response.text


def test_snapshot_when_hash_differs(client: TestClient, cluster_headers: dict[str, str]) -> None:
    make_upstream(client)
    response = client.get(SNAPSHOT, params={"known_hash": "", "wait": 5}, headers=cluster_headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    snapshot = Snapshot.from_json(response.content)
    assert response.headers["X-Tollgate-Hash"] == snapshot.hash == config_hash(client)
    assert response.headers["X-Tollgate-Revision"] == str(snapshot.revision) == "1"
    assert [u.name for u in snapshot.upstreams] == ["orders"]


def test_not_modified_after_wait(client: TestClient, cluster_headers: dict[str, str]) -> None:
    current = config_hash(client)
    started = time.monotonic()
    response = client.get(SNAPSHOT, params={"known_hash": current, "wait": 0.3}, headers=cluster_headers)
    assert response.status_code == 304
    assert response.content == b""
    assert time.monotonic() - started >= 0.3


def test_long_poll_is_released_by_a_write(client: TestClient, cluster_headers: dict[str, str]) -> None:
    current = config_hash(client)
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        result["response"] = client.get(SNAPSHOT, params={"known_hash": current, "wait": 30}, headers=cluster_headers)
        result["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    assert "response" not in result  # held
    make_upstream(client, "late")
    poller.join(timeout=10)
    assert not poller.is_alive()
    assert result["response"].status_code == 200
    assert result["elapsed"] < 5  # released by the write, not by the 30 s wait
    assert Snapshot.from_json(result["response"].content).hash == config_hash(client) != current


def test_wait_is_bounded(client: TestClient, cluster_headers: dict[str, str]) -> None:
    response = client.get(SNAPSHOT, params={"wait": 61}, headers=cluster_headers)
    assert response.status_code == 422


def test_nodes_are_recorded(client: TestClient, cluster_headers: dict[str, str]) -> None:
    node_headers = {
        **cluster_headers,
        "X-Tollgate-Node-Id": "worker-1",
        "X-Tollgate-Node-Hostname": "host-a",
        "X-Tollgate-Node-Version": "0.1.0",
    }
    snap = client.get(SNAPSHOT, params={"wait": 0}, headers=node_headers)
    assert snap.status_code == 200
    [node] = client.get("/v1/nodes").json()["items"]
    assert node["id"] == "worker-1" and node["hostname"] == "host-a" and node["version"] == "0.1.0"
    assert node["in_sync"] is False and node["stale"] is False  # asked, but has not reported yet

    status = {
        "hostname": "host-a",
        "version": "0.1.0",
        "revision": int(snap.headers["X-Tollgate-Revision"]),
        "hash": snap.headers["X-Tollgate-Hash"],
        "last_error": None,
        "pid": 4242,
    }
    assert client.post("/cluster/v1/nodes/worker-1/status", json=status, headers=cluster_headers).status_code == 204
    [node] = client.get("/v1/nodes").json()["items"]
    assert node["in_sync"] is True and node["pid"] == 4242 and node["revision"] == status["revision"]

    make_upstream(client)  # config moves on; the node has not applied it
    [node] = client.get("/v1/nodes").json()["items"]
    assert node["in_sync"] is False
    assert client.get("/v1/config").json()["revision"] == 1  # node bookkeeping never bumps the revision


def test_odd_node_headers_never_cost_the_snapshot(client: TestClient, cluster_headers: dict[str, str]) -> None:
    headers = {**cluster_headers, "X-Tollgate-Node-Id": "x" * 300, "X-Tollgate-Node-Version": "v" * 500}
    assert client.get(SNAPSHOT, params={"wait": 0}, headers=headers).status_code == 200
    assert client.get("/v1/nodes").json()["total"] == 0  # ignored, not stored


def test_status_report_tolerates_extra_fields_and_long_text(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    body = {"hostname": "h", "version": "1", "last_error": "e" * 10_000, "applied_at": 1.5, "node_id": "n2"}
    assert client.post("/cluster/v1/nodes/n2/status", json=body, headers=cluster_headers).status_code == 204
    [node] = client.get("/v1/nodes").json()["items"]
    assert node["id"] == "n2" and len(node["last_error"]) == 4000


def test_nodes_gone_for_longer_than_the_purge_age_are_forgotten(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from control_plane.models import Node, utcnow

    body = {"hostname": "h", "version": "1", "revision": 1, "hash": "x", "last_error": None, "pid": 1}
    for node in ("old", "recent"):
        assert client.post(f"/cluster/v1/nodes/{node}/status", json=body, headers=cluster_headers).status_code == 204
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    purge_after = client.app.state.settings.node_purge_after  # type: ignore[attr-defined]
    with sessions() as session:
        # Age one record past the purge horizon instead of waiting an hour.
        session.execute(
            update(Node).where(Node.id == "old").values(last_seen=utcnow() - timedelta(seconds=purge_after + 1))
        )
        session.commit()
    assert {n["id"]: n["stale"] for n in client.get("/v1/nodes").json()["items"]} == {"old": True, "recent": False}
    # The next heartbeat from anyone purges it.
    assert client.post("/cluster/v1/nodes/recent/status", json=body, headers=cluster_headers).status_code == 204
    assert [n["id"] for n in client.get("/v1/nodes").json()["items"]] == ["recent"]


def test_metrics_count_admin_requests_and_attached_workers(client: TestClient, cluster_headers: dict[str, str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = client.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    make_upstream(client)
    for _ in range(3):
        assert client.get("/v1/upstreams").status_code == 200
    got = samples()
    key = ("tollgate_admin_requests_total", (("method", "GET"), ("route", "/v1/upstreams"), ("status", "200")))
    assert got[key] == 3
    assert got[("tollgate_config_revision", ())] == client.get("/v1/config").json()["revision"]
    assert got[("tollgate_connected_nodes", ())] == 0

    # A worker's long-poll held open shows up as an attached node while it waits.
    current = client.get(SNAPSHOT, params={"wait": 0}, headers=cluster_headers).headers["X-Tollgate-Hash"]
    holder = threading.Thread(
        target=lambda: client.get(SNAPSHOT, params={"known_hash": current, "wait": 3}, headers=cluster_headers)
    )
    holder.start()
    try:
        deadline = time.monotonic() + 5
        while samples()[("tollgate_connected_nodes", ())] != 1:
            assert time.monotonic() < deadline, "held long-poll not counted"
            time.sleep(0.02)
    finally:
        holder.join()
    assert samples()[("tollgate_connected_nodes", ())] == 0
