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
the incoming ``tracestate``.  A request that records nothing (unsampled, or no exporter) builds its
lines once and sends them on every attempt (with one span id of ours, like an OpenTelemetry
non-recording span's); a recorded one (:class:`Recording`) makes a new span id per attempt.

**Sampling**, parent-based: a valid ``traceparent`` decides with its sampled flag (so a trace is
recorded by every hop or by none); without one the route's ``sample_ratio`` decides from the
trace id, as OpenTelemetry's ``TraceIdRatioBased`` does (sampled when the low 8 bytes, as an
unsigned integer, are below ``ratio * 2**64``), so any hop applying the same ratio to that trace
agrees.  An unsampled request still propagates (flags ``00``) and records nothing.

**Ids**: a new trace cuts one 49-character slice ``<trace id>-<span id>`` from a pool of hex digits
that ``hexlify(os.urandom(4096), b"-", -16)`` lays out with the dash in place (:class:`IdPool`), and
decides its sampling by reading the trace id's last 16 digits in place (:func:`below_bound`), so it
allocates that slice, its line and its :class:`Trace` and nothing else.  Span ids for attempts and
continued traces are cut from plain hex digits.  Never all zeros (a refill drawing eight zero bytes
in a row draws again).  A forked child empties its pools, so two processes never hand out the same ids.

**What a sampled request records** (one :data:`ServerRecord` per request, made when it ends): the
server span (trace id, span id, the caller's span id as parent, times, status, route, customer,
client address, method, path, host) and one :data:`Attempt` per upstream attempt, each a client
span child of the server span (its span id is the one the upstream got as parent; target,
status or error, retry index).  Times are read with ``perf_counter`` while the request runs
(monotonic, cheap) and turned into wall-clock nanoseconds once, when the request ends.
"""

from __future__ import annotations

import os
from binascii import hexlify
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from data_plane.http.exchange import Exchange

# Bytes of a combined tracestate kept (W3C: propagate at least 512; entries over 128 go first).
MAX_TRACESTATE: Final = 512
_MAX_ENTRY: Final = 128
_MAX_ENTRIES: Final = 32
POOL_BYTES: Final = 4096  # random bytes per refill of an id pool: 128 new traces' ids, or 512 span ids
_RECORD: Final = 49  # <32 hex trace id>-<16 hex span id>
_RECORD_STEP: Final = 66  # two groups of 32 digits and their dashes
_ZERO_BYTES: Final = b"\x00" * 8
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16
_HEX_DASH: Final = b"0123456789abcdef-"
_DASH: Final = 0x2D
_TRACEPARENT: Final = b"traceparent: 00-"
_SAMPLED_END: Final = b"-01\r\n"
_UNSAMPLED_END: Final = b"-00\r\n"

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
    if head[2] != _DASH or head[35] != _DASH or head[52] != _DASH or (head[0] == 0x66 and head[1] == 0x66):
        return None  # (version ff is invalid)
    trace_id = head[3:35]
    parent_id = head[36:52]
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    # the sampled bit: the last flags digit is odd ("0"-"9" are 0x30-0x39, "a"-"f" 0x61-0x66: the
    # parity of the digit's value is the character's for digits, the opposite for letters)
    last = head[54]
    return trace_id, parent_id, (last & 1) == (1 if last < 0x3A else 0)


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


def bound_hex(bound: int) -> bytes:
    """``bound`` as 16 lowercase hex digits, for comparing with a trace id's last 16 (same length, so
    the byte order is the numeric order); b"" when every trace is sampled (2**64)."""
    return b"%016x" % bound if bound < 1 << 64 else b""


class IdPool:
    """Random ids, cut from pools refilled from ``os.urandom``, none all zeros.

    New traces come from ``pool``: ``hexlify(raw, b"-", -16)``, 32 hex digits (16 random bytes) then a
    dash, over and over; a record is 49 characters from a group's start, ``<trace id>-<span id>`` (the
    span id is the first half of the next group, whose second half is skipped), so a request starting
    a trace cuts one slice, ready for its ``traceparent`` line.  ``span_id`` cuts plain hex digits from
    ``hex``.  A refill whose random bytes hold eight zero bytes in a row is drawn again (2**-55 per
    refill): no id can then be all zeros, and no id needs a check."""

    __slots__ = ("pool", "pos", "hex", "hex_pos")

    def __init__(self) -> None:
        self.pool = b""
        self.pos = 0
        self.hex = b""
        self.hex_pos = 0

    def record(self) -> int:
        """Where a fresh ``<trace id>-<span id>`` starts in :attr:`pool` (read ``pool`` after this call:
        it may have refilled it)."""
        pos = self.pos
        if pos + _RECORD > len(self.pool):
            self.pool = hexlify(_random(POOL_BYTES), b"-", -16)
            pos = 0
        self.pos = pos + _RECORD_STEP
        return pos

    def span_id(self) -> bytes:
        pos = self.hex_pos
        end = pos + 16
        if end > len(self.hex):
            self.hex = hexlify(_random(POOL_BYTES))
            pos = 0
            end = 16
        self.hex_pos = end
        return self.hex[pos:end]

    def empty(self) -> None:
        self.pool = b""
        self.pos = 0
        self.hex = b""
        self.hex_pos = 0


def _random(n: int) -> bytes:
    """``n`` random bytes (a multiple of 8) without eight zero bytes in a row."""
    raw = os.urandom(n)
    while _ZERO_BYTES in raw:
        raw = os.urandom(n)
    return raw


def below_bound(digits: bytes, at: int, below: bytes) -> bool:
    """Whether the 16 hex digits of ``digits`` at ``at`` (a trace id's low 64 bits) are below ``below``
    (:func:`bound_hex`; lowercase hex sorts as its value), read in place: usually the first digit decides."""
    for k in range(16):
        a = digits[at + k]
        b = below[k]
        if a != b:
            return a < b
    return False


_IDS: Final = IdPool()
os.register_at_fork(after_in_child=_IDS.empty)  # a child must not hand out its parent's ids


def new_span_id() -> bytes:
    return _IDS.span_id()


def new_trace_id() -> bytes:
    pos = _IDS.record()  # (first: it may refill the pool)
    return _IDS.pool[pos : pos + 32]


class RouteTracing:
    """One route's compiled tracing policy: the sampling bound and what every span of the route
    carries (precomputed once per snapshot); ``sink`` is None when the worker exports nowhere."""

    __slots__ = ("bound", "below", "sink", "api_id", "api_name", "route_id", "http_route")

    def __init__(
        self, ratio: float, sink: SpanSink | None, api_id: str, api_name: str, route_id: str, http_route: str
    ) -> None:
        self.bound = ratio_bound(ratio)
        self.below = bound_hex(self.bound)  # b"": all sampled
        self.sink = sink
        self.api_id = api_id
        self.api_name = api_name
        self.route_id = route_id
        self.http_route = http_route  # the path template (base path included), OTel's http.route

    def begin(self, headers: list[tuple[bytes, bytes]]) -> tuple[Trace, list[tuple[bytes, bytes]]]:
        """The trace of one request, and its fields without the client's Trace Context ones."""
        trace = self.start(headers)
        forwarded = trace.headers
        return trace, headers if forwarded is None else forwarded

    def start(self, headers: list[tuple[bytes, bytes]]) -> Trace:
        """The trace of one request; ``Trace.headers`` holds its fields without the client's Trace
        Context ones when there were any (None: forward ``headers`` as they are)."""
        parent = b""
        parents = 0
        state = b""
        states = 0
        for name, value in headers:
            n = len(name)  # (a length test first: most fields are neither)
            if n == 11 and name == b"traceparent":
                parent = value
                parents += 1
            elif n == 10 and name == b"tracestate":
                state = value if not states else state + b"," + value  # one list (RFC 9110 5.3)
                states += 1
        if not parents and not states:
            # The common case, a new trace, sampled by its id's low 64 bits (compared as hex)
            ids = _IDS
            pos = ids.record()
            pool = ids.pool
            below = self.below
            sampled = not below or below_bound(pool, pos + 16, below)
            if sampled and self.sink is not None:
                recording = Recording(self, pool[pos : pos + 32], b"", b"", pool[pos + 33 : pos + 49])
                return Trace(True, b"", recording, None)
            # Nothing recorded: every attempt sends the same line (our span id in it is one no
            # exporter will ever see, as an OpenTelemetry non-recording span's).
            end = _SAMPLED_END if sampled else _UNSAMPLED_END
            return Trace(sampled, _TRACEPARENT + pool[pos : pos + _RECORD] + end, None, None)
        forwarded = [h for h in headers if h[0] != b"traceparent" and h[0] != b"tracestate"]
        found = parse_traceparent(parent) if parents == 1 else None
        if found is None:  # none valid: a new trace, the client's tracestate dropped with its traceparent
            trace = self.start(forwarded)
            trace.headers = forwarded
            return trace
        trace_id, parent_id, sampled = found
        state = bounded_tracestate(state) if states else b""
        span_id = _IDS.span_id()
        if sampled and self.sink is not None:
            return Trace(True, b"", Recording(self, trace_id, parent_id, state, span_id), forwarded)
        line = _TRACEPARENT + trace_id + b"-" + span_id + (_SAMPLED_END if sampled else _UNSAMPLED_END)
        if state:
            line += b"tracestate: " + state + b"\r\n"
        return Trace(sampled, line, None, forwarded)


class Trace:
    """One request's trace: the sampling decision, and either the lines every attempt sends (``line``:
    nothing recorded) or the :class:`Recording` that makes them; ``headers``: the request's fields
    without the client's Trace Context ones, when it sent any."""

    __slots__ = ("sampled", "line", "rec", "headers")

    def __init__(
        self, sampled: bool, line: bytes, rec: Recording | None, headers: list[tuple[bytes, bytes]] | None
    ) -> None:
        self.sampled = sampled
        self.line = line  # b"traceparent: 00-<trace id>-..." (and a tracestate line) when rec is None
        self.rec = rec  # None: unsampled, or sampled on a worker without an exporter
        self.headers = headers

    @property
    def trace_id(self) -> bytes:
        """The 32 hex digits of the trace id (the access log's): read off the line, made only when asked."""
        rec = self.rec
        return rec.trace_id if rec is not None else self.line[16:48]

    @property
    def recording(self) -> bool:
        return self.rec is not None

    def attempt(self, host: str, port: int) -> bytes:
        """The ``traceparent`` (and ``tracestate``) lines of a new attempt to ``host:port``."""
        rec = self.rec
        return self.line if rec is None else rec.attempt(host, port)

    def attempt_failed(self, status: int, error: str) -> None:
        """The attempt in progress ended without being the answer: a retried 502/503/504
        (``status``) or a connection that failed, was lost or timed out (``error``)."""
        rec = self.rec
        if rec is not None and rec.at_open:
            rec.close_attempt(perf_counter(), status, error)


class Recording:
    """What a sampled request records on a worker that exports: its server span id (the parent of
    its attempts) and one client span per attempt, each with a span id of its own."""

    __slots__ = (
        "policy",
        "trace_id",
        "parent_id",
        "tracestate",
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

    def __init__(self, policy: RouteTracing, trace_id: bytes, parent_id: bytes, tracestate: bytes, span_id: bytes):
        self.policy = policy
        self.trace_id = trace_id
        self.parent_id = parent_id  # the caller's span (b"": this request starts the trace)
        self.tracestate = tracestate
        self.span_id = span_id  # the server span's
        # an attempt's lines: prefix + the attempt's span id + suffix (the tracestate line included)
        self.prefix = _TRACEPARENT + trace_id + b"-"
        self.suffix = _SAMPLED_END + b"tracestate: " + tracestate + b"\r\n" if tracestate else _SAMPLED_END
        # attempts as (span id, host, port, start, end, status, error), perf_counter times; the open one
        self.attempts: list[tuple[bytes, str, int, float, float, int, str]] = []
        self.at_id = b""
        self.at_host = ""
        self.at_port = 0
        self.at_start = 0.0
        self.at_open = False

    def attempt(self, host: str, port: int) -> bytes:
        span_id = new_span_id()
        now = perf_counter()
        if self.at_open:
            self.close_attempt(now, 0, "")  # (a resend whose end no hook saw)
        self.at_id = span_id
        self.at_host = host
        self.at_port = port
        self.at_start = now
        self.at_open = True
        return self.prefix + span_id + self.suffix

    def close_attempt(self, now: float, status: int, error: str) -> None:
        self.attempts.append((self.at_id, self.at_host, self.at_port, self.at_start, now, status, error))
        self.at_open = False

    def finish(self, ex: Exchange, elapsed: float) -> None:
        """The request ended (``Observer.done``): hand its spans to the sink."""
        sink = self.policy.sink
        if sink is None:
            return
        now = perf_counter()
        if self.at_open:
            self.close_attempt(now, ex.status if ex.response_started else 0, "")
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
