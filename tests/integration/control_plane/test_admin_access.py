"""Admin API access control (tokens, roles, revocation, separation from the cluster channel) and the audit log."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.control_plane.conftest import ADMIN_TOKEN, CLUSTER_TOKEN
from tests.integration.control_plane.factories import created, make_upstream


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_unknown_or_cluster_token_is_401(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, bearer("not-a-token"), bearer(CLUSTER_TOKEN)):
        r = client.get("/v1/upstreams", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers


def test_admin_token_does_not_open_the_cluster_channel(client: TestClient) -> None:
    r = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=bearer(ADMIN_TOKEN))
    assert r.status_code == 401
    assert client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=bearer(CLUSTER_TOKEN)).status_code == 200


def test_viewer_reads_but_cannot_write_and_revoked_token_is_401(client: TestClient) -> None:
    issued = created(client.post("/v1/admin-tokens", json={"name": "ops-viewer", "role": "viewer"}))
    viewer = bearer(issued["token"])
    assert "token" not in client.get("/v1/admin-tokens").json()["items"][0]
    make_upstream(client, "u1")
    assert client.get("/v1/upstreams", headers=viewer).json()["total"] == 1
    r = client.post("/v1/upstreams", json={"name": "u2"}, headers=viewer)
    assert r.status_code == 403 and "viewer" in r.json()["detail"]
    assert client.delete(f"/v1/admin-tokens/{issued['id']}").status_code == 204
    assert client.get("/v1/upstreams", headers=viewer).status_code == 401


def test_writes_are_audited_newest_first(client: TestClient) -> None:
    up = make_upstream(client, "audited")
    client.patch(f"/v1/upstreams/{up['id']}", json={"retries": 1})
    client.post("/v1/upstreams", json={"name": "audited"})  # 409: nothing changed, nothing audited
    entries = client.get("/v1/audit").json()["items"]
    assert [(e["method"], e["resource_id"]) for e in entries[:2]] == [("PATCH", up["id"]), ("POST", up["id"])]
    assert entries[0]["path"] == f"/v1/upstreams/{up['id']}" and entries[0]["token_name"].startswith("bootstrap")
    assert len(entries) == 2


def test_customer_keys_are_shown_once_and_api_hides_jwt_secret(client: TestClient) -> None:
    api = created(
        client.post(
            "/v1/apis",
            json={"name": "j", "auth": "jwt", "jwt_algorithms": ["HS256"], "jwt_secret": "s" * 40},
        )
    )
    assert api["jwt_secret_set"] is True and "jwt_secret" not in api
    cust = created(client.post("/v1/customers", json={"name": "acme", "api_ids": [api["id"]], "metadata": {"t": 1}}))
    assert cust["api_ids"] == [api["id"]] and cust["status"] == "active"
    key = created(client.post(f"/v1/customers/{cust['id']}/keys", json={"name": "k"}))
    listed = client.get(f"/v1/customers/{cust['id']}/keys").json()["items"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    assert key["key"] not in client.get(f"/v1/customers/{cust['id']}/keys/{key['id']}").text
    bad = client.post("/v1/customers", json={"name": "x", "api_ids": ["00000000-0000-4000-8000-000000000000"]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "api_ids"
    assert client.delete(f"/v1/customers/{cust['id']}").status_code == 204
    assert client.get(f"/v1/customers/{cust['id']}/keys").status_code == 404


def test_openapi_declares_bearer_security(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "admin API token (role admin or viewer)",
    }
    op = spec["paths"]["/v1/customers"]["post"]
    assert {"adminToken": []} in op["security"] and {"401", "403"} <= set(op["responses"])


def test_validation_errors_never_echo_the_rejected_value(client: TestClient) -> None:
    # A JWT secret that is too short and an imported key with a forbidden character: both refused,
    # neither value appears in the 422 body.
    secret = "short-secret-value"
    r = client.post("/v1/apis", json={"name": "j", "auth": "jwt", "jwt_algorithms": ["HS256"], "jwt_secret": secret})
    assert r.status_code == 422 and "jwt_secret" in r.text and secret not in r.text
    customer = client.post("/v1/customers", json={"name": "c"}).json()
    bad_key = "not allowed because of spaces in it"
    r = client.post(f"/v1/customers/{customer['id']}/keys", json={"key": bad_key})
    assert r.status_code == 422 and bad_key not in r.text
