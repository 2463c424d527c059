"""The cache policy through a real control plane, worker and a backend that counts what reaches it:
hits never reach the upstream, and what must not be cached (or shared) is not."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.cli_support import ok_json
from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create, wait_until

CACHE_BYTES = 256 * 1024  # the worker's store: small, so the bound is easy to reach
ORIGIN = "https://app.example"


class Gateway:
    def __init__(self, cp: ControlPlane, worker: Worker, lab: Backend, apis: dict[str, str]) -> None:
        self.cp, self.worker, self.lab, self.apis = cp, worker, lab, apis
        self.keys: dict[str, str] = {}

    def sync(self) -> None:
        self.worker.wait_revision(self.cp.revision())

    def get(self, path: str, key: str | None = None, method: str = "GET", **headers: str) -> httpx.Response:
        h = {k.replace("_", "-"): v for k, v in headers.items()}
        if key is not None:
            h["x-api-key"] = self.keys[key]
        return httpx.request(method, f"{self.worker.url}{path}", headers=h, timeout=5.0)

    def seen(self, what: str) -> int:
        """How many ``"METHOD /path"`` requests reached the backend."""
        requests: dict[str, int] = httpx.get(f"{self.lab.url}/__echo/count", timeout=2.0).json()["requests"]
        return requests.get(what, 0)


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> Gateway:
    lab = module_cluster.lab("cache")
    cp = module_cluster.control_plane()
    apis: dict[str, str] = {}
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})["id"]
        create(a, f"/v1/upstreams/{up}/targets", {"host": "127.0.0.1", "port": lab.port})
        opened = create(a, "/v1/apis", {"name": "open", "base_path": "/open", "policies": {"cache": {"ttl": 60}}})
        apis["open"] = opened["id"]
        for path, policies in (
            ("/{p+}", None),
            ("/short/{p+}", {"cache": {"ttl": 2}}),
            (
                "/decorated/{p+}",
                {
                    "cache": {"ttl": 60, "key_headers": ["X-Variant"]},
                    "response_transform": {"set_headers": {"x-added": "$request_id"}},
                    "cors": {"allow_origins": [ORIGIN]},
                },
            ),
        ):
            route: dict[str, Any] = {"path": path, "upstream_id": up}
            if policies:
                route["policies"] = policies
            create(a, f"/v1/apis/{opened['id']}/routes", route)
        cached = {"cache": {"ttl": 60}}
        keyed = create(a, "/v1/apis", {"name": "keyed", "base_path": "/keyed", "auth": "api_key", "policies": cached})
        apis["keyed"] = keyed["id"]
        create(a, f"/v1/apis/{keyed['id']}/routes", {"path": "/{p+}", "upstream_id": up})
        shared = {"path": "/shared/{p+}", "upstream_id": up, "policies": {"cache": {"ttl": 60, "shared": True}}}
        create(a, f"/v1/apis/{keyed['id']}/routes", shared)
        quota = {"limit": 3, "period": "DAY"}
        plan = create(a, "/v1/usage-plans", {"name": "small", "quota": quota, "apis": [{"api_id": keyed["id"]}]})
        gateway_keys: dict[str, str] = {}
        for name in ("one", "two", "quota"):
            customer = create(a, "/v1/customers", {"name": name, "api_ids": [keyed["id"]]})
            if name == "quota":
                assert a.put(f"/v1/customers/{customer['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
            gateway_keys[name] = create(a, f"/v1/customers/{customer['id']}/keys", {})["key"]
    worker = module_cluster.worker(cp, env={"TOLLGATE_CACHE_BYTES": str(CACHE_BYTES)})
    gateway = Gateway(cp, worker, lab, apis)
    gateway.keys = gateway_keys
    gateway.sync()
    return gateway


def test_miss_then_hit_without_the_upstream_and_age_grows(gw: Gateway) -> None:
    first = gw.get("/open/hit")
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    second = gw.get("/open/hit")
    assert second.status_code == 200 and second.headers["x-cache"] == "HIT"
    assert second.json() == first.json() and second.json()["seen"] == 1
    assert second.headers["content-length"] == str(len(second.content))
    assert second.headers["x-request-id"] != first.headers["x-request-id"]  # the request's own lines
    assert gw.seen("GET /hit") == 1
    assert int(second.headers["age"]) >= 0

    def aged() -> httpx.Response | None:
        r = gw.get("/open/hit")
        return r if r.headers["x-cache"] == "HIT" and int(r.headers["age"]) >= 1 else None

    later = wait_until(aged, timeout=5.0, what="Age to reach 1")
    assert later.json()["seen"] == 1 and gw.seen("GET /hit") == 1
    assert gw.worker.status()["cache"]["hits"] >= 2


def test_ttl_expiry_goes_upstream_again(gw: Gateway) -> None:
    assert gw.get("/open/short/x").headers["x-cache"] == "MISS"
    assert gw.get("/open/short/x").headers["x-cache"] == "HIT"
    wait_until(lambda: gw.get("/open/short/x").headers["x-cache"] == "MISS", timeout=8.0, what="the 2 s ttl to pass")
    assert gw.seen("GET /short/x") == 2


def test_upstream_max_age_lowers_the_ttl_and_age_counts(gw: Gateway) -> None:
    r = gw.get("/open/aged?cc=max-age%3D100&age=40")
    assert r.headers["x-cache"] == "MISS"
    hit = gw.get("/open/aged?cc=max-age%3D100&age=40")
    assert hit.headers["x-cache"] == "HIT" and int(hit.headers["age"]) >= 40
    assert gw.get("/open/stale?cc=max-age%3D30&age=30").headers["x-cache"] == "MISS"
    assert gw.get("/open/stale?cc=max-age%3D30&age=30").headers["x-cache"] == "MISS"  # already stale: not stored
    assert gw.seen("GET /aged") == 1 and gw.seen("GET /stale") == 2


@pytest.mark.parametrize(
    "query", ["cc=no-store", "cc=private", "cc=no-cache", "cc=public%2C%20max-age%3D0", "cookie=s%3D1", "vary=*"]
)
def test_what_the_response_forbids_is_not_cached(gw: Gateway, query: str) -> None:
    path = "/nostore-" + "".join(c for c in query if c.isalnum())
    for _ in range(3):
        assert gw.get(f"/open{path}?{query}").headers["x-cache"] == "MISS"
    assert gw.seen(f"GET {path}") == 3


def test_vary_keeps_one_entry_per_value(gw: Gateway) -> None:
    path = "/open/vary?vary=Accept-Language"
    en = gw.get(path, accept_language="en")
    fr = gw.get(path, accept_language="fr")
    assert (en.headers["x-cache"], fr.headers["x-cache"]) == ("MISS", "MISS")
    en2, fr2 = gw.get(path, accept_language="en"), gw.get(path, accept_language="fr")
    assert (en2.headers["x-cache"], fr2.headers["x-cache"]) == ("HIT", "HIT")
    assert ["accept-language", "en"] in en2.json()["headers"] and ["accept-language", "fr"] in fr2.json()["headers"]
    assert gw.get(path).headers["x-cache"] == "MISS"  # absent is a value of its own
    assert gw.seen("GET /vary") == 3


def test_customers_never_share_unless_the_route_says_so(gw: Gateway) -> None:
    assert gw.get("/keyed/mine", "one").headers["x-cache"] == "MISS"
    hit = gw.get("/keyed/mine", "one")
    assert hit.headers["x-cache"] == "HIT"
    other = gw.get("/keyed/mine", "two")
    assert other.headers["x-cache"] == "MISS"
    assert gw.get("/keyed/mine", "two").headers["x-cache"] == "HIT"
    assert gw.seen("GET /mine") == 2
    # the backend saw each caller's own identity: no entry of one was given to the other
    ids = {dict(map(tuple, r.json()["headers"]))["x-customer-id"] for r in (hit, other)}  # type: ignore[arg-type]
    assert len(ids) == 2

    assert gw.get("/keyed/shared/all", "one").headers["x-cache"] == "MISS"
    assert gw.get("/keyed/shared/all", "two").headers["x-cache"] == "HIT"
    assert gw.seen("GET /shared/all") == 1
    # a hit still needs a key: authentication runs before the cache
    assert gw.get("/keyed/shared/all").status_code == 401


def test_hits_count_for_the_quota(gw: Gateway) -> None:
    replies = [gw.get("/keyed/quota-path", "quota") for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers.get("x-cache") for r in replies[:3]] == ["MISS", "HIT", "HIT"]
    assert gw.seen("GET /quota-path") == 1


def test_head_is_answered_from_the_get_entry_and_never_stored(gw: Gateway) -> None:
    got = gw.get("/open/headed")
    head = gw.get("/open/headed", method="HEAD")
    assert head.status_code == 200 and head.headers["x-cache"] == "HIT" and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert gw.seen("HEAD /headed") == 0
    # a HEAD that went upstream stores nothing a GET could be answered with
    assert gw.get("/open/head-first", method="HEAD").headers["x-cache"] == "MISS"
    first_get = gw.get("/open/head-first")
    assert first_get.headers["x-cache"] == "MISS" and first_get.content


def test_requests_that_bypass_the_cache(gw: Gateway) -> None:
    assert gw.get("/open/fresh").headers["x-cache"] == "MISS"
    refreshed = gw.get("/open/fresh", cache_control="no-cache")
    assert refreshed.headers["x-cache"] == "MISS" and refreshed.json()["seen"] == 2
    again = gw.get("/open/fresh")
    assert again.headers["x-cache"] == "HIT" and again.json()["seen"] == 2  # the refreshed answer was stored
    for _ in range(2):  # an API that does not authenticate does not cache what carries credentials
        assert gw.get("/open/authz", authorization="Bearer abc").headers["x-cache"] == "MISS"
    assert gw.seen("GET /authz") == 2
    posted = httpx.post(f"{gw.worker.url}/open/fresh", timeout=5.0)
    assert posted.status_code == 200 and "x-cache" not in posted.headers


def test_chunked_upstream_response_is_stored_whole(gw: Gateway) -> None:
    miss = gw.get("/open/chunks?chunked=1")
    assert miss.headers["x-cache"] == "MISS" and miss.headers.get("transfer-encoding") == "chunked"
    hit = gw.get("/open/chunks?chunked=1")
    assert hit.headers["x-cache"] == "HIT" and hit.content == miss.content
    assert hit.headers["content-length"] == str(len(miss.content))


def test_transform_cors_and_key_headers_apply_on_a_hit(gw: Gateway) -> None:
    path = "/open/decorated/x"
    miss = gw.get(path, origin=ORIGIN, x_variant="a")
    hit = gw.get(path, origin=ORIGIN, x_variant="a")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    for r in (miss, hit):
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert r.headers["x-added"] == r.headers["x-request-id"]  # the transform ran for this request
    assert "access-control-allow-origin" not in gw.get(path, origin="https://evil.example", x_variant="a").headers
    assert gw.get(path, x_variant="b").headers["x-cache"] == "MISS"
    assert gw.seen("GET /decorated/x") == 2


def test_purge_through_the_admin_api_and_the_cli(gw: Gateway) -> None:
    gw.get("/open/purged")
    assert gw.get("/open/purged").headers["x-cache"] == "HIT"
    with gw.cp.admin() as a:
        r = a.post(f"/v1/apis/{gw.apis['open']}/cache/purge")
        assert r.status_code == 202, r.text
        purged = r.json()
        assert purged["api_id"] == gw.apis["open"] and purged["cache_epoch"] >= 1
        assert a.get(f"/v1/apis/{gw.apis['open']}").json()["cache_epoch"] == purged["cache_epoch"]
        assert a.post("/v1/apis/no-such-api/cache/purge").status_code == 404
    gw.worker.wait_revision(purged["revision"])
    assert gw.get("/open/purged").headers["x-cache"] == "MISS"
    assert gw.get("/open/purged").headers["x-cache"] == "HIT"

    out = ok_json(gw.cp, "apis", "purge-cache", "open")
    assert out["cache_epoch"] == purged["cache_epoch"] + 1
    gw.worker.wait_revision(out["revision"])
    assert gw.get("/open/purged").headers["x-cache"] == "MISS"
    assert gw.seen("GET /purged") == 3


def test_the_store_stays_within_its_bytes(gw: Gateway) -> None:
    size = 60_000  # four fit in 256 KiB, five do not
    for i in range(8):
        assert gw.get(f"/open/download?bytes={size}&i={i}").headers["x-cache"] == "MISS"
    cache = gw.worker.status()["cache"]
    assert cache["max_bytes"] == CACHE_BYTES and 0 < cache["bytes"] <= CACHE_BYTES
    assert cache["evictions"] >= 4
    assert gw.get(f"/open/download?bytes={size}&i=7").headers["x-cache"] == "HIT"  # the newest stayed
    assert gw.get(f"/open/download?bytes={size}&i=0").headers["x-cache"] == "MISS"  # the oldest went
