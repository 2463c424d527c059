"""Admin API CRUD, pagination, validation and conflict rules — the same cases on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.control_plane.factories import make_api, make_route, make_target, make_upstream

MISSING = "00000000-0000-4000-8000-000000000000"


def field_errors(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [err["loc"][-1] for err in response.json()["detail"]]


# ---------------------------------------------------------------------------- CRUD


def test_upstream_crud(client: TestClient) -> None:
    up = make_upstream(client, "orders", algorithm="least_request", retries=2)
    assert up["algorithm"] == "least_request" and up["connect_timeout"] == 5.0 and len(up["id"]) == 36
    assert client.get(f"/v1/upstreams/{up['id']}").json() == up

    patched = client.patch(f"/v1/upstreams/{up['id']}", json={"read_timeout": 2.5, "name": "orders-v2"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["read_timeout"] == 2.5 and patched.json()["name"] == "orders-v2"
    assert patched.json()["retries"] == 2  # untouched by the PATCH

    assert client.delete(f"/v1/upstreams/{up['id']}").status_code == 204
    assert client.get(f"/v1/upstreams/{up['id']}").status_code == 404


def test_target_crud_and_cascade(client: TestClient) -> None:
    up = make_upstream(client)
    t = make_target(client, up["id"], host="Backend.Local", port=9000)
    assert t["host"] == "backend.local" and t["weight"] == 100 and t["upstream_id"] == up["id"]
    base = f"/v1/upstreams/{up['id']}/targets"
    assert client.patch(f"{base}/{t['id']}", json={"weight": 0}).json()["weight"] == 0
    assert client.get(base).json()["total"] == 1

    assert client.delete(f"/v1/upstreams/{up['id']}").status_code == 204
    assert client.get(f"{base}/{t['id']}").status_code == 404


def test_api_and_route_crud(client: TestClient) -> None:
    up = make_upstream(client)
    api = make_api(client, hosts=["API.Example.com"], base_path="/shop/", max_body_bytes=1024)
    assert api["hosts"] == ["api.example.com"] and api["base_path"] == "/shop" and api["auth"] == "none"

    route = make_route(client, api["id"], up["id"], path="/items/{id}", methods=["get", "head"])
    assert route["methods"] == ["GET", "HEAD"]
    base = f"/v1/apis/{api['id']}/routes"
    assert client.get(f"{base}/{route['id']}").json() == route
    patched = client.patch(f"{base}/{route['id']}", json={"methods": []})
    assert patched.status_code == 200 and patched.json()["methods"] == []

    cleared = client.patch(f"/v1/apis/{api['id']}", json={"max_body_bytes": None})
    assert cleared.status_code == 200 and cleared.json()["max_body_bytes"] is None

    assert client.delete(f"/v1/apis/{api['id']}").status_code == 204
    assert client.get(f"{base}/{route['id']}").status_code == 404
    # The route went with its API, so the upstream is free to go.
    assert client.delete(f"/v1/upstreams/{up['id']}").status_code == 204


def test_route_delete(client: TestClient) -> None:
    up, api = make_upstream(client), make_api(client)
    route = make_route(client, api["id"], up["id"])
    assert client.delete(f"/v1/apis/{api['id']}/routes/{route['id']}").status_code == 204
    assert client.get(f"/v1/apis/{api['id']}/routes").json()["total"] == 0


# ---------------------------------------------------------------------------- pagination


def test_pagination(client: TestClient) -> None:
    names = [f"up-{i:02d}" for i in range(7)]
    for name in names:
        make_upstream(client, name)
    page = client.get("/v1/upstreams", params={"limit": 3, "offset": 2}).json()
    assert page["total"] == 7 and page["limit"] == 3 and page["offset"] == 2
    assert [u["name"] for u in page["items"]] == names[2:5]
    default = client.get("/v1/upstreams").json()
    assert default["limit"] == 50 and default["offset"] == 0 and len(default["items"]) == 7
    assert client.get("/v1/upstreams", params={"offset": 7}).json()["items"] == []
    assert field_errors(client.get("/v1/upstreams", params={"limit": 501})) == ["limit"]
    assert field_errors(client.get("/v1/upstreams", params={"offset": -1})) == ["offset"]


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("path_kind", "body", "field"),
    [
        ("upstreams", {"name": "x", "algorithm": "fastest"}, "algorithm"),
        ("upstreams", {"name": "x", "connect_timeout": 0}, "connect_timeout"),
        ("upstreams", {"name": "x", "retries": 11}, "retries"),
        ("upstreams", {}, "name"),
        ("targets", {"host": "h", "port": 0}, "port"),
        ("targets", {"host": "h", "port": 80, "weight": 1001}, "weight"),
        ("targets", {"host": "bad host", "port": 80}, "host"),
        ("apis", {"name": "a", "base_path": "shop"}, "base_path"),
        ("apis", {"name": "a", "base_path": "/a/{x}"}, "base_path"),
        ("apis", {"name": "a", "hosts": ["not a host"]}, "hosts"),
        ("apis", {"name": "a", "auth": "oauth"}, "auth"),
        ("apis", {"name": "a", "base_path": "/j", "auth": "jwt"}, "jwt_algorithms"),
        ("apis", {"name": "a", "base_path": "/j", "auth": "jwt", "jwt_algorithms": ["HS256"]}, "jwt_secret"),
        ("apis", {"name": "a", "base_path": "/j", "auth": "jwt", "jwt_algorithms": ["RS256"]}, "jwt_public_key"),
        ("apis", {"name": "a", "base_path": "/k", "key_header": "bad header"}, "key_header"),
        ("apis", {"name": "a", "surprise": 1}, "surprise"),
        ("routes", {"path": "items", "upstream_id": "u"}, "path"),
        ("routes", {"path": "/{rest+}/x", "upstream_id": "u"}, "path"),
        ("routes", {"path": "/x", "upstream_id": "u", "methods": ["FETCH"]}, "methods"),
    ],
)
def test_validation_names_the_field(client: TestClient, path_kind: str, body: dict[str, Any], field: str) -> None:
    if path_kind == "targets":
        url = f"/v1/upstreams/{make_upstream(client)['id']}/targets"
    elif path_kind == "routes":
        url = f"/v1/apis/{make_api(client)['id']}/routes"
    else:
        url = f"/v1/{path_kind}"
    assert field in field_errors(client.post(url, json=body))


def test_route_with_unknown_upstream_is_422(client: TestClient) -> None:
    api = make_api(client)
    assert field_errors(client.post(f"/v1/apis/{api['id']}/routes", json={"path": "/", "upstream_id": MISSING})) == [
        "upstream_id"
    ]


def test_patch_null_on_required_field_is_422(client: TestClient) -> None:
    up = make_upstream(client)
    assert field_errors(client.patch(f"/v1/upstreams/{up['id']}", json={"name": None})) == ["name"]


# ---------------------------------------------------------------------------- 404


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/v1/upstreams/{m}"),
        ("PATCH", "/v1/upstreams/{m}"),
        ("DELETE", "/v1/upstreams/{m}"),
        ("GET", "/v1/upstreams/{m}/targets"),
        ("GET", "/v1/apis/{m}"),
        ("DELETE", "/v1/apis/{m}"),
        ("GET", "/v1/apis/{m}/routes/{m}"),
    ],
)
def test_unknown_id_is_404(client: TestClient, method: str, url: str) -> None:
    response = client.request(method, url.format(m=MISSING), json={} if method == "PATCH" else None)
    assert response.status_code == 404
    assert MISSING in response.json()["detail"]


def test_child_of_another_parent_is_404(client: TestClient) -> None:
    a, b = make_upstream(client, "a"), make_upstream(client, "b")
    t = make_target(client, a["id"])
    assert client.get(f"/v1/upstreams/{b['id']}/targets/{t['id']}").status_code == 404


# ---------------------------------------------------------------------------- 409


def test_duplicate_names_are_409(client: TestClient) -> None:
    make_upstream(client, "dup")
    assert client.post("/v1/upstreams", json={"name": "dup"}).status_code == 409
    make_api(client, "dup", base_path="/one")
    assert client.post("/v1/apis", json={"name": "dup", "base_path": "/two"}).status_code == 409


def test_duplicate_target_is_409(client: TestClient) -> None:
    up = make_upstream(client)
    make_target(client, up["id"], host="h", port=1)
    other = make_target(client, up["id"], host="h", port=2)
    assert client.post(f"/v1/upstreams/{up['id']}/targets", json={"host": "H", "port": 1}).status_code == 409
    assert client.patch(f"/v1/upstreams/{up['id']}/targets/{other['id']}", json={"port": 1}).status_code == 409


@pytest.mark.parametrize(
    ("first", "second", "conflict"),
    [
        ({"base_path": "/shop"}, {"base_path": "/shop/"}, True),  # both any-host, same normalised path
        ({"base_path": "/shop", "hosts": ["a.com", "b.com"]}, {"base_path": "/shop", "hosts": ["B.com"]}, True),
        ({"base_path": "/shop", "hosts": ["a.com"]}, {"base_path": "/shop", "hosts": ["c.com"]}, False),
        ({"base_path": "/shop", "hosts": ["a.com"]}, {"base_path": "/shop"}, False),  # specific vs any host
        ({"base_path": "/shop"}, {"base_path": "/shop2"}, False),
    ],
)
def test_api_base_path_and_host_overlap(
    client: TestClient, first: dict[str, Any], second: dict[str, Any], conflict: bool
) -> None:
    make_api(client, "first", **first)
    response = client.post("/v1/apis", json={"name": "second", **second})
    assert response.status_code == (409 if conflict else 201), response.text


def test_api_patch_into_overlap_is_409(client: TestClient) -> None:
    make_api(client, "first", base_path="/a")
    second = make_api(client, "second", base_path="/b")
    assert client.patch(f"/v1/apis/{second['id']}", json={"base_path": "/a"}).status_code == 409
    assert client.patch(f"/v1/apis/{second['id']}", json={"base_path": "/b/"}).status_code == 200  # itself is fine


@pytest.mark.parametrize(
    ("first", "second", "conflict"),
    [
        ({"path": "/items/{id}", "methods": ["GET"]}, {"path": "/items/{id}", "methods": ["get"]}, True),
        ({"path": "/items/{id}", "methods": ["GET"]}, {"path": "/items/{item}", "methods": ["GET", "PUT"]}, True),
        ({"path": "/items/{id}", "methods": []}, {"path": "/items/{id}", "methods": ["DELETE"]}, True),
        ({"path": "/items/{id}", "methods": ["GET"]}, {"path": "/items/{id}", "methods": ["POST"]}, False),
        ({"path": "/items/{id}", "methods": ["GET"]}, {"path": "/items/{id}/", "methods": ["GET"]}, False),
        ({"path": "/items", "methods": ["GET"]}, {"path": "/orders", "methods": ["GET"]}, False),
    ],
)
def test_route_method_and_path_overlap(
    client: TestClient, first: dict[str, Any], second: dict[str, Any], conflict: bool
) -> None:
    up, api = make_upstream(client), make_api(client)
    make_route(client, api["id"], up["id"], **first)
    response = client.post(f"/v1/apis/{api['id']}/routes", json={"upstream_id": up["id"], **second})
    assert response.status_code == (409 if conflict else 201), response.text


def test_same_route_in_two_apis_is_fine(client: TestClient) -> None:
    up = make_upstream(client)
    for name, base in (("a", "/a"), ("b", "/b")):
        api = make_api(client, name, base_path=base)
        make_route(client, api["id"], up["id"], path="/x", methods=["GET"])


def test_deleting_an_upstream_in_use_is_409(client: TestClient) -> None:
    up, api = make_upstream(client), make_api(client)
    route = make_route(client, api["id"], up["id"])
    response = client.delete(f"/v1/upstreams/{up['id']}")
    assert response.status_code == 409 and "route" in response.json()["detail"]
    assert client.get(f"/v1/upstreams/{up['id']}").status_code == 200
    client.delete(f"/v1/apis/{api['id']}/routes/{route['id']}")
    assert client.delete(f"/v1/upstreams/{up['id']}").status_code == 204


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/upstreams" in spec["paths"] and "/v1/apis/{api_id}/routes" in spec["paths"]
    assert client.get("/docs").status_code == 200
