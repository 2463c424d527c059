"""Pure head rewriting (data_plane/http/headers.py): bytes in, bytes out."""

from __future__ import annotations

from data_plane.http.headers import (
    BODY_AS_IS,
    BODY_CHUNKED,
    BODY_TO_CLOSE,
    new_request_id,
    request_head,
    response_head,
    tokens,
    valid_request_id,
)


def _request(headers: list[tuple[bytes, bytes]], **kw: object) -> bytes:
    args: dict = {
        "peer_ip": b"10.1.1.1",
        "host": b"api.example",
        "request_id": b"rid-1",
        "inject": b"",
        "upgrade": False,
        "chunked": False,
    }
    args.update(kw)
    return request_head("GET", b"/p?q=1", headers, **args)


def _fields(head: bytes) -> list[bytes]:
    return head.split(b"\r\n")[1:-1]


def test_request_head_drops_hop_by_hop_and_gateway_fields_and_adds_forwarding() -> None:
    head = _request(
        [
            (b"host", b"api.example"),
            (b"connection", b"keep-alive, x-named"),
            (b"x-named", b"gone"),
            (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"chunked"),
            (b"x-customer-id", b"spoofed"),
            (b"x-forwarded-proto", b"https"),
            (b"x-request-id", b"client-rid"),
            (b"accept", b"*/*"),
        ]
    )
    assert head.startswith(b"GET /p?q=1 HTTP/1.1\r\n")
    assert _fields(head) == [
        b"accept: */*",
        b"x-forwarded-for: 10.1.1.1",
        b"x-forwarded-proto: http",
        b"x-forwarded-host: api.example",
        b"x-request-id: rid-1",
        b"via: 1.1 tollgate",
    ]


def test_every_forwarded_for_line_is_kept_in_order_before_the_peer() -> None:
    head = _request([(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b""), (b"x-forwarded-for", b"2.2.2.2")])
    assert b"x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.1.1.1\r\n" in head


def test_te_trailers_upgrade_chunked_and_identity_lines() -> None:
    head = _request(
        [(b"te", b"trailers, deflate"), (b"upgrade", b"websocket"), (b"connection", b"upgrade")],
        upgrade=True,
        chunked=True,
        inject=b"x-customer-id: c1\r\n",
    )
    fields = _fields(head)
    assert b"te: trailers" in fields
    assert fields[-4:] == [
        b"te: trailers",
        b"connection: upgrade",
        b"upgrade: websocket",
        b"transfer-encoding: chunked",
    ]
    assert b"x-customer-id: c1" in fields
    assert not any(f.startswith(b"te: trailers, deflate") for f in fields)


def test_response_head_framing() -> None:
    with_length = [(b"content-length", b"2"), (b"x-a", b"1")]
    head, framing = response_head(
        200, with_length, request_id=b"r", extra=b"", no_body=False, http11=True, keep_alive=True
    )
    assert framing == BODY_AS_IS and head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"connection: close" not in head
    head, framing = response_head(200, [], request_id=b"r", extra=b"", no_body=False, http11=True, keep_alive=True)
    assert framing == BODY_CHUNKED and b"transfer-encoding: chunked\r\n" in head
    head, framing = response_head(200, [], request_id=b"r", extra=b"", no_body=False, http11=False, keep_alive=True)
    assert framing == BODY_TO_CLOSE and b"connection: close\r\n" in head  # HTTP/1.0: the close ends the body
    head, framing = response_head(204, [], request_id=b"r", extra=b"", no_body=True, http11=True, keep_alive=False)
    assert framing == BODY_AS_IS and b"transfer-encoding" not in head and b"connection: close\r\n" in head


def test_response_head_drops_hop_by_hop_and_the_upstreams_request_id() -> None:
    upstream = [
        (b"connection", b"x-internal"),
        (b"x-internal", b"secret"),
        (b"x-request-id", b"theirs"),
        (b"transfer-encoding", b"chunked"),
        (b"content-type", b"text/plain"),
    ]
    head, framing = response_head(
        200, upstream, request_id=b"ours", extra=b"ratelimit: x\r\n", no_body=False, http11=True, keep_alive=True
    )
    assert b"secret" not in head and b"theirs" not in head
    assert b"x-request-id: ours\r\nvia: 1.1 tollgate\r\nratelimit: x\r\n" in head
    assert framing == BODY_CHUNKED  # the upstream's chunking is undone and redone by the gateway


def test_a_101_keeps_the_upgrade_token() -> None:
    head, framing = response_head(
        101,
        [(b"connection", b"upgrade"), (b"upgrade", b"websocket")],
        request_id=b"r",
        extra=b"",
        no_body=False,
        http11=True,
        keep_alive=False,
    )
    assert head.endswith(b"connection: upgrade\r\nupgrade: websocket\r\n\r\n") and framing == BODY_AS_IS
    assert b"connection: close" not in head


def test_request_ids() -> None:
    a, b = new_request_id(), new_request_id()
    assert a != b and valid_request_id(a)
    assert valid_request_id(b"a-Z_0.9:x")
    assert not valid_request_id(b"") and not valid_request_id(b"x" * 129) and not valid_request_id(b"a b")
    assert tokens(b"Keep-Alive, X-A ,close") == {b"keep-alive", b"x-a", b"close"}
