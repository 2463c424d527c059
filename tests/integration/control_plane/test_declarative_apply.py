"""``/v1/config/apply`` and ``/v1/config/export`` on SQLite and PostgreSQL: one revision per apply with
changes, none without; atomic; errors name the place in the document."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.control_plane.factories import make_api, make_route, make_target, make_upstream, revision

ROOT = Path(__file__).resolve().parents[3]

DOC: dict[str, Any] = {
    "upstreams": [
        {
            "name": "orders-svc",
            "retries": 1,
            "targets": [{"host": "10.0.0.1", "port": 80}, {"host": "10.0.0.2", "port": 80}],
        },
        {"name": "users-svc", "targets": [{"host": "10.0.1.1", "port": 8080, "weight": 5}]},
    ],
    "apis": [
        {
            "name": "orders",
            "base_path": "/orders",
            "routes": [
                {"path": "/items/{id}", "methods": ["get"], "upstream": "orders-svc"},
                {"path": "/{proxy+}", "upstream": "orders-svc"},
            ],
        },
        {"name": "users", "base_path": "/users", "routes": [{"path": "/{id}", "upstream": "users-svc"}]},
    ],
}


def apply(client: TestClient, doc: dict[str, Any], *, prune: bool = False, dry_run: bool = False) -> Any:
    return client.post("/v1/config/apply", json={"config": doc, "prune": prune, "dry_run": dry_run})


def applied(client: TestClient, doc: dict[str, Any], **kw: bool) -> dict[str, Any]:
    response = apply(client, doc, **kw)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def actions(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["action"], c["address"]) for c in body["changes"]]


def test_apply_creates_everything_in_one_revision_and_again_is_a_no_op(client: TestClient) -> None:
    before = revision(client)
    first = applied(client, DOC)
    assert first["changed"] is True
    assert len(first["changes"]) == 2 + 3 + 2 + 3  # upstreams + targets + apis + routes
    assert revision(client) == before + 1 == first["revision"]

    exported = client.get("/v1/config/export").json()
    assert [u["name"] for u in exported["upstreams"]] == ["orders-svc", "users-svc"]
    orders = exported["apis"][0]
    assert orders["routes"] == [
        {"path": "/items/{id}", "methods": ["GET"], "upstream": "orders-svc"},
        {"path": "/{proxy+}", "methods": [], "upstream": "orders-svc"},
    ]
    # The live snapshot carries what was applied (routes resolved to the upstream's id).
    ups = {u["name"]: u["id"] for u in client.get("/v1/upstreams").json()["items"]}
    api_id = next(a["id"] for a in client.get("/v1/apis").json()["items"] if a["name"] == "orders")
    assert {r["upstream_id"] for r in client.get(f"/v1/apis/{api_id}/routes").json()["items"]} == {ups["orders-svc"]}

    for doc in (DOC, exported):  # the same file, and the export, applied again: nothing
        again = applied(client, doc)
        assert again == {"changed": False, "dry_run": False, "revision": before + 1, "changes": []}
    assert revision(client) == before + 1


def test_field_level_update_and_dry_run(client: TestClient) -> None:
    applied(client, DOC)
    rev = revision(client)
    doc = copy.deepcopy(DOC)
    doc["upstreams"][0]["retries"] = 3
    doc["upstreams"][0]["targets"][0]["weight"] = 7
    doc["apis"][0]["routes"][0]["upstream"] = "users-svc"

    dry = applied(client, doc, dry_run=True)
    assert dry["changed"] is False and dry["dry_run"] is True
    updates = {c["address"]: c["fields"] for c in dry["changes"]}
    assert updates == {
        "upstream orders-svc": ["retries"],
        "upstream orders-svc / target 10.0.0.1:80": ["weight"],
        "api orders / route /items/{id} [GET]": ["upstream"],
    }
    assert revision(client) == rev  # a dry run changes nothing

    wet = applied(client, doc)
    assert wet["changes"] == dry["changes"]
    assert revision(client) == rev + 1
    assert client.get("/v1/config/export").json()["upstreams"][0]["retries"] == 3


def test_unnamed_resources_are_kept_unless_pruned_and_children_of_named_ones_follow_the_file(
    client: TestClient,
) -> None:
    applied(client, DOC)
    legacy = make_upstream(client, "legacy")
    make_target(client, legacy["id"], "10.9.9.9", 81)
    make_route(client, make_api(client, "old", base_path="/old")["id"], legacy["id"], "/x")

    doc = copy.deepcopy(DOC)
    del doc["upstreams"][0]["targets"][1]  # a named upstream loses a target even without prune
    kept = applied(client, doc)
    assert actions(kept) == [("delete", "upstream orders-svc / target 10.0.0.2:80")]
    names = {u["name"] for u in client.get("/v1/upstreams").json()["items"]}
    assert names == {"orders-svc", "users-svc", "legacy"}

    rev = revision(client)
    pruned = applied(client, doc, prune=True)
    assert actions(pruned) == [  # referrers first, then what they referred to; children before parents
        ("delete", "api old / route /x [*]"),
        ("delete", "api old"),
        ("delete", "upstream legacy / target 10.9.9.9:81"),
        ("delete", "upstream legacy"),
    ]
    assert revision(client) == rev + 1
    assert {u["name"] for u in client.get("/v1/upstreams").json()["items"]} == {"orders-svc", "users-svc"}
    assert applied(client, doc, prune=True)["changes"] == []


def test_a_failure_midway_applies_nothing(client: TestClient) -> None:
    make_api(client, "taken", base_path="/users")  # not in the file; its base path clashes with api "users"
    rev = revision(client)
    response = apply(client, DOC)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "config", "apis", 1]
    assert "api users" in error["msg"] and "already serves base path '/users'" in error["msg"]
    assert revision(client) == rev
    assert client.get("/v1/upstreams").json()["total"] == 0  # created before the failure, rolled back
    assert [a["name"] for a in client.get("/v1/apis").json()["items"]] == ["taken"]


def test_document_errors_name_the_place(client: TestClient) -> None:
    rev = revision(client)
    doc = copy.deepcopy(DOC)
    doc["apis"][1]["routes"][0]["upstream"] = "nowhere"
    [error] = apply(client, doc).json()["detail"]
    assert error["loc"] == ["body", "config", "apis", 1, "routes", 0, "upstream"]
    assert error["msg"] == "upstream 'nowhere' does not exist"

    doc = copy.deepcopy(DOC)
    doc["upstreams"][1]["targets"][0]["port"] = "eighty"
    errors = apply(client, doc).json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "config", "upstreams", 1, "targets", 0, "port"]]

    doc = copy.deepcopy(DOC)
    doc["upstreams"].append({"name": "orders-svc"})
    [error] = apply(client, doc).json()["detail"]
    assert error["loc"] == ["body", "config", "upstreams", 2]
    assert "duplicate upstream orders-svc (also at upstreams.0)" in error["msg"]
    assert revision(client) == rev and client.get("/v1/upstreams").json()["total"] == 0


def test_a_route_may_name_an_upstream_that_exists_but_not_when_it_is_pruned(client: TestClient) -> None:
    make_upstream(client, "shared")
    doc = {"apis": [{"name": "a", "base_path": "/a", "routes": [{"path": "/", "upstream": "shared"}]}]}
    assert len(applied(client, doc)["changes"]) == 2
    [error] = apply(client, doc, prune=True).json()["detail"]
    assert error["msg"] == "upstream 'shared' is not in this document (pruned)"


def test_served_schema_is_the_committed_one(client: TestClient) -> None:
    served = client.get("/v1/config/schema").json()
    committed = json.loads((ROOT / "docs" / "gateway.schema.json").read_text())
    assert served == committed, "regenerate: python -m control_plane.config_document > docs/gateway.schema.json"
    assert set(served["properties"]) == {"version", "certificates", "upstreams", "apis", "usage_plans", "customers"}


def test_secrets_never_enter_or_leave_the_file(client: TestClient) -> None:
    secret = "s" * 40
    api = client.post(
        "/v1/apis", json={"name": "jwt-api", "auth": "jwt", "jwt_algorithms": ["HS256"], "jwt_secret": secret}
    )
    assert api.status_code == 201, api.text
    exported = client.get("/v1/config/export")
    assert exported.status_code == 200 and secret not in exported.text
    # Applying the dump back is a no-op: the write-only secret is neither compared nor cleared.
    again = client.post("/v1/config/apply", json={"config": exported.json(), "prune": False, "dry_run": False})
    assert again.status_code == 200 and again.json()["changed"] is False, again.text
    doc = exported.json()
    doc["apis"][0]["jwt_secret"] = secret
    refused = client.post("/v1/config/apply", json={"config": doc, "prune": False, "dry_run": True})
    assert refused.status_code == 422 and secret not in refused.text
