"""The snapshot's types: frozen dataclasses, one per wire object, and the contract's constants.

Plain data: nothing here encodes, hashes, parses or validates.  The :class:`Snapshot` methods that do
(``content``, ``to_json``, ``from_json``, ``validate``, ...) are one-line delegations to
:mod:`~data_plane.snapshot.wire` and :mod:`~data_plane.snapshot.parse`, imported inside the method:
those modules build and read these classes, so importing them here at module level would be a cycle
(the package docstring says why the methods stay).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

# 1.1: balancing/health fields; 1.2: auth settings, customers, keys; 1.3: usage plans, customers' plan and
# quota adjustment, apis' rate_limit_headers; 1.4: auth_settings.jwt_jwks_url and jwt_jwks (fetched public keys);
# 1.5: upstreams' keepalive_timeout; 1.6: TLS (certificates, apis' https_only, auth "mtls" with its trusted CAs,
# customers' client-certificate identities, targets' scheme, upstreams' tls_verify / ca_certificates / sni /
# client_certificate_id); 1.7: traffic policies on apis and routes (data_plane/policies), apis' cache_epoch,
# plans' quota overage and hard_cap, customers' billing cycle; 1.8: customers' external_id
SCHEMA_VERSION = "1.8"
SUPPORTED_MAJOR = 1

ALGORITHMS = ("round_robin", "least_request", "consistent_hash", "random")
AUTH_MODES = ("none", "api_key", "jwt", "mtls")
TARGET_SCHEMES = ("http", "https")
HASH_ON = ("ip", "header", "cookie", "customer")
PROBE_METHODS = ("GET", "HEAD", "OPTIONS")
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")
JWK_TYPES = ("RSA", "EC")
CUSTOMER_STATUSES = ("active", "suspended")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
# 1.7: the members of a policies object (data_plane/policies); a route's member replaces its API's
POLICY_KINDS = ("cors", "ip_rules", "request_transform", "response_transform", "cache", "tracing", "plugins")

# Seconds a pooled upstream connection may stay idle before the worker closes it instead of reusing it.
# Below the idle timeouts of common HTTP servers (Node.js keepAliveTimeout, uvicorn, Apache: 5 s), so
# the gateway closes first and never sends a request on a connection its server is closing at that
# moment (the request would meet a reset, and a POST must not be sent again).  Servers with shorter
# ones (gunicorn's async workers: 2 s) need a lower keepalive_timeout on their upstream.
DEFAULT_KEEPALIVE_TIMEOUT = 4.0


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    host: str
    port: int
    weight: int = 100
    scheme: str = "http"  # 1.6: "https": the worker speaks TLS to this target (the upstream's tls_* fields)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active probing of every target, by every worker."""

    path: str = "/"
    method: str = "GET"
    interval: float = 5.0
    timeout: float = 2.0
    expected_statuses: tuple[int, ...] = ()  # empty: any 2xx or 3xx
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3


@dataclass(frozen=True, slots=True)
class Passive:
    """Outlier detection from real traffic: consecutive failures eject a target for a while."""

    consecutive_failures: int = 5
    statuses: tuple[int, ...] = (500, 502, 503, 504)
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 50


@dataclass(frozen=True, slots=True)
class Upstream:
    id: str
    name: str
    algorithm: str = "round_robin"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 0
    targets: tuple[Target, ...] = ()
    # 1.1 fields; each is left out of the hashed content while it has its default, so a 1.0
    # snapshot (e.g. a worker's cache file) keeps its hash.
    hash_on: str = "ip"
    hash_key: str = ""
    health_check: HealthCheck | None = None
    passive: Passive | None = None
    panic: bool = False
    total_timeout: float | None = None
    max_connections: int = 0  # per target per worker; 0 = unlimited
    # 1.5, left out of the hashed content while it has its default (older cache files keep their hash)
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    # 1.6, for targets with scheme "https" (each left out of the hashed content while it has its default):
    tls_verify: bool = True  # verify the target's certificate chain and name; False only for tests and labs
    ca_certificates: str | None = None  # PEM bundle trusted for the targets; None: the system's trust store
    sni: str | None = None  # server name sent and verified; None: the target's host
    client_certificate_id: str | None = None  # a Certificate shown to the targets (mTLS to the backend)


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    path: str  # template relative to the API base path, e.g. "/items/{id}" or "/{proxy+}"
    upstream_id: str
    methods: tuple[str, ...] = ()  # empty: any method
    connect_timeout: float | None = None  # None: the upstream's
    read_timeout: float | None = None
    total_timeout: float | None = None
    # 1.7: this route's traffic policies (JSON object, members POLICY_KINDS), each replacing the API's member
    policies: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Jwk:
    """A public key of an identity provider's JWKS (RFC 7517), as the control plane fetched it.

    Public members only (``n``/``e`` for RSA, ``crv``/``x``/``y`` for EC, base64url): the control plane
    never stores nor ships private key material.  ``alg``, when the JWKS names one, restricts the key
    to that algorithm.
    """

    kid: str
    kty: str  # "RSA" or "EC"
    alg: str | None = None
    n: str = ""
    e: str = ""
    crv: str = ""
    x: str = ""
    y: str = ""

    def to_dict(self) -> dict[str, str]:
        """The JWK object (what ``jwt.PyJWK`` takes); empty members left out."""
        doc = {"kid": self.kid, "kty": self.kty}
        for name in ("alg", "n", "e", "crv", "x", "y"):
            value = getattr(self, name)
            if value:
                doc[name] = value
        return doc


@dataclass(frozen=True, slots=True)
class ApiAuth:
    """How an API authenticates its callers (``Api.auth`` says which mode is on)."""

    key_header: str = "x-api-key"  # api_key: header carrying the key (lower case) ...
    key_query: str | None = None  # ... or, when set, this query parameter instead
    strip_credential: bool = True  # remove the key / Authorization header before forwarding
    jwt_algorithms: tuple[str, ...] = ()
    jwt_secret: str | None = None  # HS256 shared secret (config, so it travels with the snapshot)
    jwt_public_key: str | None = None  # PEM, RS256 / ES256
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_customer_claim: str = "sub"  # the claim holding the customer id
    # 1.4: RS256 / ES256 keys from the identity provider's JWKS (fetched by the control plane; the worker
    # picks the key by the token's "kid").  With a URL set, jwt_public_key is not used; no keys: every
    # RS256 / ES256 token is refused until a fetch succeeds.
    jwt_jwks_url: str | None = None
    jwt_jwks: tuple[Jwk, ...] = ()
    # 1.6: auth "mtls": PEM bundle of the CA certificates a client certificate must be issued by
    # (directly); the certificate maps to a customer by its fingerprint or subject (Customer.mtls_*)
    mtls_ca_certificates: str | None = None


@dataclass(frozen=True, slots=True)
class Api:
    id: str
    name: str
    base_path: str = "/"
    hosts: tuple[str, ...] = ()  # empty: any host
    auth: str = "none"
    strip_base_path: bool = True
    max_body_bytes: int | None = None
    routes: tuple[Route, ...] = ()
    auth_settings: ApiAuth = ApiAuth()
    rate_limit_headers: bool = True  # 1.3: RateLimit-* / X-RateLimit-* on responses of plan-limited calls
    https_only: bool = False  # 1.6: plain-HTTP requests get 308 to https (GET/HEAD) or 426 (other methods)
    # 1.7: traffic policies of every route of the API (JSON object, members POLICY_KINDS; data_plane/policies)
    policies: dict[str, Any] | None = field(default=None, hash=False)
    cache_epoch: int = 0  # 1.7: bumped by a cache purge: workers drop the API's cached responses


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    status: str = "active"
    api_ids: tuple[str, ...] = ()  # APIs granted directly (sorted)
    # 1.3: the usage plan (its APIs are granted too) and the extra quota for one period
    # [quota_extra_start, quota_extra_end) in epoch seconds; the worker applies it while now is inside.
    plan_id: str | None = None
    quota_extra: int = 0
    quota_extra_start: int = 0
    quota_extra_end: int = 0
    # 1.6: client certificates that authenticate as this customer on "mtls" APIs: SHA-256 fingerprints of
    # the DER certificate (64 lower-case hex digits) and subjects (RFC 4514, as cryptography's
    # Name.rfc4514_string() writes them); the fingerprint is looked up first
    mtls_fingerprints: tuple[str, ...] = ()
    mtls_subjects: tuple[str, ...] = ()
    # 1.7: the billing cycle (data_plane/limits/periods.py Cycle): quota periods start at this anchor's
    # wall-clock time in time_zone (IANA name; "" = UTC); 0 = the UTC calendar.  cycle_since: when the
    # anchor was set (the cycle containing it starts there).
    billing_anchor: int = 0
    time_zone: str = ""
    cycle_since: int = 0
    # 1.8: the customer's id in an identity provider ("" = none): a JWT's customer claim may hold it
    # instead of ``id`` (looked up second; the control plane keeps both unique across customers)
    external_id: str = ""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as the worker knows it: never the key itself, only its SHA-256."""

    id: str
    customer_id: str
    key_hash: str  # sha256(key) hex
    prefix: str  # non-secret start of the key, for logs and the X-Key-Prefix header
    expires_at: int | None = None  # epoch seconds; the worker compares it with its clock per request


# Usage plans (1.3): a plan carries an optional plan-wide throttle and quota and the APIs it grants, each
# with optional per-route (method + path template) throttle overrides.


@dataclass(frozen=True, slots=True)
class PlanThrottle:
    rate: float  # requests per second, fractional allowed
    burst: int


@dataclass(frozen=True, slots=True)
class PlanQuota:
    limit: int
    period: str  # DAY | WEEK | MONTH (UTC)
    # 1.7: overage "allow": requests beyond the limit are admitted (and metered as overage) up to
    # hard_cap requests in the period (None: no cap); False: refused with 429 at the limit
    overage: bool = False
    hard_cap: int | None = None


@dataclass(frozen=True, slots=True)
class PlanOverride:
    """A throttle for one route of one API (its own bucket, replacing the plan-wide one there)."""

    method: str
    path: str  # the route's path template, relative to the API base path
    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class PlanApi:
    api_id: str
    overrides: tuple[PlanOverride, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    throttle: PlanThrottle | None = None
    quota: PlanQuota | None = None
    apis: tuple[PlanApi, ...] = ()


@dataclass(frozen=True, slots=True)
class Certificate:
    """A TLS certificate with its private key (1.6): served to clients whose SNI matches ``snis``
    (exact names and ``*.example.com`` wildcards), or when ``default``, to clients whose name matches no
    certificate; also what an upstream may show its targets (``Upstream.client_certificate_id``).

    ``key`` is never the private key in clear: it is sealed for the workers with a key derived from
    the cluster token (:mod:`data_plane.tls.seal`), so neither the snapshot nor a worker's cache
    file holds it readable.
    """

    id: str
    cert: str  # PEM: the leaf first, then its intermediates
    key: str  # the sealed private key (data_plane.tls.seal.seal)
    snis: tuple[str, ...] = ()  # lower case
    default: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole configuration at one config revision (wire form and hash: :mod:`data_plane.snapshot.wire`)."""

    revision: int
    upstreams: tuple[Upstream, ...] = ()
    apis: tuple[Api, ...] = ()
    customers: tuple[Customer, ...] = ()
    # a tuple, or packed when parsed (snapshot/keytable.py KeyTable: sized, iterable, indexable)
    keys: Collection[ApiKey] = ()
    plans: tuple[Plan, ...] = ()
    certificates: tuple[Certificate, ...] = ()  # 1.6
    schema_version: str = SCHEMA_VERSION
    generated_at: str = ""
    hash: str = field(default="")

    # The wire form and parsing live in wire.py / parse.py; these delegate, importing when called
    # (wire and parse import this module).

    def content(self) -> dict[str, Any]:
        """The hashed part of the wire form (:func:`data_plane.snapshot.wire.content`)."""
        from data_plane.snapshot import wire

        return wire.content(self)

    def compute_hash(self) -> str:
        from data_plane.snapshot import wire

        return wire.compute_hash(self)

    def sealed(self) -> Snapshot:
        """This snapshot with its content hash filled in (what the control plane publishes)."""
        from data_plane.snapshot import wire

        return wire.sealed(self)

    def to_dict(self) -> dict[str, Any]:
        from data_plane.snapshot import wire

        return wire.to_dict(self)

    def to_json(self) -> bytes:
        from data_plane.snapshot import wire

        return wire.to_json(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Snapshot:
        """Parse and validate a wire-form snapshot; raises :class:`SnapshotError`."""
        from data_plane.snapshot import parse

        return parse.from_json(data)

    @classmethod
    def from_dict(cls, doc: Any) -> Snapshot:
        """Parse and validate a wire-form snapshot; raises :class:`SnapshotError`."""
        from data_plane.snapshot import parse

        return parse.from_dict(doc)

    def validate(self) -> None:
        """Cross-reference checks: unique ids, routes point at known upstreams."""
        from data_plane.snapshot import parse

        parse.validate(self)


# The auth settings of an API that sets none: left out of the wire form, shared by every parsed API without them.
DEFAULT_AUTH = ApiAuth()
