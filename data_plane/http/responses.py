"""Responses the gateway produces itself (DESIGN.md, "Errors clients see").

Every error is ``{"message": ..., "request_id": ...}`` with ``X-Request-ID``; status lines and
header blocks are bytes built once at import, so an error costs a few concatenations.
"""

from __future__ import annotations

import json
from http import HTTPStatus

SERVER_HEADER = b"server: tollgate\r\n"

STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("latin-1")) for s in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


# Messages used by the proxy; the JSON prefix of each is built once.
BAD_REQUEST = "malformed or ambiguous request"
NO_ROUTE = "no route matches"
METHOD_NOT_ALLOWED = "method not allowed"
BODY_TOO_LARGE = "request body too large"
HEADERS_TOO_LARGE = "request headers too large"
UPSTREAM_FAILED = "upstream connection failed"
BAD_UPSTREAM_RESPONSE = "bad upstream response"
NO_HEALTHY_UPSTREAM = "no healthy upstream"
UPSTREAM_BUSY = "upstream connection limit reached"
UPSTREAM_TIMEOUT = "upstream timed out"
NOT_CONFIGURED = "gateway has no configuration yet"
BODY_TIMEOUT = "request body timed out"
INCOMPLETE_REQUEST = "incomplete request body"
URI_TOO_LONG = "request URI too long"
EXPECTATION_FAILED = "unsupported expectation"
VERSION_NOT_SUPPORTED = "HTTP version not supported"
HTTPS_REDIRECT = "this API is served over HTTPS only"
HTTPS_REQUIRED = "this API is served over HTTPS only: send the request with https"
IP_FORBIDDEN = "client address not allowed"
CORS_ORIGIN_REFUSED = "origin not allowed by the CORS policy"

_PREFIX: dict[str, bytes] = {}
# The cache holds the gateway's own messages; a plugin's refusal may word each one differently
# (data_plane/policies/plugins.py): past this many, a message is encoded for its one response.
_PREFIX_MAX = 512


def error_body(message: str, request_id: bytes) -> bytes:
    prefix = _PREFIX.get(message)
    if prefix is None:
        prefix = b'{"message":' + json.dumps(message).encode() + b',"request_id":"'
        if len(_PREFIX) < _PREFIX_MAX:
            _PREFIX[message] = prefix
    return prefix + request_id + b'"}'


def error_response(
    status: int,
    message: str,
    request_id: bytes,
    *,
    keep_alive: bool,
    extra_headers: bytes = b"",
) -> bytes:
    """A complete HTTP/1.1 response. ``request_id`` is ours or already validated as safe to echo."""
    body = error_body(message, request_id)
    return b"".join(
        (
            status_line(status),
            SERVER_HEADER,
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nx-request-id: ",
            request_id,
            b"\r\n",
            extra_headers,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )


def empty_response(status: int, request_id: bytes, *, keep_alive: bool, extra_headers: bytes = b"") -> bytes:
    """A complete response without a body (a CORS preflight's 204)."""
    return b"".join(
        (
            status_line(status),
            SERVER_HEADER,
            b"x-request-id: ",
            request_id,
            b"\r\n",
            extra_headers,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
        )
    )
