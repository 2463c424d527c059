"""The exchange state machine: one admitted request against an upstream, to its end.

Created by :class:`data_plane.http.protocol.ClientConnection` when a request head is parsed;
:meth:`Exchange.start` asks the admission pipeline (:mod:`data_plane.http.admission`) for a
verdict, answers a refusal, checks the plan policy with the limiter, then forwards.  From there it
is the upstream connection's :class:`data_plane.http.upstream.ResponseSink`::

    start -> (limiter) -> forward -> connect | attach -> stream body / response -> finish
                             ^                  |
                             +---- retry -------+        (and: fail, abort, timed out, upgraded)

It is handed what it uses and reaches no further: the worker's :class:`~data_plane.http.env.ExchangeEnv`
(loop, observer, limiter, metering, current config, body timeout) and the client connection's
small surface (``write``, ``watch``, ``pause_reading`` / ``resume_reading`` with a
:mod:`data_plane.http.flow` reason, ``done``, ``abort``, ``open_tunnel``); the connection owns its
own state.  Heads are rewritten by the pure functions of :mod:`data_plane.http.headers`.

Retries (``Upstream.retries``) go to a target not tried yet (``balancer.pick(exclude=...)``).
One rule decides them all (:meth:`Exchange.may_retry`): never once any byte of the request body
went upstream (bodies are streamed, not kept for a replay); once the head may have reached the
target (lost connection, 502/503/504 response) only for an idempotent request; within the budget
and before the total deadline.  So a retry happens (a) when connecting failed (nothing was sent),
(b) when the connection was lost before any response byte, (c) on a 502/503/504 response once the
request body is complete.  A pooled keep-alive connection the upstream closed just as it was
reused is sent again on a fresh connection outside that budget (it says nothing about the
target), again only for an idempotent request.  Idempotent = the method is (RFC 9110 9.2.2) or the
request carries an ``Idempotency-Key`` header (the client says a repeat is safe;
draft-ietf-httpapi-idempotency-key-header), decided once by admission.

Tracing (a route's tracing policy, :mod:`data_plane.observe.tracing`): each attempt's head gets its
own ``traceparent`` line (:meth:`Exchange.forward`), and the points where an attempt ends without
being the answer (failed, lost, timed out, a retried 502/503/504) tell the trace.

Timeouts: connect (``asyncio.timeout`` around the dial), read (idle upstream) and total (deadline
from the start of the request); while the client still owes body bytes only the body timeout runs.
No timer per exchange: the client connection's one timer calls :meth:`Exchange.check_timeout`
while the exchange is active, and the exchange asks the connection for an earlier wake-up
(``ClientConnection.watch``) only when it needs one.  Upstream activity only bumps a counter, so
the idle limit is enforced within [read, 2 x read].  After a 101 the same timer closes the tunnel
once no byte moved in either direction for the read timeout (:meth:`Exchange.check_tunnel`; each
side's ``data_received`` bumps a counter).
"""

from __future__ import annotations

import asyncio
import time
from time import perf_counter
from typing import TYPE_CHECKING, Final

from data_plane.auth import CustomerEntry
from data_plane.compiler import HASH_COOKIE, HASH_CUSTOMER, HASH_HEADER, HASH_IP
from data_plane.http import flow
from data_plane.http import responses as errors
from data_plane.http.admission import IDEMPOTENT_METHODS, Admitted, Refused, admit
from data_plane.http.flow import BODY_BUFFER_HIGH_WATER
from data_plane.http.headers import BODY_CHUNKED, BODY_TO_CLOSE, CRLF, new_request_id, response_head
from data_plane.http.upstream import UpstreamConnection
from data_plane.limits.headers import limit_response, rate_limit_headers
from data_plane.limits.policy import UNAVAILABLE, Decision, LimitPolicy
from data_plane.observe.tracing import Trace
from data_plane.policies.cache import CacheEntry, CacheFill, CacheRule
from data_plane.policies.cors import strip_upstream_cors
from data_plane.policies.plugins import response_fields
from data_plane.policies.route import RoutePolicies
from data_plane.policies.transform import Vars
from tollgate.plugins import ResponseView

if TYPE_CHECKING:
    from data_plane.compiler import CompiledRoute, CompiledTarget, CompiledUpstream
    from data_plane.http.env import ExchangeEnv
    from data_plane.http.protocol import ClientConnection

_LAST_CHUNK: Final = b"0\r\n\r\n"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_RETRY_STATUSES: Final = frozenset((502, 503, 504))
# A pooled connection the upstream closed as it was reused is sent again at most this often (outside
# the retry budget: it says nothing about the target).
_STALE_RESENDS: Final = 2
_X_CACHE_HIT: Final = b"x-cache: HIT\r\n"
_X_CACHE_MISS: Final = b"x-cache: MISS\r\n"


class Exchange:
    """One request/response through the gateway."""

    __slots__ = (
        "env",
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
        "response_extra",
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
        "cache_key",
        "cache_fill",
        "trace",
        "metered",
        "overage",
        "store_usage",
    )

    def __init__(
        self,
        env: ExchangeEnv,
        client: ClientConnection,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        keep_alive: bool,
        upgrade: bool,
        chunked: bool,
    ) -> None:
        self.env = env
        self.client = client
        self.method = method
        self.url = url
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive and not upgrade  # after a refused upgrade the parser cannot go on
        self.upgrade = upgrade
        self.idempotent = method in IDEMPOTENT_METHODS  # until admission reads Idempotency-Key
        self.expect_continue = False  # the client waits for 100 Continue before its body
        self.request_id = b""
        # The client's address: the socket peer, or behind trusted proxies the one X-Forwarded-For
        # names (data_plane/http/realip.py). What hash_on: ip, the access log and IP rules use.
        trusted = client.trusted
        self.client_ip = client.peer_ip if trusted is None else trusted.client_ip(client.peer_ip, headers)
        self.customer_id = b""  # set by the auth stage when it knows the caller (hash_on: customer)
        self.customer: CustomerEntry | None = None
        self.limit_headers = b""  # RateLimit-* lines for the response (usage plans)
        self.response_extra = b""  # lines every answer carries once routed (a CORS policy's)
        self.route: CompiledRoute | None = None
        self.target: CompiledTarget | None = None  # the target this exchange counts as in flight on
        self.tried: tuple[CompiledTarget, ...] | None = None
        self.conn: UpstreamConnection | None = None
        self.up_out: list[bytes] = []
        self.up_buffered = 0
        self.head = b""
        self.head_pending = False  # up_out[0] is the request head, not sent yet
        # Framing is the parser's to know: body chunks of a pipelined request arrive (and are
        # re-framed for the upstream) before the exchange starts.
        self.body_chunked = chunked
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
        # response caching (data_plane/policies/cache.py): the request's key (None: the cache is not
        # used) and the response being collected for the store
        self.cache_key: bytes | None = None
        self.cache_fill: CacheFill | None = None
        self.trace: Trace | None = None  # a route with a tracing policy (data_plane/observe/tracing.py)
        # admitted for a known customer and not metered yet: metered once, when the exchange ends
        # (whichever way: finish, abort, client gone, upgrade, torn down), with the status it ended on
        self.metered = False
        self.overage = False  # admitted beyond its quota (an overage plan): metered as overage
        self.store_usage = ""  # the usage field the limit store counted this request under ("": none)

    # ------------------------------------------------------------------ request side

    def start(self) -> None:
        v = admit(
            self.env.config,
            self.method,
            self.url,
            self.headers,
            self.http_version,
            upgrade=self.upgrade,
            body_bytes=self.body_bytes,
            hosts=self.client.hosts,
            peer_ip=self.client.peer_ip,
            tls=self.client.tls,
            https_port=self.env.https_port,
            client_ip=self.client_ip,
        )
        self.request_id = v.request_id
        if v.body_expected:
            # A body is coming: the body timeout counts from now (TOLLGATE_BODY_TIMEOUT).
            now = self.body_seen_at = self.env.loop.time()
            self.client.watch(now + self.env.body_timeout)
        self.route = v.route
        self.trace = v.trace
        customer = v.customer
        if customer is not None:
            self.customer = customer
            self.customer_id = customer.id_bytes
        if isinstance(v, Refused):
            if v.close:
                self.keep_alive = False
            if v.empty:
                self._answer_empty(v.status, v.extra)
            else:
                self.fail(v.status, v.message, v.extra)
            return
        assert isinstance(v, Admitted)
        self.response_extra = v.response_extra
        self.headers = v.headers
        self.head = v.head
        self.idempotent = v.idempotent
        self.expect_continue = v.expect_continue
        route = v.route
        assert route is not None
        if route.total_timeout is not None:
            now = self.env.loop.time()
            self.deadline = now + route.total_timeout
            self.client.watch(now + min(route.total_timeout, route.read_timeout))
        if v.policy is not None:
            self._check_limits(v.policy)
            return
        if self._admitted():
            self.forward()

    # ------------------------------------------------------------------ usage plans

    def _check_limits(self, policy: LimitPolicy) -> None:
        """Throttle and quota: the memory store decides at once; Redis answers a future (no coroutine)."""
        customer = self.customer
        assert customer is not None
        adjustment = customer.adjustment(time.time()) if customer.extra else 0
        route: CompiledRoute = self.route  # type: ignore[assignment]
        d = self.env.limiter.check(
            customer.id, policy, adjustment, customer.cycle, route.api_id, route.id, customer.plan_id or ""
        )
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
        observer = self.env.observer
        if not d.allowed:
            observer.limited(d.limit)
            self._refuse(d)
            return
        observer.admitted += 1
        self.overage = d.overage
        self.store_usage = d.usage  # counted by the store itself: settled there at the end (_meter)
        self.limit_headers = rate_limit_headers(d)  # b"" when the API hides them
        if self._admitted():
            self.forward()

    def _admitted(self) -> bool:
        """Mark an admitted request of a known customer for metering (:meth:`_meter`, at its end); tell
        a client waiting on ``Expect: 100-continue`` to send its body; answer from the response cache
        when the route has one that holds the answer.  False: answered here, nothing to forward."""
        if self.expect_continue and not self.body_done:
            self.client_out.append(_CONTINUE)
            self.flush_client()
        route: CompiledRoute = self.route  # type: ignore[assignment]
        # a cache hit counts like any request: it passed the limiter (and counted for the quota)
        self.metered = self.customer is not None and self.env.metering is not None
        traffic = route.traffic
        if traffic is not None and traffic.cache is not None and not self.upgrade:
            return self._cache_lookup(traffic, traffic.cache, route)
        return True

    # ------------------------------------------------------------------ response cache

    def _cache_lookup(self, traffic: RoutePolicies, rule: CacheRule, route: CompiledRoute) -> bool:
        """Key the request; answer a hit (False), or let it go upstream (True) with the key kept
        for storing the response."""
        key = rule.key(self.method, self.head, self.headers, self.customer_id, route.auth is not None)
        if key is None:
            return True
        self.cache_key = key
        entry = rule.lookup(key, self.headers)
        if entry is None:
            return True
        self._answer_cached(traffic, entry, rule.age(entry))
        return False

    def _answer_cached(self, traffic: RoutePolicies, entry: CacheEntry, age: int) -> None:
        """A hit: the stored response with this request's lines (id, CORS, RateLimit-*, transform),
        ``Age`` and ``X-Cache: HIT``, answered like a gateway response (it waits for the end of the
        request being parsed, and decides keep-alive the same way)."""
        status = entry.status
        rewritten = self._response_policies(traffic, status, entry.headers)
        if rewritten is None:
            return  # a plugin's on_response failed: answered 500 instead
        headers = rewritten
        if not self._stop_for_error(status):
            return
        no_body = self.method == "HEAD" or status == 204 or status == 304
        head, framing = response_head(
            status,
            headers,
            request_id=self.request_id,
            extra=self.response_extra + self.limit_headers + b"age: %d\r\n" % age + _X_CACHE_HIT,
            no_body=no_body,
            http11=self.http_version == "1.1",
            keep_alive=self.keep_alive,
        )
        body = b"" if no_body else entry.body
        if framing == BODY_CHUNKED and body:
            body = b"%x\r\n%s\r\n%s" % (len(body), body, _LAST_CHUNK)  # a transform removed the length
        elif framing == BODY_CHUNKED:
            body = _LAST_CHUNK
        elif framing == BODY_TO_CLOSE:
            self.keep_alive = False
        self.error = head + body  # the prebuilt answer (the access log counts its body)
        self._error_ready()

    def _refuse(self, d: Decision) -> None:
        """429 (throttle/quota) or 503 (store unavailable, fail-closed), sent like :meth:`fail`."""
        if not self._stop_for_error(503 if d.limit == UNAVAILABLE else 429):
            return
        self.error = limit_response(d, self.request_id, keep_alive=self.keep_alive, extra=self.response_extra)
        self._error_ready()

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
        trace = self.trace
        if trace is None:
            self.up_out.insert(0, self.head + target.head_end)
        else:  # this attempt's traceparent (its client span is the upstream's parent)
            self.up_out.insert(0, self.head + trace.attempt(target.host, target.port) + target.head_end)
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
        now = self.seen_at = self.env.loop.time()
        self.client.watch(now + self.route.read_timeout)  # type: ignore[union-attr]
        if self.up_buffered > BODY_BUFFER_HIGH_WATER:
            self.client.resume_reading(flow.BODY_BUFFER)
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
            self.up_out += (b"%x\r\n" % len(chunk), chunk, CRLF)
        else:
            self.up_out.append(chunk)
        if self.conn is None:
            self.up_buffered += len(chunk)
            if self.up_buffered > BODY_BUFFER_HIGH_WATER:
                self.client.pause_reading(flow.BODY_BUFFER)

    def request_complete(self) -> None:
        self.body_done = True
        if self.error is not None:
            if self.client.is_active(self):
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
        if self.trace is not None:
            self.trace.attempt_failed(0, message)
        upstream = route.upstream
        target = self.target
        if target is not None and upstream.passive is not None and (self.body_done or not request_sent):
            # (A connection lost while the client still owes body bytes may be the upstream giving
            # up on a stalled client: not held against the target.)
            target.state.report_failure(upstream.passive, upstream.states)
        if self.may_retry(sent=request_sent):
            self._retry(exclude=True)
            return
        self.fail(status, message)

    def may_retry(self, *, sent: bool, stale: bool = False) -> bool:
        """The one retry rule (module docstring).  ``sent``: the request head may have reached the
        target (it may have acted on it); ``stale``: a pooled connection the upstream closed as it
        was reused (a resend outside the retry budget, which says nothing about the target)."""
        if self.body_started or (sent and not self.idempotent):
            return False  # body bytes are streamed, not kept for a replay; a repeat must be safe
        if stale:
            return self.stale_retries < _STALE_RESENDS
        return self.attempts <= self.route.upstream.retries and not self._expired()  # type: ignore[union-attr]

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
        return self.deadline != 0.0 and self.env.loop.time() >= self.deadline

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
                self.client_out.append(errors.status_line(status) + CRLF)
            return
        upstream = self.route.upstream  # type: ignore[union-attr]
        if upstream.passive is not None and self.target is not None:
            state = self.target.state
            if status in upstream.passive_statuses:
                state.report_failure(upstream.passive, upstream.states)
            else:
                state.failures = 0
        if status in _RETRY_STATUSES and self.body_done and self.may_retry(sent=True):
            # (a response that came while the client still sends its body is the answer)
            conn = self.conn
            self.conn = None
            if conn is not None:
                conn.close()  # its response is discarded; the parser feeding it stops at sink=None
            if self.trace is not None:
                self.trace.attempt_failed(status, "")
            self._retry(exclude=True)
            return
        if status == 101 and not self.upgrade:
            self.on_upstream_bad_response(self.conn)  # type: ignore[arg-type]
            return
        extra = self.limit_headers
        traffic = self.route.traffic  # type: ignore[union-attr]
        if traffic is not None:
            rule = traffic.cache
            if rule is not None:
                if self.cache_key is not None and self.method == "GET":
                    self.cache_fill = rule.fill(status, headers)  # the upstream's fields, before the transform
                if self.method == "GET" or self.method == "HEAD":
                    extra += _X_CACHE_MISS
            rewritten = self._response_policies(traffic, status, headers)
            if rewritten is None:
                self.cache_fill = None
                return  # a plugin failed: answered 500 instead (the upstream connection is closed)
            headers = rewritten
            extra = self.response_extra + extra
        self.response_started = True
        self.status = status
        if status != 101 and self.client.last_response():
            self.keep_alive = False  # draining: the last request begun on this connection
        head, framing = response_head(
            status,
            headers,
            request_id=self.request_id,
            extra=extra,
            no_body=self.method == "HEAD" or status == 204 or status == 304,
            http11=self.http_version == "1.1",
            keep_alive=self.keep_alive,
        )
        if framing == BODY_CHUNKED:
            self.response_chunked = True
        elif framing == BODY_TO_CLOSE:
            self.keep_alive = False  # HTTP/1.0 client: the body ends when we close
        self.client_out.append(head)

    def _response_policies(
        self, traffic: RoutePolicies, status: int, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]] | None:
        """The upstream's response fields as the route's policies rewrite them (None: a plugin's
        ``on_response`` failed, and the request is answered 500 instead, before any byte of the
        response went to the client)."""
        if traffic.cors is not None:
            headers = strip_upstream_cors(headers)  # the policy's Access-Control-* lines are the answer
        if traffic.response is not None:
            headers = traffic.response.headers.apply(headers, Vars(self.customer_id, self.request_id, self.client_ip))
        plugins = traffic.plugins
        if plugins is not None and plugins.response:
            view = ResponseView(status, headers)
            failed = plugins.run_response(view, self.request_id)
            if failed is not None:
                self.fail(500, failed)  # (fail closes the upstream connection: its body is not read)
                return None
            headers = response_fields(view, headers)
        return headers

    def on_response_body(self, chunk: bytes) -> None:
        self.activity += 1
        self.bytes_out += len(chunk)
        fill = self.cache_fill
        if fill is not None:
            self.route.traffic.cache.add(fill, chunk)  # type: ignore[union-attr]
        if self.response_chunked:
            self.client_out += (b"%x\r\n" % len(chunk), chunk, CRLF)
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
        fill = self.cache_fill
        if fill is not None:
            self.cache_fill = None
            self.route.traffic.cache.put(self.cache_key, fill, self.headers)  # type: ignore[union-attr,arg-type]
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
        self._ended()  # the request ends here; the tunnel's lifetime is not timed (nor metered)
        up = conn.transport
        client_transport = client.open_tunnel(up) if up is not None else None
        if client_transport is None:
            conn.close()
            return
        conn.tunnel = client_transport
        # Idle tunnel: closed after the route's read timeout without a byte either way (nginx's
        # proxy_read_timeout). The data_received of each side only bumps its own counter.
        self.seen_activity = client.tunnel_moves + conn.tunnel_moves
        now = self.seen_at = self.env.loop.time()
        client.watch(now + self.route.read_timeout)  # type: ignore[union-attr]
        if rest:
            client_transport.write(rest)

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
        if not got_response_bytes and conn.reused and self.may_retry(sent=True, stale=True):
            # A pooled keep-alive connection closed by the upstream just as we reused it. The head
            # (and a Content-Length: 0 body) was written, so a POST may have been processed: only an
            # idempotent request is sent again (the pool's keepalive_timeout makes this race rare).
            self.stale_retries += 1
            self.attempts -= 1
            if self.trace is not None:
                self.trace.attempt_failed(0, "stale pooled connection")
            self._retry(exclude=False)
            return
        self._upstream_failed(502, errors.UPSTREAM_FAILED, request_sent=True)

    def on_upstream_bad_response(self, conn: UpstreamConnection) -> None:
        self.conn = None
        if self.trace is not None:
            self.trace.attempt_failed(self.status if self.response_started else 0, errors.BAD_UPSTREAM_RESPONSE)
        if self.response_started:
            self.flush_client()
            self._abort()
        else:
            self.fail(502, errors.BAD_UPSTREAM_RESPONSE)

    def upstream_pause_writing(self) -> None:
        self.client.pause_reading(flow.UPSTREAM_FULL)

    def upstream_resume_writing(self) -> None:
        self.client.resume_reading(flow.UPSTREAM_FULL)

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
            self.client.write(out)
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
        timeout = self.env.body_timeout
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
        if self.trace is not None:
            self.trace.attempt_failed(self.status if self.response_started else 0, errors.UPSTREAM_TIMEOUT)
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
            extra_headers=extra_headers + self.response_extra,
        )
        self._error_ready()

    def _answer_empty(self, status: int, extra_headers: bytes) -> None:
        """A gateway answer without a body (a CORS preflight), sent like :meth:`fail`."""
        if not self._stop_for_error(status):
            return
        self.error = errors.empty_response(
            status, self.request_id, keep_alive=self.keep_alive, extra_headers=extra_headers
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
            self.client.resume_reading(flow.BODY_BUFFER)
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
        self._ended()
        self.client.done(self, self.keep_alive)

    def _abort(self) -> None:
        if not self.finished:
            self._ended()  # truncated response: logged (and metered) with the status it started with
        self.finished = True
        self._leave()
        self.client.abort(self)

    def _ended(self) -> None:
        """The request is over: tell the observer, and meter it if it was admitted."""
        self.env.observer.done(self)
        if self.metered:
            self._meter()
        elif self.attempts == 0 and self.status >= 400:
            # answered by the gateway itself (authentication, limits, body size, ...): counted per API
            route = self.route
            metering = self.env.metering
            if route is not None and metering is not None:
                metering.refused(route.api_id, self.status)

    def _meter(self) -> None:
        """Count this admitted request once, with the status class it ended on."""
        self.metered = False
        customer = self.customer
        route = self.route
        metering = self.env.metering
        if customer is None or route is None:
            return
        if self.store_usage:  # the Redis script counted it at admission (as 5xx): its final status class
            self.env.limiter.settle(customer.id, self.store_usage, self.status, self.overage)
        elif metering is not None:
            metering.record(customer.id, route.api_id, route.id, customer.plan_id or "", self.status, self.overage)

    def abandon(self, status: int = 0) -> None:
        """The client connection is being torn down; release what this exchange holds.  ``status``:
        what the client is answered instead (its connection refused the rest of the request)."""
        if self.metered:
            # Admitted, then cut short without an ending of its own: still one admitted request.
            if status and not self.finished:
                self.status = status
            self._meter()
        self.finished = True
        self._leave()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()

    def client_gone(self) -> None:
        if not self.finished:
            self.status = 499  # nginx's "client closed request": the client left before the end
            self._ended()
        self.abandon()
