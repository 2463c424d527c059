"""The client side of the proxy: one asyncio protocol per client connection.

Flow (DESIGN.md, "Request path"): httptools parses the request head; at ``on_headers_complete``
the head is checked for what llhttp lets through (see below) and an
:class:`data_plane.http.exchange.Exchange` is created; if no other exchange is active on the
connection it starts at once.  Body chunks stream to the upstream as they arrive; response
head and body stream back the same way.  Writes in either direction are collected while
httptools runs and flushed in one ``writelines`` afterwards.

Pipelined requests queue behind the active exchange (their bodies are buffered, and the client
transport is paused while anything is queued, which bounds that buffer).  Back-pressure: when a
peer's transport is over its high-water mark, reading from the other peer pauses.

Malformed or ambiguous requests get 400 and the connection is closed; nothing is forwarded.
llhttp (httptools >= 0.6, leniencies off by default) already rejects CL+TE, bad or duplicate
Content-Length, obfuscated Transfer-Encoding values, bad chunk sizes, NUL/CR/LF in fields,
obs-fold and bare LF; :meth:`ClientConnection.on_headers_complete` adds what it accepts:
several Transfer-Encoding fields, a Transfer-Encoding other than exactly ``chunked``, and
Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1), plus CONNECT.

Slow clients and slow upstreams: one timer per connection enforces ``header_timeout`` (the head of
a request must arrive within it), ``keepalive_timeout`` (idle between requests) and, through
:meth:`Exchange.check_timeout`, the active exchange's read and total timeouts (after an upgrade,
:meth:`Exchange.check_tunnel`: the tunnel's idle timeout).  State changes only
store a deadline; the timer re-arms itself when it fires, and is moved earlier (:meth:`watch`) only
when an exchange needs a look sooner than it is armed for — no timer is created or cancelled per
request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final

import httptools

from data_plane.errors import RequestRefused
from data_plane.http import flow
from data_plane.http import responses as errors
from data_plane.http.admission import HostCache
from data_plane.http.exchange import Exchange
from data_plane.http.headers import new_request_id
from data_plane.http.shutdown import linger_close, unread_bytes
from data_plane.tls.clientcert import TlsPeer

if TYPE_CHECKING:
    from data_plane.http.realip import TrustedProxies
    from data_plane.server import Worker

MAX_HEADER_BYTES: Final = 32 * 1024
_NEVER: Final = float("inf")
MAX_HEADERS: Final = 100
_FRAMING: Final = (b"content-length", b"transfer-encoding")
LINGER_BYTES: Final = 1024 * 1024


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs exchanges one at a time, in order."""

    __deletable__ = ["parser"]  # connection_lost drops it (mypyc must be told the slot may go)

    __slots__ = (
        "worker",
        "env",
        "loop",
        "hosts",
        "transport",
        "parser",
        "peer_ip",
        "secure",
        "tls",
        "trusted",
        "active",
        "queue",
        "parsing",
        "tunnel",
        "tunnel_moves",
        "upgrade_rest",
        "feeding",
        "_refusal",
        "_pending_reject",
        "_url",
        "_headers",
        "_header_bytes",
        "_te",
        "_paused_by",
        "_closed",
        "_deadline",
        "_timer",
        "_timer_at",
        "_open",
        "_linger",
    )

    def __init__(self, worker: Worker, secure: bool = False) -> None:
        self.worker = worker
        self.secure = secure  # accepted on the TLS listener
        self.env = worker.env
        self.loop = worker.loop
        self.hosts = HostCache()  # the routing form of this connection's last Host value
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer_ip = b""
        self.tls: TlsPeer | None = None  # a TLS connection's handshake results (None: plain HTTP)
        # the trusted proxies when the peer is one of them (its requests' X-Forwarded-For is believed)
        self.trusted: TrustedProxies | None = None
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.parsing: Exchange | None = None
        self.tunnel: asyncio.Transport | None = None  # after an upgrade: bytes go straight upstream
        self.tunnel_moves = 0  # chunks passed upstream through the tunnel (its idle check reads it)
        self.upgrade_rest = b""  # client bytes after an upgrade request, held until the 101
        self.feeding = False  # inside parser.feed_data: an error may wait for the rest of this read
        self._refusal: tuple[int, str] | None = None  # what a parser callback refused the request with
        self._pending_reject: tuple[int, str] | None = None  # a refusal waiting for earlier requests
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._te: list[bytes] | None = None
        self._paused_by = 0  # bit set of the reasons reading is paused (data_plane/http/flow.py)
        self._closed = False
        self._deadline = 0.0  # when the connection times out; 0 while an exchange runs
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _NEVER  # loop time the timer fires at
        self._open = 0  # requests begun (first byte parsed) and not answered yet: 0 = idle between requests
        self._linger: asyncio.Transport | None = None  # the transport after close_gracefully() handed it over

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0].encode() if peer else b""
        if self.secure:
            self.tls = TlsPeer(transport.get_extra_info("ssl_object"))
        trusted = self.worker.trusted_proxies
        if trusted is not None and trusted.trusts(self.peer_ip):  # once per connection: its peer is fixed
            self.trusted = trusted
        self.worker.connections.add(self)
        settings = self.worker.settings
        wait = settings.header_timeout
        if self.env.draining:
            wait = min(wait, settings.shutdown_idle_grace)  # accepted while the listener closes: serve one request
        self._deadline = self.loop.time() + wait
        self.watch(self._deadline)

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.write(data)
            self.tunnel_moves += 1
            return
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The upgrade request was parsed; what follows belongs to the new protocol and waits
            # for the upstream's 101 (or is dropped with the connection if it does not come).
            self.upgrade_rest = data[exc.args[0] :] if exc.args else b""
            self.pause_reading(flow.UPGRADE)
        except httptools.HttpParserError:
            # httptools wraps what a callback raises (HttpParserCallbackError is an
            # HttpParserError): a refusal of ours (414, 431) was recorded before raising.
            self.feeding = False
            refusal = self._refusal
            if refusal is None:
                self._reject(400, errors.BAD_REQUEST)
            elif refusal[0]:
                self._reject(refusal[0], refusal[1])
            if self._pending_reject is None:
                return
            # (refusal deferred behind earlier requests: what they parsed still goes upstream)
        self.feeding = False
        active = self.active
        if active is not None:
            if active.error is not None:
                active.answer_now()  # refused, and the rest of its body did not come with this read
            else:
                active.flush_upstream()

    def eof_received(self) -> bool:
        """The client half-closed. Returning True keeps our half open for a response still owed."""
        ex = self.parsing
        if ex is not None and ex is not self.active:
            self.queue.clear()  # a pipelined request cut off mid-body: never started, never answered
        active = self.active
        if active is None:
            return False  # nothing owed: close
        active.client_eof()
        return not self._closed

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
        # showed up in profiles of short-lived connections). Nothing parses after connection_lost.
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
        if self._closed:
            # Answered and closing (a 400, a 413...): bytes after that request are never parsed
            # into another one, let alone forwarded.
            self._refuse(0, "")
        self._open += 1
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._te = None
        if self.active is None:
            # Idle keep-alive connection: the keep-alive clock stops, the head clock starts.
            self._deadline = self.loop.time() + self.worker.settings.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(414, errors.URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES or len(self._headers) >= MAX_HEADERS:
            self._refuse(431, errors.HEADERS_TOO_LARGE)
        name = name.lower()
        if (len(name) == 14 or len(name) == 17) and b"_" in name and name.replace(b"_", b"-") in _FRAMING:
            # content_length / transfer_encoding: CGI, WSGI and PHP backends read "_" as "-", so
            # the backend would frame the body differently than we do (nginx drops such fields).
            self._refuse(400, errors.BAD_REQUEST)
        if name == b"transfer-encoding":
            if self._te is None:
                self._te = [value]
            else:
                self._te.append(value)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        method = parser.get_method().decode("ascii")
        te = self._te
        if te is not None and (len(te) != 1 or te[0].strip().lower() != b"chunked" or version != "1.1"):
            # Only a single, final "chunked" is framing we can trust and re-frame (RFC 9112 6.1, 6.3).
            self._refuse(400, errors.BAD_REQUEST)
        if method == "CONNECT":
            self._refuse(400, errors.BAD_REQUEST)  # not a forward proxy
        if version != "1.1" and version != "1.0":
            # HTTP/0.9 (no version) has no head to route on; a major version above 1 is not spoken
            # in this syntax (nginx: 505).
            self._refuse(505 if version[:1] > "1" else 400, errors.VERSION_NOT_SUPPORTED)
        ex = Exchange(
            self.env,
            self,
            method,
            self._url,
            self._headers,
            version,
            parser.should_keep_alive(),
            parser.should_upgrade(),
            te is not None,  # (checked above: exactly one "chunked")
        )
        self.parsing = ex
        self._deadline = 0.0
        if self.active is None:
            self.active = ex
            ex.start()
        else:
            self.queue.append(ex)
            self.pause_reading(flow.QUEUED)

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

    def _refuse(self, status: int, message: str) -> None:
        """Stop parsing this request: httptools turns the exception into an HttpParserError, so
        what to answer is kept here for data_received."""
        self._refusal = (status, message)
        raise RequestRefused(status, message)

    # ---------------------------------------------------------------- what the exchange may use

    def write(self, chunks: list[bytes]) -> None:
        """Send response bytes to the client (dropped once the connection is closing)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.writelines(chunks)

    def is_active(self, ex: Exchange) -> bool:
        return self.active is ex

    def abort(self, ex: Exchange) -> None:
        """The exchange cannot finish its response (truncated upstream, a too-late error): reset
        the connection so the client never mistakes what it got for a whole response."""
        if self.active is ex:
            self.active = None
        transport = self.transport
        if transport is not None:
            transport.abort()

    def open_tunnel(self, upstream: asyncio.Transport) -> asyncio.Transport | None:
        """After a 101: from now on client bytes go straight to ``upstream`` (the bytes that came
        after the upgrade request first). Returns the client transport the upstream side writes
        to, or None when the client is gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return None
        self.tunnel = upstream
        pending = self.upgrade_rest
        self.upgrade_rest = b""
        if pending:
            upstream.write(pending)
        self.resume_reading(flow.UPGRADE)
        return transport

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

    def done(self, ex: Exchange, keep_alive: bool) -> None:
        """The exchange answered; ``keep_alive``: the connection may carry the next request."""
        if self.active is not ex:
            return
        self.active = None
        self._open -= 1
        if not keep_alive or self._closed:
            if not ex.body_done or self.env.draining:
                # Answered before the whole request was read, or the response said connection:
                # close while draining: FIN, drop what still comes (never a reset).
                self.close_gracefully()
            else:
                self.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self.resume_reading(flow.QUEUED)
            self.active = nxt
            nxt.start()
            nxt.flush_upstream()
        elif self._pending_reject is not None:
            self._answer_reject(*self._pending_reject)
        elif self.parsing is None:
            self._deadline = self.loop.time() + self.worker.settings.keepalive_timeout
            if self.env.draining:
                # A response that went out saying keep-alive while the worker began to drain: the
                # client may be sending its next request now; answer it (with connection: close).
                self.drain(self.loop.time() + self.worker.settings.shutdown_idle_grace)

    def watch(self, at: float) -> None:
        """Make sure the timer fires by loop time ``at`` (re-arms only when it is set later)."""
        if at < self._timer_at and not self._closed:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = _NEVER
        if self._closed:
            return
        now = self.loop.time()
        deadline = self._deadline
        if deadline != 0.0 and self.tunnel is None:
            if now >= deadline:
                if self.env.draining:
                    self._drained(now)
                else:
                    self.close()  # slow head (slowloris) or idle keep-alive: nothing owed to the client
                return
            self.watch(deadline)
            return
        active = self.active
        if active is not None:
            if self.tunnel is None:
                active.check_timeout(now)  # read/total timeouts; asks for its next look through watch()
            else:
                active.check_tunnel(now)  # idle tunnel (read timeout, both directions)
        # Busy (or a tunnel): look again later; an earlier wake-up the exchange asked for stays.
        self.watch(now + self.worker.settings.header_timeout)

    # ---------------------------------------------------------------- graceful shutdown

    def last_response(self) -> bool:
        """Draining: the response starting now is this connection's last, so it says
        ``connection: close``; while other requests have begun on it (pipelined, already read),
        they are answered first and the last of them says it."""
        return self.env.draining and self._open <= 1

    def drain(self, idle_until: float) -> None:
        """The worker began draining: an idle connection stays open until ``idle_until`` (a
        request already on its way is answered, with ``connection: close``); one with a request in
        progress closes after its last response."""
        if self._open == 0 and self.tunnel is None and not self._closed and idle_until < self._deadline:
            self._deadline = idle_until
            self.watch(idle_until)

    def _drained(self, now: float) -> None:
        """Draining, and the connection's deadline passed (idle through the grace, or a slow head)."""
        transport = self.transport
        if self._open == 0 and transport is not None and unread_bytes(transport):
            # A request is in the socket, not read yet: the loop reads it next; answer it, not drop it.
            self._deadline = now + self.worker.settings.header_timeout
            self.watch(self._deadline)
            return
        self.close_gracefully()

    def close_gracefully(self) -> None:
        """FIN after what was written, then read and discard until the client's FIN
        (:func:`data_plane.http.shutdown.linger_close`): a request racing this close is dropped
        quietly, never answered by the kernel with a reset."""
        transport = self.transport
        if self._closed or transport is None:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None  # nothing may be written after the FIN
        self._linger = transport
        linger_close(transport, self.loop, self.connection_lost)

    def close(self) -> None:
        self._closed = True
        transport = self.transport if self.transport is not None else self._linger
        if transport is not None:
            transport.close()

    def _reject(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed or accepted, then close (never forwarded).

        When the bad bytes follow complete requests (pipelining), those are answered first, in
        order, and the refusal comes after them (HTTP Garden: servers that dropped the valid
        request before an invalid one); reading stops meanwhile."""
        active = self.active
        parsing = self.parsing
        if active is not None and parsing is not active and not self._closed:
            if parsing is not None and self.queue and self.queue[-1] is parsing:
                self.queue.pop()  # a queued request cut by the error: never started
            self.parsing = None
            self._pending_reject = (status, message)
            self.pause_reading(flow.REFUSAL_PENDING)
            return
        self._answer_reject(status, message)

    def _answer_reject(self, status: int, message: str) -> None:
        if self.active is not None and self.active.response_started:
            self.close()  # a response is mid-flight; nothing sane can follow it
            return
        if self.active is not None:
            self.active.abandon(status)  # (an admitted request is still metered, with this status)
            self.active = None
        self.queue.clear()
        rid = new_request_id()
        self.worker.observer.rejected(status, rid, self.peer_ip)
        if self.transport is not None and not self._closed:
            self.transport.write(errors.error_response(status, message, rid, keep_alive=False))
        self.close_gracefully()  # unread bytes may follow: FIN, never a reset
