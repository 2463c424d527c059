"""Small helpers that create resources through the admin API and return their JSON."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_upstream(client: TestClient, name: str = "orders", **fields: Any) -> dict[str, Any]:
    return created(client.post("/v1/upstreams", json={"name": name, **fields}))


def make_target(
    client: TestClient, upstream_id: str, host: str = "10.0.0.1", port: int = 8080, **fields: Any
) -> dict[str, Any]:
    return created(client.post(f"/v1/upstreams/{upstream_id}/targets", json={"host": host, "port": port, **fields}))


def make_api(client: TestClient, name: str = "shop", **fields: Any) -> dict[str, Any]:
    return created(client.post("/v1/apis", json={"name": name, **fields}))


def make_route(
    client: TestClient, api_id: str, upstream_id: str, path: str = "/items/{id}", **fields: Any
) -> dict[str, Any]:
    return created(client.post(f"/v1/apis/{api_id}/routes", json={"path": path, "upstream_id": upstream_id, **fields}))


def revision(client: TestClient) -> int:
    response = client.get("/v1/config")
    assert response.status_code == 200, response.text
    value: int = response.json()["revision"]
    return value


def config_hash(client: TestClient) -> str:
    value: str = client.get("/v1/config").json()["hash"]
    return value
