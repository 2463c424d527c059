"""OpenAPI import and export through the admin API, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from tests.integration.control_plane.factories import make_upstream, revision

DATA = Path(__file__).resolve().parents[2] / "data"
PETSTORE = (DATA / "petstore.yaml").read_bytes()
ECHO_31 = (DATA / "echo-3.1.yaml").read_bytes()
YAML = {"content-type": "application/yaml"}


def import_doc(client: TestClient, body: bytes | dict[str, Any], status: int = 201, **params: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        r = client.post("/v1/apis/import", params=params, json=body)
    else:
        r = client.post("/v1/apis/import", params=params, content=body, headers=YAML)
    assert r.status_code == status, r.text
    result: dict[str, Any] = r.json()
    return result


def routes_of(client: TestClient, api_id: str) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    items = client.get(f"/v1/apis/{api_id}/routes").json()["items"]
    return {(r["path"], tuple(r["methods"])): r for r in items}


def export(client: TestClient, api_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/apis/{api_id}/openapi.json")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_petstore_import_creates_api_routes_and_is_idempotent(client: TestClient) -> None:
    up = make_upstream(client, "pets")
    before = revision(client)
    result = import_doc(client, PETSTORE, upstream_id="pets")  # by name
    assert result["created"] and result["changed"]
    api = result["api"]
    assert (api["name"], api["base_path"], api["auth"]) == ("swagger-petstore", "/v1", "none")
    assert {(a["path"], tuple(a["methods"])) for a in result["diff"]["added"]} == {
        ("/pets", ("GET",)),
        ("/pets", ("POST",)),
        ("/pets/{petId}", ("GET",)),
    }
    routes = routes_of(client, api["id"])
    assert set(routes) == {("/pets", ("GET",)), ("/pets", ("POST",)), ("/pets/{petId}", ("GET",))}
    assert {r["upstream_id"] for r in routes.values()} == {up["id"]}
    assert revision(client) == before + 1  # one import, one revision

    again = import_doc(client, PETSTORE, status=200, upstream_id=up["id"])
    assert not again["changed"] and not again["created"]
    assert again["diff"] == {"api": {}, "added": [], "changed": [], "removed": []}
    assert revision(client) == before + 1  # nothing changed: no new revision
    assert routes_of(client, api["id"]).keys() == routes.keys()


def test_export_is_valid_gateway_view_and_round_trips(client: TestClient) -> None:
    make_upstream(client, "pets")
    api = import_doc(client, PETSTORE, upstream_id="pets")["api"]
    doc = export(client, api["id"])
    validate(doc)  # openapi-spec-validator: raises on an invalid document
    assert doc["servers"][0]["url"] == "http://127.0.0.1:8000/v1"
    assert doc["info"]["title"] == "Swagger Petstore"
    assert set(doc["components"]["schemas"]) == {"Pet", "Pets", "Error", "TollgateError"}
    show = doc["paths"]["/pets/{petId}"]["get"]
    assert show["operationId"] == "showPetById"
    assert show["parameters"][0]["name"] == "petId"
    assert show["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Pet"}
    throttled = show["responses"]["429"]
    assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(throttled["headers"])
    assert "security" not in doc and "securitySchemes" not in doc["components"]  # auth none
    assert "401" not in show["responses"]
    assert doc["paths"]["/pets"]["post"]["requestBody"]["required"] is True

    # import -> export -> import: the export describes exactly the same API
    dry = import_doc(client, doc, status=200, upstream_id="pets", dry_run="true")
    assert dry["diff"] == {"api": {}, "added": [], "changed": [], "removed": []} and not dry["changed"]
    yaml_doc = client.get(f"/v1/apis/{api['id']}/openapi.yaml")
    assert yaml_doc.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(yaml_doc.text) == doc


def test_openapi_31_with_extensions_and_round_trip(client: TestClient) -> None:
    echo = make_upstream(client, "echo")
    throttle = make_upstream(client, "throttle")
    api = import_doc(client, ECHO_31, upstream_id="echo")["api"]
    assert (api["name"], api["base_path"]) == ("echo-service", "/echo")  # server variable default substituted
    routes = routes_of(client, api["id"])
    assert routes[("/files/{path+}", ("GET",))]["upstream_id"] == echo["id"]  # x-tollgate-greedy
    assert routes[("/items/{itemId}", ("GET",))]["upstream_id"] == echo["id"]
    assert routes[("/throttled", ("GET",))]["upstream_id"] == throttle["id"]  # x-tollgate-upstream

    doc = export(client, api["id"])
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["paths"]["/files/{path}"]["get"]["x-tollgate-greedy"] is True
    item = doc["paths"]["/items/{itemId}"]["get"]
    assert [p["name"] for p in item["parameters"]] == ["itemId", "verbose"]  # path-level parameter merged in
    assert "x-tollgate-upstream" not in json.dumps(doc)  # upstreams are internal
    # re-import of the export: routes that lost their x-tollgate-upstream would move to the default upstream
    dry = import_doc(client, doc, status=200, upstream_id="echo", dry_run="true")
    assert [c["path"] for c in dry["diff"]["changed"]] == ["/throttled"]
    assert import_doc(client, ECHO_31, status=200, upstream_id="echo", dry_run="true")["changed"] is False


def test_dry_run_reports_the_diff_and_writes_nothing(client: TestClient) -> None:
    make_upstream(client, "pets")
    api = import_doc(client, PETSTORE, upstream_id="pets")["api"]
    before = revision(client)
    doc = yaml.safe_load(PETSTORE)
    del doc["paths"]["/pets"]["post"]
    doc["paths"]["/pets/{petId}"]["delete"] = copy.deepcopy(doc["paths"]["/pets/{petId}"]["get"])
    doc["paths"]["/pets/{petId}"]["delete"]["operationId"] = "deletePet"
    doc["paths"]["/pets"]["get"]["summary"] = "List every pet"
    doc["servers"] = [{"url": "/v2"}]

    dry = import_doc(client, doc, status=200, upstream_id="pets", dry_run="true")
    diff = dry["diff"]
    assert diff["api"]["base_path"] == {"old": "/v1", "new": "/v2"}
    assert [(a["path"], a["methods"]) for a in diff["added"]] == [("/pets/{petId}", ["DELETE"])]
    assert [(c["path"], c["fields"]) for c in diff["changed"]] == [("/pets", ["operation"])]
    assert [(r["path"], r["methods"]) for r in diff["removed"]] == [("/pets", ["POST"])]
    assert revision(client) == before and client.get(f"/v1/apis/{api['id']}").json()["base_path"] == "/v1"

    applied = import_doc(client, {"document": doc, "upstream_id": "pets"}, status=200)  # the JSON envelope
    assert applied["changed"] and applied["api"]["base_path"] == "/v2"
    assert set(routes_of(client, api["id"])) == {
        ("/pets", ("GET",)),
        ("/pets/{petId}", ("DELETE",)),
        ("/pets/{petId}", ("GET",)),
    }


def test_invalid_documents_are_422_with_a_json_pointer(client: TestClient) -> None:
    make_upstream(client, "pets")
    doc = yaml.safe_load(PETSTORE)
    del doc["paths"]["/pets/{petId}"]["get"]["responses"]["200"]["description"]
    r = client.post("/v1/apis/import", params={"upstream_id": "pets"}, json=doc)
    assert r.status_code == 422
    problem = r.json()["detail"][0]
    assert problem["pointer"] == "/paths/~1pets~1{petId}/get/responses/200"
    assert problem["loc"] == ["body", "paths", "/pets/{petId}", "get", "responses", "200"]

    remote = yaml.safe_load(PETSTORE)
    remote["components"]["schemas"]["Pet"] = {"$ref": "http://169.254.169.254/latest/meta-data"}
    r = client.post("/v1/apis/import", params={"upstream_id": "pets"}, json=remote)
    assert r.status_code == 422 and r.json()["detail"][0]["pointer"] == "/components/schemas/Pet/$ref"

    r = client.post("/v1/apis/import", content=b"openapi: 3.0.0\nx: &a [1]\ny: *a\n", headers=YAML)
    assert r.status_code == 422 and "aliases" in r.json()["detail"][0]["msg"]

    r = client.post("/v1/apis/import", json={"openapi": "2.0", "info": {}, "paths": {}})
    assert r.status_code == 422 and r.json()["detail"][0]["pointer"] == "/openapi"

    r = client.post("/v1/apis/import", content=PETSTORE, headers=YAML)  # no upstream anywhere
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "upstream_id"]
    assert client.get("/v1/apis").json()["total"] == 0
