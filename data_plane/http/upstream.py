"""Upstream connections: one asyncio protocol per keep-alive connection, pooled per target.

An :class:`UpstreamConnection` carries one exchange at a time (no upstream pipelining).  It
parses the response with httptools and hands every event to its current exchange through the
small :class:`ResponseSink` interface, so the client side never sees httptools objects.
A connection that finished a response with keep-alive goes back to its target's idle pool;
an idle connection that the peer closes removes itself from the pool.

Idle connections are not reused after ``keepalive_timeout`` seconds (per upstream in the snapshot,
default 4 s).  The upstream closes idle connections too (Node's ``keepAliveTimeout`` 5 s, uvicorn
5 s, Apache 5 s), and its FIN can cross a request we send on the connection at that moment: the
request then meets a reset, and only an idempotent one may be sent again.  Closing first, below the
server's timeout, takes the gateway out of that race.  No timer per connection: :meth:`put` records
the clock once, :meth:`get_idle` closes what has been idle too long instead of handing it out, and
the worker's periodic :meth:`expire_idle` sweep closes the sockets nobody asks for.

TLS to a target (``scheme: https``) is the pool's business only: a pool built with an
``ssl.SSLContext`` (:mod:`data_plane.tls.client`, made at snapshot-compile time) dials with it and
the target's server name, so the handshake is part of :meth:`ConnectionPool.connect` (inside the
connect timeout) and everything after it — parsing, keep-alive, the idle pool, tunnels — is the
same code on an SSL transport.  A handshake that fails raises like a refused connection (502, a
retry, passive health), after one log line that says why; the plain-HTTP path is not touched.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import httptools

from data_plane.snapshot import DEFAULT_KEEPALIVE_TIMEOUT

log = logging.getLogger("tollgate.upstream")

# The same TLS failure of a pool (a target with a certificate that does not verify, under load) is
# logged once per this many seconds; another reason is logged at once.
TLS_LOG_INTERVAL: Final = 10.0


class ResponseSink(Protocol):
    """What an upstream connection reports to the exchange it serves."""

    def on_response_head(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None: ...
    def on_response_body(self, chunk: bytes) -> None: ...
    def on_response_complete(self, keep_alive: bool) -> None: ...
    def on_upstream_lost(self, conn: UpstreamConnection, got_response_bytes: bool) -> None: ...
    def on_upstream_bad_response(self, conn: UpstreamConnection) -> None: ...
    def on_upstream_upgrade(self, conn: UpstreamConnection, rest: bytes) -> None: ...
    def after_upstream_data(self) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "pool",
        "transport",
        "parser",
        "sink",
        "reused",
        "closed",
        "got_bytes",
        "no_body",
        "_headers",
        "_head_done",
        "_close_delimited",
        "tunnel",
        "tunnel_moves",
        "idle_since",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.reused = False
        self.closed = False
        self.got_bytes = False
        self.no_body = False  # the request was HEAD: the response has no body whatever its headers say
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._close_delimited = False
        self.tunnel: asyncio.Transport | None = None  # after 101: bytes go straight to the client
        self.tunnel_moves = 0  # chunks passed to the client through the tunnel (its idle check reads it)
        self.idle_since = 0.0  # pool clock when it last went back to the idle pool

    # -------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.write(data)
            self.tunnel_moves += 1
            return
        sink = self.sink
        if sink is None:
            # Bytes on an idle keep-alive connection: the peer is confused, do not reuse it.
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # 101 Switching Protocols: from here on the connection is a byte tunnel.
            if self.sink is sink and self._head_done and self.parser.get_status_code() == 101:
                sink.on_upstream_upgrade(self, data[exc.args[0] :] if exc.args else b"")
            else:
                self.sink = None
                sink.on_upstream_bad_response(self)
                self.close()
            return
        except httptools.HttpParserError:
            self.sink = None
            sink.on_upstream_bad_response(self)
            self.close()
            return
        sink.after_upstream_data()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.pool.count -= 1  # (a close() by us gave the slot back already)
        self.closed = True
        self.pool.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        sink = self.sink
        if sink is not None:
            if self._close_delimited:
                # HTTP/1.0-style body that ends when the connection does (RFC 9112 6.3, rule 8).
                self._finish(sink, False)
                return
            self.sink = None
            sink.on_upstream_lost(self, self.got_bytes)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_resume_writing()

    # -------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._headers = []
        self._head_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        sink = self.sink
        if sink is None:
            return
        status = self.parser.get_status_code()
        if status == 101:
            self._head_done = True
            sink.on_response_head(status, self._headers, False)
            return
        if 100 <= status < 200:
            # Interim response (100 Continue, 103 Early Hints): relay it, the final one follows.
            sink.on_response_head(status, self._headers, True)
            return
        self._head_done = True
        keep_alive = self.parser.should_keep_alive()
        if not keep_alive and not self.no_body and status not in (204, 304):
            names = {name for name, _ in self._headers}
            self._close_delimited = b"content-length" not in names and b"transfer-encoding" not in names
        sink.on_response_head(status, self._headers, keep_alive)
        if self.no_body and self.sink is sink:
            # httptools cannot be told that a HEAD response has no body; finish the exchange
            # here and give the connection a fresh parser for its next response.
            self.parser = httptools.HttpResponseParser(self)
            self._finish(sink, keep_alive)

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.on_response_body(body)

    def on_message_complete(self) -> None:
        sink = self.sink
        if sink is None or not self._head_done or self.parser.get_status_code() == 101:
            return  # (a 101 is followed by the tunnel, not by a body)
        self._finish(sink, self.parser.should_keep_alive())

    def _finish(self, sink: ResponseSink, keep_alive: bool) -> None:
        self.sink = None
        self._head_done = False
        self._close_delimited = False
        sink.on_response_complete(keep_alive)

    # -------------------------------------------------------------- use by the exchange

    def attach(self, sink: ResponseSink, no_body: bool) -> None:
        self.sink = sink
        self.got_bytes = False
        self.no_body = no_body

    def release(self) -> None:
        """Back to the idle pool (the response was complete and keep-alive)."""
        self.sink = None
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        self.reused = True
        self.pool.put(self)

    def close(self) -> None:
        self.sink = None
        if not self.closed:
            # The slot is free from now on, not from connection_lost in a later loop iteration: a
            # request that finds an expired idle connection (closed in get_idle) must be able to
            # dial its replacement under max_connections.
            self.pool.count -= 1
            if self.transport is not None:
                self.transport.close()
        self.closed = True
        self.pool.discard(self)


class ConnectionPool:
    """Idle keep-alive connections to one target (host, port), most recently used first.

    ``idle`` is ordered by the time each connection came back (oldest on the left), so when the most
    recent one has been idle too long, all have.  ``keepalive_timeout`` is set by the compiler: a pool
    is shared by every upstream naming its host:port, and the smallest of their timeouts applies (one
    server is behind it, so a timeout set below that server's own must hold whichever upstream asks).
    """

    __slots__ = (
        "host",
        "port",
        "idle",
        "max_idle",
        "count",
        "keepalive_timeout",
        "clock",
        "ssl",
        "server_hostname",
        "owner",
        "tls_error",
        "tls_error_at",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_idle: int = 256,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        owner: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.idle: deque[UpstreamConnection] = deque()
        self.max_idle = max_idle
        self.count = 0  # open + opening connections (idle or busy, not closing), for the per-target limit
        self.keepalive_timeout = keepalive_timeout
        self.clock = clock  # injected by tests; one read per put and per get_idle with idle connections
        # https targets (data_plane/tls/client.py): the context, and the name sent (SNI) and verified
        self.ssl = tls
        self.server_hostname = server_hostname if tls is not None else None
        self.owner = owner  # the upstream that made a TLS pool (named in its log lines)
        self.tls_error = ""  # the last handshake failure logged, and when (TLS_LOG_INTERVAL)
        self.tls_error_at = 0.0

    def get_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        if not idle:
            return None
        oldest_usable = self.clock() - self.keepalive_timeout
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if conn.idle_since > oldest_usable:
                return conn
            # Idle too long (the server may be closing it): it and every older one are expired.
            conn.close()
            self.close_idle()
        return None

    def put(self, conn: UpstreamConnection) -> None:
        if len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.clock()
        self.idle.append(conn)

    def expire_idle(self) -> int:
        """Close the connections idle for ``keepalive_timeout`` or longer (the worker's periodic sweep,
        off the request path); returns how many."""
        idle = self.idle
        if not idle:
            return 0
        oldest_usable = self.clock() - self.keepalive_timeout
        n = 0
        while idle and idle[0].idle_since <= oldest_usable:
            idle.popleft().close()
            n += 1
        return n

    def discard(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def connect(self, timeout: float) -> UpstreamConnection:
        """A new connection; raises OSError (refused/unreachable, TLS handshake failed) or TimeoutError."""
        if self.ssl is not None:
            return await self._connect_tls(self.ssl, timeout)
        loop = asyncio.get_running_loop()
        self.count += 1  # given back by UpstreamConnection.close / connection_lost, or below on failure
        try:
            async with asyncio.timeout(timeout):
                _, proto = await loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port)
        except BaseException:
            self.count -= 1
            raise
        return proto

    async def _connect_tls(self, context: ssl.SSLContext, timeout: float) -> UpstreamConnection:
        """TCP and the TLS handshake, both within ``timeout`` (a handshake that stalls is a connect timeout)."""
        loop = asyncio.get_running_loop()
        self.count += 1
        try:
            async with asyncio.timeout(timeout):
                _, proto = await loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.server_hostname,
                )
        except ssl.SSLError as exc:
            self.count -= 1
            self._tls_failed(tls_failure(exc))
            raise
        except BaseException:
            self.count -= 1
            raise
        return proto

    def _tls_failed(self, reason: str) -> None:
        now = self.clock()
        if reason != self.tls_error or now - self.tls_error_at >= TLS_LOG_INTERVAL:
            self.tls_error = reason
            self.tls_error_at = now
            log.error(
                "TLS to target %s of upstream %s (server name %s) failed: %s",
                self.label(),
                self.owner,
                self.server_hostname,
                reason,
            )

    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()


def tls_failure(exc: ssl.SSLError) -> str:
    """What went wrong in a handshake, in OpenSSL's words: ``certificate verify failed: <reason>`` for
    a certificate that does not verify (unknown issuer, expired, wrong name), else the SSL reason."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    return f"TLS handshake failed: {exc.reason or exc}"
