"""The admin client: bearer token from the flag or the environment, error translation, pagination."""

from __future__ import annotations

import json

import httpx
import pytest

from tollgate.adminclient import AdminClient, AdminError


def test_token_is_sent_as_bearer_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"ok": True})

    transport = httpx.MockTransport(handler)
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", "from-env")
    AdminClient("http://cp", transport=transport).get("/v1/config")
    AdminClient("http://cp", "from-flag", transport=transport).get("/v1/config")
    monkeypatch.delenv("TOLLGATE_ADMIN_TOKEN")
    AdminClient("http://cp", transport=transport).get("/v1/config")
    assert seen == ["Bearer from-env", "Bearer from-flag", None]


def test_errors_carry_status_and_detail_without_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/missing":
            return httpx.Response(404, json={"detail": "upstream 'x' not found"})
        detail = [{"loc": ["body", "config", "apis", 0, "name"], "msg": "Field required", "type": "missing"}]
        return httpx.Response(422, json={"detail": detail})

    client = AdminClient("http://cp", "s3cret-token", transport=httpx.MockTransport(handler))
    with pytest.raises(AdminError) as not_found:
        client.get("/missing")
    assert not_found.value.status == 404
    assert str(not_found.value) == "404 Not Found: upstream 'x' not found"
    with pytest.raises(AdminError) as invalid:
        client.post("/v1/config/apply", {})
    assert invalid.value.errors() == [(["config", "apis", 0, "name"], "Field required")]
    assert "config.apis.0.name: Field required" in str(invalid.value)
    assert "s3cret" not in str(invalid.value) + str(not_found.value)


def test_unreachable_control_plane_is_an_admin_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(AdminError, match="cannot reach the control plane at http://cp"):
        AdminClient("http://cp", transport=httpx.MockTransport(handler)).get("/v1/apis")


def test_list_all_follows_pages() -> None:
    items = [{"id": str(i)} for i in range(1203)]

    def handler(request: httpx.Request) -> httpx.Response:
        limit, offset = int(request.url.params["limit"]), int(request.url.params["offset"])
        page = {"items": items[offset : offset + limit], "total": len(items), "limit": limit, "offset": offset}
        return httpx.Response(200, content=json.dumps(page))

    assert AdminClient("http://cp", transport=httpx.MockTransport(handler)).list_all("/v1/upstreams") == items


def test_send_passes_raw_bodies_both_ways_and_translates_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/apis/import":
            assert request.headers["content-type"] == "application/yaml"
            assert request.content == b"openapi: 3.1.0\n"
            return httpx.Response(422, json={"detail": "/info: required"})
        return httpx.Response(200, content=b"PK\x03\x04zip", headers={"content-type": "application/zip"})

    client = AdminClient("http://cp", transport=httpx.MockTransport(handler))
    assert client.send("GET", "/v1/apis/a1/sdk", params={"lang": "python"}).content == b"PK\x03\x04zip"
    with pytest.raises(AdminError) as invalid:
        client.send(
            "POST", "/v1/apis/import", content=b"openapi: 3.1.0\n", headers={"content-type": "application/yaml"}
        )
    assert (invalid.value.status, invalid.value.detail) == (422, "/info: required")
