"""DTOs for APIs (with their auth settings and JWKS status) and their routes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from control_plane.schemas.common import InModel, Name, OutModel, Timeout, method_list, path_template
from control_plane.schemas.policies import Policies
from data_plane.snapshot import SnapshotError, normalize_base_path

AuthMode = Literal["none", "api_key", "jwt", "mtls"]


JwtAlgorithm = Literal["HS256", "RS256", "ES256"]


HeaderName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]


QueryName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._~-]+$")]


ClaimName = Annotated[str, Field(min_length=1, max_length=100)]


BodyLimit = Annotated[int, Field(ge=0, le=2**53)]


_CA_MAX = 262144  # a bundle of ~100 CA certificates


# A hostname or IP literal, optionally with a leading "*." wildcard label.  Lower-cased before checking.
_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*\.?$")


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


class ApiCreate(InModel):
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
    https_only: bool = False  # plain-HTTP requests: 308 to https (GET/HEAD), 426 otherwise
    # auth mtls: PEM bundle of the CA certificates that issue the clients' certificates
    mtls_ca_certificates: str | None = Field(default=None, max_length=_CA_MAX)
    policies: Policies | None = Field(
        default=None,
        description="traffic policies of every route (CORS, IP rules, transforms, caching, tracing, plugins)",
    )

    _check_hosts = field_validator("hosts")(_hosts)
    _check_jwks_url = field_validator("jwt_jwks_url")(_jwks_url)
    _check_base_path = field_validator("base_path")(_base_path)


class ApiUpdate(InModel):
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
    https_only: bool | None = None
    mtls_ca_certificates: str | None = Field(default=None, max_length=_CA_MAX)  # explicit null clears it
    policies: Policies | None = Field(default=None, description="replaces the API's policies; null removes them")

    _check_hosts = field_validator("hosts")(_hosts)
    _check_jwks_url = field_validator("jwt_jwks_url")(_jwks_url)
    _check_base_path = field_validator("base_path")(_base_path)


class JwksStatus(OutModel):
    """How the control plane's last fetch of the API's JWKS went (no key material, no secrets)."""

    url: str  # the URL the keys came from (differs from jwt_jwks_url until the new URL is fetched)
    kids: list[str]  # the key ids in use
    fetched_at: datetime | None  # last successful fetch
    checked_at: datetime  # last attempt
    last_error: str | None  # of the last attempt; the previous keys stay in use


class CachePurged(OutModel):
    """A cache purge: workers drop the API's cached responses when they apply ``revision``."""

    api_id: str
    cache_epoch: int  # the API's new cache epoch (part of every cache key)
    revision: int  # the config revision that carries it


class ApiPublic(OutModel):
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
    https_only: bool = False
    mtls_ca_certificates: str | None = None
    policies: dict[str, Any] | None = None
    cache_epoch: int = 0  # bumped by each cache purge
    created_at: datetime
    updated_at: datetime


class RouteCreate(InModel):
    path: str = Field(max_length=2048)
    upstream_id: str = Field(min_length=1, max_length=36)
    methods: list[str] = Field(default_factory=list)
    connect_timeout: Timeout | None = None  # None: the upstream's
    read_timeout: Timeout | None = None
    total_timeout: Timeout | None = None
    policies: Policies | None = Field(default=None, description="each member replaces the API's member of that name")

    _check_path = field_validator("path")(path_template)
    _check_methods = field_validator("methods")(method_list)


class RouteUpdate(InModel):
    path: str | None = Field(default=None, max_length=2048)
    upstream_id: str | None = Field(default=None, min_length=1, max_length=36)
    methods: list[str] | None = None
    connect_timeout: Timeout | None = None
    read_timeout: Timeout | None = None
    total_timeout: Timeout | None = None
    policies: Policies | None = Field(default=None, description="replaces the route's policies; null removes them")

    _check_path = field_validator("path")(path_template)
    _check_methods = field_validator("methods")(method_list)


class RoutePublic(OutModel):
    id: str
    api_id: str
    path: str
    upstream_id: str
    methods: list[str]
    connect_timeout: float | None = None
    read_timeout: float | None = None
    total_timeout: float | None = None
    policies: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
