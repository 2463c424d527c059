"""JWKS URLs through the admin API on SQLite and PostgreSQL: the control plane fetches the key set, keeps
the public keys in the database and in the snapshot, publishes rotations, and keeps the last good keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.app import create_app
from control_plane.settings import Settings
from tests.integration.control_plane.conftest import ADMIN_HEADERS, CLUSTER_TOKEN
from tests.integration.control_plane.factories import make_api, revision
from tests.integration.harness import wait_until
from tests.jwks_server import JwksServer, SigningKey

OLD, NEW = SigningKey("old"), SigningKey("new")


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    server = JwksServer([OLD])
    yield server
    server.stop()


def _jwt_api(client: TestClient, url: str, **fields: Any) -> dict[str, Any]:
    return make_api(client, auth="jwt", jwt_algorithms=["RS256"], jwt_jwks_url=url, **fields)


def _snapshot(client: TestClient) -> dict[str, Any]:
    """What a worker receives, through the cluster channel."""
    r = client.get("/cluster/v1/snapshot", headers={"Authorization": f"Bearer {CLUSTER_TOKEN}"})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _snapshot_keys(client: TestClient) -> list[dict[str, str]]:
    settings = _snapshot(client)["apis"][0]["auth_settings"]
    keys: list[dict[str, str]] = settings.get("jwt_jwks", [])
    return keys


def test_created_api_ships_the_fetched_public_keys_in_one_revision(client: TestClient, idp: JwksServer) -> None:
    api = _jwt_api(client, idp.url)
    assert api["jwt_jwks_url"] == idp.url
    status = api["jwks"]
    assert status["kids"] == ["old"] and status["last_error"] is None and status["fetched_at"] is not None
    assert revision(client) == 1  # the API and its first key set: one write
    (key,) = _snapshot_keys(client)
    assert key == {"kid": "old", "kty": "RSA", "alg": "RS256", "n": OLD.public_jwk()["n"], "e": "AQAB"}
    assert _snapshot(client)["apis"][0]["auth_settings"]["jwt_jwks_url"] == idp.url


def test_rotation_publishes_a_new_snapshot_and_an_unchanged_set_does_not(client: TestClient, idp: JwksServer) -> None:
    api = _jwt_api(client, idp.url)
    before = client.get("/v1/config").json()
    idp.keys = [NEW]
    r = client.post(f"/v1/apis/{api['id']}/jwks/refresh")
    assert r.status_code == 200, r.text
    assert r.json()["kids"] == ["new"]
    after = client.get("/v1/config").json()
    assert after["revision"] == before["revision"] + 1 and after["hash"] != before["hash"]
    assert [k["kid"] for k in _snapshot_keys(client)] == ["new"]

    assert client.post(f"/v1/apis/{api['id']}/jwks/refresh").json()["kids"] == ["new"]
    assert revision(client) == after["revision"]


def test_failed_fetch_keeps_the_last_good_keys_and_says_why(client: TestClient, idp: JwksServer) -> None:
    api = _jwt_api(client, idp.url)
    fetched_at = api["jwks"]["fetched_at"]
    rev = revision(client)
    idp.stop()
    r = client.post(f"/v1/apis/{api['id']}/jwks/refresh")
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["kids"] == ["old"] and status["fetched_at"] == fetched_at
    assert status["last_error"] == "request failed (ConnectError)" and idp.url not in status["last_error"]
    assert client.get(f"/v1/apis/{api['id']}").json()["jwks"]["last_error"] == status["last_error"]
    assert [k["kid"] for k in _snapshot_keys(client)] == ["old"] and revision(client) == rev


def test_a_new_url_never_uses_the_old_urls_keys(client: TestClient, idp: JwksServer) -> None:
    api = _jwt_api(client, idp.url)
    missing = idp.url.replace("jwks.json", "gone.json")
    r = client.patch(f"/v1/apis/{api['id']}", json={"jwt_jwks_url": missing})
    assert r.status_code == 200, r.text
    assert r.json()["jwks"]["last_error"] == "HTTP status 404" and r.json()["jwks"]["kids"] == []
    assert _snapshot_keys(client) == []
    r = client.patch(f"/v1/apis/{api['id']}", json={"jwt_jwks_url": idp.url})
    assert r.json()["jwks"]["kids"] == ["old"] and [k["kid"] for k in _snapshot_keys(client)] == ["old"]


def test_keys_survive_a_restart_while_the_identity_provider_is_down(settings: Settings, idp: JwksServer) -> None:
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as first:
        _jwt_api(first, idp.url)
        sealed = first.get("/v1/config").json()
    idp.stop()
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as second:
        again = second.get("/v1/config").json()
        assert again["hash"] == sealed["hash"] and [k["kid"] for k in _snapshot_keys(second)] == ["old"]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"jwt_jwks_url": "ftp://idp.example/jwks.json"}, "jwt_jwks_url"),
        ({"jwt_jwks_url": "not a url"}, "jwt_jwks_url"),
        ({"jwt_jwks_url": "https://idp.example/jwks", "jwt_algorithms": ["HS256"], "jwt_secret": "s" * 32}, "RS256"),
        ({"jwt_jwks_url": "https://idp.example/jwks", "jwt_public_key": "-----BEGIN PUBLIC KEY-----"}, "not both"),
    ],
)
def test_unusable_jwks_settings_are_refused(client: TestClient, fields: dict[str, Any], where: str) -> None:
    body = {"name": "bad", "auth": "jwt", "jwt_algorithms": ["RS256"], **fields}
    r = client.post("/v1/apis", json=body)
    assert r.status_code == 422 and where in r.text, r.text
    assert revision(client) == 0


def test_refresh_of_an_api_without_a_jwks_url_is_refused(client: TestClient) -> None:
    api = make_api(client)
    assert client.post(f"/v1/apis/{api['id']}/jwks/refresh").status_code == 422


def test_an_api_applied_declaratively_gets_its_keys_from_the_refresher(client: TestClient, idp: JwksServer) -> None:
    doc = {"apis": [{"name": "decl", "auth": "jwt", "jwt_algorithms": ["RS256"], "jwt_jwks_url": idp.url}]}
    r = client.post("/v1/config/apply", json={"config": doc})
    assert r.status_code == 200, r.text
    api_id = client.get("/v1/apis").json()["items"][0]["id"]
    # No fetch in the apply itself: the revision change pokes the refresher, which stores the keys.
    status = wait_until(lambda: client.get(f"/v1/apis/{api_id}").json()["jwks"], what="the refresher's fetch")
    assert status["kids"] == ["old"] and status["last_error"] is None
    wait_until(lambda: [k["kid"] for k in _snapshot_keys(client)] == ["old"], what="the keys in the snapshot")
    exported = client.get("/v1/config/export").json()
    assert exported["apis"][0]["jwt_jwks_url"] == idp.url and "jwks" not in exported["apis"][0]
