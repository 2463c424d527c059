"""One request/response through the gateway: route, pick a target, forward, stream, retry.

An :class:`Exchange` is created by :class:`data_plane.http.protocol.ClientConnection` when a request
head is parsed.  It is the upstream connection's :class:`data_plane.http.upstream.ResponseSink`.

Retries (``Upstream.retries``) go to a target not tried yet (``balancer.pick(exclude=...)``) and
happen only (a) when connecting failed (nothing was sent), (b) when the connection was lost
before any response byte for an idempotent request, (c) on a 502/503/504 response to an
idempotent request — and never once any byte of the request body went upstream (bodies are
streamed, not kept for a replay).  A pooled keep-alive connection the upstream closed just as it
was reused is retried on a fresh connection outside that budget (it says nothing about the target),
again only for an idempotent request: its head was written, so the upstream may have acted on it.
Idempotent = the method is (RFC 9110 9.2.2) or the request carries an ``Idempotency-Key`` header
(the client says a repeat is safe; draft-ietf-httpapi-idempotency-key-header), decided once in
:meth:`Exchange.start`.

Timeouts: connect (``asyncio.timeout`` around the dial), read (idle upstream) and total (deadline
from the start of the request).  No timer per exchange: the client connection's one timer calls
:meth:`Exchange.check_timeout` while the exchange is active, and the exchange asks the connection
for an earlier wake-up (``ClientConnection.watch``) only when it needs one.  Upstream activity only
bumps a counter, so the idle limit is enforced within [read, 2 x read].  After a 101 the same timer
closes the tunnel once no byte moved in either direction for the read timeout
(:meth:`Exchange.check_tunnel`; each side's ``data_received`` bumps a counter).
"""

from __future__ import annotations

import asyncio
import os
import time
from time import perf_counter
from typing import TYPE_CHECKING

from data_plane.auth import CustomerEntry, Denied
from data_plane.compiler import HASH_COOKIE, HASH_CUSTOMER, HASH_HEADER, HASH_IP
from data_plane.http import responses as errors
from data_plane.http.canonical import canonical_path, plain_path, same_authority, split_authority
from data_plane.http.upstream import UpstreamConnection
from data_plane.limits.headers import limit_response, rate_limit_headers
from data_plane.limits.policy import UNAVAILABLE, Decision, LimitPolicy
from data_plane.router import NotFound

if TYPE_CHECKING:
    from data_plane.compiler import CompiledConfig, CompiledRoute, CompiledTarget, CompiledUpstream
    from data_plane.http.protocol import ClientConnection

# Hop-by-hop fields (RFC 9110 7.6.1) and the ones the gateway sets itself; never forwarded.
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade", b"trailer")
)
# x-customer-id / x-key-prefix are set by authentication only: a client-supplied one is spoofing.
_SET_BY_GATEWAY_REQUEST = _HOP_BY_HOP | {
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-customer-id",
    b"x-key-prefix",
}
_SET_BY_GATEWAY_RESPONSE = _HOP_BY_HOP | {b"x-request-id"}

_VIA = b"via: 1.1 tollgate\r\n"
_CHUNKED = b"transfer-encoding: chunked\r\n"
_TE_TRAILERS = b"te: trailers\r\n"
_CONNECTION_UPGRADE = b"connection: upgrade\r\nupgrade: "
_LAST_CHUNK = b"0\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CRLF = b"\r\n"
_REQUEST_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))
_RETRY_STATUSES = frozenset((502, 503, 504))

# Buffered request body waiting for an upstream connection (or behind a pipelined request)
# above which the client is paused.
BODY_BUFFER_HIGH_WATER = 256 * 1024

_rid_prefix = os.urandom(6).hex().encode()
_rid_counter = 0


def new_request_id() -> bytes:
    global _rid_counter
    _rid_counter += 1
    return b"%s-%x" % (_rid_prefix, _rid_counter)


def _valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= 128 and all(c in _REQUEST_ID_CHARS for c in value)


def _tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",")}


class Exchange:
    """One request/response through the gateway."""

    __slots__ = (
        "client",
        "method",
        "url",
        "headers",
        "http_version",
        "keep_alive",
        "upgrade",
        "idempotent",
        "expect_continue",
        "request_id",
        "client_ip",
        "customer_id",
        "customer",
        "limit_headers",
        "config",
        "route",
        "target",
        "tried",
        "conn",
        "up_out",
        "up_buffered",
        "head",
        "head_pending",
        "body_chunked",
        "body_bytes",
        "body_done",
        "body_started",
        "response_started",
        "response_chunked",
        "client_out",
        "error",
        "activity",
        "seen_activity",
        "seen_at",
        "deadline",
        "finished",
        "connecting",
        "attempts",
        "stale_retries",
        "seen_body",
        "body_seen_at",
        "started",
        "status",
        "bytes_out",
        "picked",
    )

    def __init__(
        self,
        client: ClientConnection,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        self.client = client
        self.method = method
        self.url = url
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive and not upgrade  # after a refused upgrade the parser cannot go on
        self.upgrade = upgrade
        self.idempotent = method in _IDEMPOTENT
        self.expect_continue = False  # the client waits for 100 Continue before its body
        self.request_id = b""
        # The client's address: the socket peer, or behind trusted proxies the one X-Forwarded-For
        # names (data_plane/http/realip.py). What hash_on: ip, the access log and IP rules use.
        trusted = client.trusted
        self.client_ip = client.peer_ip if trusted is None else trusted.client_ip(client.peer_ip, headers)
        self.customer_id = b""  # set by the auth stage when it knows the caller (hash_on: customer)
        self.customer: CustomerEntry | None = None
        self.limit_headers = b""  # RateLimit-* lines for the response (usage plans)
        self.config: CompiledConfig | None = None
        self.route: CompiledRoute | None = None
        self.target: CompiledTarget | None = None  # the target this exchange counts as in flight on
        self.tried: tuple[CompiledTarget, ...] | None = None
        self.conn: UpstreamConnection | None = None
        self.up_out: list[bytes] = []
        self.up_buffered = 0
        self.head = b""
        self.head_pending = False  # up_out[0] is the request head, not sent yet
        self.body_chunked = False
        self.body_bytes = 0
        self.body_done = False
        self.body_started = False  # some body bytes went to an upstream (no retry after that)
        self.response_started = False
        self.response_chunked = False
        self.client_out: list[bytes] = []
        self.error: bytes | None = None
        self.activity = 0
        self.seen_activity = -1
        self.seen_at = 0.0  # loop time when seen_activity was last taken
        self.deadline = 0.0
        self.finished = False
        self.connecting = False
        self.attempts = 0
        self.stale_retries = 0
        self.seen_body = 0  # body bytes at the body timeout's last look, and when that was
        self.body_seen_at = 0.0
        # for metrics and the access log (data_plane/observe/observer.py)
        self.started = perf_counter()
        self.status = 0  # what the client gets: set with the response head or the gateway error
        self.bytes_out = 0  # response body bytes from the upstream
        self.picked: CompiledTarget | None = None  # the last target tried, kept after _leave()

    # ------------------------------------------------------------------ request side

    def start(self) -> None:
        client = self.client
        host = b""
        hosts = 0
        rid = b""
        content_length = None
        expect: bytes | None = None
        for name, value in self.headers:
            if name == b"host":
                host = value
                hosts += 1
            elif name == b"x-request-id":
                rid = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                self.body_chunked = True
            elif name == b"expect":
                expect = value
            elif name == b"idempotency-key" and value:
                self.idempotent = True  # the client made a non-idempotent method safe to repeat
        self.request_id = rid if rid and _valid_request_id(rid) else new_request_id()
        if self.body_chunked or content_length is not None and content_length != b"0":
            # A body is coming: the body timeout counts from now (TOLLGATE_BODY_TIMEOUT).
            now = self.body_seen_at = client.loop.time()
            client.watch(now + client.worker.settings.body_timeout)
        if hosts != 1 and (hosts or self.http_version == "1.1"):
            # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host and to
            # any request with more than one Host field.
            self._bad_request()
            return
        if hosts:
            host = host.strip(b" \t")  # (llhttp keeps trailing whitespace in a value)
            if not host:
                self._bad_request()  # an http(s) URI always has a host (nginx refuses it too)
                return
        if content_length is not None and len(content_length) > 1 and content_length[0] == 0x30:
            # "010" is 10 (1*DIGIT), but a backend that reads it as octal frames 8: send it plain.
            fixed = b"%d" % int(content_length)
            self.headers = [(n, fixed if n == b"content-length" else v) for n, v in self.headers]
        url = self.url
        if url[:1] != b"/":
            # Absolute form (RFC 9112 3.2.2: a server MUST accept it): routed by its authority,
            # which must agree with Host. The asterisk form and anything else are not ours.
            parts = split_authority(url)
            if parts is None or (hosts and not same_authority(host, parts[1], parts[0])):
                self._bad_request()
                return
            host = parts[1]
            url = parts[2]
        route_host = client.route_host(host)
        if route_host is None:
            self._bad_request()  # an invalid Host
            return
        q = url.find(b"?")
        if q >= 0 and "#" in url[q:].decode("latin-1"):
            # A fragment is never part of a request target (in the path, canonical_path refuses it;
            # the test runs on str: compiled bytes "in" costs ~2,000 instructions).
            self._bad_request()
            return
        raw_path = url if q < 0 else url[:q]
        canon = raw_path
        plain = plain_path(raw_path)
        if plain is not None:
            path = plain
        else:
            made = canonical_path(raw_path)
            if made is None:
                self._bad_request()  # no safe canonical form (data_plane/http/canonical.py)
                return
            # Routing, authentication and the upstream all see the canonical path.
            canon = made
            url = canon + url[q:] if q >= 0 else canon
            q = len(canon) if q >= 0 else -1
            path = canon.decode("ascii")
        if expect is not None and self.http_version == "1.1":  # (HTTP/1.0 expectations are ignored)
            if expect.strip().lower() != b"100-continue":
                self.keep_alive = False
                self.fail(417, errors.EXPECTATION_FAILED)  # RFC 9110 10.1.1
                return
            # Answered by the gateway once the request is admitted (nginx, Envoy): a refusal comes
            # before the client sends its body, and the upstream is not asked again.
            self.expect_continue = True
            self.headers = [h for h in self.headers if h[0] != b"expect"]

        config = self.config = client.worker.config
        if config is None:
            self.fail(503, errors.NOT_CONFIGURED)
            return
        found = config.router.match(route_host, self.method, path)
        if canon is not raw_path and b"%2F" in canon and not self._slash_agrees(config, route_host, canon, found):
            self._bad_request()  # an encoded slash that would route elsewhere once decoded
            return
        if isinstance(found, NotFound):
            if found.allow:
                allow = b"allow: " + ", ".join(found.allow).encode() + b"\r\n"
                self.fail(405, errors.METHOD_NOT_ALLOWED, allow)
            else:
                self.fail(404, errors.NO_ROUTE)
            return
        route, rel_path = found
        self.route = route
        inject = b""
        policy: LimitPolicy | None = None
        if route.auth is not None:
            res = route.auth.authenticate(self.headers, url, q)
            if isinstance(res, Denied):
                self.fail(res.status, res.message, res.extra)
                return
            # credential stripped; identity header lines to add; who is calling
            self.headers, url, inject, customer = res
            self.customer = customer
            self.customer_id = customer.id_bytes
            plan_id = customer.plan_id
            if plan_id is not None:
                # One or two dict lookups: a per-route override for this method, else the plan's policy.
                by_method = route.method_policies
                policy = by_method.get((plan_id, self.method)) if by_method else None
                if policy is None:
                    policy = route.policies.get(plan_id)
        limit = route.max_body_bytes
        if limit is not None and (
            content_length is not None and int(content_length) > limit or self.body_bytes > limit
        ):
            self.keep_alive = False
            self.fail(413, errors.BODY_TOO_LARGE)
            return
        if route.total_timeout is not None:
            now = client.loop.time()
            self.deadline = now + route.total_timeout
            client.watch(now + min(route.total_timeout, route.read_timeout))

        if route.strip_base_path:
            upstream_path = rel_path.encode("ascii") + url[q:] if q >= 0 else rel_path.encode("ascii")
        else:
            upstream_path = url  # the canonical path and the query auth left
        self.head = self._build_head(upstream_path, host, inject)
        if policy is not None:
            self._check_limits(policy)
            return
        self._admitted()
        self.forward()

    def _slash_agrees(
        self, config: CompiledConfig, host: str, canon: bytes, found: tuple[CompiledRoute, str] | NotFound
    ) -> bool:
        """An encoded slash stays encoded (SDKs escape ``/`` in greedy path parameters), but only
        when the path routes to the same route with it decoded: a backend that decodes ``%2F``
        before routing must not be handed a path another route (or API) owns (``/zec%2Fr`` is
        the catch-all's as written and the keyed API's decoded: 400)."""
        decoded = canonical_path(canon.replace(b"%2F", b"/"))
        if decoded is None:
            return False
        other = config.router.match(host, self.method, decoded.decode("ascii"))
        if isinstance(found, NotFound) or isinstance(other, NotFound):
            return isinstance(found, NotFound) and isinstance(other, NotFound)
        return found[0] is other[0]

    # ------------------------------------------------------------------ usage plans

    def _check_limits(self, policy: LimitPolicy) -> None:
        """Throttle and quota: the memory store decides at once; Redis answers a future (no coroutine)."""
        customer = self.customer
        assert customer is not None
        adjustment = customer.adjustment(time.time()) if customer.extra else 0
        d = self.client.worker.limiter.check(customer.id, policy, adjustment)
        if isinstance(d, Decision):
            self._limited(d)
        else:
            d.add_done_callback(self._limited_later)

    def _limited_later(self, fut: asyncio.Future[Decision]) -> None:
        if self.finished:
            return  # the client went away while the store answered
        self._limited(fut.result())
        self.flush_upstream()  # body bytes that arrived while waiting

    def _limited(self, d: Decision) -> None:
        observer = self.client.worker.observer
        if not d.allowed:
            observer.limited(d.limit)
            self._refuse(d)
            return
        observer.admitted += 1
        self.limit_headers = rate_limit_headers(d)  # b"" when the API hides them
        self._admitted()
        self.forward()

    def _admitted(self) -> None:
        """Meter an admitted request of a known customer (per customer, API and UTC day); tell a
        client waiting on ``Expect: 100-continue`` to send its body."""
        if self.expect_continue and not self.body_done:
            self.client_out.append(_CONTINUE)
            self.flush_client()
        customer = self.customer
        metering = self.client.worker.metering
        if customer is not None and metering is not None:
            metering.record(customer.id, self.route.api_id)  # type: ignore[union-attr]

    def _refuse(self, d: Decision) -> None:
        """429 (throttle/quota) or 503 (store unavailable, fail-closed), sent like :meth:`fail`."""
        if not self._stop_for_error(503 if d.limit == UNAVAILABLE else 429):
            return
        self.error = limit_response(d, self.request_id, keep_alive=self.keep_alive)
        self._error_ready()

    def _build_head(self, upstream_path: bytes, host: bytes, inject: bytes = b"") -> bytes:
        """The request head minus the Host line and the blank line ending the head: the target's
        precompiled ``head_end`` completes it."""
        skip = _SET_BY_GATEWAY_REQUEST
        connection_named: set[bytes] | None = None
        xff = b""
        te_trailers = False
        upgrade = b""
        parts = [self.method.encode(), b" ", upstream_path, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            if name == b"connection":
                connection_named = _tokens(value)
        for name, value in self.headers:
            if name in skip or (connection_named is not None and name in connection_named):
                if name == b"x-forwarded-for":
                    if value:
                        xff += value + b", "  # every field line, in order: one list (RFC 9110 5.3)
                elif name == b"te":
                    te_trailers = b"trailers" in _tokens(value)
                elif name == b"upgrade":
                    upgrade = value
                continue
            if name == b"x-request-id":
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
            b"\r\n",
            inject,
            _VIA,
        )
        if te_trailers:
            parts.append(_TE_TRAILERS)  # the one TE value that is end-to-end in meaning
        if self.upgrade:
            parts += (_CONNECTION_UPGRADE, upgrade, _CRLF)
        if self.body_chunked:
            parts.append(_CHUNKED)
        return b"".join(parts)

    def _hash_key(self, upstream: CompiledUpstream) -> bytes:
        mode = upstream.hash_on
        if mode == HASH_HEADER:
            for name, value in self.headers:
                if name == upstream.hash_key:
                    return value
        elif mode == HASH_COOKIE:
            prefix = upstream.hash_key + b"="
            for name, value in self.headers:
                if name == b"cookie":
                    for part in value.split(b";"):
                        part = part.strip()
                        if part.lower().startswith(prefix):
                            return part[len(prefix) :]
        elif mode == HASH_CUSTOMER and self.customer_id:
            return self.customer_id
        elif mode == HASH_IP:
            return self.client_ip
        return self.client_ip  # key absent: fall back to the client address

    def forward(self) -> None:
        route = self.route
        assert route is not None
        upstream = route.upstream
        key = b"" if upstream.hash_on < 0 else self._hash_key(upstream)
        target: CompiledTarget | None = upstream.balancer.pick(self.tried, key)  # type: ignore[assignment]
        if target is None:
            self.fail(503, errors.NO_HEALTHY_UPSTREAM)
            return
        pool = target.pool
        conn = pool.get_idle()
        if conn is None and upstream.max_connections and pool.count >= upstream.max_connections:
            self.fail(503, errors.UPSTREAM_BUSY)
            return
        self.target = self.picked = target
        target.state.in_flight += 1
        self.attempts += 1
        self.up_out.insert(0, self.head + target.head_end)
        self.head_pending = True
        if conn is not None:
            self._attach(conn)
        else:
            self.connecting = True
            task = asyncio.ensure_future(pool.connect(route.connect_timeout))
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Future[UpstreamConnection]) -> None:
        self.connecting = False
        if self.finished:
            if not task.cancelled() and task.exception() is None:
                task.result().close()
            return
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if exc is not None:
            if self.head_pending:
                del self.up_out[0]  # the head never left; body bytes buffered behind it stay
                self.head_pending = False
            if isinstance(exc, TimeoutError):
                self._upstream_failed(504, errors.UPSTREAM_TIMEOUT, request_sent=False)
            else:
                self._upstream_failed(502, errors.UPSTREAM_FAILED, request_sent=False)
            return
        self._attach(task.result())
        self.flush_upstream()

    def _attach(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.attach(self, self.method == "HEAD")
        self.seen_activity = self.activity  # the read timeout counts from here
        client = self.client
        now = self.seen_at = client.loop.time()
        client.watch(now + self.route.read_timeout)  # type: ignore[union-attr]
        if self.up_buffered > BODY_BUFFER_HIGH_WATER:
            self.client.resume_reading(4)
        self.up_buffered = 0

    def request_body(self, chunk: bytes) -> None:
        if self.error is not None or self.finished:
            return  # discarding the body of a request already answered
        self.body_bytes += len(chunk)
        route = self.route
        if route is not None and route.max_body_bytes is not None and self.body_bytes > route.max_body_bytes:
            # Also catches chunked bodies, which announce no length: checked as they stream.
            self.keep_alive = False
            self.fail(413, errors.BODY_TOO_LARGE)
            return
        self.activity += 1
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
        out = self.up_out
        if conn is not None and out:
            if len(out) > self.head_pending:
                self.body_started = True
            self.head_pending = False
            conn.transport.writelines(out)  # type: ignore[union-attr]
            self.up_out = []

    # ------------------------------------------------------------------ failures and retries

    def _upstream_failed(self, status: int, message: str, *, request_sent: bool) -> None:
        """Connecting failed, or the connection died before a response: passive health, then retry or fail."""
        route = self.route
        assert route is not None
        upstream = route.upstream
        target = self.target
        if target is not None and upstream.passive is not None and (self.body_done or not request_sent):
            # (A connection lost while the client still owes body bytes may be the upstream giving
            # up on a stalled client: not held against the target.)
            target.state.report_failure(upstream.passive, upstream.states)
        if (
            self.attempts <= upstream.retries
            and not self.body_started
            and (not request_sent or self.idempotent)
            and not self._expired()
        ):
            self._retry(exclude=True)
            return
        self.fail(status, message)

    def _retry(self, *, exclude: bool) -> None:
        target = self.target
        self._leave()
        if exclude and target is not None:
            self.tried = (*self.tried, target) if self.tried else (target,)
        if self.head_pending:
            del self.up_out[0]
            self.head_pending = False
        self.forward()
        self.flush_upstream()

    def _expired(self) -> bool:
        return self.deadline != 0.0 and self.client.loop.time() >= self.deadline

    def _leave(self) -> None:
        """Stop counting this exchange as in flight on its target."""
        target = self.target
        if target is not None:
            target.state.in_flight -= 1
            self.target = None

    # ------------------------------------------------------------------ response side (ResponseSink)

    def on_response_head(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.activity += 1
        if status < 200 and status != 101:
            # 100 Continue is the gateway's own (it strips Expect); 103 goes to HTTP/1.1 clients
            # only (RFC 9110 15.2: never a 1xx to an HTTP/1.0 client).
            if status == 103 and self.http_version == "1.1":
                self.client_out.append(errors.status_line(status) + _CRLF)
            return
        upstream = self.route.upstream  # type: ignore[union-attr]
        if upstream.passive is not None and self.target is not None:
            state = self.target.state
            if status in upstream.passive_statuses:
                state.report_failure(upstream.passive, upstream.states)
            else:
                state.failures = 0
        if (
            status in _RETRY_STATUSES
            and self.idempotent
            and self.attempts <= upstream.retries
            and self.body_done
            and not self.body_started
            and not self._expired()
        ):
            conn = self.conn
            self.conn = None
            if conn is not None:
                conn.close()  # its response is discarded; the parser feeding it stops at sink=None
            self._retry(exclude=True)
            return
        if status == 101 and not self.upgrade:
            self.on_upstream_bad_response(self.conn)  # type: ignore[arg-type]
            return
        self.response_started = True
        self.status = status
        parts = [errors.status_line(status)]
        has_length = False
        connection_named: set[bytes] | None = None
        upgrade = b""
        for name, value in headers:
            if name == b"connection":
                connection_named = _tokens(value)
        skip = _SET_BY_GATEWAY_RESPONSE
        for name, value in headers:
            if name in skip or (connection_named is not None and name in connection_named):
                if name == b"upgrade":
                    upgrade = value
                continue
            if name == b"content-length":
                has_length = True
            parts += (name, b": ", value, _CRLF)
        parts += (b"x-request-id: ", self.request_id, _CRLF, _VIA, self.limit_headers)
        if status == 101:
            parts += (_CONNECTION_UPGRADE, upgrade, _CRLF, _CRLF)
            self.client_out.append(b"".join(parts))
            return
        no_body = self.method == "HEAD" or status == 204 or status == 304
        if not has_length and not no_body:
            if self.http_version == "1.1":
                self.response_chunked = True
                parts.append(_CHUNKED)
            else:
                self.keep_alive = False  # HTTP/1.0 client: the body ends when we close
        if self.client.last_response():
            self.keep_alive = False  # draining: the last request begun on this connection
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(_CRLF)
        self.client_out.append(b"".join(parts))

    def on_response_body(self, chunk: bytes) -> None:
        self.activity += 1
        self.bytes_out += len(chunk)
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

    def on_upstream_upgrade(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The upstream answered 101: splice the two connections (WebSocket and friends).

        The exchange stays the client connection's ``active`` one and keeps ``conn``: the
        connection's timer calls :meth:`check_tunnel`, and a close of either side closes the other.
        """
        client = self.client
        self.flush_client()
        self.finished = True
        self._leave()
        client.worker.observer.done(self)  # the request ends here; the tunnel's lifetime is not timed
        client_transport = client.transport
        if client_transport is None or conn.transport is None or client_transport.is_closing():
            conn.close()
            return
        conn.tunnel = client_transport
        client.tunnel = conn.transport
        # Idle tunnel: closed after the route's read timeout without a byte either way (nginx's
        # proxy_read_timeout). The data_received of each side only bumps its own counter.
        self.seen_activity = client.tunnel_moves + conn.tunnel_moves
        now = self.seen_at = client.loop.time()
        client.watch(now + self.route.read_timeout)  # type: ignore[union-attr]
        if rest:
            client_transport.write(rest)
        pending = client.upgrade_rest
        client.upgrade_rest = b""
        if pending:
            conn.transport.write(pending)
        client.resume_reading(8)

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
        if (
            not got_response_bytes
            and conn.reused
            and not self.body_started
            and self.idempotent
            and self.stale_retries < 2
        ):
            # A pooled keep-alive connection closed by the upstream just as we reused it. The head
            # (and a Content-Length: 0 body) was written, so a POST may have been processed: only an
            # idempotent request is sent again (the pool's keepalive_timeout makes this race rare).
            self.stale_retries += 1
            self.attempts -= 1
            self._retry(exclude=False)
            return
        self._upstream_failed(502, errors.UPSTREAM_FAILED, request_sent=True)

    def on_upstream_bad_response(self, conn: UpstreamConnection) -> None:
        self.conn = None
        if self.response_started:
            self.flush_client()
            self._abort()
        else:
            self.fail(502, errors.BAD_UPSTREAM_RESPONSE)

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

    def check_timeout(self, now: float) -> None:
        """Called by the client connection's timer while this exchange is active: enforce the read
        (idle upstream) and total timeouts, or ask for the next look."""
        route = self.route
        if self.finished or route is None:
            return
        deadline = self.deadline
        if not self.body_done:
            self._check_body(now, deadline)
            return
        if not (deadline and now >= deadline):
            if self.activity != self.seen_activity or self.connecting or self.conn is None:
                self.seen_activity = self.activity  # progress (or nothing to be idle on): count from now
                self.seen_at = now
            elif now - self.seen_at < route.read_timeout:
                pass  # idle, but not for long enough yet
            else:
                self._timed_out(route)
                return
            at = self.seen_at + route.read_timeout
            self.client.watch(at if not deadline or at < deadline else deadline)
            return
        self._timed_out(route)

    def _check_body(self, now: float, deadline: float) -> None:
        """While the client still owes request body bytes only the body timeout runs: an upstream
        waiting for the body is not idle by its own fault, so neither the read timeout nor passive
        health may blame it (a client sending 3 of 5 bytes must not eject a target)."""
        if self.body_bytes != self.seen_body:
            self.seen_body = self.body_bytes
            self.body_seen_at = now
        timeout = self.client.worker.settings.body_timeout
        if now - self.body_seen_at >= timeout or (deadline and now >= deadline):
            self.client_fault(408, errors.BODY_TIMEOUT)
            return
        at = self.body_seen_at + timeout
        self.client.watch(at if not deadline or at < deadline else deadline)

    def check_tunnel(self, now: float) -> None:
        """Called by the client connection's timer once it is a tunnel (after a 101): close both
        sides when no byte moved either way for the route's read timeout (detected within
        [read, 2 x read], like the read timeout of an exchange), else ask for the next look."""
        conn = self.conn
        route = self.route
        if conn is None or route is None:
            return
        moved = self.client.tunnel_moves + conn.tunnel_moves
        if moved != self.seen_activity:
            self.seen_activity = moved  # traffic since the last look: idle counts from now
            self.seen_at = now
        elif now - self.seen_at >= route.read_timeout:
            self.conn = None
            conn.close()
            self.client.close()
            return
        self.client.watch(self.seen_at + route.read_timeout)

    def _timed_out(self, route: CompiledRoute) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()
        upstream = route.upstream
        if self.target is not None and upstream.passive is not None:
            self.target.state.report_failure(upstream.passive, upstream.states)
        if self.response_started:
            self.flush_client()
            self._abort()
        else:
            self.fail(504, errors.UPSTREAM_TIMEOUT)

    def fail(self, status: int, message: str, extra_headers: bytes = b"") -> None:
        """Answer with a gateway error once the request body has been read (or discarded)."""
        if not self._stop_for_error(status):
            return
        self.error = errors.error_response(
            status,
            message,
            self.request_id or new_request_id(),
            keep_alive=self.keep_alive,
            extra_headers=extra_headers,
        )
        self._error_ready()

    def _bad_request(self) -> None:
        self.keep_alive = False  # whatever follows a malformed request cannot be trusted
        self.fail(400, errors.BAD_REQUEST)

    def client_fault(self, status: int, message: str) -> None:
        """The client stalled or broke off its request (incomplete body, body timeout): answer it
        and close. Never counted against the target (passive health), whatever the upstream did."""
        self.keep_alive = False
        self.fail(status, message)

    def client_eof(self) -> None:
        """The client half-closed its side. Mid-body, that is an incomplete request (400); after a
        complete request the response still goes out on the open half, then the connection closes."""
        self.keep_alive = False
        if not self.body_done and not self.finished:
            self.client_fault(400, errors.INCOMPLETE_REQUEST)

    def answer_now(self) -> None:
        """An error is waiting for the rest of a request body that did not come with this read:
        answer at once and close instead (the client may be waiting for a 100 Continue, or may
        never send the body), rather than hold the connection until the body arrives."""
        error = self.error
        if not self.finished and error is not None and not self.body_done:
            if self.keep_alive:  # built to keep the connection: say that it closes
                self.keep_alive = False
                self.error = error.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)
            self._send_error()

    def _stop_for_error(self, status: int) -> bool:
        """Drop the upstream side before an error answer; False when it is too late for one."""
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()
        self._leave()
        if self.response_started:
            self.flush_client()
            self._abort()  # too late for an error response: cut the connection
            return False
        self.up_out = []
        self.head_pending = False
        self.status = status
        if status == 413 or self.client.last_response() or not (self.body_done or self.client.feeding):
            # Not waiting for a body to arrive: answered now, and the unread rest of the request
            # means the connection cannot carry another one (data_received decides the other case
            # at the end of the read that is being parsed, when the body may have come along).
            # Draining: the last request begun on this connection closes it.
            self.keep_alive = False
        return True

    def _error_ready(self) -> None:
        if self.up_buffered > BODY_BUFFER_HIGH_WATER:
            self.client.resume_reading(4)
        if self.body_done or not self.keep_alive:
            self._send_error()
        # else: ClientConnection.data_received calls answer_now() after the read being parsed

    def _send_error(self) -> None:
        if self.finished or self.error is None:
            return
        self.client_out = [self.error]
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._leave()
        self.flush_client()
        self.client.worker.observer.done(self)
        self.client.exchange_done(self, self.keep_alive)

    def _abort(self) -> None:
        if not self.finished:
            self.client.worker.observer.done(self)  # truncated response: logged with the status it started with
        self.finished = True
        self._leave()
        self.client.active = None
        transport = self.client.transport
        if transport is not None:
            transport.abort()

    def abandon(self) -> None:
        """The client connection is being torn down; release what this exchange holds."""
        self.finished = True
        self._leave()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()

    def client_gone(self) -> None:
        if not self.finished:
            self.status = 499  # nginx's "client closed request": the client left before the end
            self.client.worker.observer.done(self)
        self.abandon()
