"""The console and the offline /docs, in process (SQLite and PostgreSQL): sign-in, cookies, CSRF,
the rate limit, expiry, viewer read-only, and forms that give the admin API's own messages."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from control_plane.app import create_app
from control_plane.models import AuditEntry, WebSession
from control_plane.settings import Settings
from tests.integration.control_plane.conftest import ADMIN_TOKEN, TestClient


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, token: str = ADMIN_TOKEN) -> str:
    """Sign in through the form; the CSRF token of the new session."""
    form = client.get("/console/signin")
    r = client.post("/console/signin", data={"token": token, "csrf": csrf_of(form.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/console/").text)


def test_docs_load_only_vendored_assets(client: TestClient) -> None:
    html = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert client.get("/redoc").status_code == 404  # FastAPI's ReDoc page loads from the internet


def test_sign_in_sets_a_strict_http_only_cookie_and_a_bad_token_is_refused(client: TestClient) -> None:
    assert client.get("/console/", follow_redirects=False).headers["location"] == "/console/signin"
    form = client.get("/console/signin")
    bad = client.post("/console/signin", data={"token": "tga_nope", "csrf": csrf_of(form.text)})
    assert bad.status_code == 401 and "unknown or revoked token" in bad.text
    assert client.post("/console/signin", data={"token": ADMIN_TOKEN, "csrf": "forged"}).status_code == 403
    r = client.post("/console/signin", data={"token": ADMIN_TOKEN, "csrf": csrf_of(form.text)}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("tg_console=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie and ADMIN_TOKEN not in cookie
    assert "Config revision" in client.get("/console/").text


def test_cookie_is_secure_over_https(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        form = c.get("/console/signin")
        r = c.post("/console/signin", data={"token": ADMIN_TOKEN, "csrf": csrf_of(form.text)}, follow_redirects=False)
        assert "Secure" in r.headers["set-cookie"]


def test_sign_in_attempts_are_rate_limited_per_client(settings: Settings) -> None:
    with TestClient(create_app(replace(settings, web_signin_per_minute=3))) as c:
        csrf = csrf_of(c.get("/console/signin").text)
        codes = [c.post("/console/signin", data={"token": "wrong", "csrf": csrf}).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = c.post("/console/signin", data={"token": ADMIN_TOKEN, "csrf": csrf})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # even the right token, for now


def test_forms_need_the_session_csrf_token(client: TestClient) -> None:
    sign_in(client)
    for csrf in ("", "0" * 64):
        r = client.post("/console/upstreams", data={"csrf": csrf, "name": "u1"})
        assert r.status_code == 403 and "CSRF" in r.text
    assert client.get("/v1/upstreams").json()["total"] == 0


def test_an_expired_session_goes_back_to_sign_in(client: TestClient) -> None:
    csrf = sign_in(client)
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        s.execute(update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    assert client.get("/console/", follow_redirects=False).headers["location"] == "/console/signin"
    r = client.post("/console/upstreams", data={"csrf": csrf, "name": "late"}, follow_redirects=False)
    assert r.status_code == 303 and client.get("/v1/upstreams").json()["total"] == 0


def test_sign_out_ends_the_session_row(client: TestClient) -> None:
    csrf = sign_in(client)
    client.post("/console/signout", data={"csrf": csrf})
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_viewer_sees_pages_without_forms_and_cannot_write(client: TestClient) -> None:
    viewer = client.post("/v1/admin-tokens", json={"name": "ro", "role": "viewer"}).json()["token"]
    up = client.post("/v1/upstreams", json={"name": "seen"}).json()
    csrf = sign_in(client, viewer)
    page = client.get(f"/console/upstreams/{up['id']}").text
    assert "seen" in page and "read-only" in page
    assert 'method="post" action="/console/upstreams' not in page
    r = client.post(f"/console/upstreams/{up['id']}/delete", data={"csrf": csrf})
    assert r.status_code == 403 and "may only read" in r.text
    assert client.get(f"/v1/upstreams/{up['id']}").status_code == 200


def test_create_upstream_api_route_customer_key_through_forms(client: TestClient) -> None:
    csrf = sign_in(client)
    r = client.post("/console/upstreams", data={"csrf": csrf, "name": "backend", "targets": "127.0.0.1:9"})
    assert r.status_code == 200 and "127.0.0.1:9" in r.text
    up = client.get("/v1/upstreams").json()["items"][0]
    r = client.post("/console/apis", data={"csrf": csrf, "name": "orders", "base_path": "/orders", "auth": "api_key"})
    api = client.get("/v1/apis").json()["items"][0]
    assert api["auth"] == "api_key"
    r = client.post(
        f"/console/apis/{api['id']}/routes",
        data={"csrf": csrf, "path": "/items/{id}", "methods": "get", "upstream_id": up["id"]},
    )
    routes = client.get(f"/v1/apis/{api['id']}/routes").json()["items"]
    assert [(x["path"], x["methods"]) for x in routes] == [("/items/{id}", ["GET"])]
    client.post("/console/customers", data={"csrf": csrf, "name": "acme"})
    cust = client.get("/v1/customers").json()["items"][0]
    r = client.post(f"/console/customers/{cust['id']}/keys", data={"csrf": csrf, "name": "k1"})
    key = re.search(r'<code id="new-key">([^<]+)</code>', r.text)
    assert key and 'data-copy="new-key"' in r.text
    keys = client.get(f"/v1/customers/{cust['id']}/keys").json()["items"]
    assert len(keys) == 1 and key.group(1).startswith(keys[0]["prefix"])
    assert key.group(1) not in client.get(f"/console/customers/{cust['id']}").text  # shown once
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        paths = [e.path for e in s.query(AuditEntry).all()]
    assert f"/console/customers/{cust['id']}/keys" in paths
    audit = client.get("/console/audit", params={"path": "/keys"}).text
    assert f"/console/customers/{cust['id']}/keys" in audit and "/console/apis<" not in audit


def test_form_errors_are_the_admin_api_messages(client: TestClient) -> None:
    csrf = sign_in(client)
    client.post("/v1/upstreams", json={"name": "taken"})
    api_message = client.post("/v1/upstreams", json={"name": "taken"}).json()["detail"]
    r = client.post("/console/upstreams", data={"csrf": csrf, "name": "taken"})
    assert r.status_code == 409 and api_message in r.text.replace("&#39;", "'")
    api_422 = client.post("/v1/upstreams/x/targets", json={"host": "h", "port": 70000})
    r = client.post("/console/upstreams", data={"csrf": csrf, "name": "other", "targets": "127.0.0.1:70000"})
    assert r.status_code == 422
    assert api_422.status_code in (404, 422)
    assert "port: Input should be less than or equal to 65535" in r.text
    assert client.get("/v1/upstreams").json()["total"] == 1  # the failed form changed nothing


def test_declarative_paste_shows_the_diff_then_applies(client: TestClient) -> None:
    csrf = sign_in(client)
    doc = "upstreams:\n  - name: pasted\n    targets:\n      - host: 127.0.0.1\n        port: 9\n"
    r = client.post("/console/config", data={"csrf": csrf, "document": doc, "action": "diff"})
    assert r.status_code == 200 and "create upstream pasted" in r.text
    assert client.get("/v1/upstreams").json()["total"] == 0
    r = client.post("/console/config", data={"csrf": csrf, "document": doc, "action": "apply"})
    assert "Applied" in r.text and client.get("/v1/upstreams").json()["items"][0]["name"] == "pasted"
    r = client.post("/console/config", data={"csrf": csrf, "document": "upstreams: [ {", "action": "diff"})
    assert r.status_code == 422 and "not YAML" in r.text


@pytest.mark.parametrize(
    "path",
    ["/console/", "/console/upstreams", "/console/apis", "/console/customers", "/console/plans", "/console/audit"],
)
def test_every_page_labels_its_controls(client: TestClient, path: str) -> None:
    sign_in(client)
    html = client.get(path).text
    ids = set(re.findall(r'<label for="([^"]+)"', html))
    for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
        if 'type="hidden"' in control:
            continue
        control_id = re.search(r'id="([^"]+)"', control)
        assert control_id and control_id.group(1) in ids, control


def test_edit_customer_and_plan_through_forms(client: TestClient) -> None:
    csrf = sign_in(client)
    api = client.post("/v1/apis", json={"name": "a1", "base_path": "/a1"}).json()
    cust = client.post("/v1/customers", json={"name": "before"}).json()
    plan = client.post("/v1/usage-plans", json={"name": "p", "quota": {"limit": 5, "period": "DAY"}}).json()
    r = client.post(
        f"/console/customers/{cust['id']}",
        data={"csrf": csrf, "name": "after", "status": "suspended", "api_ids": [api["id"]]},
    )
    assert r.status_code == 200
    got = client.get(f"/v1/customers/{cust['id']}").json()
    assert (got["name"], got["status"], got["api_ids"]) == ("after", "suspended", [api["id"]])
    data = {"csrf": csrf, "name": "p2", "rate": "2", "burst": "4", "quota_limit": "", "api_ids": [api["id"]]}
    assert client.post(f"/console/plans/{plan['id']}", data=data).status_code == 200
    got = client.get(f"/v1/usage-plans/{plan['id']}").json()
    assert got["name"] == "p2" and got["quota"] is None and got["throttle"] == {"rate": 2.0, "burst": 4}
    assert [a["api_id"] for a in got["apis"]] == [api["id"]]
    r = client.post(f"/console/plans/{plan['id']}", data={**data, "rate": "0"})
    assert r.status_code == 422 and "throttle.rate" in r.text


def test_declarative_upload_and_plan_usage_page(client: TestClient) -> None:
    csrf = sign_in(client)
    doc = b"upstreams:\n  - name: uploaded\n"
    r = client.post(
        "/console/config",
        data={"csrf": csrf, "document": "", "action": "apply"},
        files={"file": ("gateway.yaml", doc, "application/yaml")},
    )
    assert r.status_code == 200 and "create upstream uploaded" in r.text
    assert [u["name"] for u in client.get("/v1/upstreams").json()["items"]] == ["uploaded"]
    plan = client.post("/v1/usage-plans", json={"name": "gold", "quota": {"limit": 9, "period": "DAY"}}).json()
    cust = client.post("/v1/customers", json={"name": "sub"}).json()
    client.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": plan["id"]})
    html = client.get(f"/console/plans/{plan['id']}").text
    assert html.count('<svg class="chart"') == 2 and "daily quota 9" in html and "sub: requests per day" in html


def test_edit_a_route_through_its_form(client: TestClient) -> None:
    csrf = sign_in(client)
    up = client.post("/v1/upstreams", json={"name": "u"}).json()
    api = client.post("/v1/apis", json={"name": "a", "base_path": "/a"}).json()
    route = client.post(f"/v1/apis/{api['id']}/routes", json={"path": "/x", "upstream_id": up["id"]}).json()
    form = {"csrf": csrf, "path": "/y/{id}", "methods": "get, post", "upstream_id": up["id"]}
    assert client.post(f"/console/apis/{api['id']}/routes/{route['id']}", data=form).status_code == 200
    got = client.get(f"/v1/apis/{api['id']}/routes/{route['id']}").json()
    assert (got["path"], got["methods"]) == ("/y/{id}", ["GET", "POST"])
