"""The tracing policy in the admin API and the declarative file (SQLite and PostgreSQL): stored as
written, exported and applied again without a change, a changed ratio is one field-level update,
an out-of-range ratio is refused naming its place, and the snapshot carries it."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from control_plane.snapshots.build import build_snapshot
from tests.integration.control_plane.conftest import CLUSTER_TOKEN
from tests.integration.control_plane.factories import revision

DOC: dict[str, Any] = {
    "upstreams": [{"name": "svc", "targets": [{"host": "10.0.0.1", "port": 80}]}],
    "apis": [
        {
            "name": "shop",
            "base_path": "/shop",
            "policies": {"tracing": {"sample_ratio": 0.01}},
            "routes": [
                {"path": "/orders", "upstream": "svc", "policies": {"tracing": {"sample_ratio": 1}}},
                {"path": "/{proxy+}", "upstream": "svc"},
            ],
        }
    ],
}


def apply(client: TestClient, doc: dict[str, Any]) -> Any:
    return client.post("/v1/config/apply", json={"config": doc})


def test_tracing_round_trips_through_the_declarative_file(client: TestClient) -> None:
    assert apply(client, DOC).status_code == 200
    rev = revision(client)
    exported = client.get("/v1/config/export").json()
    shop = exported["apis"][0]
    assert shop["policies"] == {"tracing": {"sample_ratio": 0.01}}
    assert [r.get("policies") for r in shop["routes"]] == [{"tracing": {"sample_ratio": 1.0}}, None]
    for doc in (DOC, exported):
        again = apply(client, doc).json()
        assert again["changed"] is False and again["changes"] == []
    assert revision(client) == rev

    changed = copy.deepcopy(DOC)
    changed["apis"][0]["policies"]["tracing"]["sample_ratio"] = 0.5
    body = apply(client, changed).json()
    assert [(c["address"], c["fields"]) for c in body["changes"]] == [("api shop", ["policies"])]

    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        snap = build_snapshot(session, box=client.app.state.secret_box, cluster_token=CLUSTER_TOKEN)  # type: ignore[attr-defined]
    (api,) = snap.apis
    assert api.policies == {"tracing": {"sample_ratio": 0.5}}
    assert {r.path: r.policies for r in api.routes}["/orders"] == {"tracing": {"sample_ratio": 1.0}}


def test_a_ratio_outside_0_to_1_or_an_unknown_field_is_refused(client: TestClient) -> None:
    for bad, field in (({"sample_ratio": 1.5}, "sample_ratio"), ({"ratio": 0.1}, "ratio")):
        doc = copy.deepcopy(DOC)
        doc["apis"][0]["routes"][0]["policies"] = {"tracing": bad}
        response = apply(client, doc)
        assert response.status_code == 422
        locs = [e["loc"] for e in response.json()["detail"]]
        assert ["body", "config", "apis", 0, "routes", 0, "policies", "tracing", field] in locs, locs


def test_the_admin_api_stores_and_clears_the_policy(client: TestClient) -> None:
    api = client.post("/v1/apis", json={"name": "a", "policies": {"tracing": {}}}).json()
    assert api["policies"] == {"tracing": {}}
    patched = client.patch(f"/v1/apis/{api['id']}", json={"policies": {"tracing": {"sample_ratio": 0.25}}})
    assert patched.status_code == 200 and patched.json()["policies"] == {"tracing": {"sample_ratio": 0.25}}
    refused = client.patch(f"/v1/apis/{api['id']}", json={"policies": {"tracing": {"sample_ratio": -0.1}}})
    assert refused.status_code == 422
    cleared = client.patch(f"/v1/apis/{api['id']}", json={"policies": None})
    assert cleared.status_code == 200 and cleared.json()["policies"] is None
