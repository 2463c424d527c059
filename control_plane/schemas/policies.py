"""Traffic policies of an API or a route (``policies``): CORS, IP rules, transforms, caching,
tracing, plugins.  The same object in the admin API, the declarative file and the snapshot; a
route's member replaces its API's member of the same name.  Each model drops unset (null) fields
when dumped, so what is stored, exported and compared is what was written.  What the worker does
with each is in :mod:`data_plane.policies` and docs/policies.md.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_serializer, model_validator

from control_plane.schemas.common import InModel
from data_plane.errors import PluginUnavailable, SnapshotError
from data_plane.policies import cache, transform
from data_plane.policies.cors import compile_cors
from data_plane.policies.plugin_registry import PluginRegistry, default_registry

_TOKEN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
HeaderName = Annotated[str, Field(min_length=1, max_length=100, pattern=_TOKEN)]
Method = Annotated[str, Field(pattern=r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE)$")]


class _Policy(InModel):
    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: Any) -> Any:
        out = handler(self)
        return {k: v for k, v in out.items() if v is not None} if isinstance(out, dict) else out


class CorsPolicy(_Policy):
    """Cross-origin requests from browsers: preflights answered by the gateway before
    authentication and limits (never forwarded, never counted), allowed origins' responses get
    ``Access-Control-Allow-Origin`` (and ``Vary: Origin``)."""

    allow_origins: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        min_length=1,
        max_length=500,
        description='"*" (any origin), exact origins ("https://app.example.com"), or subdomain wildcards'
        ' ("https://*.example.com"; "*.example.com" for http and https); the bare domain is not matched',
    )
    allow_methods: list[Method] | None = Field(
        default=None, description="methods a preflight allows (default GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"
    )
    allow_headers: list[HeaderName] | None = Field(
        default=None, description="request headers a preflight allows (default: the ones the browser asks for)"
    )
    expose_headers: list[HeaderName] | None = Field(
        default=None, description="response headers the page may read (Access-Control-Expose-Headers)"
    )
    allow_credentials: bool | None = Field(
        default=None, description='cookies and Authorization allowed (needs explicit origins, never "*")'
    )
    max_age: Annotated[int, Field(ge=0, le=86400)] | None = Field(
        default=None, description="seconds a browser may cache a preflight answer (Access-Control-Max-Age)"
    )

    @model_validator(mode="after")
    def _check(self) -> CorsPolicy:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                'allow_credentials needs explicit origins: "*" would let any site read credentialed responses'
            )
        try:
            compile_cors(self.model_dump(), "cors")
        except SnapshotError as exc:
            raise ValueError(str(exc).removeprefix("cors.")) from None
        return self


def _cidrs(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 or IPv6 network (CIDR)") from None
    return out


class IpRulesPolicy(_Policy):
    """Allow and deny lists on the trusted client address (the socket peer, or the address a trusted
    proxy's X-Forwarded-For names); refused requests get 403."""

    allow: list[str] | None = Field(
        default=None, max_length=1000, description="only these networks may call (CIDR, IPv4 or IPv6); unset: any"
    )
    deny: list[str] | None = Field(
        default=None, max_length=1000, description="these networks are refused, whatever allow says (CIDR)"
    )

    _check_allow = field_validator("allow")(_cidrs)
    _check_deny = field_validator("deny")(_cidrs)


_TEMPLATE = "values may use $customer_id, $request_id, $client_ip ($$ for a literal $)"


class PathPrefix(_Policy):
    from_: str = Field(alias="from", min_length=1, max_length=2048, description="prefix of the upstream path")
    to: str = Field(min_length=1, max_length=2048, description="what replaces it")

    model_config = {"populate_by_name": True, "extra": "forbid"}

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: Any) -> Any:
        return {"from": self.from_, "to": self.to}


class PathRegex(_Policy):
    pattern: str = Field(min_length=1, max_length=1000, description="regular expression (Python syntax) on the path")
    replacement: str = Field(max_length=2048, description=r"replacement; \1 or \g<name> name captures")


class _HeaderTransform(_Policy):
    add_headers: dict[HeaderName, str] | None = Field(default=None, description=f"added when absent; {_TEMPLATE}")
    set_headers: dict[HeaderName, str] | None = Field(default=None, description=f"replace or add; {_TEMPLATE}")
    remove_headers: list[HeaderName] | None = Field(default=None, description="header names removed")
    rename_headers: dict[HeaderName, HeaderName] | None = Field(default=None, description="old name -> new name")


class RequestTransformPolicy(_HeaderTransform):
    """Headers, path and query of the request as it goes upstream (applied after authentication;
    the path is the one the upstream gets, after the base path is stripped)."""

    path_prefix: PathPrefix | None = Field(default=None, description="replace a leading path prefix")
    path_regex: PathRegex | None = Field(default=None, description="rewrite the path with a regular expression")
    add_query: dict[Annotated[str, Field(min_length=1, max_length=100)], str] | None = Field(
        default=None, description=f"query parameters appended; {_TEMPLATE}"
    )
    remove_query: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, description="query parameters removed, by name"
    )

    @model_validator(mode="after")
    def _check(self) -> RequestTransformPolicy:
        _compiles(transform.compile_request, self.model_dump(by_alias=True), "request_transform")
        return self


class ResponseTransformPolicy(_HeaderTransform):
    """Headers of the upstream's response as the client gets them."""

    @model_validator(mode="after")
    def _check(self) -> ResponseTransformPolicy:
        _compiles(transform.compile_response, self.model_dump(), "response_transform")
        return self


def _compiles(compile_fn: Any, doc: dict[str, Any], where: str) -> None:
    try:
        compile_fn(doc, where)
    except SnapshotError as exc:
        raise ValueError(re.sub(rf"^{where}\.?:? ?", "", str(exc))) from None


def plugin_registry() -> PluginRegistry:
    return default_registry()  # (a function: tests swap the registry the control plane checks with)


class PluginRef(_Policy):
    """One Python plugin on the request path (docs/plugins.md): its name, as ``GET /v1/plugins``
    lists it, and its config, checked against the plugin's JSON Schema and by the plugin itself."""

    name: str = Field(min_length=1, max_length=200, description="an installed plugin (GET /v1/plugins)")
    config: dict[str, Any] = Field(
        default_factory=dict, description="the plugin's settings: must match its config_schema"
    )

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config}  # always both: what is stored is what is compared

    @field_validator("name")
    @classmethod
    def _installed(cls, name: str) -> str:
        try:
            plugin_registry().get(name)
        except PluginUnavailable as exc:
            raise ValueError(str(exc)) from None
        return name

    @field_validator("config")
    @classmethod
    def _valid(cls, config: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name is None:
            return config  # the name was refused already
        registry = plugin_registry()
        problems = registry.validate(name, config)
        if problems:
            raise ValueError("; ".join(f"{path}: {message}" for path, message in problems[:5]))
        try:
            # what the schema cannot say (the worker does the same when it compiles the snapshot)
            registry.get(name)(copy.deepcopy(config))
        except Exception as exc:
            raise ValueError(f"plugin {name!r} refused its config: {type(exc).__name__}: {exc}") from None
        return config


class CachePolicy(_Policy):
    """Response caching for GET and HEAD in each worker's memory: a hit is answered without the
    upstream (with ``Age`` and ``X-Cache: HIT``; upstream answers get ``X-Cache: MISS``) after IP
    rules, authentication and plan limits (a hit counts for quotas).  The response's
    ``Cache-Control`` (``no-store``, ``private``, ``no-cache``, ``s-maxage`` / ``max-age``) and
    ``Vary`` are always honoured; responses with ``Set-Cookie`` are never stored.  Purge an API's
    entries with ``POST /v1/apis/{api_id}/cache/purge``."""

    ttl: int = Field(
        ge=1, le=86400, description="seconds a response stays fresh (lowered by its s-maxage / max-age and Age)"
    )
    key_headers: list[HeaderName] | None = Field(
        default=None,
        max_length=cache.MAX_KEY_HEADERS,
        description="request headers whose values are part of the key (beyond the route, path and query)",
    )
    shared: bool | None = Field(
        default=None,
        description="one entry for every caller (default false: each customer has its own entries)",
    )
    statuses: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None,
        max_length=20,
        description="statuses that are stored (default [200]; any of "
        + ", ".join(str(s) for s in sorted(cache.CACHEABLE_STATUSES))
        + ")",
    )
    max_object_bytes: Annotated[int, Field(ge=1, le=64 * 1024 * 1024)] | None = Field(
        default=None, description="larger bodies are not stored (default 1 MiB)"
    )

    @model_validator(mode="after")
    def _check(self) -> CachePolicy:
        _compiles(cache.compile_cache, self.model_dump(), "cache")
        return self


class TracingPolicy(_Policy):
    """OpenTelemetry traces of the requests: W3C ``traceparent`` / ``tracestate`` propagated to the
    upstream (a new trace when the client sent none), a server span per request and a client span
    per upstream attempt, exported by the worker over OTLP/HTTP (``--otlp-endpoint``); the trace id
    is in the access log."""

    sample_ratio: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None,
        description="share of new traces recorded, 0 to 1 (default 1: all); a request with a traceparent"
        " follows its caller's sampled flag instead, so a trace is recorded by every hop or by none",
    )


class Policies(_Policy):
    """Traffic policies; on a route, each member replaces the API's member of the same name."""

    cors: CorsPolicy | None = Field(default=None, description="cross-origin requests from browsers")
    ip_rules: IpRulesPolicy | None = Field(default=None, description="client address allow / deny lists")
    request_transform: RequestTransformPolicy | None = Field(default=None, description="rewrite the request")
    response_transform: ResponseTransformPolicy | None = Field(default=None, description="rewrite the response")
    cache: CachePolicy | None = Field(default=None, description="cache GET / HEAD responses in the workers")
    plugins: list[PluginRef] | None = Field(
        default=None,
        max_length=50,
        description="Python plugins, run in this order (on a route: replaces the API's list; [] runs none)",
    )
    tracing: TracingPolicy | None = Field(default=None, description="OpenTelemetry tracing (W3C Trace Context)")
