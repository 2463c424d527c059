"""DTOs for APIs (with their auth settings and JWKS status) and their routes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, field_validator

from control_plane.schemas.common import (
    InModel,
    Name,
    OutModel,
    Timeout,
    documented_pattern,
    method_list,
    not_null,
    path_template,
)
from control_plane.schemas.policies import Policies
from data_plane.snapshot import SnapshotError, normalize_base_path

AuthMode = Literal["none", "api_key", "jwt", "mtls"]


JwtAlgorithm = Literal["HS256", "RS256", "ES256"]


HeaderName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]


QueryName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._~-]+$")]


ClaimName = Annotated[str, Field(min_length=1, max_length=100)]


BodyLimit = Annotated[int, Field(ge=0, le=2**53)]


# What the validators check, as far as a JSON Schema pattern can say it (the rest stays in the validators).
_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+[^\s]*$"
PEM_CERTIFICATE = r"-----BEGIN CERTIFICATE-----"
_CA_MAX = 262144  # a bundle of ~100 CA certificates
# Patterns inside the type: a constraint on ``X | None`` would also be applied to the null.
JwksUrl = Annotated[str, documented_pattern(_URL_PATTERN)]
CaBundle = Annotated[str, documented_pattern(PEM_CERTIFICATE)]
TemplatePath = Annotated[str, documented_pattern(r"^/")]


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
    name: Name = Field(description="unique name of the API")
    hosts: list[str] = Field(
        description="host names (or *.wildcards) the API answers on; empty: any host",
        default_factory=list,
        max_length=100,
    )
    base_path: str = Field(default="/", description="path prefix the API's routes live under, e.g. /orders")
    auth: AuthMode = Field(
        default="none",
        description="how callers authenticate: none, api_key, jwt (bearer token) or mtls (client certificate)",
    )
    strip_base_path: StrictBool = Field(
        default=True, description="remove the base path before forwarding to the upstream"
    )
    max_body_bytes: BodyLimit | None = Field(
        default=None, description="largest request body accepted (413 above); null: the worker's default"
    )
    key_header: HeaderName = Field(
        default="x-api-key", description="auth api_key: the request header that carries the key"
    )
    key_query: QueryName | None = Field(
        default=None,
        description="auth api_key: a query parameter that carries the key instead of key_header; null: the header",
    )
    strip_credential: StrictBool = Field(
        default=True, description="remove the API key (header or query parameter) or the JWT before forwarding upstream"
    )
    jwt_algorithms: list[JwtAlgorithm] = Field(
        description="auth jwt: accepted signature algorithms (empty: the one the key implies)",
        default_factory=list,
        max_length=3,
    )
    jwt_secret: str | None = Field(
        description="auth jwt, HS256: the shared secret (write-only, at least 32 characters)",
        default=None,
        min_length=32,
        max_length=4096,
    )
    jwt_public_key: str | None = Field(
        description="auth jwt, RS256/ES256: PEM public key that verifies signatures", default=None, max_length=16384
    )
    jwt_issuer: str | None = Field(
        description="auth jwt: required iss claim; null: not checked", default=None, max_length=1024
    )
    jwt_audience: str | None = Field(
        description="auth jwt: required aud claim; null: not checked", default=None, max_length=1024
    )
    jwt_customer_claim: ClaimName = Field(
        default="sub", description="auth jwt: the claim naming the customer (its id, or its external_id)"
    )
    # RS256 / ES256 keys picked by kid from this JWKS (fetched by the control plane), instead of jwt_public_key
    jwt_jwks_url: JwksUrl | None = Field(
        description="auth jwt: JWKS URL of the RS256/ES256 keys (picked by kid, fetched by the control plane)",
        default=None,
        max_length=2048,
    )
    rate_limit_headers: StrictBool = Field(
        default=True, description="usage plans: send RateLimit-* / X-RateLimit-* headers on limited responses"
    )
    https_only: StrictBool = Field(
        default=False, description="plain-HTTP requests: 308 to https (GET/HEAD), 426 otherwise"
    )
    # auth mtls: PEM bundle of the CA certificates that issue the clients' certificates
    mtls_ca_certificates: CaBundle | None = Field(
        description="auth mtls: PEM bundle of the CA certificates that issue the clients' certificates",
        default=None,
        max_length=_CA_MAX,
    )
    policies: Policies | None = Field(
        default=None,
        description="traffic policies of every route (CORS, IP rules, transforms, caching, tracing, plugins)",
    )

    _check_hosts = field_validator("hosts")(_hosts)
    _check_jwks_url = field_validator("jwt_jwks_url")(_jwks_url)
    _check_base_path = field_validator("base_path")(_base_path)


class ApiUpdate(InModel):
    name: Name | None = Field(json_schema_extra=not_null, default=None, description="unique name of the API")
    hosts: Annotated[list[str], Field(max_length=100)] | None = Field(
        json_schema_extra=not_null,
        description="host names (or *.wildcards) the API answers on; empty: any host",
        default=None,
    )
    base_path: str | None = Field(
        json_schema_extra=not_null, default=None, description="path prefix the API's routes live under, e.g. /orders"
    )
    auth: AuthMode | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="how callers authenticate: none, api_key, jwt (bearer token) or mtls (client certificate)",
    )
    strip_base_path: StrictBool | None = Field(
        json_schema_extra=not_null, default=None, description="remove the base path before forwarding to the upstream"
    )
    max_body_bytes: BodyLimit | None = Field(
        default=None, description="largest request body accepted (413 above); explicit null clears the limit"
    )
    key_header: HeaderName | None = Field(
        json_schema_extra=not_null, default=None, description="auth api_key: the request header that carries the key"
    )
    key_query: QueryName | None = Field(
        default=None,
        description="auth api_key: a query parameter that carries the key instead of key_header; null: the header",
    )
    strip_credential: StrictBool | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="remove the API key (header or query parameter) or the JWT before forwarding upstream",
    )
    jwt_algorithms: Annotated[list[JwtAlgorithm], Field(max_length=3)] | None = Field(
        json_schema_extra=not_null,
        description="auth jwt: accepted signature algorithms (empty: the one the key implies)",
        default=None,
    )
    jwt_secret: str | None = Field(
        description="auth jwt, HS256: the shared secret (write-only, at least 32 characters)",
        default=None,
        min_length=32,
        max_length=4096,
    )
    jwt_public_key: str | None = Field(
        description="auth jwt, RS256/ES256: PEM public key that verifies signatures", default=None, max_length=16384
    )
    jwt_issuer: str | None = Field(
        description="auth jwt: required iss claim; null: not checked", default=None, max_length=1024
    )
    jwt_audience: str | None = Field(
        description="auth jwt: required aud claim; null: not checked", default=None, max_length=1024
    )
    jwt_customer_claim: ClaimName | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="auth jwt: the claim naming the customer (its id, or its external_id)",
    )
    jwt_jwks_url: JwksUrl | None = Field(
        description="JWKS URL of RS256/ES256 keys; explicit null: back to jwt_public_key",
        default=None,
        max_length=2048,
    )
    rate_limit_headers: StrictBool | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="usage plans: send RateLimit-* / X-RateLimit-* headers on limited responses",
    )
    https_only: StrictBool | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="plain-HTTP requests: 308 to https (GET/HEAD), 426 otherwise",
    )
    mtls_ca_certificates: CaBundle | None = Field(
        description="auth mtls: PEM bundle of the client CAs; explicit null clears it",
        default=None,
        max_length=_CA_MAX,
    )
    policies: Policies | None = Field(default=None, description="replaces the API's policies; null removes them")

    _check_hosts = field_validator("hosts")(_hosts)
    _check_jwks_url = field_validator("jwt_jwks_url")(_jwks_url)
    _check_base_path = field_validator("base_path")(_base_path)


class JwksStatus(OutModel):
    """How the control plane's last fetch of the API's JWKS went (no key material, no secrets)."""

    url: str = Field(description="the URL the keys came from (differs from jwt_jwks_url until the new URL is fetched)")
    kids: list[str] = Field(description="the key ids in use")
    fetched_at: datetime | None = Field(description="last successful fetch; null: none yet")
    checked_at: datetime = Field(description="last attempt")
    last_error: str | None = Field(
        description="error of the last attempt; null: it succeeded (after a failure the previous keys stay in use)"
    )


class CachePurged(OutModel):
    """A cache purge: workers drop the API's cached responses when they apply ``revision``."""

    api_id: str = Field(description="the API whose cache was purged")
    cache_epoch: int = Field(description="the API's new cache epoch (part of every cache key)")
    revision: int = Field(description="the config revision that carries the purge")


class ApiPublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    name: str = Field(description="unique name of the API")
    hosts: list[str] = Field(description="host names (or *.wildcards) the API answers on; empty: any host")
    base_path: str = Field(description="path prefix the API's routes live under, e.g. /orders")
    auth: str = Field(
        description="how callers authenticate: none, api_key, jwt (bearer token) or mtls (client certificate)"
    )
    strip_base_path: bool = Field(description="remove the base path before forwarding to the upstream")
    max_body_bytes: int | None = Field(
        description="largest request body accepted (413 above); null: the worker's default"
    )
    key_header: str = Field(description="auth api_key: the request header that carries the key")
    key_query: str | None = Field(
        description="auth api_key: a query parameter that carries the key instead of key_header; null: the header"
    )
    strip_credential: bool = Field(
        description="remove the API key (header or query parameter) or the JWT before forwarding upstream"
    )
    jwt_algorithms: list[str] = Field(
        description="auth jwt: accepted signature algorithms (empty: the one the key implies)"
    )
    jwt_secret_set: bool = Field(description="an HS256 secret is set (the secret itself is never returned)")
    jwt_public_key: str | None = Field(description="auth jwt, RS256/ES256: PEM public key that verifies signatures")
    jwt_issuer: str | None = Field(description="auth jwt: required iss claim; null: not checked")
    jwt_audience: str | None = Field(description="auth jwt: required aud claim; null: not checked")
    jwt_customer_claim: str = Field(description="auth jwt: the claim naming the customer (its id, or its external_id)")
    jwt_jwks_url: str | None = Field(
        default=None,
        description="auth jwt: JWKS URL of the RS256/ES256 keys (picked by kid, fetched by the control plane)",
    )
    jwks: JwksStatus | None = Field(
        default=None, description="how the last fetch of jwt_jwks_url went; null: never fetched"
    )
    rate_limit_headers: bool = Field(
        default=True, description="usage plans: send RateLimit-* / X-RateLimit-* headers on limited responses"
    )
    https_only: bool = Field(default=False, description="plain-HTTP requests: 308 to https (GET/HEAD), 426 otherwise")
    mtls_ca_certificates: str | None = Field(
        default=None, description="auth mtls: PEM bundle of the CA certificates that issue the clients' certificates"
    )
    policies: dict[str, Any] | None = Field(default=None, description="traffic policies of every route (as written)")
    cache_epoch: int = Field(
        default=0, description="the API's cache epoch (part of every cache key), bumped by each cache purge"
    )
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")


class RouteCreate(InModel):
    path: TemplatePath = Field(
        description="path template below the API's base path, e.g. /items/{id} ({p+}: the rest of the path)",
        max_length=2048,
    )
    upstream_id: str = Field(description="the upstream the route forwards to", min_length=1, max_length=36)
    methods: list[str] = Field(description="HTTP methods the route answers; empty: any method", default_factory=list)
    connect_timeout: Timeout | None = Field(
        default=None, description="seconds to open a connection to a target; null: the upstream's"
    )
    read_timeout: Timeout | None = Field(
        default=None, description="seconds to wait for each read from the target; null: the upstream's"
    )
    total_timeout: Timeout | None = Field(
        default=None, description="seconds for the whole exchange, retries included; null: the upstream's"
    )
    policies: Policies | None = Field(default=None, description="each member replaces the API's member of that name")

    _check_path = field_validator("path")(path_template)
    _check_methods = field_validator("methods")(method_list)


class RouteUpdate(InModel):
    path: Annotated[TemplatePath, Field(max_length=2048)] | None = Field(
        json_schema_extra=not_null,
        description="path template below the API's base path, e.g. /items/{id} ({p+}: the rest of the path)",
        default=None,
    )
    upstream_id: Annotated[str, Field(min_length=1, max_length=36)] | None = Field(
        json_schema_extra=not_null, description="the upstream the route forwards to", default=None
    )
    methods: list[str] | None = Field(
        json_schema_extra=not_null, default=None, description="HTTP methods the route answers; empty: any method"
    )
    connect_timeout: Timeout | None = Field(
        default=None, description="seconds to open a connection to a target; null: the upstream's"
    )
    read_timeout: Timeout | None = Field(
        default=None, description="seconds to wait for each read from the target; null: the upstream's"
    )
    total_timeout: Timeout | None = Field(
        default=None, description="seconds for the whole exchange, retries included; null: the upstream's"
    )
    policies: Policies | None = Field(default=None, description="replaces the route's policies; null removes them")

    _check_path = field_validator("path")(path_template)
    _check_methods = field_validator("methods")(method_list)


class RoutePublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    api_id: str = Field(description="the API the route belongs to")
    path: str = Field(
        description="path template below the API's base path, e.g. /items/{id} ({p+}: the rest of the path)"
    )
    upstream_id: str = Field(description="the upstream the route forwards to")
    methods: list[str] = Field(description="HTTP methods the route answers; empty: any method")
    connect_timeout: float | None = Field(
        default=None, description="seconds to open a connection to a target; null: the upstream's"
    )
    read_timeout: float | None = Field(
        default=None, description="seconds to wait for each read from the target; null: the upstream's"
    )
    total_timeout: float | None = Field(
        default=None, description="seconds for the whole exchange, retries included; null: the upstream's"
    )
    policies: dict[str, Any] | None = Field(
        default=None, description="the route's own policies (as written); each member replaces the API's"
    )
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")
