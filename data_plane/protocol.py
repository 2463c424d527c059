"""The client side of the proxy: one asyncio protocol per client connection, one Exchange per request.

Flow (DESIGN.md, "Request path"): httptools parses the request head; at ``on_headers_complete``
an :class:`Exchange` is created, and if no other exchange is active on the connection it starts
at once: route -> pick a target -> take a pooled upstream connection (or dial one) -> write the
request head.  Body chunks stream to the upstream as they arrive; response head and body stream
back the same way.  Writes in either direction are collected while httptools runs and flushed in
one ``writelines`` afterwards, so a small request or response costs one syscall.

Pipelined requests queue behind the active exchange (their bodies are buffered, and the client
transport is paused while anything is queued, which bounds that buffer).  Back-pressure: when a
peer's transport is over its high-water mark, reading from the other peer pauses.

Requests in flight keep the :class:`CompiledConfig` they started with; a config swap never
touches them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import TYPE_CHECKING

import httptools

from data_plane import errors
from data_plane.router import NotFound
from data_plane.upstream import UpstreamConnection

if TYPE_CHECKING:
    from data_plane.compiler import CompiledConfig, CompiledRoute, CompiledTarget
    from data_plane.server import Worker

log = logging.getLogger("tollgate.proxy")

# Hop-by-hop fields (RFC 9110 7.6.1) and the ones the gateway sets itself; never forwarded.
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade", b"trailer")
)
_SET_BY_GATEWAY_REQUEST = _HOP_BY_HOP | {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
_SET_BY_GATEWAY_RESPONSE = _HOP_BY_HOP | {b"x-request-id"}
_SKIP_REQUEST = _SET_BY_GATEWAY_REQUEST | {b"x-request-id"}  # x-request-id: re-added, validated or ours

_VIA = b"via: 1.1 tollgate\r\n"
_CRLF_VIA = b"\r\n" + _VIA
# Connection header values that name no field beyond _HOP_BY_HOP (what nearly every peer sends):
# recognising them spares building a set of named fields per message.
_PLAIN_CONNECTION = frozenset((b"keep-alive", b"close", b"upgrade", b""))
# Request-line starts per method, built once (the method string is interned by _METHOD_NAMES).
_METHOD_NAMES = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")}
_REQUEST_LINE_START = {m: m.encode() + b" " for m in _METHOD_NAMES.values()}
_CHUNKED = b"transfer-encoding: chunked\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_CRLF = b"\r\n"
_REQUEST_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")

MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100
# Buffered request body waiting for an upstream connection (or behind a pipelined request)
# above which the client is paused.
BODY_BUFFER_HIGH_WATER = 256 * 1024

_rid_prefix = os.urandom(6).hex().encode()
_rid_counter = 0


def _new_request_id() -> bytes:
    global _rid_counter
    _rid_counter += 1
    return b"%s-%x" % (_rid_prefix, _rid_counter)


def _valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= 128 and all(c in _REQUEST_ID_CHARS for c in value)


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs exchanges one at a time, in order."""

    __slots__ = (
        "worker",
        "loop",
        "transport",
        "parser",
        "peer_ip",
        "active",
        "queue",
        "parsing",
        "_url",
        "_headers",
        "_header_bytes",
        "_paused_by",
        "_closed",
        "_timer",
        "_timer_due",
    )

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.loop = worker.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer_ip = b""
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.parsing: Exchange | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._paused_by = 0  # bit set of reasons reading is paused: 1 upstream full, 2 queue, 4 body buffer
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None  # the active exchange's read timeout, see watch_until
        self._timer_due = 0.0

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0].encode() if peer else b""
        self.worker.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # WebSocket tunnelling arrives with the HTTP-correctness issue; refuse cleanly.
            self._reject(501, "upgrade not supported")
            return
        except httptools.HttpParserError:
            self._reject(400, errors.BAD_REQUEST)
            return
        except _Reject as rej:
            self._reject(rej.status, rej.message)
            return
        active = self.active
        if active is not None:
            active.flush_upstream()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.worker.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        active = self.active
        self.active = None
        if active is not None:
            active.client_gone()
        self.queue.clear()
        # The parser holds this protocol for its callbacks: dropping it frees the connection by
        # reference counting now instead of leaving a cycle for the garbage collector (which
        # showed up in profiles of short-lived connections).
        del self.parser

    def pause_writing(self) -> None:
        active = self.active
        if active is not None:
            active.client_pause_writing()

    def resume_writing(self) -> None:
        active = self.active
        if active is not None:
            active.client_resume_writing()

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _Reject(414, "request URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._header_bytes = self._header_bytes + len(name) + len(value)
        headers = self._headers
        if size > MAX_HEADER_BYTES or len(headers) >= MAX_HEADERS:
            raise _Reject(431, errors.HEADERS_TOO_LARGE)
        headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        ex = Exchange(
            self,
            _METHOD_NAMES.get(method) or method.decode("ascii"),
            self._url,
            self._headers,
            parser.get_http_version(),
            parser.should_keep_alive(),
        )
        self.parsing = ex
        if self.active is None:
            self.active = ex
            ex.start()
        else:
            self.queue.append(ex)
            self.pause_reading(2)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            ex.request_body(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is not None:
            ex.request_complete()

    # ---------------------------------------------------------------- helpers

    def pause_reading(self, reason: int) -> None:
        if not self._paused_by and self.transport is not None:
            self.transport.pause_reading()
        self._paused_by |= reason

    def resume_reading(self, reason: int) -> None:
        if not self._paused_by & reason:
            return
        self._paused_by &= ~reason
        if not self._paused_by and self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def watch_until(self, due: float) -> None:
        """Have the active exchange's ``on_timer`` called no later than loop time ``due``.

        One timer per connection, left running between requests and re-armed only when it
        fires (the exchange then checks its own idle time) or when an earlier deadline is
        needed: creating and cancelling a loop timer for every request cost about a fifth of the
        request path's Python time (bench/hotpath.py).
        """
        timer = self._timer
        if timer is None or self._timer_due > due:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(due, self._on_timer)
            self._timer_due = due

    def _on_timer(self) -> None:
        self._timer = None
        active = self.active
        if active is not None:
            active.on_timer()

    def exchange_done(self, ex: Exchange, keep_alive: bool) -> None:
        if self.active is not ex:
            return
        self.active = None
        if not keep_alive or self._closed:
            self.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self.resume_reading(2)
            self.active = nxt
            nxt.start()
            nxt.flush_upstream()

    def close(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.close()

    def _reject(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed or accepted, then close (never forwarded)."""
        if self.active is not None and self.active.response_started:
            self.close()  # a response is mid-flight; nothing sane can follow it
            return
        if self.active is not None:
            self.active.abandon()
            self.active = None
        self.queue.clear()
        if self.transport is not None and not self._closed:
            self.transport.write(errors.error_response(status, message, _new_request_id(), keep_alive=False))
        self.close()


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class Exchange:
    """One request/response through the gateway."""

    __slots__ = (
        "client",
        "method",
        "url",
        "headers",
        "http_version",
        "keep_alive",
        "request_id",
        "config",
        "route",
        "target",
        "conn",
        "up_out",
        "up_buffered",
        "body_chunked",
        "body_done",
        "body_started",
        "response_started",
        "response_chunked",
        "client_out",
        "error",
        "last_activity",
        "finished",
        "connecting",
        "attempts",
        "head",
    )

    def __init__(
        self,
        client: ClientConnection,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        keep_alive: bool,
    ) -> None:
        self.client = client
        self.method = method
        self.url = url
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.request_id = b""
        self.config: CompiledConfig | None = None
        self.route: CompiledRoute | None = None
        self.target: CompiledTarget | None = None
        self.conn: UpstreamConnection | None = None
        self.up_out: list[bytes] = []
        self.up_buffered = 0
        self.body_chunked = False
        self.body_done = False
        self.body_started = False  # some body bytes went to an upstream (no retry after that)
        self.response_started = False
        self.response_chunked = False
        self.client_out: list[bytes] = []
        self.error: bytes | None = None
        self.last_activity = 0.0
        self.finished = False
        self.connecting = False
        self.attempts = 0
        self.head = b""

    # ------------------------------------------------------------------ request side

    def start(self) -> None:
        client = self.client
        headers = self.headers
        host = b""
        rid = b""
        content_length = None
        for name, value in headers:
            if name == b"host":
                host = value
            elif name == b"x-request-id":
                rid = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                self.body_chunked = True
        self.request_id = rid if rid and _valid_request_id(rid) else _new_request_id()

        config = self.config = client.worker.config
        if config is None:
            self.fail(503, errors.NOT_CONFIGURED)
            return
        url = self.url
        q = url.find(b"?")
        raw_path = url if q < 0 else url[:q]
        if not raw_path.startswith(b"/"):
            # absolute-form (a request meant for a forward proxy) or asterisk-form: not ours
            self.fail(400, errors.BAD_REQUEST)
            return
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            self.fail(400, errors.BAD_REQUEST)
            return
        if ("/." in path or "%2" in path) and _has_dot_segment(path):
            # Dot segments would let the backend resolve a different path than the one routed.
            self.fail(400, errors.BAD_REQUEST)
            return
        found = config.router.match(host.decode("latin-1"), self.method, path)
        if isinstance(found, NotFound):
            if found.allow:
                allow = b"allow: " + ", ".join(found.allow).encode() + b"\r\n"
                self.fail(405, errors.METHOD_NOT_ALLOWED, allow)
            else:
                self.fail(404, errors.NO_ROUTE)
            return
        route, rel_path = found
        self.route = route
        if route.max_body_bytes is not None and content_length is not None:
            try:
                too_large = int(content_length) > route.max_body_bytes
            except ValueError:
                too_large = True
            if too_large:
                self.keep_alive = False
                self.fail(413, errors.BODY_TOO_LARGE)
                return

        upstream_path = (rel_path if route.strip_base_path else path).encode("ascii")
        if q >= 0:
            upstream_path += url[q:]
        self.head = self._build_head(upstream_path, host, content_length)
        self.forward()

    def _build_head(self, upstream_path: bytes, host: bytes, content_length: bytes | None) -> bytes:
        """The request head minus the Host line and the final CRLF (``forward`` adds both per target)."""
        headers = self.headers
        named = _connection_named(headers)
        skip = _SKIP_REQUEST if named is None else _SKIP_REQUEST | named
        xff = b""
        method = self.method
        parts = [_REQUEST_LINE_START.get(method) or method.encode() + b" ", upstream_path, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if name in skip:
                if name == b"x-forwarded-for":
                    xff = value + b", "
                continue
            parts += (name, b": ", value, _CRLF)
        parts += (
            b"x-forwarded-for: ",
            xff,
            self.client.peer_ip,
            b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: ",
            host,
            b"\r\nx-request-id: ",
            self.request_id,
            _CRLF_VIA,
        )
        if self.body_chunked:
            parts.append(_CHUNKED)
        return b"".join(parts)

    def forward(self) -> None:
        route = self.route
        assert route is not None
        upstream = route.upstream
        target = upstream.balancer.pick(self.target)
        if target is None:
            self.fail(503, errors.NO_HEALTHY_UPSTREAM)
            return
        self.target = target  # type: ignore[assignment]
        self.attempts += 1
        conn = target.pool.get_idle()  # type: ignore[attr-defined]
        self.up_out.insert(0, self.head + target.head_end)  # type: ignore[attr-defined]
        if conn is not None:
            self._attach(conn)
        else:
            self.connecting = True
            task = asyncio.ensure_future(target.pool.connect(upstream.connect_timeout))  # type: ignore[attr-defined]
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Future[UpstreamConnection]) -> None:
        self.connecting = False
        if self.finished:
            if not task.cancelled() and task.exception() is None:
                task.result().close()
            return
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if exc is not None:
            if isinstance(exc, TimeoutError):
                self.fail(504, errors.UPSTREAM_TIMEOUT)
            else:
                self.fail(502, errors.UPSTREAM_FAILED)
            return
        self._attach(task.result())
        self.flush_upstream()

    def _attach(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.attach(self, self.method == "HEAD")
        self.last_activity = now = self.client.loop.time()
        self.client.watch_until(now + self.route.upstream.read_timeout)  # type: ignore[union-attr]
        if self.up_buffered > BODY_BUFFER_HIGH_WATER:
            self.client.resume_reading(4)
        self.up_buffered = 0

    def request_body(self, chunk: bytes) -> None:
        if self.error is not None or self.finished:
            return  # discarding the body of a request already answered
        if self.body_chunked:
            self.up_out += (b"%x\r\n" % len(chunk), chunk, _CRLF)
        else:
            self.up_out.append(chunk)
        if self.conn is None:
            self.up_buffered += len(chunk)
            if self.up_buffered > BODY_BUFFER_HIGH_WATER:
                self.client.pause_reading(4)

    def request_complete(self) -> None:
        self.body_done = True
        if self.error is not None:
            if self.client.active is self:
                self._send_error()
            return
        if self.body_chunked and not self.finished:
            self.up_out.append(_LAST_CHUNK)

    def flush_upstream(self) -> None:
        conn = self.conn
        if conn is not None and self.up_out:
            if len(self.up_out) > 1:
                self.body_started = True
            conn.transport.writelines(self.up_out)  # type: ignore[union-attr]
            self.up_out = []

    # ------------------------------------------------------------------ response side (ResponseSink)

    def on_response_head(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.last_activity = self.client.loop.time()
        if status < 200:
            if status == 100 or status == 103:
                self.client_out.append(errors.status_line(status) + _CRLF)
            return
        self.response_started = True
        parts = [errors.status_line(status)]
        has_length = False
        named = _connection_named(headers)
        skip = _SET_BY_GATEWAY_RESPONSE if named is None else _SET_BY_GATEWAY_RESPONSE | named
        for name, value in headers:
            if name in skip:
                continue
            if name == b"content-length":
                has_length = True
            parts += (name, b": ", value, _CRLF)
        parts += (b"x-request-id: ", self.request_id, _CRLF, _VIA)
        no_body = self.method == "HEAD" or status == 204 or status == 304
        if not has_length and not no_body:
            if self.http_version == "1.1":
                self.response_chunked = True
                parts.append(_CHUNKED)
            else:
                self.keep_alive = False  # HTTP/1.0 client: the body ends when we close
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(_CRLF)
        self.client_out.append(b"".join(parts))

    def on_response_body(self, chunk: bytes) -> None:
        if self.response_chunked:
            self.client_out += (b"%x\r\n" % len(chunk), chunk, _CRLF)
        else:
            self.client_out.append(chunk)

    def on_response_complete(self, keep_alive: bool) -> None:
        conn = self.conn
        self.conn = None
        if self.response_chunked:
            self.client_out.append(_LAST_CHUNK)
        if conn is not None:
            # A connection whose request body was not completely sent cannot carry another request.
            if keep_alive and self.body_done and not self.up_out:
                conn.release()
            else:
                conn.close()
        if not self.body_done:
            self.keep_alive = False  # the rest of the request body would be read as a new request
        self._finish()

    def after_upstream_data(self) -> None:
        self.flush_client()

    def on_upstream_lost(self, conn: UpstreamConnection, got_response_bytes: bool) -> None:
        self.conn = None
        if self.finished:
            return
        if self.response_started:
            # Truncated response: the client must not mistake it for a complete one.
            self.flush_client()
            self._abort()
            return
        if not got_response_bytes and conn.reused and self._can_retry():
            # A pooled keep-alive connection closed by the upstream just as we reused it.
            self.target = None
            self.up_out = []
            self.forward()
            self.flush_upstream()
            return
        self.fail(502, errors.UPSTREAM_FAILED)

    def on_upstream_bad_response(self, conn: UpstreamConnection) -> None:
        self.conn = None
        if self.response_started:
            self.flush_client()
            self._abort()
        else:
            self.fail(502, errors.BAD_UPSTREAM_RESPONSE)

    def _can_retry(self) -> bool:
        # Only when no byte of the body left: the bytes already written are not kept for a replay.
        return self.attempts < 3 and not self.body_started

    def upstream_pause_writing(self) -> None:
        self.client.pause_reading(1)

    def upstream_resume_writing(self) -> None:
        self.client.resume_reading(1)

    def client_pause_writing(self) -> None:
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def client_resume_writing(self) -> None:
        conn = self.conn
        if conn is not None and conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()

    # ------------------------------------------------------------------ endings

    def flush_client(self) -> None:
        out = self.client_out
        if out:
            transport = self.client.transport
            if transport is not None and not transport.is_closing():
                transport.writelines(out)
            self.client_out = []

    def on_timer(self) -> None:
        """The connection's timer fired while this exchange was active: time out if idle too long."""
        if self.finished or self.route is None or not self.last_activity:
            return  # not attached to an upstream yet (the timer was a previous exchange's): _attach re-arms
        timeout = self.route.upstream.read_timeout
        idle = self.client.loop.time() - self.last_activity
        if idle < timeout:
            self.client.watch_until(self.last_activity + timeout)
            return
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()
        if self.response_started:
            self.flush_client()
            self._abort()
        else:
            self.fail(504, errors.UPSTREAM_TIMEOUT)

    def fail(self, status: int, message: str, extra_headers: bytes = b"") -> None:
        """Answer with a gateway error once the request body has been read (or discarded)."""
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()
        self.up_out = []
        if status == 413 or status >= 500 and not self.body_done:
            self.keep_alive = False
        self.error = errors.error_response(
            status,
            message,
            self.request_id or _new_request_id(),
            keep_alive=self.keep_alive,
            extra_headers=extra_headers,
        )
        if self.up_buffered > BODY_BUFFER_HIGH_WATER:
            self.client.resume_reading(4)
        if self.body_done or not self.keep_alive:
            self._send_error()

    def _send_error(self) -> None:
        if self.finished or self.error is None:
            return
        self.client_out = [self.error]
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.flush_client()
        self.client.exchange_done(self, self.keep_alive)

    def _abort(self) -> None:
        self.finished = True
        self.client.active = None
        transport = self.client.transport
        if transport is not None:
            transport.abort()

    def abandon(self) -> None:
        """The client connection is being torn down; release what this exchange holds."""
        self.finished = True
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()

    def client_gone(self) -> None:
        self.abandon()


def _connection_named(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes] | None:
    """Fields that Connection headers declare hop-by-hop beyond _HOP_BY_HOP (RFC 9110 7.6.1), or None.

    The usual values (keep-alive, close) name nothing more, so the common case allocates nothing.
    """
    named: frozenset[bytes] | None = None
    for name, value in headers:
        if name == b"connection":
            value = value.lower()
            if value not in _PLAIN_CONNECTION:
                tokens = frozenset(t.strip() for t in value.split(b","))
                named = tokens if named is None else named | tokens
    return named


def _has_dot_segment(path: str) -> bool:
    from urllib.parse import unquote

    return any(seg in (".", "..") for seg in unquote(path).split("/"))
