"""API DTOs: ``XCreate`` (POST), ``XUpdate`` (PATCH, every field optional), ``XPublic`` (responses).

Path templates, base paths and methods are validated with the snapshot contract's own helpers, so
the admin API never accepts something a worker would refuse.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from data_plane.snapshot import (
    DEFAULT_KEEPALIVE_TIMEOUT,
    HTTP_METHODS,
    SnapshotError,
    normalize_base_path,
    split_template,
)

T = TypeVar("T")

Algorithm = Literal["round_robin", "least_request", "consistent_hash", "random"]
HashOn = Literal["ip", "header", "cookie", "customer"]
StatusCode = Annotated[int, Field(ge=100, le=599)]
_HASH_KEY_RE = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,200}$"  # an HTTP token: a header or cookie name
AuthMode = Literal["none", "api_key", "jwt"]
JwtAlgorithm = Literal["HS256", "RS256", "ES256"]
CustomerStatus = Literal["active", "suspended"]
Role = Literal["admin", "viewer"]
HeaderName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]
QueryName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._~-]+$")]
ClaimName = Annotated[str, Field(min_length=1, max_length=100)]
# Imported keys: printable, header- and URL-safe characters only (they travel in a header or a query).
ImportedKey = Annotated[str, Field(min_length=20, max_length=128, pattern=r"^[A-Za-z0-9._~+/=-]+$")]
Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\- ]*$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Weight = Annotated[int, Field(ge=0, le=1000)]
Timeout = Annotated[float, Field(gt=0, le=3600)]
KeepaliveTimeout = Annotated[
    float,
    Field(
        gt=0,
        le=3600,
        description="seconds a pooled connection to a target may stay idle and still be reused; keep it "
        "below the target server's own keep-alive timeout (Node.js, uvicorn, Apache: 5 s)",
    ),
]
Retries = Annotated[int, Field(ge=0, le=10)]
BodyLimit = Annotated[int, Field(ge=0, le=2**53)]

# A hostname or IP literal, optionally with a leading "*." wildcard label.  Lower-cased before checking.
_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*\.?$")
_TARGET_HOST_RE = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")


def _hosts(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    out: set[str] = set()
    for host in value:
        h = host.strip().lower()
        if len(h) > 253 or not _HOST_RE.match(h):
            raise ValueError(f"{host!r} is not a valid host name")
        out.add(h.rstrip("."))
    return sorted(out)


def _base_path(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_base_path(value)
    except SnapshotError as exc:
        raise ValueError(str(exc)) from None


def _jwks_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c in value for c in " \r\n\t"):
        raise ValueError("jwt_jwks_url must be an http(s) URL")
    return value


def _template(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        split_template(value)
    except SnapshotError as exc:
        raise ValueError(str(exc)) from None
    return value


def _methods(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    upper = {m.strip().upper() for m in value}
    unknown = sorted(upper - set(HTTP_METHODS))
    if unknown:
        raise ValueError(f"unknown HTTP method(s): {', '.join(unknown)}")
    return [m for m in HTTP_METHODS if m in upper]  # canonical order: identical sets hash identically


def _target_host(value: str | None) -> str | None:
    if value is None:
        return None
    if not _TARGET_HOST_RE.match(value):
        raise ValueError(f"{value!r} is not a valid host name or IP address")
    return value.lower()


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# ---------------------------------------------------------------------------- upstreams


class HealthCheckIn(_In):
    """Active probing (every worker probes every target)."""

    path: str = Field(default="/", max_length=1024, pattern=r"^/[^\s\x00]*$")
    method: Literal["GET", "HEAD", "OPTIONS"] = "GET"
    interval: Annotated[float, Field(ge=0.05, le=3600)] = 5.0
    timeout: Annotated[float, Field(gt=0, le=600)] = 2.0
    expected_statuses: list[StatusCode] = Field(default_factory=list, max_length=100)  # empty: 2xx/3xx
    healthy_threshold: Annotated[int, Field(ge=1, le=100)] = 2
    unhealthy_threshold: Annotated[int, Field(ge=1, le=100)] = 3


class PassiveIn(_In):
    """Outlier detection from real traffic."""

    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    statuses: list[StatusCode] = Field(default_factory=lambda: [500, 502, 503, 504], max_length=100)
    base_ejection_time: Annotated[float, Field(gt=0, le=86400)] = 30.0
    max_ejection_time: Annotated[float, Field(gt=0, le=86400)] = 300.0
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] = 50

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> PassiveIn:
        if self.max_ejection_time < self.base_ejection_time:
            raise ValueError("max_ejection_time must be >= base_ejection_time")
        return self


class UpstreamCreate(_In):
    name: Name
    algorithm: Algorithm = "round_robin"
    connect_timeout: Timeout = 5.0
    read_timeout: Timeout = 60.0
    total_timeout: Timeout | None = None
    retries: Retries = 0
    hash_on: HashOn = "ip"
    hash_key: str = Field(default="", pattern=r"^$|" + _HASH_KEY_RE)
    health_check: HealthCheckIn | None = None
    passive: PassiveIn | None = None
    panic: bool = False
    max_connections: Annotated[int, Field(ge=0, le=100000)] = 0
    keepalive_timeout: KeepaliveTimeout = DEFAULT_KEEPALIVE_TIMEOUT


class UpstreamUpdate(_In):
    name: Name | None = None
    algorithm: Algorithm | None = None
    connect_timeout: Timeout | None = None
    read_timeout: Timeout | None = None
    total_timeout: Timeout | None = None  # explicit null: no total timeout
    retries: Retries | None = None
    hash_on: HashOn | None = None
    hash_key: str | None = Field(default=None, pattern=r"^$|" + _HASH_KEY_RE)
    health_check: HealthCheckIn | None = None  # explicit null: no active checks
    passive: PassiveIn | None = None  # explicit null: no outlier detection
    panic: bool | None = None
    max_connections: Annotated[int, Field(ge=0, le=100000)] | None = None
    keepalive_timeout: KeepaliveTimeout | None = None


class UpstreamPublic(_Out):
    id: str
    name: str
    algorithm: str
    connect_timeout: float
    read_timeout: float
    total_timeout: float | None
    retries: int
    hash_on: str
    hash_key: str
    health_check: HealthCheckIn | None
    passive: PassiveIn | None
    panic: bool
    max_connections: int
    keepalive_timeout: float
    created_at: datetime
    updated_at: datetime


class TargetHealth(BaseModel):
    healthy: bool
    ejected_until: float | None = None
    in_flight: int = 0


class TargetHealthPublic(BaseModel):
    id: str
    host: str
    port: int
    weight: int
    nodes: dict[str, TargetHealth]  # node id -> that worker's view


class UpstreamHealthPublic(BaseModel):
    upstream_id: str
    targets: list[TargetHealthPublic]


# ---------------------------------------------------------------------------- targets


class TargetCreate(_In):
    host: str
    port: Port
    weight: Weight = 100

    _check_host = field_validator("host")(_target_host)


class TargetUpdate(_In):
    host: str | None = None
    port: Port | None = None
    weight: Weight | None = None

    _check_host = field_validator("host")(_target_host)


class TargetPublic(_Out):
    id: str
    upstream_id: str
    host: str
    port: int
    weight: int
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------------------- apis


class ApiCreate(_In):
    name: Name
    hosts: list[str] = Field(default_factory=list, max_length=100)
    base_path: str = "/"
    auth: AuthMode = "none"
    strip_base_path: bool = True
    max_body_bytes: BodyLimit | None = None
    key_header: HeaderName = "x-api-key"
    key_query: QueryName | None = None
    strip_credential: bool = True
    jwt_algorithms: list[JwtAlgorithm] = Field(default_factory=list, max_length=3)
    jwt_secret: str | None = Field(default=None, min_length=32, max_length=4096)
    jwt_public_key: str | None = Field(default=None, max_length=16384)
    jwt_issuer: str | None = Field(default=None, max_length=1024)
    jwt_audience: str | None = Field(default=None, max_length=1024)
    jwt_customer_claim: ClaimName = "sub"
    # RS256 / ES256 keys picked by kid from this JWKS (fetched by the control plane), instead of jwt_public_key
    jwt_jwks_url: str | None = Field(default=None, max_length=2048)
    rate_limit_headers: bool = True  # usage plans: RateLimit-* / X-RateLimit-* on limited responses

    _check_hosts = field_validator("hosts")(_hosts)
    _check_jwks_url = field_validator("jwt_jwks_url")(_jwks_url)
    _check_base_path = field_validator("base_path")(_base_path)


class ApiUpdate(_In):
    name: Name | None = None
    hosts: list[str] | None = Field(default=None, max_length=100)
    base_path: str | None = None
    auth: AuthMode | None = None
    strip_base_path: bool | None = None
    max_body_bytes: BodyLimit | None = None  # explicit null clears the limit
    key_header: HeaderName | None = None
    key_query: QueryName | None = None  # explicit null: the key comes from key_header again
    strip_credential: bool | None = None
    jwt_algorithms: list[JwtAlgorithm] | None = Field(default=None, max_length=3)
    jwt_secret: str | None = Field(default=None, min_length=32, max_length=4096)
    jwt_public_key: str | None = Field(default=None, max_length=16384)
    jwt_issuer: str | None = Field(default=None, max_length=1024)
    jwt_audience: str | None = Field(default=None, max_length=1024)
    jwt_customer_claim: ClaimName | None = None
    jwt_jwks_url: str | None = Field(default=None, max_length=2048)  # explicit null: back to jwt_public_key
    rate_limit_headers: bool | None = None

    _check_hosts = field_validator("hosts")(_hosts)
    _check_jwks_url = field_validator("jwt_jwks_url")(_jwks_url)
    _check_base_path = field_validator("base_path")(_base_path)


class JwksStatus(_Out):
    """How the control plane's last fetch of the API's JWKS went (no key material, no secrets)."""

    url: str  # the URL the keys came from (differs from jwt_jwks_url until the new URL is fetched)
    kids: list[str]  # the key ids in use
    fetched_at: datetime | None  # last successful fetch
    checked_at: datetime  # last attempt
    last_error: str | None  # of the last attempt; the previous keys stay in use


class ApiPublic(_Out):
    id: str
    name: str
    hosts: list[str]
    base_path: str
    auth: str
    strip_base_path: bool
    max_body_bytes: int | None
    key_header: str
    key_query: str | None
    strip_credential: bool
    jwt_algorithms: list[str]
    jwt_secret_set: bool  # the secret itself is never returned
    jwt_public_key: str | None
    jwt_issuer: str | None
    jwt_audience: str | None
    jwt_customer_claim: str
    jwt_jwks_url: str | None = None
    jwks: JwksStatus | None = None  # the last fetch of a JWKS URL (None: never fetched)
    rate_limit_headers: bool = True
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------------------- routes


class RouteCreate(_In):
    path: str = Field(max_length=2048)
    upstream_id: str = Field(min_length=1, max_length=36)
    methods: list[str] = Field(default_factory=list)
    connect_timeout: Timeout | None = None  # None: the upstream's
    read_timeout: Timeout | None = None
    total_timeout: Timeout | None = None

    _check_path = field_validator("path")(_template)
    _check_methods = field_validator("methods")(_methods)


class RouteUpdate(_In):
    path: str | None = Field(default=None, max_length=2048)
    upstream_id: str | None = Field(default=None, min_length=1, max_length=36)
    methods: list[str] | None = None
    connect_timeout: Timeout | None = None
    read_timeout: Timeout | None = None
    total_timeout: Timeout | None = None

    _check_path = field_validator("path")(_template)
    _check_methods = field_validator("methods")(_methods)


class RoutePublic(_Out):
    id: str
    api_id: str
    path: str
    upstream_id: str
    methods: list[str]
    connect_timeout: float | None = None
    read_timeout: float | None = None
    total_timeout: float | None = None
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------------------- config, nodes


class ConfigPublic(BaseModel):
    revision: int
    hash: str


class NodeStatusIn(BaseModel):
    """What a worker reports.  Unknown fields are ignored (newer workers may send more); long text
    is truncated rather than refused, because a status report should never bounce.  ``keys_used``
    maps key id -> last use (epoch seconds) since the previous report."""

    hostname: str = ""
    version: str = ""
    revision: int | None = Field(default=None, ge=0)
    hash: str | None = Field(default=None, max_length=64)
    last_error: str | None = None
    pid: int | None = Field(default=None, ge=0)
    targets: dict[Annotated[str, Field(max_length=64)], TargetHealth] | None = Field(default=None, max_length=10000)
    keys_used: dict[str, Annotated[int, Field(ge=0, le=253402300799)]] | None = Field(default=None, max_length=100_000)

    @field_validator("hostname", "version", "last_error", mode="after")
    @classmethod
    def _truncate(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = {"hostname": 255, "version": 64, "last_error": 4000}[info.field_name or ""]
        return value[:limit] if value is not None else None


class NodePublic(_Out):
    id: str
    hostname: str
    version: str
    pid: int | None
    revision: int | None
    hash: str | None
    last_error: str | None
    first_seen: datetime
    last_seen: datetime
    in_sync: bool
    stale: bool


# ---------------------------------------------------------------------------- OpenAPI import


class ImportDiff(BaseModel):
    api: dict[str, Any] = Field(description="changed API fields: {field: {old, new}}; openapi: {changed: [keys]}")
    added: list[dict[str, Any]] = Field(description="routes to create: path, methods, upstream_id, operation_id")
    changed: list[dict[str, Any]] = Field(description="routes to update, with the changed fields")
    removed: list[dict[str, Any]] = Field(description="routes the document no longer describes: id, path, methods")


class ImportResult(BaseModel):
    api: ApiPublic | None = Field(description="the API as written (null for a dry run of a new API)")
    created: bool
    changed: bool = Field(description="false: the document matches the API exactly; nothing was written")
    dry_run: bool
    diff: ImportDiff


class ErrorDetail(BaseModel):
    detail: str


# ---------------------------------------------------------------------------- customers and keys


class CustomerCreate(_In):
    name: Name
    email: Email | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: CustomerStatus = "active"
    api_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] = Field(default_factory=list, max_length=1000)


class CustomerUpdate(_In):
    name: Name | None = None
    email: Email | None = None  # explicit null clears it
    metadata: dict[str, Any] | None = None
    status: CustomerStatus | None = None
    api_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] | None = Field(default=None, max_length=1000)


class CustomerPublic(BaseModel):
    id: str
    name: str
    email: str | None
    metadata: dict[str, Any]
    status: str
    api_ids: list[str]
    plan_id: str | None = None  # set with PUT /v1/customers/{id}/plan
    created_at: datetime
    updated_at: datetime


class KeyCreate(_In):
    name: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None
    key: ImportedKey | None = None  # import an existing key value (migration); omitted: one is generated


class KeyRotate(_In):
    grace_seconds: int = Field(default=0, ge=0, le=30 * 86400)


class KeyPublic(BaseModel):
    id: str
    customer_id: str
    prefix: str
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    status: Literal["active", "revoked", "expired"]


class KeyIssued(KeyPublic):
    key: str  # shown in this response only; the control plane keeps sha256(key)


# ---------------------------------------------------------------------------- admin access


class AdminTokenCreate(_In):
    name: Name
    role: Role


class AdminTokenPublic(_Out):
    id: str
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class AdminTokenIssued(AdminTokenPublic):
    token: str  # shown in this response only


class AuditPublic(_Out):
    id: int
    at: datetime
    token_id: str | None
    token_name: str
    method: str
    path: str
    resource_id: str | None
