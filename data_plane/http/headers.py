"""Pure head rewriting: the request head the gateway sends upstream, the response head it sends
back, and request ids.  No state, no I/O: bytes in, bytes out (unit-tested as such).

Hop-by-hop fields (RFC 9110 7.6.1), the fields a ``Connection`` header names, and the ones the
gateway sets itself are never forwarded in either direction.  The upstream request head is built
without its ``Host`` line and final blank line: each target's precompiled ``head_end``
(``compiler.CompiledTarget``) completes it, so the head is built once per request, not per attempt.
"""

from __future__ import annotations

import itertools
import os
from typing import Final

from data_plane.http.responses import status_line

# Hop-by-hop fields (RFC 9110 7.6.1) and the ones the gateway sets itself; never forwarded.
_HOP_BY_HOP: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade", b"trailer")
)
# x-customer-id / x-key-prefix are set by authentication only: a client-supplied one is spoofing.
_SET_BY_GATEWAY_REQUEST: Final = _HOP_BY_HOP | {
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-customer-id",
    b"x-key-prefix",
}
_SET_BY_GATEWAY_RESPONSE: Final = _HOP_BY_HOP | {b"x-request-id"}

_VIA: Final = b"via: 1.1 tollgate\r\n"
_PROTO_HTTP: Final = b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: "
_PROTO_HTTPS: Final = b"\r\nx-forwarded-proto: https\r\nx-forwarded-host: "
CHUNKED: Final = b"transfer-encoding: chunked\r\n"
_TE_TRAILERS: Final = b"te: trailers\r\n"
_CONNECTION_UPGRADE: Final = b"connection: upgrade\r\nupgrade: "
_CONNECTION_CLOSE: Final = b"connection: close\r\n"
CRLF: Final = b"\r\n"
_REQUEST_ID_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")

# How the response body the client gets is framed (response_head's second result).
BODY_AS_IS: Final = 0  # Content-Length from the upstream, or no body: bytes pass through
BODY_CHUNKED: Final = 1  # no length, HTTP/1.1 client: the gateway chunks it
BODY_TO_CLOSE: Final = 2  # no length, HTTP/1.0 client: the body ends when the connection closes

_rid_prefix: Final = os.urandom(6).hex().encode()
_rid_numbers: Final = itertools.count(1)  # (a Final object: no module-dict lookup and store per id)


def new_request_id() -> bytes:
    return b"%s-%x" % (_rid_prefix, next(_rid_numbers))


def valid_request_id(value: bytes) -> bool:
    """A client's X-Request-ID is kept (and echoed, and logged unescaped) only if it is this safe."""
    return 0 < len(value) <= 128 and all(c in _REQUEST_ID_CHARS for c in value)


def tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",")}


def request_head(
    method: str,
    upstream_path: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    peer_ip: bytes,
    host: bytes,
    request_id: bytes,
    inject: bytes,
    upgrade: bool,
    chunked: bool,
    https: bool = False,
) -> bytes:
    """The request head for the upstream minus the Host line and the blank line ending the head.

    ``inject``: identity lines authentication adds (``x-customer-id``...); ``peer_ip`` is appended
    to every X-Forwarded-For line the client sent, in order (one list, RFC 9110 5.3)."""
    skip = _SET_BY_GATEWAY_REQUEST
    connection_named: set[bytes] | None = None
    xff = b""
    te_trailers = False
    upgrade_to = b""
    parts = [method.encode(), b" ", upstream_path, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if name == b"connection":
            connection_named = tokens(value)
    for name, value in headers:
        if name in skip or (connection_named is not None and name in connection_named):
            if name == b"x-forwarded-for":
                if value:
                    xff += value + b", "  # every field line, in order: one list (RFC 9110 5.3)
            elif name == b"te":
                te_trailers = b"trailers" in tokens(value)
            elif name == b"upgrade":
                upgrade_to = value
            continue
        if name == b"x-request-id":
            continue
        parts += (name, b": ", value, CRLF)
    parts += (
        b"x-forwarded-for: ",
        xff,
        peer_ip,
        _PROTO_HTTPS if https else _PROTO_HTTP,
        host,
        b"\r\nx-request-id: ",
        request_id,
        b"\r\n",
        inject,
        _VIA,
    )
    if te_trailers:
        parts.append(_TE_TRAILERS)  # the one TE value that is end-to-end in meaning
    if upgrade:
        parts += (_CONNECTION_UPGRADE, upgrade_to, CRLF)
    if chunked:
        parts.append(CHUNKED)
    return b"".join(parts)


def response_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    *,
    request_id: bytes,
    extra: bytes,
    no_body: bool,
    http11: bool,
    keep_alive: bool,
) -> tuple[bytes, int]:
    """The response head for the client and how its body is framed (``BODY_*``).

    ``extra``: lines the gateway adds (RateLimit-*); ``no_body``: HEAD, 204 or 304;
    ``keep_alive``: whether the connection stays open after this response (it closes anyway for a
    body that must end with the connection).  A 101 keeps the upstream's ``Upgrade`` value."""
    parts = [status_line(status)]
    has_length = False
    connection_named: set[bytes] | None = None
    upgrade = b""
    for name, value in headers:
        if name == b"connection":
            connection_named = tokens(value)
    skip = _SET_BY_GATEWAY_RESPONSE
    for name, value in headers:
        if name in skip or (connection_named is not None and name in connection_named):
            if name == b"upgrade":
                upgrade = value
            continue
        if name == b"content-length":
            has_length = True
        parts += (name, b": ", value, CRLF)
    parts += (b"x-request-id: ", request_id, CRLF, _VIA, extra)
    if status == 101:
        parts += (_CONNECTION_UPGRADE, upgrade, CRLF, CRLF)
        return b"".join(parts), BODY_AS_IS
    framing = BODY_AS_IS
    if not has_length and not no_body:
        if http11:
            framing = BODY_CHUNKED
            parts.append(CHUNKED)
        else:
            framing = BODY_TO_CLOSE
            keep_alive = False
    if not keep_alive:
        parts.append(_CONNECTION_CLOSE)
    parts.append(CRLF)
    return b"".join(parts), framing
