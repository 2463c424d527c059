"""The admission pipeline with plain values: a compiled config, a request head, a verdict."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from data_plane import snapshot as snap
from data_plane.compiler import CompiledConfig, compile_snapshot
from data_plane.http import responses
from data_plane.http.admission import Admitted, HostCache, Refused, admit
from data_plane.snapshot import Plan, PlanApi, PlanOverride, PlanThrottle

KEY = "tg_admission_0123456789abcdefghijklmnopqrstuvwxyz"
UPSTREAM = snap.Upstream(id="u", name="u", targets=(snap.Target(id="t", host="127.0.0.1", port=9001),))


def _config(**api_fields: object) -> CompiledConfig:
    routes = (
        snap.Route(id="items", path="/items/{id}", upstream_id="u", methods=("GET", "PUT")),
        snap.Route(id="rest", path="/{p+}", upstream_id="u"),
    )
    api = snap.Api(id="a", name="a", base_path="/v1", routes=routes, **api_fields)  # type: ignore[arg-type]
    customer = snap.Customer(id="c1", name="one", plan_id="gold")
    key = snap.ApiKey(id="k", customer_id="c1", key_hash=hashlib.sha256(KEY.encode()).hexdigest(), prefix=KEY[:11])
    plan = Plan(
        id="gold",
        name="gold",
        throttle=PlanThrottle(rate=10, burst=10),
        apis=(PlanApi(api_id="a", overrides=(PlanOverride(method="PUT", path="/items/{id}", rate=1, burst=1),)),),
    )
    s = snap.Snapshot(revision=1, upstreams=(UPSTREAM,), apis=(api,), customers=(customer,), keys=(key,), plans=(plan,))
    return compile_snapshot(s.sealed())


OPEN = _config()
KEYED = _config(auth="api_key", max_body_bytes=100)


def _admit(
    head: bytes,
    config: CompiledConfig | None = OPEN,
    *,
    version: str = "1.1",
    body_bytes: int = 0,
    upgrade: bool = False,
) -> Admitted | Refused:
    line, _, rest = head.partition(b"\r\n")
    method, url = line.split(b" ")[:2]
    headers = [(n.strip().lower(), v.strip()) for n, _, v in (h.partition(b":") for h in rest.split(b"\r\n") if h)]
    return admit(
        config,
        method.decode(),
        url,
        headers,
        version,
        upgrade=upgrade,
        body_bytes=body_bytes,
        hosts=HostCache(),
        peer_ip=b"10.0.0.7",
    )


def _refused(v: Admitted | Refused, status: int) -> Refused:
    assert isinstance(v, Refused), f"admitted, expected {status}"
    assert v.status == status, (v.status, v.message)
    return v


def test_a_plain_request_is_admitted_with_the_upstream_head_built() -> None:
    v = _admit(b"GET /v1/items/7?x=1 HTTP/1.1\r\nhost: API.example:80\r\nconnection: x-drop\r\nx-drop: 1\r\nx-keep: 2")
    assert isinstance(v, Admitted)
    assert v.route is not None and v.route.id == "items"
    assert v.policy is None and v.customer is None
    head = v.head
    assert head.startswith(b"GET /items/7?x=1 HTTP/1.1\r\n")  # base path stripped, query kept
    assert b"x-keep: 2\r\n" in head and b"x-drop" not in head and b"connection:" not in head
    assert b"x-forwarded-for: 10.0.0.7\r\n" in head
    assert b"x-forwarded-host: API.example:80\r\n" in head
    assert b"x-request-id: " + v.request_id + b"\r\n" in head
    assert not head.endswith(b"\r\n\r\n")  # the target's head_end (Host line, blank line) completes it


@pytest.mark.parametrize(
    "head, version",
    [
        (b"GET /v1/x HTTP/1.1", "1.1"),  # no Host on HTTP/1.1
        (b"GET /v1/x HTTP/1.1\r\nhost: a\r\nhost: b", "1.1"),  # two Hosts
        (b"GET /v1/x HTTP/1.0\r\nhost: a\r\nhost: a", "1.0"),
        (b"GET /v1/x HTTP/1.1\r\nhost:  ", "1.1"),  # empty
        (b"GET /v1/x HTTP/1.1\r\nhost: a b", "1.1"),  # invalid
        (b"GET http://other/v1/x HTTP/1.1\r\nhost: a", "1.1"),  # absolute form disagreeing with Host
        (b"GET /v1/x?a=1#frag HTTP/1.1\r\nhost: a", "1.1"),  # a fragment
        (b"GET /v1/../x HTTP/1.1\r\nhost: a", "1.1"),  # dot segments: no safe canonical form
    ],
)
def test_malformed_heads_are_400_and_close(head: bytes, version: str) -> None:
    v = _refused(_admit(head, version=version), 400)
    assert v.close and v.message == responses.BAD_REQUEST and v.route is None


def test_http_10_without_host_is_admitted() -> None:
    assert isinstance(_admit(b"GET /v1/x HTTP/1.0", version="1.0"), Admitted)


def test_the_absolute_form_is_routed_by_its_authority() -> None:
    v = _admit(b"GET http://api.example/v1/items/1 HTTP/1.1\r\nhost: api.example")
    assert isinstance(v, Admitted) and v.head.startswith(b"GET /items/1 HTTP/1.1\r\n")


def test_the_canonical_path_is_what_routes_and_what_goes_upstream() -> None:
    v = _admit(b"GET /v1//items/%37 HTTP/1.1\r\nhost: a")
    assert isinstance(v, Admitted) and v.route is not None and v.route.id == "items"
    assert v.head.startswith(b"GET /items/7 HTTP/1.1\r\n")


def test_expectations() -> None:
    v = _refused(_admit(b"POST /v1/x HTTP/1.1\r\nhost: a\r\nexpect: magic\r\ncontent-length: 3"), 417)
    assert v.close and v.body_expected
    ok = _admit(b"POST /v1/x HTTP/1.1\r\nhost: a\r\nexpect: 100-Continue\r\ncontent-length: 3")
    assert isinstance(ok, Admitted) and ok.expect_continue
    assert b"expect" not in ok.head  # the gateway answers it; the upstream is not asked again
    old = _admit(b"POST /v1/x HTTP/1.0\r\nhost: a\r\nexpect: magic", version="1.0")
    assert isinstance(old, Admitted) and not old.expect_continue  # HTTP/1.0 expectations are ignored


def test_no_config_yet_is_503_and_keeps_the_connection() -> None:
    v = _refused(_admit(b"GET /v1/x HTTP/1.1\r\nhost: a", None), 503)
    assert not v.close


def test_no_route_is_404_and_a_wrong_method_405_with_allow() -> None:
    _refused(_admit(b"GET /v2/x HTTP/1.1\r\nhost: a"), 404)
    only = dataclasses.replace(snap.Route(id="r", path="/only", upstream_id="u"), methods=("GET",))
    api = snap.Api(id="b", name="b", base_path="/m", routes=(only,))
    config = compile_snapshot(snap.Snapshot(revision=2, upstreams=(UPSTREAM,), apis=(api,)).sealed())
    v = _refused(_admit(b"DELETE /m/only HTTP/1.1\r\nhost: a", config), 405)
    assert v.extra == b"allow: GET, HEAD\r\n"  # (GET serves HEAD)


def test_an_encoded_slash_is_kept_only_when_it_routes_the_same_decoded() -> None:
    v = _admit(b"GET /v1/files/a%2fb HTTP/1.1\r\nhost: a")  # /{p+} either way
    assert isinstance(v, Admitted) and v.head.startswith(b"GET /files/a%2Fb HTTP/1.1")
    _refused(_admit(b"GET /v1/items%2F1 HTTP/1.1\r\nhost: a"), 400)  # decoded, it is the items route


def test_authentication_denied_carries_the_route() -> None:
    v = _refused(_admit(b"GET /v1/items/1 HTTP/1.1\r\nhost: a", KEYED), 401)
    assert v.route is not None and v.route.id == "items" and v.customer is None and not v.close


def test_an_authenticated_request_gets_its_plan_policy_and_the_method_override() -> None:
    head = b"GET /v1/items/1 HTTP/1.1\r\nhost: a\r\nx-api-key: " + KEY.encode()
    v = _admit(head, KEYED)
    assert isinstance(v, Admitted) and v.customer is not None and v.customer.id == "c1"
    assert v.policy is not None and v.policy.throttle is not None and v.policy.throttle.rate == 10
    assert KEY.encode() not in v.head and b"x-customer-id: c1\r\n" in v.head  # stripped, identity added
    put = _admit(head.replace(b"GET", b"PUT", 1), KEYED)
    assert isinstance(put, Admitted) and put.policy is not None
    assert put.policy.throttle is not None and put.policy.throttle.rate == 1  # PUT /items/{id} override


def test_a_declared_body_over_the_limit_is_413_before_any_byte() -> None:
    head = b"POST /v1/x HTTP/1.1\r\nhost: a\r\ncontent-length: 101\r\nx-api-key: " + KEY.encode()
    v = _refused(_admit(head, KEYED), 413)
    assert v.close and v.customer is not None and v.customer.id == "c1"  # logged with who sent it
    pipelined = head.replace(b"101", b"50")
    _refused(_admit(pipelined, KEYED, body_bytes=120), 413)  # a body that already arrived counts too
    assert isinstance(_admit(pipelined, KEYED), Admitted)


def test_the_request_id_is_the_clients_when_safe() -> None:
    v = _admit(b"GET /v1/x HTTP/1.1\r\nhost: a\r\nx-request-id: abc-123")
    assert v.request_id == b"abc-123"
    w = _admit(b"GET /v1/x HTTP/1.1\r\nhost: a\r\nx-request-id: <script>")
    assert w.request_id != b"<script>" and w.request_id
    r = _refused(_admit(b"GET /v2/x HTTP/1.1\r\nhost: a\r\nx-request-id: abc-124"), 404)
    assert r.request_id == b"abc-124"  # refusals carry it too


def test_facts_every_verdict_carries() -> None:
    v = _admit(b"POST /v1/x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked")
    assert isinstance(v, Admitted) and v.body_expected and b"transfer-encoding: chunked\r\n" in v.head
    assert not v.idempotent
    keyed = _admit(b"POST /v1/x HTTP/1.1\r\nhost: a\r\nidempotency-key: 1")
    assert isinstance(keyed, Admitted) and keyed.idempotent and not keyed.body_expected
    assert isinstance(g := _admit(b"GET /v1/x HTTP/1.1\r\nhost: a\r\ncontent-length: 0"), Admitted)
    assert g.idempotent and not g.body_expected


def test_a_leading_zero_content_length_is_sent_plain() -> None:
    v = _admit(b"POST /v1/x HTTP/1.1\r\nhost: a\r\ncontent-length: 010")
    assert isinstance(v, Admitted) and b"content-length: 10\r\n" in v.head


def test_the_host_cache_remembers_the_last_host_only() -> None:
    hosts = HostCache()
    assert hosts.route_host(b"API.Example.") == hosts.route_host(b"API.Example.")
    assert hosts.raw == b"API.Example."
    assert hosts.route_host(b"bad host") is None and hosts.raw == b"bad host"


HTTPS_ONLY = _config(https_only=True)


class _Tls:
    """A TLS connection as admission sees it (the peer certificate is not read for these APIs)."""

    def cert(self) -> None:
        raise AssertionError("not an mtls API: the certificate is never looked at")


def test_https_only_redirects_plain_get_and_head_to_the_same_url_over_https() -> None:
    for method in (b"GET", b"HEAD"):
        v = admit(
            HTTPS_ONLY,
            method.decode(),
            b"/v1/items/7?x=1",
            [(b"host", b"API.example:8000")],
            "1.1",
            upgrade=False,
            body_bytes=0,
            hosts=HostCache(),
            peer_ip=b"10.0.0.7",
            https_port=8443,
        )
        refused = _refused(v, 308)
        assert refused.extra == b"location: https://api.example:8443/v1/items/7?x=1\r\n"
        assert not refused.close
    v = _admit(b"GET /v1/items/7 HTTP/1.1\r\nhost: [::1]:8000", HTTPS_ONLY)
    assert _refused(v, 308).extra == b"location: https://[::1]/v1/items/7\r\n"  # port 443 is left out


def test_https_only_refuses_other_methods_on_plain_http_and_closes() -> None:
    v = _refused(_admit(b"POST /v1/items/7 HTTP/1.1\r\nhost: a\r\ncontent-length: 3", HTTPS_ONLY), 426)
    assert v.message == responses.HTTPS_REQUIRED
    assert v.extra == b"upgrade: TLS/1.2, HTTP/1.1\r\n"
    assert v.close  # the body sent in clear is not read into another request


def test_over_tls_an_https_only_api_is_admitted_and_told_it_was_https() -> None:
    v = admit(
        HTTPS_ONLY,
        "PUT",
        b"/v1/items/7",
        [(b"host", b"a")],
        "1.1",
        upgrade=False,
        body_bytes=0,
        hosts=HostCache(),
        peer_ip=b"10.0.0.7",
        tls=_Tls(),  # type: ignore[arg-type]
    )
    assert isinstance(v, Admitted)
    assert b"\r\nx-forwarded-proto: https\r\n" in v.head
    plain = _admit(b"GET /v1/items/7 HTTP/1.1\r\nhost: a")
    assert isinstance(plain, Admitted) and b"\r\nx-forwarded-proto: http\r\n" in plain.head
