"""Traffic policies of an API or a route (``policies``): CORS, IP rules, transforms, caching,
tracing, plugins.  The same object in the admin API, the declarative file and the snapshot; a
route's member replaces its API's member of the same name.  Each model drops unset (null) fields
when dumped, so what is stored, exported and compared is what was written.  What the worker does
with each is in :mod:`data_plane.policies` and docs/policies.md.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_serializer, model_validator

from control_plane.schemas.common import InModel
from data_plane.errors import SnapshotError
from data_plane.policies import transform
from data_plane.policies.cors import compile_cors

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
    tracing: TracingPolicy | None = Field(default=None, description="OpenTelemetry tracing (W3C Trace Context)")
