"""tollgate.plugins, the public plugin interface: views, refusals and the header rules they enforce."""

from __future__ import annotations

import pytest

from tollgate.plugins import API_VERSION, Plugin, Refusal, RequestView, ResponseView


def _view(headers: list[tuple[bytes, bytes]] | None = None, **kw: object) -> RequestView:
    args: dict[str, object] = {
        "method": "POST",
        "path": "/v1/items/7",
        "query": b"a=1&b=%20",
        "headers": headers if headers is not None else [(b"x-user", b"u1"), (b"accept", b"a"), (b"accept", b"b")],
        "client_ip": b"10.0.0.7",
        "customer_id": "c1",
        "plan_id": "gold",
        "route_id": "r1",
        "api_name": "shop",
        "request_id": b"rid-1",
        "body_length": 12,
    }
    args.update(kw)
    return RequestView(**args)  # type: ignore[arg-type]


def test_the_interface_version_is_1() -> None:
    assert API_VERSION == 1


def test_a_request_view_reads_the_request() -> None:
    v = _view()
    assert (v.method, v.path, v.query, v.client_ip) == ("POST", "/v1/items/7", "a=1&b=%20", "10.0.0.7")
    assert (v.customer_id, v.plan_id, v.route_id, v.api_name) == ("c1", "gold", "r1", "shop")
    assert (v.request_id, v.body_length) == ("rid-1", 12)
    assert v.header("X-User") == "u1"  # any case
    assert v.header("accept") == "a, b"  # several lines, one list (RFC 9110 5.3)
    assert v.header("missing") is None


def test_a_request_view_is_read_only_and_has_no_dict() -> None:
    v = _view()
    with pytest.raises(AttributeError):
        v.path = "/other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        v.anything = 1  # type: ignore[attr-defined]


def test_added_header_lines_are_kept_lower_case_in_order() -> None:
    v = _view()
    v.add_upstream_header("X-Variant", "b")
    v.add_upstream_header("x-variant", "c")
    v.add_response_header("X-Seen", "yes")
    assert v._upstream == [(b"x-variant", b"b"), (b"x-variant", b"c")]
    assert v._response == [(b"x-seen", b"yes")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("host", "evil"),  # the gateway frames and routes
        ("Content-Length", "1"),
        ("transfer-encoding", "chunked"),
        ("x-forwarded-for", "1.2.3.4"),  # identity is the gateway's
        ("x-customer-id", "someone-else"),
        ("bad name", "v"),
        ("", "v"),
        ("x-ok", "a\r\nx-injected: 1"),  # no header injection
        ("x-ok", "nul\x00"),
        ("x-ok", "snowman \u2603"),  # not Latin-1
    ],
)
def test_an_upstream_header_the_gateway_owns_or_a_bad_line_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        _view().add_upstream_header(name, value)


def test_response_header_rules() -> None:
    v = _view()
    with pytest.raises(ValueError):
        v.add_response_header("content-length", "0")
    with pytest.raises(ValueError):
        v.add_response_header("x-request-id", "mine")
    v.add_response_header("x-customer-id", "ok-on-a-response")  # only the request side owns this one
    assert v._response == [(b"x-customer-id", b"ok-on-a-response")]


def test_a_response_view() -> None:
    r = ResponseView(201, [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1")])
    assert r.status == 201 and r.header("Content-Type") == "text/plain"
    r.add_header("X-Served-By", "plugin")
    assert r._added == [(b"x-served-by", b"plugin")]
    with pytest.raises(ValueError):
        r.add_header("connection", "close")


def test_a_refusal_checks_its_status_and_headers() -> None:
    r = Refusal(429, "slow down", [("Retry-After", "3")])
    assert (r.status, r.message, r.headers) == (429, "slow down", ((b"retry-after", b"3"),))
    assert Refusal(302, "elsewhere", [("location", "/x")]).status == 302
    for bad in (200, 304, 600, 99, True, "403"):
        with pytest.raises(ValueError):
            Refusal(bad, "no")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Refusal(403, "no", [("content-length", "5")])
    with pytest.raises(TypeError):
        Refusal(403, b"bytes")  # type: ignore[arg-type]


def test_the_base_plugin_keeps_its_config_and_its_hooks_do_nothing() -> None:
    class Quiet(Plugin):
        name = "quiet"
        api_version = API_VERSION

    p = Quiet({"a": 1})
    assert p.config == {"a": 1}
    assert p.on_request(_view()) is None
    assert p.on_response(ResponseView(200, [])) is None
    assert not hasattr(Plugin, "api_version")  # a plugin must say which version it was written for
