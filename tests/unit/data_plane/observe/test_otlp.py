"""The span exporter (data_plane/observe/otlp.py): records become server and client spans with the
HTTP semantic conventions' attributes; the queue is bounded; what is queued is exported on close."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from data_plane.observe.otlp import OtlpTracer, to_spans
from data_plane.observe.tracing import RouteTracing, ServerRecord

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
RESOURCE = Resource.create({"service.name": "tollgate-worker"})
POLICY = RouteTracing(1.0, None, "api-1", "shop", "route-1", "/shop/{proxy+}")


def record(status: int = 200, attempts: list[tuple[bytes, str, int, int, int, int, str]] | None = None) -> ServerRecord:
    return (
        TRACE,
        b"1111111111111111",
        b"00f067aa0ba902b7",
        b"congo=t61rcWkgMzE",
        POLICY,
        "GET",
        b"/shop/items/1",
        b"shop.example:8000",
        True,
        status,
        1_000,
        9_000,
        b"cust-1",
        b"203.0.113.7",
        b"req-1",
        "svc",
        attempts
        if attempts is not None
        else [
            (b"2222222222222222", "10.0.0.1", 8080, 2_000, 3_000, 0, "upstream connection failed"),
            (b"3333333333333333", "10.0.0.2", 8080, 3_000, 8_000, 200, ""),
        ],
    )


def test_a_record_becomes_a_server_span_and_a_client_span_per_attempt() -> None:
    server, failed, answered = to_spans(record(), RESOURCE)
    assert server.kind is SpanKind.SERVER and server.name == "GET /shop/{proxy+}"
    assert server.context is not None and server.parent is not None
    assert server.context.trace_id == int(TRACE, 16) and server.context.span_id == 0x1111111111111111
    assert server.parent.span_id == 0x00F067AA0BA902B7 and server.parent.is_remote
    assert server.context.trace_state.get("congo") == "t61rcWkgMzE"
    assert (server.start_time, server.end_time) == (1_000, 9_000)
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/shop/items/1",
        "url.scheme": "https",
        "http.route": "/shop/{proxy+}",
        "http.response.status_code": 200,
        "server.address": "shop.example",
        "server.port": 8000,
        "client.address": "203.0.113.7",
        "tollgate.api": "shop",
        "tollgate.api_id": "api-1",
        "tollgate.route_id": "route-1",
        "tollgate.request_id": "req-1",
        "tollgate.customer_id": "cust-1",
        "tollgate.upstream": "svc",
    }
    assert server.status.status_code is StatusCode.UNSET
    for span in (failed, answered):
        assert span.kind is SpanKind.CLIENT and span.parent is not None and span.context is not None
        assert span.parent.span_id == server.context.span_id and span.context.trace_id == int(TRACE, 16)
    assert failed.attributes is not None and answered.attributes is not None
    assert failed.attributes["tollgate.retry"] == 0 and "http.request.resend_count" not in failed.attributes
    assert failed.attributes["error.type"] == "upstream connection failed"
    assert failed.status.status_code is StatusCode.ERROR
    assert answered.attributes["tollgate.retry"] == 1 and answered.attributes["http.request.resend_count"] == 1
    assert answered.attributes["tollgate.target"] == "10.0.0.2:8080"
    assert answered.attributes["http.response.status_code"] == 200 and "error.type" not in answered.attributes


def test_a_5xx_is_an_error_of_the_server_span_a_4xx_is_not() -> None:
    (bad,) = to_spans(record(503, attempts=[]), RESOURCE)
    (refused,) = to_spans(record(401, attempts=[]), RESOURCE)
    assert bad.status.status_code is StatusCode.ERROR and (bad.attributes or {})["error.type"] == "503"
    assert refused.status.status_code is StatusCode.UNSET


def test_a_full_queue_drops_and_counts_and_close_exports_what_waits() -> None:
    exporter = InMemorySpanExporter()
    tracer = OtlpTracer(exporter, RESOURCE, max_queue=3, batch=2)
    for _ in range(5):
        tracer.add(record())
    assert tracer.dropped == 2 and len(tracer.queue) == 3
    tracer.close()  # not started: drained here
    spans = exporter.get_finished_spans()
    assert len(spans) == 9 and tracer.exported_spans == 9 and tracer.status()["queued"] == 0


class Failing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def test_a_failed_export_is_counted_not_kept() -> None:
    tracer = OtlpTracer(Failing(), RESOURCE)
    tracer.add(record())
    tracer.close()
    assert tracer.failed_spans == 3 and tracer.exported_spans == 0 and not tracer.queue


class Signalling(InMemorySpanExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exported = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self.exported.set()
        return result


def test_the_thread_exports_a_full_batch_without_waiting_for_the_interval() -> None:
    exporter = Signalling()
    tracer = OtlpTracer(exporter, RESOURCE, batch=2, interval=60.0)
    tracer.start()
    try:
        tracer.add(record(attempts=[]))
        assert not exporter.exported.is_set()  # one record: waits for the interval (a minute here)
        tracer.add(record(attempts=[]))
        assert exporter.exported.wait(5.0)
        assert len(exporter.get_finished_spans()) == 2
    finally:
        tracer.close()


def test_a_worker_without_an_endpoint_never_imports_opentelemetry() -> None:
    import subprocess
    import sys

    code = (
        "import sys, data_plane.server, data_plane.policies.tracing, data_plane.observe.tracing\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


def test_the_wire_encoder_writes_what_opentelemetry_proto_reads() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    from data_plane.observe.otlp_wire import Encoder, otlp_headers

    body, n = Encoder({"service.name": "tollgate-worker", "service.instance.id": "w1"}).encode(
        [record(), record(503, attempts=[])]
    )
    assert n == 4
    rs = ExportTraceServiceRequest.FromString(body).resource_spans[0]
    assert {a.key: a.value.string_value for a in rs.resource.attributes} == {
        "service.name": "tollgate-worker",
        "service.instance.id": "w1",
    }
    assert rs.scope_spans[0].scope.name == "tollgate"
    server, failed, answered, bad = rs.scope_spans[0].spans
    attrs = {a.key: a.value for a in server.attributes}
    assert (server.name, server.kind) == ("GET /shop/{proxy+}", Span.SPAN_KIND_SERVER)
    assert server.trace_id.hex() == TRACE.decode() and server.parent_span_id.hex() == "00f067aa0ba902b7"
    assert server.trace_state == "congo=t61rcWkgMzE"
    assert (server.start_time_unix_nano, server.end_time_unix_nano) == (1_000, 9_000)
    assert attrs["http.response.status_code"].int_value == 200 and attrs["url.path"].string_value == "/shop/items/1"
    assert attrs["tollgate.customer_id"].string_value == "cust-1" and attrs["server.port"].int_value == 8000
    assert attrs["http.route"].string_value == "/shop/{proxy+}" and attrs["url.scheme"].string_value == "https"
    assert server.status.code == Status.STATUS_CODE_UNSET
    assert (failed.kind, failed.parent_span_id, failed.span_id.hex()) == (
        Span.SPAN_KIND_CLIENT,
        server.span_id,
        "2222222222222222",
    )
    assert failed.status.code == Status.STATUS_CODE_ERROR and failed.status.message == "upstream connection failed"
    retried = {a.key: a.value.int_value for a in answered.attributes}
    assert retried["tollgate.retry"] == 1 and retried["http.request.resend_count"] == 1
    assert retried["http.response.status_code"] == 200 and answered.status.code == Status.STATUS_CODE_UNSET
    assert bad.status.code == Status.STATUS_CODE_ERROR  # a 5xx is the server span's error
    assert {a.key: a.value.string_value for a in bad.attributes}["error.type"] == "503"
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20t0k,x-team = gw"}
    assert otlp_headers(env) == {"authorization": "Bearer t0k", "x-team": "gw"}
