"""CORS, IP rules and transforms through a real control plane and worker, configured with the admin
API and the declarative file: what a browser, a client behind a proxy and the backend see.

The worker trusts 127.0.0.2 as a proxy (its X-Forwarded-For names the client); connections from
127.0.0.1 play a direct, untrusted client.  203.0.113.0/24 addresses are header values only.
"""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create

ORIGIN = "https://app.example.com"
CORS = {"allow_origins": [ORIGIN, "https://*.partner.test"], "expose_headers": ["X-Total"], "max_age": 600}


class Gateway:
    def __init__(self, cp: ControlPlane, worker: Worker, echo: Backend, ids: dict[str, str]) -> None:
        self.cp, self.worker, self.echo, self.ids = cp, worker, echo, ids

    def sync(self) -> None:
        self.worker.wait_revision(self.cp.revision())

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.request(method, f"{self.worker.url}{path}", headers=headers or {}, timeout=5.0)


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> Gateway:
    echo = module_cluster.echo("policies")
    cp = module_cluster.control_plane()
    ids: dict[str, str] = {}
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        ids["upstream"] = up["id"]
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        shop = create(
            a, "/v1/apis", {"name": "shop", "base_path": "/shop", "auth": "api_key", "policies": {"cors": CORS}}
        )
        ids["shop"] = shop["id"]
        route = create(
            a,
            f"/v1/apis/{shop['id']}/routes",
            {"path": "/items/{id}", "upstream_id": up["id"], "methods": ["GET", "PUT"]},
        )
        ids["shop_route"] = route["id"]
        internal = create(
            a,
            "/v1/apis",
            {
                "name": "internal",
                "base_path": "/internal",
                "policies": {"ip_rules": {"allow": ["203.0.113.0/24", "2001:db8::/32"], "deny": ["203.0.113.66"]}},
            },
        )
        create(a, f"/v1/apis/{internal['id']}/routes", {"path": "/{p+}", "upstream_id": up["id"]})
        moved = create(a, "/v1/apis", {"name": "moved", "base_path": "/old"})
        ids["moved"] = moved["id"]
        create(
            a,
            f"/v1/apis/{moved['id']}/routes",
            {
                "path": "/{p+}",
                "upstream_id": up["id"],
                "policies": {
                    "request_transform": {
                        "path_regex": {"pattern": "^/users/([0-9]+)/orders$", "replacement": r"/orders/by-user/\1"},
                        "set_headers": {"X-Client": "$client_ip", "X-Trace": "req=$request_id"},
                        "remove_headers": ["Cookie"],
                        "rename_headers": {"X-Legacy": "X-Modern"},
                        "add_query": {"source": "gateway"},
                        "remove_query": ["debug"],
                    },
                    "response_transform": {
                        "rename_headers": {"X-Echo-Server": "X-Backend"},
                        "add_headers": {"X-Api": "moved"},
                    },
                },
            },
        )
        plan = create(
            a,
            "/v1/usage-plans",
            {"name": "two-a-day", "quota": {"limit": 2, "period": "DAY"}, "apis": [{"api_id": shop["id"]}]},
        )
        customer = create(a, "/v1/customers", {"name": "browser-app"})
        assert a.put(f"/v1/customers/{customer['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
        ids["key"] = create(a, f"/v1/customers/{customer['id']}/keys", {})["key"]
    worker = module_cluster.worker(cp, extra=("--trusted-proxies", "127.0.0.2/32"))
    gateway = Gateway(cp, worker, echo, ids)
    gateway.sync()
    return gateway


def _raw_get(port: int, path: str, *, source: str, xff: str | None = None) -> tuple[int, dict[str, Any]]:
    head = [f"GET {path} HTTP/1.1", "host: t", "connection: close"] + ([f"x-forwarded-for: {xff}"] if xff else [])
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_head, body = data.split(b"\r\n\r\n", 1)
    return int(status_head.split(b" ")[1]), json.loads(body)


def test_preflights_are_answered_before_auth_never_forwarded_never_counted(gw: Gateway) -> None:
    before = gw.echo.count()
    for _ in range(5):
        r = gw.request(
            "OPTIONS",
            "/shop/items/7",
            {"origin": ORIGIN, "access-control-request-method": "PUT", "access-control-request-headers": "x-api-key"},
        )
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert "PUT" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"] == "x-api-key"
        assert r.headers["access-control-max-age"] == "600"
        assert "origin" in r.headers["vary"].lower() and r.content == b""
    refused = gw.request(
        "OPTIONS", "/shop/items/7", {"origin": "https://evil.test", "access-control-request-method": "GET"}
    )
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert refused.json()["message"] == "origin not allowed by the CORS policy"
    assert gw.echo.count() == before  # none of them reached the backend
    # The quota of 2 a day is intact: the preflights were not requests of the customer.
    key = {"x-api-key": gw.ids["key"], "origin": "https://shop.partner.test"}
    for _ in range(2):
        ok = gw.request("GET", "/shop/items/7", key)
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == "https://shop.partner.test"
        assert ok.headers["access-control-expose-headers"] == "x-total" and ok.headers["vary"].lower() == "origin"
    limited = gw.request("GET", "/shop/items/7", key)
    assert limited.status_code == 429
    assert limited.headers["access-control-allow-origin"] == "https://shop.partner.test"  # the page can read why


def test_a_browser_without_a_key_reads_the_401(gw: Gateway) -> None:
    r = gw.request("GET", "/shop/items/7", {"origin": ORIGIN})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN
    plain = gw.request("GET", "/shop/items/7")  # no Origin: no CORS lines but Vary
    assert plain.status_code == 401 and "access-control-allow-origin" not in plain.headers
    assert plain.headers["vary"].lower() == "origin"


def test_ip_rules_use_the_client_address_a_trusted_proxy_names(gw: Gateway) -> None:
    port = gw.worker.port
    status, body = _raw_get(port, "/internal/x", source="127.0.0.1")
    assert status == 403 and body["message"] == "client address not allowed" and body["request_id"]
    assert _raw_get(port, "/internal/x", source="127.0.0.2", xff="203.0.113.5")[0] == 200
    assert _raw_get(port, "/internal/x", source="127.0.0.2", xff="203.0.113.66")[0] == 403  # denied inside allow
    assert _raw_get(port, "/internal/x", source="127.0.0.2", xff="198.51.100.1")[0] == 403
    assert _raw_get(port, "/internal/x", source="127.0.0.2", xff="2001:db8::9")[0] == 200
    # an untrusted client naming an allowed address in the header is still judged by its socket
    assert _raw_get(port, "/internal/x", source="127.0.0.1", xff="203.0.113.5")[0] == 403


def test_request_and_response_transforms_reach_the_backend_and_the_client(gw: Gateway) -> None:
    r = gw.request(
        "GET",
        "/old/users/42/orders?debug=1&page=2",
        {"cookie": "session=secret", "x-legacy": "v1", "x-request-id": "trace-me-1", "x-client": "spoofed"},
    )
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["path"] == "/orders/by-user/42" and seen["query"] == "page=2&source=gateway"
    headers = dict(seen["header_list"])
    assert "cookie" not in headers and "x-legacy" not in headers and headers["x-modern"] == "v1"
    assert headers["x-client"] == "127.0.0.1" and headers["x-trace"] == "req=trace-me-1"
    assert r.headers["x-backend"] == "policies" and "x-echo-server" not in r.headers
    assert r.headers["x-api"] == "moved"
    untouched = gw.request("GET", "/old/users/x/orders")
    assert untouched.json()["path"] == "/users/x/orders"  # the pattern did not match: the path as it was


def test_bad_policies_are_422_with_the_place(gw: Gateway) -> None:
    with gw.cp.admin() as a:
        for body, place in (
            ({"cors": {"allow_origins": ["*"], "allow_credentials": True}}, "cors"),
            ({"ip_rules": {"deny": ["10.0.0.0/33"]}}, "deny"),
            ({"request_transform": {"set_headers": {"Content-Length": "1"}}}, "request_transform"),
            ({"request_transform": {"add_headers": {"X-A": "$secret"}}}, "request_transform"),
            ({"rewrite": {}}, "rewrite"),
        ):
            r = a.patch(f"/v1/apis/{gw.ids['moved']}", json={"policies": body})
            assert r.status_code == 422, (body, r.text)
            assert place in r.text


def test_policies_round_trip_through_the_declarative_file(gw: Gateway) -> None:
    with gw.cp.admin() as a:
        doc = a.get("/v1/config/export").json()
        shop = next(api for api in doc["apis"] if api["name"] == "shop")
        assert shop["policies"] == {"cors": CORS}
        moved = next(api for api in doc["apis"] if api["name"] == "moved")
        assert moved["routes"][0]["policies"]["request_transform"]["path_regex"]["replacement"] == r"/orders/by-user/\1"
        same = a.post("/v1/config/apply", json={"config": doc, "dry_run": True}).json()
        assert same["changed"] is False, same
        # one change in the file: exactly that field is the diff, then applied and seen by the worker
        name = f"ops-{uuid.uuid4().hex[:6]}"
        moved["routes"][0]["policies"]["response_transform"]["add_headers"] = {"X-Api": name}
        planned = a.post("/v1/config/apply", json={"config": doc, "dry_run": True}).json()
        assert [(c["kind"], c["fields"]) for c in planned["changes"]] == [("route", ["policies"])], planned
        assert a.post("/v1/config/apply", json={"config": doc}).json()["changed"] is True
    gw.sync()
    assert gw.request("GET", "/old/anything").headers["x-api"] == name
