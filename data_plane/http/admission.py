"""Whether a parsed request may go upstream, and how: the admission pipeline.

:func:`admit` reads top to bottom, one step per block, and returns a verdict instead of acting:

1. **the head**: one pass over the fields (Host, X-Request-ID, framing, Expect, Idempotency-Key);
2. **Host** (RFC 9112 3.2): exactly one on HTTP/1.1, not empty, valid;
3. **path checks**: the absolute form routed by its authority, no fragment, the canonical path
   (:mod:`data_plane.http.canonical`) that routing, authentication and the upstream all see;
4. **expectations**: ``100-continue`` is the gateway's to answer, anything else is 417;
5. **route**: host + method + path (404, 405 with ``Allow``; an encoded slash only when it routes
   the same decoded); a CORS preflight is answered here for the route of the method it asks for
   (:mod:`data_plane.policies.cors`); an ``https_only`` API's route on a plain connection: 308 to
   https for GET/HEAD, 426 for the rest;
6. **traffic policies before auth** (the route's :class:`~data_plane.policies.RoutePolicies`, None
   for most routes): the trace (``traceparent`` / ``tracestate`` read and taken out of the fields
   forwarded, :mod:`data_plane.observe.tracing`), IP rules on the trusted client address (403), the
   CORS lines every answer from here on carries;
7. **authenticate** (the route's API key, JWT or client-certificate authenticator): the credential
   stripped, the identity lines to add, the customer;
8. **body limits**: a declared length over the route's ``max_body_bytes`` is 413 before any byte;
9. **plan policy**: the customer's plan's :class:`~data_plane.limits.policy.LimitPolicy` for this
   route and method (one or two dict lookups);
10. **request transform**: headers, path and query rewritten as the route's policy says;
11. **plugins** (``on_request`` of the route's Python plugins, :mod:`data_plane.policies.plugins`):
    a refusal, or header lines for the upstream and the answer; then the upstream head is built.

The verdict is :class:`Admitted` (the upstream request head, built once; the policy the limiter
must still check, which may answer later when the store is Redis) or :class:`Refused` (status,
message, whether the connection must close).  Both carry what the exchange reports either way
(request id, route, customer).  Nothing here touches a socket, a timer or the exchange: the
pipeline is unit-tested with plain values (``tests/unit/data_plane/http/test_admission.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from data_plane.auth import CustomerEntry, Denied
from data_plane.http import responses
from data_plane.http.canonical import canonical_host, canonical_path, plain_path, same_authority, split_authority
from data_plane.http.headers import new_request_id, request_head, valid_request_id
from data_plane.limits.policy import LimitPolicy
from data_plane.observe.tracing import Trace
from data_plane.policies.plugins import lines as plugin_lines
from data_plane.policies.plugins import response_lines, upstream_fields
from data_plane.policies.transform import Vars
from data_plane.router import NotFound
from data_plane.tls.clientcert import TlsPeer
from tollgate.plugins import RequestView

if TYPE_CHECKING:
    from data_plane.compiler import CompiledConfig, CompiledRoute

IDEMPOTENT_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


class HostCache:
    """The routing form of the last Host value seen on one client connection (None: invalid):
    the next request of a connection nearly always names the same host."""

    __slots__ = ("raw", "host")

    def __init__(self) -> None:
        self.raw: bytes | None = None
        self.host: str | None = None

    def route_host(self, raw: bytes) -> str | None:
        if raw == self.raw:
            return self.host
        host = canonical_host(raw)
        self.raw = raw
        self.host = host
        return host


class Verdict:
    """What every verdict carries: the request id (the client's when safe to echo, else ours),
    whether a request body follows the head (the body timeout starts), and, as far as admission
    got, the route and the customer (they label metrics and the access log), and the trace of a
    route with a tracing policy (None otherwise)."""

    __slots__ = ("request_id", "body_expected", "route", "customer", "trace")

    def __init__(
        self,
        request_id: bytes,
        body_expected: bool,
        route: CompiledRoute | None,
        customer: CustomerEntry | None,
        trace: Trace | None = None,
    ) -> None:
        self.request_id = request_id
        self.body_expected = body_expected
        self.route = route
        self.customer = customer
        self.trace = trace


class Refused(Verdict):
    """Answer ``status`` with ``message`` (``extra``: header lines, e.g. ``Allow``); ``close``: the
    connection cannot carry another request after this one; ``empty``: an answer without a body
    (a CORS preflight's 204), ``message`` unused."""

    __slots__ = ("status", "message", "extra", "close", "empty")

    def __init__(
        self,
        request_id: bytes,
        body_expected: bool,
        status: int,
        message: str,
        *,
        close: bool = False,
        extra: bytes = b"",
        route: CompiledRoute | None = None,
        customer: CustomerEntry | None = None,
        empty: bool = False,
        trace: Trace | None = None,
    ) -> None:
        super().__init__(request_id, body_expected, route, customer, trace)
        self.status = status
        self.message = message
        self.extra = extra
        self.close = close
        self.empty = empty


class Admitted(Verdict):
    """Forward: ``head`` is the upstream request head without its Host line and final blank line
    (the target's ``head_end`` completes it); ``headers`` are the client's fields as forwarded
    (credential stripped: consistent hashing on a header or cookie reads them); ``policy`` the
    plan policy still to check (None: no limits); ``response_extra``: lines every answer to this
    request carries (a CORS policy's)."""

    __slots__ = ("head", "headers", "policy", "idempotent", "expect_continue", "response_extra")

    def __init__(
        self,
        request_id: bytes,
        body_expected: bool,
        route: CompiledRoute,
        customer: CustomerEntry | None,
        head: bytes,
        headers: list[tuple[bytes, bytes]],
        policy: LimitPolicy | None,
        idempotent: bool,
        expect_continue: bool,
        response_extra: bytes = b"",
        trace: Trace | None = None,
    ) -> None:
        super().__init__(request_id, body_expected, route, customer, trace)
        self.head = head
        self.headers = headers
        self.policy = policy
        self.idempotent = idempotent
        self.expect_continue = expect_continue
        self.response_extra = response_extra


def admit(
    config: CompiledConfig | None,
    method: str,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    http_version: str,
    *,
    upgrade: bool,
    body_bytes: int,
    hosts: HostCache,
    peer_ip: bytes,
    tls: TlsPeer | None = None,
    https_port: int = 443,
    client_ip: bytes = b"",
) -> Admitted | Refused:
    """The verdict on one request (``body_bytes``: body already received, for a pipelined request
    admitted after its body arrived; ``tls``: the connection's TLS side, None on plain HTTP;
    ``https_port``: where a redirect to https points; ``client_ip``: the trusted client address,
    the peer's when empty)."""
    # 1. the head, in one pass
    host = b""
    n_hosts = 0
    rid = b""
    content_length = None
    expect: bytes | None = None
    chunked = False
    idempotent = method in IDEMPOTENT_METHODS
    for name, value in headers:
        if name == b"host":
            host = value
            n_hosts += 1
        elif name == b"x-request-id":
            rid = value
        elif name == b"content-length":
            content_length = value
        elif name == b"transfer-encoding":
            chunked = True  # (the parser let through only a single, final "chunked")
        elif name == b"expect":
            expect = value
        elif name == b"idempotency-key" and value:
            idempotent = True  # the client made a non-idempotent method safe to repeat
    request_id = rid if rid and valid_request_id(rid) else new_request_id()
    body_expected = chunked or content_length is not None and content_length != b"0"

    # 2. Host
    if n_hosts != 1 and (n_hosts or http_version == "1.1"):
        # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host and to
        # any request with more than one Host field.
        return _malformed(request_id, body_expected)
    if n_hosts:
        host = host.strip(b" \t")  # (llhttp keeps trailing whitespace in a value)
        if not host:
            return _malformed(request_id, body_expected)  # an http(s) URI always has a host (nginx refuses it too)
    if content_length is not None and len(content_length) > 1 and content_length[0] == 0x30:
        # "010" is 10 (1*DIGIT), but a backend that reads it as octal frames 8: send it plain.
        fixed = b"%d" % int(content_length)
        headers = [(n, fixed if n == b"content-length" else v) for n, v in headers]

    # 3. path checks
    if url[:1] != b"/":
        # Absolute form (RFC 9112 3.2.2: a server MUST accept it): routed by its authority,
        # which must agree with Host. The asterisk form and anything else are not ours.
        parts = split_authority(url)
        if parts is None or (n_hosts and not same_authority(host, parts[1], parts[0])):
            return _malformed(request_id, body_expected)
        host = parts[1]
        url = parts[2]
    route_host = hosts.route_host(host)
    if route_host is None:
        return _malformed(request_id, body_expected)  # an invalid Host
    q = url.find(b"?")
    if q >= 0 and "#" in url[q:].decode("latin-1"):
        # A fragment is never part of a request target (in the path, canonical_path refuses it;
        # the test runs on str: compiled bytes "in" costs ~2,000 instructions).
        return _malformed(request_id, body_expected)
    raw_path = url if q < 0 else url[:q]
    canon = raw_path
    plain = plain_path(raw_path)
    if plain is not None:
        path = plain
    else:
        made = canonical_path(raw_path)
        if made is None:
            return _malformed(request_id, body_expected)  # no safe canonical form (data_plane/http/canonical.py)
        canon = made
        url = canon + url[q:] if q >= 0 else canon
        q = len(canon) if q >= 0 else -1
        path = canon.decode("ascii")

    # 4. expectations (HTTP/1.0 ones are ignored)
    expect_continue = False
    if expect is not None and http_version == "1.1":
        if expect.strip().lower() != b"100-continue":
            return Refused(request_id, body_expected, 417, responses.EXPECTATION_FAILED, close=True)  # RFC 9110 10.1.1
        # Answered by the gateway once the request is admitted (nginx, Envoy): a refusal comes
        # before the client sends its body, and the upstream is not asked again.
        expect_continue = True
        headers = [h for h in headers if h[0] != b"expect"]

    # 5. route
    if config is None:
        return Refused(request_id, body_expected, 503, responses.NOT_CONFIGURED)
    found = config.router.match(route_host, method, path)
    if method == "OPTIONS" and config.cors:
        answered = _preflight(config, route_host, path, headers, client_ip or peer_ip, request_id, body_expected)
        if answered is not None:
            return answered
    if canon is not raw_path and b"%2F" in canon and not _slash_agrees(config, route_host, method, canon, found):
        return _malformed(request_id, body_expected)  # an encoded slash that would route elsewhere once decoded
    if isinstance(found, NotFound):
        if found.allow:
            allow = b"allow: " + ", ".join(found.allow).encode() + b"\r\n"
            return Refused(request_id, body_expected, 405, responses.METHOD_NOT_ALLOWED, extra=allow)
        return Refused(request_id, body_expected, 404, responses.NO_ROUTE)
    route, rel_path = found
    if route.https_only and tls is None:
        return _https_only(request_id, body_expected, method, route_host, url, https_port, route)

    # 6. traffic policies before auth
    traffic = route.traffic
    cors_lines = b""
    trace: Trace | None = None
    if traffic is not None:
        if traffic.tracing is not None:
            trace = traffic.tracing.start(headers)  # refused requests are traced too
            if trace.headers is not None:  # the client's traceparent / tracestate taken out
                headers = trace.headers
        if traffic.ip_rules is not None and not traffic.ip_rules.allows(client_ip or peer_ip):
            return Refused(request_id, body_expected, 403, responses.IP_FORBIDDEN, route=route, trace=trace)
        if traffic.cors is not None:
            cors_lines = traffic.cors.response_lines(_field(headers, b"origin"))

    # 7. authenticate
    inject = b""
    customer: CustomerEntry | None = None
    policy: LimitPolicy | None = None
    if route.auth is not None:
        res = route.auth.authenticate(headers, url, q, tls)
        if isinstance(res, Denied):
            return Refused(
                request_id,
                body_expected,
                res.status,
                res.message,
                extra=res.extra + cors_lines,
                route=route,
                trace=trace,
            )
        headers, url, inject, customer = res  # credential stripped; identity lines to add; who is calling

    # 8. body limits
    limit = route.max_body_bytes
    if limit is not None and (content_length is not None and int(content_length) > limit or body_bytes > limit):
        return Refused(
            request_id,
            body_expected,
            413,
            responses.BODY_TOO_LARGE,
            close=True,
            route=route,
            customer=customer,
            extra=cors_lines,
            trace=trace,
        )

    # 9. plan policy: a per-route override for this method, else the plan's policy
    if customer is not None:
        plan_id = customer.plan_id
        if plan_id is not None:
            by_method = route.method_policies
            policy = by_method.get((plan_id, method)) if by_method else None
            if policy is None:
                policy = route.policies.get(plan_id)

    if route.strip_base_path:
        upstream_path = rel_path.encode("ascii") + url[q:] if q >= 0 else rel_path.encode("ascii")
    else:
        upstream_path = url  # the canonical path and the query auth left

    # 10. request transform
    if traffic is not None and traffic.request is not None:
        rt = traffic.request
        env = Vars(customer.id_bytes if customer is not None else b"", request_id, client_ip or peer_ip)
        if rt.headers is not None:
            headers = rt.headers.apply(headers, env)
        if rt.rewrites_target:
            upstream_path = rt.target(upstream_path, env)

    # 11. plugins' on_request (data_plane/policies/plugins.py): a refusal, or lines for the upstream and the answer
    if traffic is not None and traffic.plugins is not None and traffic.plugins.request:
        view = RequestView(
            method,
            path,
            url[q + 1 :] if q >= 0 else b"",
            headers,
            client_ip or peer_ip,
            customer.id if customer is not None else None,
            customer.plan_id if customer is not None else None,
            route.id,
            route.api_name,
            request_id,
            int(content_length) if content_length is not None else None,
        )
        refusal = traffic.plugins.run_request(view)
        if refusal is not None:
            extra = plugin_lines(refusal.headers) + response_lines(view) + cors_lines
            return Refused(
                request_id,
                body_expected,
                refusal.status,
                refusal.message,
                extra=extra,
                route=route,
                customer=customer,
                trace=trace,
            )
        headers = upstream_fields(view, headers)
        cors_lines += response_lines(view)
    head = request_head(
        method,
        upstream_path,
        headers,
        peer_ip=peer_ip,
        host=host,
        request_id=request_id,
        inject=inject,
        upgrade=upgrade,
        chunked=chunked,
        https=tls is not None,
    )
    return Admitted(
        request_id,
        body_expected,
        route,
        customer,
        head,
        headers,
        policy,
        idempotent,
        expect_continue,
        cors_lines,
        trace,
    )


def _field(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None


def _preflight(
    config: CompiledConfig,
    host: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    client_ip: bytes,
    request_id: bytes,
    body_expected: bool,
) -> Refused | None:
    """A CORS preflight for a route with a CORS policy, answered by the gateway (None: not one,
    and the OPTIONS request is routed like any other). The route is the one of the method the
    browser asks about; its IP rules still apply."""
    origin = _field(headers, b"origin")
    wanted = _field(headers, b"access-control-request-method")
    if origin is None or wanted is None:
        return None
    found = config.router.match(host, wanted.strip().decode("latin-1").upper(), path)
    if isinstance(found, NotFound):
        return None
    route = found[0]
    traffic = route.traffic
    if traffic is None or traffic.cors is None:
        return None
    if traffic.ip_rules is not None and not traffic.ip_rules.allows(client_ip):
        return Refused(request_id, body_expected, 403, responses.IP_FORBIDDEN, route=route)
    lines = traffic.cors.preflight(origin, _field(headers, b"access-control-request-headers") or b"")
    if lines is None:
        return Refused(
            request_id, body_expected, 403, responses.CORS_ORIGIN_REFUSED, route=route, extra=b"vary: origin\r\n"
        )
    return Refused(request_id, body_expected, 204, "", extra=lines, route=route, empty=True)


def _https_only(
    request_id: bytes, body_expected: bool, method: str, host: str, url: bytes, port: int, route: CompiledRoute
) -> Refused:
    """A plain-HTTP request to an ``https_only`` API: GET and HEAD are sent to the same URL over
    https (308 keeps the method); anything else may carry a body already sent in clear, so it is
    refused (426, RFC 9110 15.5.22) rather than redirected and repeated."""
    if method == "GET" or method == "HEAD":
        authority = host if port == 443 else host + ":" + str(port)  # (an IPv6 literal keeps its brackets)
        location = b"location: https://" + authority.encode("ascii") + url + b"\r\n"
        return Refused(request_id, body_expected, 308, responses.HTTPS_REDIRECT, extra=location, route=route)
    upgrade = b"upgrade: TLS/1.2, HTTP/1.1\r\n"
    return Refused(request_id, body_expected, 426, responses.HTTPS_REQUIRED, extra=upgrade, route=route, close=True)


def _malformed(request_id: bytes, body_expected: bool) -> Refused:
    # whatever follows a malformed request on the connection cannot be trusted
    return Refused(request_id, body_expected, 400, responses.BAD_REQUEST, close=True)


def _slash_agrees(
    config: CompiledConfig, host: str, method: str, canon: bytes, found: tuple[CompiledRoute, str] | NotFound
) -> bool:
    """An encoded slash stays encoded (SDKs escape ``/`` in greedy path parameters), but only
    when the path routes to the same route with it decoded: a backend that decodes ``%2F``
    before routing must not be handed a path another route (or API) owns (``/zec%2Fr`` is
    the catch-all's as written and the keyed API's decoded: 400)."""
    decoded = canonical_path(canon.replace(b"%2F", b"/"))
    if decoded is None:
        return False
    other = config.router.match(host, method, decoded.decode("ascii"))
    if isinstance(found, NotFound) or isinstance(other, NotFound):
        return isinstance(found, NotFound) and isinstance(other, NotFound)
    return found[0] is other[0]
