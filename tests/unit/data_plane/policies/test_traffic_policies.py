"""CORS, IP rules and transforms compiled from a snapshot and judged by the admission pipeline."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from data_plane import snapshot as snap
from data_plane.compiler import CompiledConfig, compile_snapshot
from data_plane.errors import SnapshotError
from data_plane.http.admission import Admitted, HostCache, Refused, admit
from data_plane.policies.cors import compile_cors
from data_plane.policies.iprules import compile_rules
from data_plane.policies.transform import Vars, compile_request, compile_response

KEY = "tg_policies_0123456789abcdefghijklmnopqrstuvwxyz"
UPSTREAM = snap.Upstream(id="u", name="u", targets=(snap.Target(id="t", host="127.0.0.1", port=9001),))
CORS = {"allow_origins": ["https://app.example.com", "*.partner.test"], "expose_headers": ["X-Total"], "max_age": 60}


def _config(
    api_policies: dict[str, Any] | None, route_policies: dict[str, Any] | None = None, **api: Any
) -> CompiledConfig:
    routes = (
        snap.Route(id="items", path="/items/{id}", upstream_id="u", methods=("GET", "PUT"), policies=route_policies),
        snap.Route(id="other", path="/other", upstream_id="u", methods=("GET",)),
    )
    a = snap.Api(id="a", name="a", base_path="/v1", routes=routes, policies=api_policies, **api)
    customer = snap.Customer(id="c1", name="one", api_ids=("a",))
    key = snap.ApiKey(id="k", customer_id="c1", key_hash=hashlib.sha256(KEY.encode()).hexdigest(), prefix=KEY[:11])
    s = snap.Snapshot(revision=1, upstreams=(UPSTREAM,), apis=(a,), customers=(customer,), keys=(key,))
    return compile_snapshot(snap.Snapshot.from_json(s.sealed().to_json()))  # through the wire form


def _admit(config: CompiledConfig, method: str, url: bytes, *headers: tuple[bytes, bytes], ip: bytes = b"10.0.0.7"):
    return admit(
        config,
        method,
        url,
        [(b"host", b"api.test"), *headers],
        "1.1",
        upgrade=False,
        body_bytes=0,
        hosts=HostCache(),
        peer_ip=b"192.0.2.1",
        client_ip=ip,
    )


def test_a_route_without_policies_compiles_to_none() -> None:
    config = _config(None, {"cors": CORS})
    other = config.router.match("api.test", "GET", "/v1/other")
    items = config.router.match("api.test", "GET", "/v1/items/1")
    assert not isinstance(other, snap.SnapshotError) and other[0].traffic is None  # type: ignore[index]
    assert items[0].traffic is not None and items[0].traffic.cors is not None  # type: ignore[index]


def test_a_preflight_is_answered_before_auth_for_the_route_of_the_requested_method() -> None:
    config = _config({"cors": CORS}, auth="api_key")
    v = _admit(
        config,
        "OPTIONS",
        b"/v1/items/7",
        (b"origin", b"https://app.example.com"),
        (b"access-control-request-method", b"PUT"),
        (b"access-control-request-headers", b"X-Api-Key, Content-Type, bad header"),
    )
    assert isinstance(v, Refused) and v.status == 204 and v.empty  # no key, yet no 401: never authenticated
    assert b"access-control-allow-origin: https://app.example.com\r\n" in v.extra
    assert b"access-control-allow-methods: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n" in v.extra
    assert b"access-control-allow-headers: x-api-key, content-type\r\n" in v.extra  # the invalid token dropped
    assert b"access-control-max-age: 60\r\n" in v.extra and b"vary: origin" in v.extra


def test_a_preflight_from_an_origin_outside_the_list_is_403() -> None:
    config = _config({"cors": CORS})
    for origin in (b"https://evil.test", b"https://partner.test", b"https://app.example.com.evil.test", b"null"):
        v = _admit(config, "OPTIONS", b"/v1/items/7", (b"origin", origin), (b"access-control-request-method", b"GET"))
        assert isinstance(v, Refused) and v.status == 403, origin
        assert b"access-control-allow-origin" not in v.extra
    ok = _admit(
        config,
        "OPTIONS",
        b"/v1/items/7",
        (b"origin", b"http://a.b.partner.test"),
        (b"access-control-request-method", b"GET"),
    )
    assert isinstance(ok, Refused) and ok.status == 204  # *.partner.test: any scheme, any depth


def test_an_options_request_that_is_not_a_preflight_is_routed_as_usual() -> None:
    config = _config({"cors": CORS})
    v = _admit(config, "OPTIONS", b"/v1/items/7", (b"origin", b"https://app.example.com"))
    assert isinstance(v, Refused) and v.status == 405  # the route takes GET and PUT only
    plain = _config(None)
    v = _admit(plain, "OPTIONS", b"/v1/items/7", (b"origin", b"x"), (b"access-control-request-method", b"GET"))
    assert isinstance(v, Refused) and v.status == 405  # no CORS policy: nothing answers preflights


def test_actual_responses_and_refusals_carry_the_cors_lines() -> None:
    config = _config({"cors": {**CORS, "allow_credentials": True}}, auth="api_key")
    v = _admit(config, "GET", b"/v1/items/7", (b"origin", b"https://app.example.com"), (b"x-api-key", KEY.encode()))
    assert isinstance(v, Admitted)
    assert v.response_extra == (
        b"access-control-allow-origin: https://app.example.com\r\naccess-control-allow-credentials: true\r\n"
        b"access-control-expose-headers: x-total\r\nvary: origin\r\n"
    )
    denied = _admit(config, "GET", b"/v1/items/7", (b"origin", b"https://app.example.com"))
    assert isinstance(denied, Refused) and denied.status == 401
    assert b"access-control-allow-origin: https://app.example.com" in denied.extra  # the page can read the 401
    stranger = _admit(config, "GET", b"/v1/items/7", (b"origin", b"https://evil.test"), (b"x-api-key", KEY.encode()))
    assert isinstance(stranger, Admitted) and stranger.response_extra == b"vary: origin\r\n"


def test_any_origin_without_credentials_answers_star() -> None:
    cors = compile_cors({"allow_origins": ["*"]}, "cors")
    assert cors.response_lines(b"https://whoever.test").startswith(b"access-control-allow-origin: *\r\n")
    assert cors.response_lines(None) == b"vary: origin\r\n"


def test_ip_rules_judge_the_trusted_client_address() -> None:
    config = _config({"ip_rules": {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.9.0.0/16"]}})
    assert isinstance(_admit(config, "GET", b"/v1/other", ip=b"10.1.2.3"), Admitted)
    assert isinstance(_admit(config, "GET", b"/v1/other", ip=b"2001:db8::5"), Admitted)
    assert isinstance(_admit(config, "GET", b"/v1/other", ip=b"::ffff:10.1.2.3"), Admitted)  # IPv4-mapped
    for ip in (b"10.9.1.1", b"192.0.2.1", b"2001:db9::1", b"not-an-ip"):
        v = _admit(config, "GET", b"/v1/other", ip=ip)
        assert isinstance(v, Refused) and v.status == 403, ip
    rules = compile_rules({"deny": ["0.0.0.0/0"]}, "ip")
    assert rules is not None and not rules.allows(b"127.0.0.1") and rules.allows(b"::1")


def test_a_route_member_replaces_the_api_member() -> None:
    config = _config({"ip_rules": {"deny": ["10.0.0.0/8"]}}, {"ip_rules": {"allow": ["10.0.0.0/8"]}})
    assert isinstance(_admit(config, "GET", b"/v1/items/1", ip=b"10.1.1.1"), Admitted)  # the route's rule
    assert isinstance(_admit(config, "GET", b"/v1/other", ip=b"10.1.1.1"), Refused)  # the API's rule


def test_request_transform_rewrites_headers_path_and_query() -> None:
    rt = {
        "remove_headers": ["X-Drop"],
        "rename_headers": {"X-Old": "X-New"},
        "set_headers": {"X-Set": "cust=$customer_id ip=$client_ip $$5"},
        "add_headers": {"X-Add": "$request_id", "X-Keep": "never"},
        "path_regex": {"pattern": "^/items/([0-9]+)$", "replacement": r"/things/\1"},
        "remove_query": ["secret"],
        "add_query": {"via": "tollgate $customer_id"},
    }
    config = _config({"request_transform": rt}, auth="api_key")
    v = _admit(
        config,
        "GET",
        b"/v1/items/42?a=1&secret=x",
        (b"x-api-key", KEY.encode()),
        (b"x-drop", b"1"),
        (b"x-old", b"o"),
        (b"x-set", b"client"),
        (b"x-keep", b"mine"),
        (b"x-request-id", b"rid-1"),
    )
    assert isinstance(v, Admitted)
    head = v.head
    assert head.startswith(b"GET /things/42?a=1&via=tollgate%20c1 HTTP/1.1\r\n"), head[:80]
    assert b"x-drop" not in head and b"x-new: o\r\n" in head and b"x-old" not in head
    assert b"x-set: cust=c1 ip=10.0.0.7 $5\r\n" in head and b"x-set: client" not in head
    assert b"x-add: rid-1\r\n" in head and b"x-keep: mine\r\n" in head and b"never" not in head


def test_path_prefix_replaces_on_a_segment_boundary() -> None:
    rt = compile_request({"path_prefix": {"from": "/items", "to": "/api/items"}}, "rt")
    assert rt is not None
    env = Vars(b"", b"r", b"ip")
    assert rt.target(b"/items/1?q=1", env) == b"/api/items/1?q=1"
    assert rt.target(b"/items", env) == b"/api/items"
    assert rt.target(b"/itemsx", env) == b"/itemsx"  # not a segment boundary
    root = compile_request({"path_prefix": {"from": "/", "to": "/base"}}, "rt")
    assert root is not None and root.target(b"/x/y", env) == b"/base/x/y"


def test_response_transform_rewrites_response_headers() -> None:
    rt = compile_response(
        {"remove_headers": ["Server"], "set_headers": {"X-Served-By": "tollgate"}, "rename_headers": {"X-A": "X-B"}},
        "resp",
    )
    assert rt is not None
    out = rt.headers.apply([(b"server", b"gunicorn"), (b"x-a", b"1"), (b"x-served-by", b"app")], Vars(b"", b"", b""))
    assert out == [(b"x-b", b"1"), (b"x-served-by", b"tollgate")]


@pytest.mark.parametrize(
    ("kind", "doc", "message"),
    [
        ("request_transform", {"set_headers": {"Host": "x"}}, "set by the gateway"),
        ("request_transform", {"set_headers": {"X-A": "$password"}}, "$password"),
        ("request_transform", {"path_regex": {"pattern": "(", "replacement": "/"}}, "path_regex"),
        ("request_transform", {"path_regex": {"pattern": "^/(a)$", "replacement": "/ \\1"}}, "not path characters"),
        ("response_transform", {"remove_headers": ["Content-Length"]}, "set by the gateway"),
        ("cors", {"allow_origins": ["ftp://x"]}, "allow_origins[0]"),
        ("ip_rules", {"allow": ["10.0.0.300/8"]}, "allow[0]"),
    ],
)
def test_a_bad_policy_fails_the_snapshot_naming_it(kind: str, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(SnapshotError, match="policies") as err:
        _config({kind: doc})
    assert message in str(err.value)


def test_policies_are_part_of_the_hash_and_a_bad_kind_is_refused() -> None:
    a = snap.Api(id="a", name="a", routes=(snap.Route(id="r", path="/x", upstream_id="u"),))
    b = snap.Api(id="a", name="a", routes=a.routes, policies={"ip_rules": {"deny": ["10.0.0.0/8"]}})
    s1 = snap.Snapshot(revision=1, upstreams=(UPSTREAM,), apis=(a,)).sealed()
    s2 = snap.Snapshot(revision=1, upstreams=(UPSTREAM,), apis=(b,)).sealed()
    assert s1.hash != s2.hash and "policies" not in s1.to_json().decode()
    doc = s2.to_dict()
    doc["apis"][0]["policies"] = {"rewrite": {}}
    del doc["hash"]
    with pytest.raises(SnapshotError, match="rewrite is not one of"):
        snap.Snapshot.from_dict(doc)
