"""A dump restores: export a rich config, apply it to an empty control plane, export again: identical
(SQLite and PostgreSQL).  And ``dump`` then ``diff`` is a no-op, whatever partial values were written."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from control_plane import migrate
from control_plane.app import create_app
from control_plane.settings import Settings
from tests.integration.certificates_support import issue
from tests.integration.control_plane.conftest import ADMIN_HEADERS
from tests.integration.control_plane.factories import created, make_api, make_route, make_target, make_upstream
from tests.jwks_server import JwksServer, SigningKey

PETSTORE = (Path(__file__).resolve().parents[2] / "data" / "petstore.yaml").read_bytes()


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    server = JwksServer([SigningKey("k1")])
    yield server
    server.stop()


@pytest.fixture
def empty_client(
    database_url: str, settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    """A second control plane on an empty database of the same backend."""
    if database_url.startswith("sqlite"):
        target = tmp_path / "restored.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_template"), target)
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("postgres_url")
        migrate.upgrade(url)
    other = Settings(
        database_url=url,
        data_dir=tmp_path / "restored-data",
        cluster_token=settings.cluster_token,
        admin_token=settings.admin_token,
        revision_poll_interval=0.05,
        migrate_on_start=False,
    )
    with TestClient(create_app(other), headers=ADMIN_HEADERS) as test_client:
        yield test_client


def ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def build_rich_config(client: TestClient, jwks_url: str) -> dict[str, str]:
    """Every resource kind, an import, overrides, a JWKS API, partial health checks; the certificate's key."""
    pem = issue(trustme.CA(), "api.example.com")
    cert = created(client.post("/v1/certificates", json={"name": "edge", "cert": pem.cert, "key": pem.key}))
    up = make_upstream(client, "orders-svc", retries=2, client_certificate_id=cert["id"])
    make_target(client, up["id"], "127.0.0.1", 9101, weight=1)
    make_target(client, up["id"], "127.0.0.1", 9102, weight=2)
    # partial nested values, as an operator PATCHes them: the defaults must not show up as drift
    ok(client.patch(f"/v1/upstreams/{up['id']}", json={"health_check": {"path": "/healthz"}}))
    ok(client.patch(f"/v1/upstreams/{up['id']}", json={"passive": {"consecutive_failures": 3}}))
    pets = make_upstream(client, "pets")
    make_target(client, pets["id"], "127.0.0.1", 9200)
    orders = make_api(client, "orders", base_path="/orders", hosts=["api.example.com"])
    items = make_route(client, orders["id"], up["id"], "/items/{id}", methods=["GET"])
    make_route(client, orders["id"], up["id"], "/items", methods=["GET", "POST"], read_timeout=7.5)
    make_route(client, orders["id"], up["id"], "/{proxy+}", policies={"cors": {"allow_origins": ["*"]}})
    make_api(client, "idp-api", base_path="/idp", auth="jwt", jwt_algorithms=["RS256"], jwt_jwks_url=jwks_url)
    imported = client.post("/v1/apis/import", params={"upstream_id": "pets"}, content=PETSTORE,
                           headers={"content-type": "application/yaml"})  # fmt: skip
    assert imported.status_code == 201, imported.text
    petstore_id = imported.json()["api"]["id"]
    overrides = [
        {"method": "GET", "path": "/items/{id}", "rate": 1, "burst": 2},
        {"method": "POST", "path": "/items", "rate": 2, "burst": 4},
    ]
    plan = created(
        client.post(
            "/v1/usage-plans",
            json={
                "name": "gold",
                "throttle": {"rate": 20, "burst": 40},
                "quota": {"limit": 100000, "period": "MONTH"},
                "apis": [{"api_id": orders["id"], "overrides": overrides}, {"api_id": petstore_id}],
            },
        )
    )
    customer = created(client.post("/v1/customers", json={"name": "acme", "email": "ops@acme.example"}))
    ok(client.put(f"/v1/customers/{customer['id']}/plan", json={"plan_id": plan["id"]}))
    ok(client.patch(f"/v1/customers/{customer['id']}", json={"api_ids": [orders["id"]]}))
    # The README's own step: the route an override uses goes; the override goes with it.
    assert client.delete(f"/v1/apis/{orders['id']}/routes/{items['id']}").status_code == 204
    kept = ok(client.get(f"/v1/usage-plans/{plan['id']}"))["apis"][0]["overrides"]
    assert [(o["method"], o["path"]) for o in kept] == [("POST", "/items")]
    return {"edge": pem.key, "petstore": petstore_id}


def apply(client: TestClient, doc: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = ok(client.post("/v1/config/apply", json={"config": doc, "dry_run": dry_run}))
    return result


def test_a_dump_applies_to_an_empty_control_plane_and_dumps_the_same(
    client: TestClient, empty_client: TestClient, idp: JwksServer
) -> None:
    secrets = build_rich_config(client, idp.url)
    dump = ok(client.get("/v1/config/export"))
    assert {a["name"] for a in dump["apis"]} == {"orders", "idp-api", "swagger-petstore"}
    petstore = next(a for a in dump["apis"] if a["name"] == "swagger-petstore")
    assert petstore["openapi"]["info"]["title"] == "Swagger Petstore"  # the imported document is kept
    assert all(r.get("operation") for r in petstore["routes"])
    # dump → diff on the same control plane: no drift (partial health_check / passive included)
    assert apply(client, dump, dry_run=True)["changes"] == []

    restore = copy.deepcopy(dump)
    restore["certificates"][0]["key"] = secrets["edge"]  # keys never come out: the operator supplies them
    result = apply(empty_client, restore)
    assert result["changed"] is True
    assert ok(empty_client.get("/v1/config/export")) == dump
    assert apply(empty_client, dump, dry_run=True)["changes"] == []

    # the restored API exports the same OpenAPI document (hence the same SDK), not a generic one
    restored_id = next(a["id"] for a in ok(empty_client.get("/v1/apis"))["items"] if a["name"] == "swagger-petstore")
    original = ok(client.get(f"/v1/apis/{secrets['petstore']}/openapi.json"))
    assert ok(empty_client.get(f"/v1/apis/{restored_id}/openapi.json")) == original


def test_an_override_without_its_route_is_named_by_names(client: TestClient) -> None:
    up = make_upstream(client, "orders-svc")
    api = make_api(client, "orders", base_path="/orders")
    make_route(client, api["id"], up["id"], "/items", methods=["GET"])
    doc = ok(client.get("/v1/config/export"))
    doc["usage_plans"] = [
        {
            "name": "gold",
            "apis": [{"api": "orders", "overrides": [{"method": "GET", "path": "/gone", "rate": 1, "burst": 1}]}],
        }
    ]
    r = client.post("/v1/config/apply", json={"config": doc})
    assert r.status_code == 422, r.text
    assert "api 'orders' has no route GET /gone" in r.text and api["id"] not in r.text


def test_narrowing_a_route_removes_the_overrides_it_no_longer_serves(client: TestClient) -> None:
    up = make_upstream(client, "orders-svc")
    api = make_api(client, "orders", base_path="/orders")
    route = make_route(client, api["id"], up["id"], "/items", methods=["GET", "POST"])
    overrides = [{"method": m, "path": "/items", "rate": 1, "burst": 1} for m in ("GET", "POST")]
    plan = created(
        client.post("/v1/usage-plans", json={"name": "gold", "apis": [{"api_id": api["id"], "overrides": overrides}]})
    )
    ok(client.patch(f"/v1/apis/{api['id']}/routes/{route['id']}", json={"methods": ["GET"]}))
    kept = ok(client.get(f"/v1/usage-plans/{plan['id']}"))["apis"][0]["overrides"]
    assert [o["method"] for o in kept] == ["GET"]


def test_rows_stored_partial_compare_as_complete(client: TestClient, database_url: str) -> None:
    """Rows an older release wrote with only the members a PATCH named still dump → diff as no change."""
    up = make_upstream(client, "orders-svc")
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE upstreams SET health_check = :hc WHERE id = :id"),
                {"hc": '{"path": "/healthz"}', "id": up["id"]},
            )
    finally:
        engine.dispose()
    dump = ok(client.get("/v1/config/export"))
    assert dump["upstreams"][0]["health_check"]["interval"] == 5.0
    assert apply(client, dump, dry_run=True)["changes"] == []


def test_the_snapshot_is_exported_to_admin_tokens_only(client: TestClient) -> None:
    make_upstream(client, "orders-svc")
    r = client.get("/v1/config/snapshot")
    assert r.status_code == 200, r.text
    assert (
        r.json()["revision"] == int(r.headers["x-tollgate-revision"])
        and r.json()["hash"] == r.headers["x-tollgate-hash"]
    )
    viewer = created(client.post("/v1/admin-tokens", json={"name": "ro", "role": "viewer"}))["token"]
    r = client.get("/v1/config/snapshot", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
