"""An upstream's ``keepalive_timeout`` through the admin API, the snapshot and the declarative config,
on SQLite and PostgreSQL: default 4 s, validated (> 0, <= 3600), carried to the workers, exported and
applied back without a change."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from data_plane.snapshot import SCHEMA_VERSION, Snapshot
from tests.integration.control_plane.factories import make_upstream, revision


def field_errors(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [str(err["loc"][-1]) for err in response.json()["detail"]]


def _snapshot(client: TestClient, cluster_headers: dict[str, str]) -> Snapshot:
    r = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=cluster_headers)
    assert r.status_code == 200, r.text
    return Snapshot.from_json(r.content)  # what a worker does with it: validated, hash checked


def test_default_patch_and_what_the_workers_get(client: TestClient, cluster_headers: dict[str, str]) -> None:
    up = make_upstream(client, "orders")
    assert up["keepalive_timeout"] == 4.0
    other = make_upstream(client, "users", keepalive_timeout=1.5)
    assert client.get(f"/v1/upstreams/{other['id']}").json()["keepalive_timeout"] == 1.5

    patched = client.patch(f"/v1/upstreams/{up['id']}", json={"keepalive_timeout": 2.5})
    assert patched.status_code == 200 and patched.json()["keepalive_timeout"] == 2.5
    untouched = client.patch(f"/v1/upstreams/{up['id']}", json={"retries": 1}).json()
    assert untouched["keepalive_timeout"] == 2.5
    assert field_errors(client.patch(f"/v1/upstreams/{up['id']}", json={"keepalive_timeout": None})) == [
        "keepalive_timeout"
    ]

    snap = _snapshot(client, cluster_headers)
    assert snap.schema_version == SCHEMA_VERSION  # (1.5 added keepalive_timeout)
    assert {u.name: u.keepalive_timeout for u in snap.upstreams} == {"orders": 2.5, "users": 1.5}

    # Back at the default it leaves the hashed content (a 1.4 worker's cache file keeps its hash).
    client.patch(f"/v1/upstreams/{up['id']}", json={"keepalive_timeout": 4})
    wire = {u["name"]: u for u in _snapshot(client, cluster_headers).to_dict()["upstreams"]}
    assert "keepalive_timeout" not in wire["orders"] and wire["users"]["keepalive_timeout"] == 1.5


@pytest.mark.parametrize("value", [0, -1, 3601, "soon"])
def test_invalid_keepalive_timeout_is_422_naming_the_field(client: TestClient, value: object) -> None:
    assert field_errors(client.post("/v1/upstreams", json={"name": "x", "keepalive_timeout": value})) == [
        "keepalive_timeout"
    ]
    up = make_upstream(client, "y")
    assert field_errors(client.patch(f"/v1/upstreams/{up['id']}", json={"keepalive_timeout": value})) == [
        "keepalive_timeout"
    ]
    assert client.get(f"/v1/upstreams/{up['id']}").json()["keepalive_timeout"] == 4.0


def _apply(client: TestClient, doc: dict[str, Any]) -> Any:
    return client.post("/v1/config/apply", json={"config": doc})


def test_declarative_round_trip(client: TestClient) -> None:
    doc = {
        "upstreams": [
            {"name": "fast", "keepalive_timeout": 1.5, "targets": [{"host": "10.0.0.1", "port": 80}]},
            {"name": "plain", "targets": [{"host": "10.0.0.2", "port": 80}]},
        ]
    }
    assert _apply(client, doc).status_code == 200
    exported = client.get("/v1/config/export").json()
    assert {u["name"]: u["keepalive_timeout"] for u in exported["upstreams"]} == {"fast": 1.5, "plain": 4.0}

    rev = revision(client)
    for same in (doc, exported):  # the file again, and the export: nothing to do
        body = _apply(client, same).json()
        assert body["changed"] is False and body["changes"] == [], body
    assert revision(client) == rev

    doc["upstreams"][0]["keepalive_timeout"] = 3
    body = _apply(client, doc).json()
    assert [(c["address"], c["fields"]) for c in body["changes"]] == [("upstream fast", ["keepalive_timeout"])]
    assert client.get("/v1/config/export").json()["upstreams"][0]["keepalive_timeout"] == 3.0

    doc["upstreams"][1]["keepalive_timeout"] = 0
    [error] = _apply(client, doc).json()["detail"]
    assert error["loc"] == ["body", "config", "upstreams", 1, "keepalive_timeout"]
