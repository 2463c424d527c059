"""OTLP/HTTP trace export written for the worker's core: records to protobuf bytes by hand, one POST.

Why not the SDK's exporter: measured on this machine, ``opentelemetry-exporter-otlp-proto-http``
encodes a sampled request (a server and a client span) in ~69 µs plus ~10 µs to build the SDK's
``ReadableSpan`` objects, and ``opentelemetry-proto``'s message classes take ~86 µs: at 1 % of
40,000 requests/s that is 3-4 % of the worker's one core, under its GIL, over the issue's budget for
all of tracing.  The few messages a record needs (``ExportTraceServiceRequest`` > ``ResourceSpans`` >
``ScopeSpans`` > ``Span`` with ``KeyValue`` attributes and a ``Status``) are written here directly in
the protobuf wire format (field numbers from opentelemetry-proto's ``trace.proto`` /
``common.proto``), with what is the same for every span of a route (its route, API and ids) encoded
once.  The tests decode what this writes with opentelemetry-proto (tests/unit/data_plane/observe/
test_otlp.py, tests/integration/test_policy_tracing.py's receiver), so a field mistake fails them.

Transport: ``httpx`` (already the worker's client to the control plane), ``application/x-protobuf``,
the ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS`` headers
(``k=v,k2=v2``, URL-encoded values), gzip when ``OTEL_EXPORTER_OTLP_COMPRESSION=gzip``, one retry
after a short pause on a connection error or 429/502/503/504.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import httpx

from data_plane import __version__

log = logging.getLogger("tollgate.tracing")

_KIND_SERVER = 2
_KIND_CLIENT = 3
_STATUS_ERROR = 2
_RETRY_STATUSES = frozenset((429, 502, 503, 504))
TIMEOUT = 10.0


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _key(key: str) -> bytes:
    return _field(1, key.encode())  # KeyValue.key


def _str_attr(key: bytes, value: str) -> bytes:
    v = value.encode("utf-8", "replace")
    any_value = b"\x0a" + _varint(len(v)) + v  # AnyValue.string_value
    inner = key + b"\x12" + _varint(len(any_value)) + any_value  # KeyValue.value
    return b"\x4a" + _varint(len(inner)) + inner  # Span.attributes (field 9)


def _int_attr(key: bytes, value: int) -> bytes:
    any_value = b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # AnyValue.int_value (int64)
    inner = key + b"\x12" + _varint(len(any_value)) + any_value
    return b"\x4a" + _varint(len(inner)) + inner


def _kv(key: str, value: str) -> bytes:
    """A KeyValue message with a string value (resource attributes)."""
    v = value.encode()
    return _key(key) + _field(2, _field(1, v))


_K = {
    name: _key(name)
    for name in (
        "http.request.method",
        "url.path",
        "url.scheme",
        "http.route",
        "http.response.status_code",
        "client.address",
        "tollgate.api",
        "tollgate.api_id",
        "tollgate.route_id",
        "tollgate.request_id",
        "server.address",
        "server.port",
        "tollgate.customer_id",
        "tollgate.upstream",
        "error.type",
        "tollgate.target",
        "tollgate.retry",
        "http.request.resend_count",
    )
}
_SCHEME = {True: _str_attr(_K["url.scheme"], "https"), False: _str_attr(_K["url.scheme"], "http")}


def _status(code: int, message: str = "") -> bytes:
    body = (_field(2, message.encode()) if message else b"") + b"\x18" + _varint(code)
    return _field(15, body)  # Span.status


def _span(
    trace_id: bytes,
    span_id: bytes,
    parent_id: bytes,
    tracestate: bytes,
    name: bytes,
    kind: int,
    start: int,
    end: int,
    attributes: bytes,
    status: bytes,
) -> bytes:
    body = b"".join(
        (
            b"\x0a\x10",
            trace_id,
            b"\x12\x08",
            span_id,
            _field(3, tracestate) if tracestate else b"",
            b"\x22\x08" + parent_id if parent_id else b"",
            _field(5, name),
            b"\x30",
            _varint(kind),
            b"\x39",
            struct.pack("<Q", start),
            b"\x41",
            struct.pack("<Q", end),
            attributes,
            status,
        )
    )
    return b"\x12" + _varint(len(body)) + body  # ScopeSpans.spans (field 2)


class Encoder:
    """Records (data_plane/observe/tracing.py ``ServerRecord``) to ``ExportTraceServiceRequest`` bytes."""

    def __init__(self, resource: Mapping[str, str]) -> None:
        self.resource = _field(1, b"".join(_field(1, _kv(k, v)) for k, v in resource.items()))
        self.scope = _field(1, _field(1, b"tollgate") + _field(2, __version__.encode()))
        self._routes: dict[int, tuple[Any, bytes, bytes]] = {}  # id(policy) -> (policy, attributes, name suffix)

    def _route(self, policy: Any) -> tuple[bytes, bytes]:
        cached = self._routes.get(id(policy))
        if cached is None or cached[0] is not policy:
            attrs = b"".join(
                (
                    _str_attr(_K["http.route"], policy.http_route),
                    _str_attr(_K["tollgate.api"], policy.api_name),
                    _str_attr(_K["tollgate.api_id"], policy.api_id),
                    _str_attr(_K["tollgate.route_id"], policy.route_id),
                )
            )
            if len(self._routes) > 10_000:
                self._routes.clear()
            cached = self._routes[id(policy)] = (policy, attrs, (" " + policy.http_route).encode())
        return cached[1], cached[2]

    def encode(self, records: list[Any]) -> tuple[bytes, int]:
        """The request body for ``records`` and the number of spans in it."""
        spans: list[bytes] = []
        for record in records:
            spans += self._record(record)
        scope_spans = self.scope + b"".join(spans)
        resource_spans = self.resource + _field(2, scope_spans)
        return _field(1, resource_spans), len(spans)

    def _record(self, record: Any) -> list[bytes]:
        (
            trace_hex,
            span_hex,
            parent_hex,
            tracestate,
            policy,
            method,
            path,
            host,
            https,
            status,
            start_ns,
            end_ns,
            customer_id,
            client_ip,
            request_id,
            upstream,
            attempts,
        ) = record
        trace_id = bytes.fromhex(trace_hex.decode("ascii"))
        span_id = bytes.fromhex(span_hex.decode("ascii"))
        parent_id = bytes.fromhex(parent_hex.decode("ascii")) if parent_hex else b""
        route_attrs, name_suffix = self._route(policy)
        address, port = _split_host(host.decode("latin-1"))
        parts = [
            _str_attr(_K["http.request.method"], method),
            _str_attr(_K["url.path"], path.decode("latin-1")),
            _SCHEME[bool(https)],
            route_attrs,
            _int_attr(_K["http.response.status_code"], status),
            _str_attr(_K["client.address"], client_ip.decode("ascii", "replace")),
            _str_attr(_K["tollgate.request_id"], request_id.decode("ascii", "replace")),
        ]
        if address:
            parts.append(_str_attr(_K["server.address"], address))
        if port:
            parts.append(_int_attr(_K["server.port"], port))
        if customer_id:
            parts.append(_str_attr(_K["tollgate.customer_id"], customer_id.decode("latin-1")))
        if upstream:
            parts.append(_str_attr(_K["tollgate.upstream"], upstream))
        status_field = b""
        if status >= 500:  # server spans: 4xx is the client's error, not this span's (semantic conventions)
            parts.append(_str_attr(_K["error.type"], str(status)))
            status_field = _status(_STATUS_ERROR)
        out = [
            _span(
                trace_id,
                span_id,
                parent_id,
                tracestate,
                method.encode() + name_suffix,
                _KIND_SERVER,
                start_ns,
                end_ns,
                b"".join(parts),
                status_field,
            )
        ]
        for retry, (attempt_hex, target_host, target_port, a_start, a_end, a_status, error) in enumerate(attempts):
            a_parts = [
                _str_attr(_K["http.request.method"], method),
                _str_attr(_K["server.address"], target_host),
                _int_attr(_K["server.port"], target_port),
                _str_attr(_K["tollgate.target"], _authority(target_host, target_port)),
                _int_attr(_K["tollgate.retry"], retry),
            ]
            if retry:
                a_parts.append(_int_attr(_K["http.request.resend_count"], retry))
            if upstream:
                a_parts.append(_str_attr(_K["tollgate.upstream"], upstream))
            a_status_field = b""
            if a_status:
                a_parts.append(_int_attr(_K["http.response.status_code"], a_status))
            if error:
                a_parts.append(_str_attr(_K["error.type"], error))
                a_status_field = _status(_STATUS_ERROR, error)
            elif a_status >= 400:  # client spans: 4xx and 5xx are errors (semantic conventions)
                a_parts.append(_str_attr(_K["error.type"], str(a_status)))
                a_status_field = _status(_STATUS_ERROR)
            out.append(
                _span(
                    trace_id,
                    bytes.fromhex(attempt_hex.decode("ascii")),
                    span_id,
                    tracestate,
                    method.encode(),
                    _KIND_CLIENT,
                    a_start,
                    a_end,
                    b"".join(a_parts),
                    a_status_field,
                )
            )
        return out


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_host(host: str) -> tuple[str, int]:
    """``example.com:8000`` -> (``example.com``, 8000); ``[::1]:80`` -> (``::1``, 80); no port: 0."""
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :]
        return host[1:end], int(rest[1:]) if rest[1:].isdigit() else 0
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, int(port)
    return host, 0


def otlp_headers(env: Mapping[str, str]) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` (else ``OTEL_EXPORTER_OTLP_HEADERS``): ``k=v,k2=v2``."""
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    out: dict[str, str] = {}
    for item in raw.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            out[unquote(name.strip()).lower()] = unquote(value.strip())
    return out


class WireExporter:
    """POSTs encoded requests to the OTLP/HTTP traces endpoint (from the export thread only)."""

    def __init__(self, endpoint: str, resource: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.endpoint = endpoint
        self.encoder = Encoder(resource)
        compression = env.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") or env.get("OTEL_EXPORTER_OTLP_COMPRESSION")
        self.gzip = compression == "gzip"
        headers = {"content-type": "application/x-protobuf", **otlp_headers(env)}
        if self.gzip:
            headers["content-encoding"] = "gzip"
        self.client = httpx.Client(timeout=TIMEOUT, headers=headers)

    def export_records(self, records: list[Any]) -> tuple[bool, int]:
        """Send ``records``: (delivered, spans in the request)."""
        body, spans = self.encoder.encode(records)
        if self.gzip:
            body = gzip.compress(body, 6)
        for attempt in range(2):
            try:
                r = self.client.post(self.endpoint, content=body)
            except httpx.HTTPError as exc:
                if attempt == 0:
                    time.sleep(0.5)
                    continue
                log.debug("span export failed: %s", exc)
                return False, spans
            if 200 <= r.status_code < 300:
                return True, spans
            if r.status_code in _RETRY_STATUSES and attempt == 0:
                time.sleep(0.5)
                continue
            return False, spans
        return False, spans

    def shutdown(self) -> None:
        self.client.close()
