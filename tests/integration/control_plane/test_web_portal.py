"""The customer portal in process (SQLite and PostgreSQL): invites, argon2 passwords, self-service
keys under the operator's cap, and a customer seeing nothing of another (404 for their ids)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from control_plane.app import create_app
from control_plane.models import PortalAccount, PortalInvite
from control_plane.settings import Settings
from tests.integration.control_plane.conftest import ADMIN_HEADERS, TestClient

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def setup_customer(admin: TestClient, name: str, key_limit: int = 2) -> tuple[str, str, str]:
    """A customer granted a fresh API: (customer id, api id, invite path)."""
    up = admin.post("/v1/upstreams", json={"name": f"up-{name}"}).json()
    api = admin.post("/v1/apis", json={"name": f"api-{name}", "base_path": f"/{name}", "auth": "api_key"}).json()
    admin.post(f"/v1/apis/{api['id']}/routes", json={"path": "/items", "upstream_id": up["id"], "methods": ["GET"]})
    cust = admin.post("/v1/customers", json={"name": name, "api_ids": [api["id"]]}).json()
    r = admin.post(f"/v1/customers/{cust['id']}/portal-invites", json={"key_limit": key_limit, "ttl_seconds": 3600})
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    assert url.startswith("http://testserver/portal/invite/")
    return cust["id"], api["id"], url.removeprefix("http://testserver")


def accept(browser: TestClient, invite: str, password: str = PASSWORD) -> None:
    form = browser.get(invite)
    assert form.status_code == 200
    r = browser.post(invite, data={"csrf": csrf_of(form.text), "password": password, "confirm": password})
    assert r.status_code == 200 and "Your keys and usage" in r.text, r.text


def test_invite_is_one_time_password_is_argon2_and_sign_in_works(client: TestClient, settings: Settings) -> None:
    cust_id, _api, invite = setup_customer(client, "acme")
    with TestClient(create_app(settings)) as browser:
        short = browser.get(invite)
        r = browser.post(invite, data={"csrf": csrf_of(short.text), "password": "short", "confirm": "short"})
        assert r.status_code == 422 and "at least 12 characters" in r.text
        accept(browser, invite)
        assert browser.get(invite).status_code == 404  # used up
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        account = s.get(PortalAccount, cust_id)
        assert account is not None and account.password_hash.startswith("$argon2id$")
        token = invite.rsplit("/", 1)[1]
        assert token not in str(s.execute(select(PortalInvite.token_hash)).scalars().all())
    with TestClient(create_app(settings)) as browser:
        csrf = csrf_of(browser.get("/portal/signin").text)
        bad = browser.post("/portal/signin", data={"csrf": csrf, "name": "acme", "password": "wrong password!"})
        assert bad.status_code == 401
        r = browser.post("/portal/signin", data={"csrf": csrf, "name": "acme", "password": PASSWORD})
        assert "Your keys and usage" in r.text and "api-acme" in r.text


def test_an_expired_invite_is_refused(client: TestClient, settings: Settings) -> None:
    _cust, _api, invite = setup_customer(client, "late")
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        s.execute(update(PortalInvite).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    with TestClient(create_app(settings)) as browser:
        assert browser.get(invite).status_code == 404


def test_keys_under_the_cap_rotate_and_revoke(client: TestClient, settings: Settings) -> None:
    cust_id, _api, invite = setup_customer(client, "capped", key_limit=2)
    with TestClient(create_app(settings)) as browser:
        accept(browser, invite)
        csrf = csrf_of(browser.get("/portal/").text)
        for _ in range(2):
            r = browser.post("/portal/keys", data={"csrf": csrf, "name": "k"})
            assert r.status_code == 201 and '<code id="new-key">' in r.text
        r = browser.post("/portal/keys", data={"csrf": csrf})
        assert r.status_code == 409 and "at most 2 keys" in r.text
        keys = client.get(f"/v1/customers/{cust_id}/keys").json()["items"]
        r = browser.post(f"/portal/keys/{keys[0]['id']}/revoke", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303
        r = browser.post(f"/portal/keys/{keys[1]['id']}/rotate", data={"csrf": csrf, "grace_seconds": "60"})
        assert r.status_code == 201
        assert browser.post("/portal/keys", data={"csrf": "forged"}).status_code == 403
    statuses = sorted(k["status"] for k in client.get(f"/v1/customers/{cust_id}/keys").json()["items"])
    assert statuses == ["active", "active", "revoked"]


def test_a_customer_sees_nothing_of_another(client: TestClient, settings: Settings) -> None:
    a_id, a_api, a_invite = setup_customer(client, "alpha")
    b_id, b_api, b_invite = setup_customer(client, "bravo")
    b_key = client.post(f"/v1/customers/{b_id}/keys", json={}).json()
    with TestClient(create_app(settings)) as browser:
        for path in ("/portal/", f"/portal/apis/{a_api}", f"/portal/apis/{a_api}/openapi.json"):
            assert browser.get(path, follow_redirects=False).headers["location"] == "/portal/signin"
        accept(browser, a_invite)
        csrf = csrf_of(browser.get("/portal/").text)
        assert browser.get(f"/portal/apis/{a_api}/openapi.json").json()["info"]["title"]
        assert "bravo" not in browser.get("/portal/").text and "api-bravo" not in browser.get("/portal/").text
        for path in (f"/portal/apis/{b_api}", f"/portal/apis/{b_api}/openapi.json", f"/portal/apis/{b_api}/sdk"):
            assert browser.get(path).status_code == 404, path
        for action in ("revoke", "rotate"):
            r = browser.post(f"/portal/keys/{b_key['id']}/{action}", data={"csrf": csrf})
            assert r.status_code == 404, action
        # the portal session opens nothing of the admin API or the console
        assert browser.get(f"/v1/customers/{b_id}").status_code == 401
        assert browser.get("/console/", follow_redirects=False).status_code == 303
    assert client.get(f"/v1/customers/{b_id}/keys/{b_key['id']}").json()["status"] == "active"
    assert a_id != b_id


def test_invite_needs_an_admin_token(client: TestClient) -> None:
    cust = client.post("/v1/customers", json={"name": "x"}).json()
    viewer = client.post("/v1/admin-tokens", json={"name": "ro", "role": "viewer"}).json()["token"]
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    r = client.post(f"/v1/customers/{cust['id']}/portal-invites", json={}, headers=as_viewer)
    assert r.status_code == 403
    assert client.post("/v1/customers/nope/portal-invites", json={}, headers=ADMIN_HEADERS).status_code == 404
