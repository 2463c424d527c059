"""The config revision and the snapshot hash, seen through ``/v1/config`` and the snapshot builder."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from control_plane.snapshots.build import build_snapshot
from data_plane.snapshot import Snapshot
from tests.integration.control_plane.factories import (
    config_hash,
    make_api,
    make_route,
    make_target,
    make_upstream,
    revision,
)


def test_every_write_bumps_the_revision_by_exactly_one(client: TestClient) -> None:
    assert revision(client) == 0
    up = make_upstream(client)
    assert revision(client) == 1
    target = make_target(client, up["id"])
    client.patch(f"/v1/upstreams/{up['id']}/targets/{target['id']}", json={"weight": 5})
    api = make_api(client)
    route = make_route(client, api["id"], up["id"])
    client.patch(f"/v1/apis/{api['id']}", json={"strip_base_path": False})
    client.delete(f"/v1/apis/{api['id']}/routes/{route['id']}")
    client.delete(f"/v1/upstreams/{up['id']}/targets/{target['id']}")
    assert revision(client) == 8


def test_reads_and_failed_writes_do_not_bump(client: TestClient) -> None:
    up = make_upstream(client, "u")
    before = revision(client)
    client.get("/v1/upstreams")
    client.get(f"/v1/upstreams/{up['id']}")
    client.get("/v1/apis")
    assert client.post("/v1/upstreams", json={"name": "u"}).status_code == 409
    assert client.post("/v1/upstreams", json={"name": "v", "retries": -1}).status_code == 422
    assert client.delete("/v1/apis/00000000-0000-4000-8000-000000000000").status_code == 404
    assert revision(client) == before


def test_identical_content_gives_identical_hash(client: TestClient) -> None:
    up = make_upstream(client, "u", read_timeout=10)
    api = make_api(client, hosts=["b.example", "a.example"])
    make_route(client, api["id"], up["id"], methods=["POST", "GET"])
    original = client.get("/v1/config").json()

    client.patch(f"/v1/upstreams/{up['id']}", json={"read_timeout": 11})
    changed = client.get("/v1/config").json()
    assert changed["hash"] != original["hash"]

    client.patch(f"/v1/upstreams/{up['id']}", json={"read_timeout": 10})
    reverted = client.get("/v1/config").json()
    assert reverted["revision"] == original["revision"] + 2
    assert reverted["hash"] == original["hash"]


def test_built_snapshot_is_sealed_deterministic_and_valid(client: TestClient) -> None:
    up = make_upstream(client, "u")
    for port in (3, 1, 2):
        make_target(client, up["id"], host="h", port=port)
    api = make_api(client, base_path="/shop")
    make_route(client, api["id"], up["id"], path="/{rest+}")
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        first = build_snapshot(session)
    with sessions() as session:
        second = _build(session)
    assert first.hash == second.hash == first.compute_hash() == config_hash(client)
    assert first.revision == revision(client)
    assert first.generated_at.endswith("Z")
    assert [t.port for t in first.upstreams[0].targets] == [1, 2, 3]
    # Round-trips through the worker's parser unchanged.
    assert Snapshot.from_json(first.to_json()).hash == first.hash


def _build(session: Session) -> Snapshot:
    return build_snapshot(session)
