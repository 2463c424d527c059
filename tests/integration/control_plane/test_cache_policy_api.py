"""The cache policy in the admin API and the declarative file, and the purge endpoint, on SQLite and
PostgreSQL: what is refused, what round-trips unchanged, and what a purge changes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.snapshots.build import build_snapshot
from tests.integration.control_plane.factories import make_api, make_route, make_upstream, revision

CACHE = {"ttl": 30, "key_headers": ["Accept"], "statuses": [200, 404], "max_object_bytes": 65536}

DOC: dict[str, Any] = {
    "upstreams": [{"name": "svc", "targets": [{"host": "10.0.0.1", "port": 80}]}],
    "apis": [
        {
            "name": "catalog",
            "base_path": "/catalog",
            "policies": {"cache": CACHE},
            "routes": [
                {"path": "/items/{id}", "methods": ["GET"], "upstream": "svc"},
                {"path": "/public/{p+}", "upstream": "svc", "policies": {"cache": {"ttl": 600, "shared": True}}},
            ],
        }
    ],
}


def test_declarative_round_trip_with_a_cache_policy(client: TestClient) -> None:
    first = client.post("/v1/config/apply", json={"config": DOC})
    assert first.status_code == 200 and first.json()["changed"] is True, first.text
    exported = client.get("/v1/config/export").json()
    api = exported["apis"][0]
    assert api["policies"] == {"cache": CACHE}
    assert api["routes"][1]["policies"] == {"cache": {"ttl": 600, "shared": True}}
    for doc in (DOC, exported):
        again = client.post("/v1/config/apply", json={"config": doc})
        assert again.status_code == 200 and again.json()["changed"] is False, again.text

    changed = {**DOC, "apis": [{**DOC["apis"][0], "policies": {"cache": {**CACHE, "ttl": 31}}}]}
    diff = client.post("/v1/config/apply", json={"config": changed, "dry_run": True}).json()
    assert [(c["address"], c["fields"]) for c in diff["changes"]] == [("api catalog", ["policies"])]


@pytest.mark.parametrize(
    ("cache", "where"),
    [
        ({}, "ttl"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": 86401}, "ttl"),
        ({"ttl": 5, "statuses": [206]}, "cache"),
        ({"ttl": 5, "key_headers": ["bad header"]}, "key_headers"),
        ({"ttl": 5, "max_object_bytes": 0}, "max_object_bytes"),
        ({"ttl": 5, "stale_while_revalidate": 5}, "stale_while_revalidate"),
    ],
)
def test_bad_cache_policies_are_refused(client: TestClient, cache: dict[str, Any], where: str) -> None:
    r = client.post("/v1/apis", json={"name": "bad", "policies": {"cache": cache}})
    assert r.status_code == 422, r.text
    assert any(where in [str(p) for p in e["loc"]] for e in r.json()["detail"]), r.text


def test_purge_bumps_the_epoch_and_the_revision(client: TestClient) -> None:
    up = make_upstream(client, "svc")
    api = make_api(client, "shop", policies={"cache": {"ttl": 60}})
    make_route(client, api["id"], up["id"])
    assert api["cache_epoch"] == 0
    before = revision(client)

    r = client.post(f"/v1/apis/{api['id']}/cache/purge")
    assert r.status_code == 202, r.text
    assert r.json() == {"api_id": api["id"], "cache_epoch": 1, "revision": before + 1}
    assert revision(client) == before + 1
    r = client.post(f"/v1/apis/{api['id']}/cache/purge")
    assert r.json()["cache_epoch"] == 2 and revision(client) == before + 2
    assert client.get(f"/v1/apis/{api['id']}").json()["cache_epoch"] == 2
    entry = client.get("/v1/audit").json()["items"][0]
    assert (entry["method"], entry["resource_id"]) == ("POST", api["id"])
    assert entry["path"] == f"/v1/apis/{api['id']}/cache/purge"

    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        snapshot = build_snapshot(session)
    assert [a.cache_epoch for a in snapshot.apis] == [2]

    # the purge is state, not config: the declarative file does not see it
    exported = client.get("/v1/config/export").json()
    assert "cache_epoch" not in exported["apis"][0]
    assert client.post("/v1/config/apply", json={"config": exported}).json()["changed"] is False

    assert client.post("/v1/apis/nope/cache/purge").status_code == 404
