"""The worker's span exporter: sampled requests' records in, OpenTelemetry spans out over OTLP/HTTP.

The request path hands :meth:`OtlpTracer.add` one plain tuple per sampled request
(:data:`~data_plane.observe.tracing.ServerRecord`, made in ``data_plane/observe/tracing.py``);
``add`` appends it to a bounded queue and returns.  A thread of the exporter's own wakes every
:data:`INTERVAL` seconds (or as soon as :data:`BATCH` records wait), turns what is queued into the
spans (a server span per request, a client span per upstream attempt) and posts them: the worker's
exporter (:mod:`data_plane.observe.otlp_wire`) encodes the records straight to OTLP protobuf,
~3x cheaper than the SDK's ``ReadableSpan`` + ``OTLPSpanExporter`` path, which stays for any
``SpanExporter`` given instead (the tests' in-memory one).  None of it runs on the event loop.

Bounds: at most :data:`MAX_QUEUE` requests wait; past that a record is dropped and counted
(``dropped``: a collector that is down or slow costs memory up to the bound, never latency).  A
batch the exporter could not deliver (after its own retries, within its timeout) is counted in
``failed_spans`` and not kept.  On shutdown the worker calls :meth:`OtlpTracer.close` after the
drain: what is queued is exported, within a bounded wait.

Only this module imports OpenTelemetry, and only a worker with an endpoint imports this module
(:func:`make_tracer`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from data_plane import __version__
from data_plane.observe.otlp_wire import WireExporter

if TYPE_CHECKING:
    from data_plane.observe.tracing import ServerRecord
    from data_plane.settings import WorkerSettings

log = logging.getLogger("tollgate.tracing")

SERVICE_NAME = "tollgate-worker"
MAX_QUEUE = 8192  # requests waiting for export; more are dropped (and counted)
BATCH = 512  # requests per export (each one a server span and its client spans)
INTERVAL = 1.0  # seconds between exports of whatever is queued
CLOSE_TIMEOUT = 5.0  # seconds the shutdown waits for the last export

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("tollgate", __version__)


class OtlpTracer:
    """The worker-lifetime span sink (``PolicyEnv.tracer``): a bounded queue and an export thread."""

    def __init__(
        self,
        exporter: SpanExporter | WireExporter,
        resource: Resource,
        *,
        endpoint: str = "",
        max_queue: int = MAX_QUEUE,
        batch: int = BATCH,
        interval: float = INTERVAL,
    ) -> None:
        self.exporter = exporter
        self.resource = resource
        self.endpoint = endpoint
        self.max_queue = max_queue
        self.batch = batch
        self.interval = interval
        # deque: append (event loop) and popleft (export thread) are atomic without a lock
        self.queue: deque[ServerRecord] = deque()
        self.dropped = 0  # requests whose spans were dropped: the queue was full (event loop's counter)
        self.exported_spans = 0  # (export thread's counters)
        self.failed_spans = 0
        self._failing = False
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ event loop side

    def add(self, record: ServerRecord) -> None:
        q = self.queue
        n = len(q)
        if n >= self.max_queue:
            self.dropped += 1
            return
        q.append(record)
        if n + 1 == self.batch:
            self._wake.set()  # a full batch: export now rather than at the next tick

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tollgate-otlp", daemon=True)
        self._thread.start()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Export what is queued (waiting at most ``timeout``), then shut the exporter down.
        Blocking: the worker runs it off the event loop."""
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "span export still running after %.1f s at shutdown; %d request(s) not exported",
                    timeout,
                    len(self.queue),
                )
        else:
            self._drain()
        self.exporter.shutdown()  # (also ends a retry backoff still waiting)

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "queued": len(self.queue),
            "dropped": self.dropped,
            "exported_spans": self.exported_spans,
            "failed_spans": self.failed_spans,
        }

    # ------------------------------------------------------------------ export thread

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        q = self.queue
        wire = isinstance(self.exporter, WireExporter)
        while q:
            if wire:
                self._export_records([q.popleft() for _ in range(min(self.batch, len(q)))])
                continue
            spans: list[ReadableSpan] = []
            for _ in range(min(self.batch, len(q))):
                spans += to_spans(q.popleft(), self.resource)
            self._export(spans)

    def _export_records(self, records: list[ServerRecord]) -> None:
        """The worker's own exporter (otlp_wire.py): records encoded straight to protobuf."""
        assert isinstance(self.exporter, WireExporter)
        try:
            ok, n = self.exporter.export_records(records)
        except Exception:  # one raising must not end the thread
            log.exception("span export raised")
            ok, n = False, sum(1 + len(r[16]) for r in records)
        self._counted(ok, n)

    def _export(self, spans: list[ReadableSpan]) -> None:
        exporter = self.exporter
        assert not isinstance(exporter, WireExporter)
        try:
            result = exporter.export(spans)
        except Exception:  # the exporter reports its own failures; one raising must not end the thread
            log.exception("span export raised")
            result = SpanExportResult.FAILURE
        self._counted(result is SpanExportResult.SUCCESS, len(spans))

    def _counted(self, ok: bool, n: int) -> None:
        if ok:
            self.exported_spans += n
            if self._failing:
                self._failing = False
                log.info("span export to %s works again", self.endpoint)
            return
        self.failed_spans += n
        if not self._failing:  # said once per outage, not once per batch
            self._failing = True
            log.warning("span export to %s failed; %d span(s) dropped (counted in failed_spans)", self.endpoint, n)


def to_spans(record: ServerRecord, resource: Resource) -> list[ReadableSpan]:
    """One request's record as its server span and one client span per upstream attempt, with the
    attributes of the OpenTelemetry HTTP semantic conventions (and ``tollgate.*`` ones)."""
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
    trace_id = int(trace_hex, 16)
    state = TraceState.from_header([tracestate.decode("latin-1")]) if tracestate else TraceState()
    context = SpanContext(trace_id, int(span_hex, 16), False, _SAMPLED, state)
    parent = SpanContext(trace_id, int(parent_hex, 16), True, _SAMPLED, state) if parent_hex else None
    address, port = _split_host(host.decode("latin-1"))
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path.decode("latin-1"),
        "url.scheme": "https" if https else "http",
        "http.route": policy.http_route,
        "http.response.status_code": status,
        "client.address": client_ip.decode("ascii", "replace"),
        "tollgate.api": policy.api_name,
        "tollgate.api_id": policy.api_id,
        "tollgate.route_id": policy.route_id,
        "tollgate.request_id": request_id.decode("ascii", "replace"),
    }
    if address:
        attributes["server.address"] = address
    if port:
        attributes["server.port"] = port
    if customer_id:
        attributes["tollgate.customer_id"] = customer_id.decode("latin-1")
    if upstream:
        attributes["tollgate.upstream"] = upstream
    server_status = Status()
    if status >= 500:  # server spans: 4xx is the client's error, not this span's (semantic conventions)
        attributes["error.type"] = str(status)
        server_status = Status(StatusCode.ERROR)
    spans = [
        ReadableSpan(
            f"{method} {policy.http_route}",
            context=context,
            parent=parent,
            resource=resource,
            attributes=attributes,
            kind=SpanKind.SERVER,
            status=server_status,
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=_SCOPE,
        )
    ]
    for retry, (attempt_hex, target_host, target_port, a_start, a_end, a_status, error) in enumerate(attempts):
        a_attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": target_host,
            "server.port": target_port,
            "tollgate.target": _authority(target_host, target_port),
            "tollgate.retry": retry,
        }
        if retry:
            a_attributes["http.request.resend_count"] = retry
        if upstream:
            a_attributes["tollgate.upstream"] = upstream
        a_status_obj = Status()
        if a_status:
            a_attributes["http.response.status_code"] = a_status
        if error:
            a_attributes["error.type"] = error
            a_status_obj = Status(StatusCode.ERROR, error)
        elif a_status >= 400:  # client spans: 4xx and 5xx are errors (semantic conventions)
            a_attributes["error.type"] = str(a_status)
            a_status_obj = Status(StatusCode.ERROR)
        spans.append(
            ReadableSpan(
                method,
                context=SpanContext(trace_id, int(attempt_hex, 16), False, _SAMPLED, state),
                parent=context,
                resource=resource,
                attributes=a_attributes,
                kind=SpanKind.CLIENT,
                status=a_status_obj,
                start_time=a_start,
                end_time=a_end,
                instrumentation_scope=_SCOPE,
            )
        )
    return spans


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


def make_tracer(settings: WorkerSettings) -> OtlpTracer | None:
    """The worker's exporter for ``settings.otlp_endpoint`` (None: no endpoint, no exporter)."""
    endpoint = settings.otlp_endpoint
    if not endpoint:
        return None
    attributes = {
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME,
        "service.version": __version__,
        "service.instance.id": settings.node_id,
        "host.name": settings.hostname,
    }
    resource = Resource.create(attributes)
    # the SDK resource's attributes (telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES merged) on the wire exporter's spans
    wire = {k: str(v) for k, v in resource.attributes.items()}
    return OtlpTracer(WireExporter(endpoint, wire), resource, endpoint=endpoint)
