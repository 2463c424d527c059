"""Tracing on the request path: W3C Trace Context in and out, the sampling decision, span records.

The per-request part is written by hand instead of with OpenTelemetry SDK span objects: at 1 %
sampling, 99 requests in 100 only need a trace id, a sampling bit and one ``traceparent`` line per
upstream attempt, and an SDK span (context manager, attribute dict, span processor, locks) costs
more than the whole of that.  What is sampled becomes plain tuples handed to the worker's
:class:`SpanSink` (``data_plane/observe/otlp.py``: a bounded queue, converted to SDK spans and
exported over OTLP/HTTP on a thread of its own).

**Trace Context** (W3C Trace Context level 1): ``traceparent: 00-<32 hex trace id>-<16 hex parent
id>-<2 hex flags>``, lowercase hex, neither id all zeros, version ``ff`` invalid, version ``00``
exactly 55 characters (a later version may carry more after a ``-``; its first four fields are
read).  More than one ``traceparent`` field, or any invalid one, starts a new trace, and its
``tracestate`` is dropped with it (the spec: do not parse tracestate without a valid traceparent).
``tracestate`` fields are joined with ``,`` and kept as they came, up to :data:`MAX_TRACESTATE`
bytes (the spec's minimum to propagate: longer ones lose entries over 128 bytes first, then
entries from the end).  The client's own ``traceparent`` / ``tracestate`` are never forwarded:
each attempt upstream gets ``traceparent: 00-<trace id>-<this attempt's span id>-<flags>`` and
the incoming ``tracestate``.

**Sampling**, parent-based: a valid ``traceparent`` decides with its sampled flag (so a trace is
recorded by every hop or by none); without one the route's ``sample_ratio`` decides from the
trace id, as OpenTelemetry's ``TraceIdRatioBased`` does (sampled when the low 8 bytes, as an
unsigned integer, are below ``ratio * 2**64``), so any hop applying the same ratio to that trace
agrees.  An unsampled request still propagates (flags ``00``) and records nothing.

**Ids**: ``random.getrandbits`` (what the OpenTelemetry SDK's ``RandomIdGenerator`` uses; ids need
to be unique, not secret), never zero.  The random module reseeds itself in a forked child.

**What a sampled request records** (one :data:`ServerRecord` per request, made when it ends): the
server span (trace id, span id, the caller's span id as parent, times, status, route, customer,
client address, method, path, host) and one :data:`Attempt` per upstream attempt, each a client
span child of the server span (its span id is the one the upstream got as parent; target,
status or error, retry index).  Times are read with ``perf_counter`` while the request runs
(monotonic, cheap) and turned into wall-clock nanoseconds once, when the request ends.
"""

from __future__ import annotations

from random import getrandbits
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from data_plane.http.exchange import Exchange

# Bytes of a combined tracestate kept (W3C: propagate at least 512; entries over 128 go first).
MAX_TRACESTATE: Final = 512
_MAX_ENTRY: Final = 128
_MAX_ENTRIES: Final = 32
_LOW64: Final = (1 << 64) - 1
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16
_HEX_DASH: Final = b"0123456789abcdef-"
_DASH: Final = 0x2D
_TRACEPARENT: Final = b"traceparent: 00-"
_SAMPLED_END: Final = b"-01\r\n"
_UNSAMPLED_END: Final = b"-00\r\n"
# the attempts of every trace that records nothing (never appended to: only recording traces open attempts)
_NOTHING: Final[list[tuple[bytes, str, int, float, float, int, str]]] = []

# One upstream attempt: (span id, target host, target port, start ns, end ns, upstream status or 0,
# error ("" when the attempt got a response)).
Attempt = tuple[bytes, str, int, int, int, int, str]
# One sampled request: (trace id, server span id, parent span id or b"", tracestate, the route's
# RouteTracing, method, path (no query), Host, https, status, start ns, end ns, customer id,
# client ip, request id, upstream name, attempts).
ServerRecord = tuple[
    bytes,
    bytes,
    bytes,
    bytes,
    "RouteTracing",
    str,
    bytes,
    bytes,
    bool,
    int,
    int,
    int,
    bytes,
    bytes,
    bytes,
    str,
    list[Attempt],
]


class SpanSink(Protocol):
    """Where sampled requests go (the worker's exporter); ``add`` runs on the event loop and must
    not block."""

    def add(self, record: ServerRecord) -> None: ...


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) of a valid ``traceparent`` value; None when invalid."""
    v = value.strip(b" \t")
    n = len(v)
    if n < 55:
        return None
    if v[0] == 0x30 and v[1] == 0x30:  # version 00: exactly 55 characters
        if n != 55:
            return None
    elif n > 55 and v[55] != _DASH:
        return None  # a later version: the fields we know, then "-" and whatever it adds
    head = v[:55] if n > 55 else v
    # lowercase hex and dashes only, the three dashes where they belong
    if head.translate(None, _HEX_DASH) or head.count(b"-") != 3:
        return None
    if head[2] != _DASH or head[35] != _DASH or head[52] != _DASH or head[:2] == b"ff":
        return None
    trace_id = head[3:35]
    parent_id = head[36:52]
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, (int(head[53:55], 16) & 1) == 1


def bounded_tracestate(value: bytes) -> bytes:
    """A combined ``tracestate`` cut to :data:`MAX_TRACESTATE` bytes the way W3C Trace Context says
    (entries over 128 bytes removed first, then entries from the end; at most 32 entries)."""
    value = value.strip(b" \t,")
    if len(value) <= MAX_TRACESTATE and value.count(b",") < _MAX_ENTRIES:
        return value
    entries = [e.strip(b" \t") for e in value.split(b",")]
    entries = [e for e in entries if e]
    if len(b",".join(entries)) > MAX_TRACESTATE:
        entries = [e for e in entries if len(e) <= _MAX_ENTRY]
    kept: list[bytes] = []
    size = -1
    for e in entries[:_MAX_ENTRIES]:
        if size + 1 + len(e) > MAX_TRACESTATE:
            break
        kept.append(e)
        size += 1 + len(e)
    return b",".join(kept)


def ratio_bound(ratio: float) -> int:
    """The bound the low 64 bits of a trace id are compared with (OpenTelemetry's TraceIdRatioBased)."""
    return round(min(max(ratio, 0.0), 1.0) * (1 << 64))


def sampled_by_ratio(trace_id: bytes, bound: int) -> bool:
    """The ratio decision for a trace without a parent decision: the low 8 bytes below ``bound``."""
    return int(trace_id[16:32], 16) < bound


def new_span_id() -> bytes:
    return b"%016x" % (getrandbits(64) or 1)


class RouteTracing:
    """One route's compiled tracing policy: the sampling bound and what every span of the route
    carries (precomputed once per snapshot); ``sink`` is None when the worker exports nowhere."""

    __slots__ = ("bound", "sink", "api_id", "api_name", "route_id", "http_route")

    def __init__(
        self, ratio: float, sink: SpanSink | None, api_id: str, api_name: str, route_id: str, http_route: str
    ) -> None:
        self.bound = ratio_bound(ratio)
        self.sink = sink
        self.api_id = api_id
        self.api_name = api_name
        self.route_id = route_id
        self.http_route = http_route  # the path template (base path included), OTel's http.route

    def begin(self, headers: list[tuple[bytes, bytes]]) -> tuple[Trace, list[tuple[bytes, bytes]]]:
        """The trace of one request, and its fields without the client's Trace Context ones."""
        parent = b""
        parents = 0
        state = b""
        states = 0
        for name, value in headers:
            if name == b"traceparent":
                parent = value
                parents += 1
            elif name == b"tracestate":
                state = value if not states else state + b"," + value  # one list (RFC 9110 5.3)
                states += 1
        if parents or states:
            headers = [h for h in headers if h[0] != b"traceparent" and h[0] != b"tracestate"]
        found = parse_traceparent(parent) if parents == 1 else None
        if found is None:
            n = getrandbits(128) or 1
            return Trace(self, b"%032x" % n, b"", (n & _LOW64) < self.bound, b""), headers
        return Trace(self, found[0], found[1], found[2], bounded_tracestate(state) if states else b""), headers


class Trace:
    """One request's trace: what each attempt sends upstream, and (sampled and exported only)
    what becomes its spans.  ``recording`` is False for the unsampled: they only propagate."""

    __slots__ = (
        "policy",
        "trace_id",
        "parent_id",
        "tracestate",
        "sampled",
        "recording",
        "span_id",
        "prefix",
        "suffix",
        "attempts",
        "at_id",
        "at_host",
        "at_port",
        "at_start",
        "at_open",
    )

    def __init__(self, policy: RouteTracing, trace_id: bytes, parent_id: bytes, sampled: bool, tracestate: bytes):
        self.policy = policy
        self.trace_id = trace_id
        self.parent_id = parent_id  # the caller's span (b"": this request starts the trace)
        self.tracestate = tracestate
        self.sampled = sampled
        self.recording = sampled and policy.sink is not None
        self.span_id = new_span_id() if self.recording else b""  # the server span's
        # traceparent line of an attempt: prefix + the attempt's span id + suffix (tracestate line included)
        self.prefix = _TRACEPARENT + trace_id + b"-"
        end = _SAMPLED_END if sampled else _UNSAMPLED_END
        self.suffix = end + b"tracestate: " + tracestate + b"\r\n" if tracestate else end
        # recorded attempts as (span id, host, port, start, end, status, error) with perf_counter
        # times, and the attempt in progress
        self.attempts: list[tuple[bytes, str, int, float, float, int, str]] = [] if self.recording else _NOTHING
        self.at_id = b""
        self.at_host = ""
        self.at_port = 0
        self.at_start = 0.0
        self.at_open = False

    def attempt(self, host: str, port: int) -> bytes:
        """The ``traceparent`` (and ``tracestate``) lines of a new attempt to ``host:port``."""
        span_id = b"%016x" % (getrandbits(64) or 1)
        if self.recording:
            now = perf_counter()
            if self.at_open:
                self._close(now, 0, "")  # (a resend whose end no hook saw)
            self.at_id = span_id
            self.at_host = host
            self.at_port = port
            self.at_start = now
            self.at_open = True
        return self.prefix + span_id + self.suffix

    def attempt_failed(self, status: int, error: str) -> None:
        """The attempt in progress ended without being the answer: a retried 502/503/504
        (``status``) or a connection that failed, was lost or timed out (``error``)."""
        if self.at_open:
            self._close(perf_counter(), status, error)

    def _close(self, now: float, status: int, error: str) -> None:
        self.attempts.append((self.at_id, self.at_host, self.at_port, self.at_start, now, status, error))
        self.at_open = False

    def finish(self, ex: Exchange, elapsed: float) -> None:
        """The request ended (``Observer.done``): hand its spans to the sink.  Only called when
        ``recording``."""
        sink = self.policy.sink
        if sink is None:
            return
        now = perf_counter()
        if self.at_open:
            self._close(now, ex.status if ex.response_started else 0, "")
        end_ns = time_ns()
        attempts: list[Attempt] = []
        for span_id, target_host, target_port, start, stop, status, error in self.attempts:
            attempts.append(
                (
                    span_id,
                    target_host,
                    target_port,
                    end_ns - int((now - start) * 1e9),
                    end_ns - int((now - stop) * 1e9),
                    status,
                    error,
                )
            )
        url = ex.url
        q = url.find(b"?")
        host = b""
        for name, value in ex.headers:
            if name == b"host":
                host = value
                break
        route = ex.route
        sink.add(
            (
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.tracestate,
                self.policy,
                ex.method,
                url if q < 0 else url[:q],  # never the query: it may carry an API key
                host,
                ex.client.tls is not None,
                ex.status,
                end_ns - int(elapsed * 1e9),
                end_ns,
                ex.customer_id,
                ex.client_ip,
                ex.request_id,
                route.upstream.name if route is not None else "",
                attempts,
            )
        )
