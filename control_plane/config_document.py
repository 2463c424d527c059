"""The declarative config document (``gateway.yaml``) and the answer of an apply.

Each resource model extends the admin API's ``XCreate`` DTO, so a field added to the API (and its
validation) is part of the document at once.  Identity is by name; children are nested (targets in
their upstream, routes in their API) and references are by name: a route names its upstream, a usage
plan its APIs, a customer its plan and directly granted APIs.  Customers' API keys are secrets and are
never part of the document (issue them with ``tollgate keys create``); certificates' private keys go in
(from ``key_file``) but never come out.

The published JSON Schema (``GET /v1/config/schema``, ``docs/gateway.schema.json``) is generated
from :class:`GatewayConfig`; ``python -m control_plane.config_document`` prints it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from control_plane.schemas import (
    ApiCreate,
    CertificateCreate,
    CustomerCreate,
    InModel,
    Name,
    PlanCreate,
    RouteOverrideIn,
    TargetCreate,
    Timeout,
    UpstreamCreate,
    method_list,
    path_template,
)
from control_plane.schemas.policies import Policies

SCHEMA_ID = "https://tollgate.dev/schemas/gateway.schema.json"


class TargetSpec(TargetCreate):
    """A backend of an upstream; identity within the upstream: ``host:port``."""


class UpstreamSpec(UpstreamCreate):
    targets: list[TargetSpec] = Field(default_factory=list, description="the complete set of targets")
    client_certificate: Name | None = Field(
        default=None, description="name of the certificate shown to https targets (in this file or already stored)"
    )
    # the file names the certificate, the admin API its id
    client_certificate_id: SkipJsonSchema[None] = Field(default=None, exclude=True)


class RouteSpec(BaseModel):
    """A route of an API; identity within the API: path template + methods."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=2048, description="path template below the API's base path, e.g. /items/{id}")
    methods: list[str] = Field(default_factory=list, description="empty: any method")
    upstream: Name = Field(description="name of the upstream (in this file or already on the control plane)")
    policies: Policies | None = Field(default=None, description="each member replaces the API's member of that name")
    connect_timeout: Timeout | None = Field(default=None, description="seconds; null: the upstream's")
    read_timeout: Timeout | None = Field(default=None, description="seconds; null: the upstream's")
    total_timeout: Timeout | None = Field(default=None, description="seconds; null: the upstream's")
    operation: dict[str, Any] | None = Field(
        default=None, description="the OpenAPI operation object an import gave this route (kept for export and SDKs)"
    )

    _check_path = field_validator("path")(path_template)
    _check_methods = field_validator("methods")(method_list)

    @model_serializer(mode="wrap")
    def _no_empty_policies(self, handler: Any) -> Any:
        out = handler(self)
        if isinstance(out, dict):
            # most routes have none of these: the file stays as short as it was
            for name in ("policies", "connect_timeout", "read_timeout", "total_timeout", "operation"):
                if out.get(name) is None:
                    out.pop(name, None)
        return out


class ApiSpec(ApiCreate):
    # The file is meant for git: secrets never live in it. An HS256 secret is set (write-only) through
    # PATCH /v1/apis/{id}; apply leaves it alone and dump never shows it.
    jwt_secret: SkipJsonSchema[None] = Field(default=None, exclude=True)
    routes: list[RouteSpec] = Field(default_factory=list, description="the complete set of routes")
    openapi: dict[str, Any] | None = Field(
        default=None,
        description="document-level parts of the imported OpenAPI description (info, components, tags, ...)",
    )

    @model_serializer(mode="wrap")
    def _no_empty_openapi(self, handler: Any) -> Any:
        out = handler(self)
        if isinstance(out, dict) and out.get("openapi") is None:
            out.pop("openapi", None)  # only imported APIs have one
        return out

    @field_validator("jwt_secret", mode="before")
    @classmethod
    def _no_secrets(cls, value: object) -> None:
        if value is not None:
            raise ValueError("secrets are not part of the declarative config; set jwt_secret with PATCH /v1/apis/{id}")
        return None


class PlanApiSpec(InModel):
    """An API granted by a usage plan, named by name (an id in the admin API)."""

    api: Name = Field(description="name of the API (in this file or already on the control plane)")
    overrides: list[RouteOverrideIn] = Field(
        description="per-route throttles (each its own bucket)", default_factory=list, max_length=50
    )

    @model_validator(mode="after")
    def _unique_overrides(self) -> PlanApiSpec:
        seen = [(o.method, o.path) for o in self.overrides]
        dup = next((o for o in seen if seen.count(o) > 1), None)
        if dup is not None:
            raise ValueError(f"override {dup[0]} {dup[1]} is listed twice")
        return self


def _unique_plan_apis(apis: list[PlanApiSpec]) -> list[PlanApiSpec]:
    names = [a.api for a in apis]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"api {dup!r} is listed twice")
    return apis


class UsagePlanSpec(PlanCreate):
    """A usage plan; identity: its name.  ``apis`` is the complete, ordered list of granted APIs."""

    apis: list[PlanApiSpec] = Field(  # type: ignore[assignment]
        description="the APIs the plan grants, by name, with optional per-route throttles",
        default_factory=list,
        max_length=200,
    )

    _check_apis = field_validator("apis")(_unique_plan_apis)  # type: ignore[assignment]


class CustomerSpec(CustomerCreate):
    """A customer; identity: its name.  Never its keys (secrets).  Deleting a customer (``--prune``)
    deletes its keys."""

    # The admin API takes ids; the document names APIs (``apis``) instead.
    api_ids: SkipJsonSchema[None] = Field(default=None, exclude=True)  # type: ignore[assignment]
    plan: Name | None = Field(default=None, description="name of the usage plan the customer is subscribed to")
    apis: list[Name] = Field(default_factory=list, max_length=1000, description="names of directly granted APIs")

    @field_validator("api_ids", mode="before")
    @classmethod
    def _no_ids(cls, value: object) -> None:
        if value is not None:
            raise ValueError("name the granted APIs in `apis`; ids are not part of the declarative config")
        return None

    @field_validator("apis")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        # Grants are a set (compared regardless of order); file order is kept so errors point at the entry.
        dup = next((n for n in value if value.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"api {dup!r} is listed twice")
        return value


class CertificateSpec(CertificateCreate):
    """A TLS certificate; identity: its name.  Compared by the leaf's fingerprint, ``snis`` and ``default``.

    The file names PEM files (``cert_file``, ``key_file``, relative to the file); ``tollgate apply`` /
    ``diff`` read them and send their contents as ``cert`` and ``key``.  The private key is write-only:
    never exported (``tollgate dump`` writes the chain to ``<name>.crt`` and no key), and only needed to
    create a certificate or to replace its chain.
    """

    name: Name = Field(description="unique name of the certificate (how the file names it)")
    key: str | None = Field(  # type: ignore[assignment]  # optional here: only a new or renewed chain needs it
        default=None, max_length=16384, exclude=True, description="PEM private key (write-only)"
    )
    cert_file: str | None = Field(default=None, description="PEM chain file, relative to this file (read by the CLI)")
    key_file: str | None = Field(default=None, description="PEM private key file, relative to this file (CLI)")

    @field_validator("cert_file", "key_file")
    @classmethod
    def _files_are_read_by_the_cli(cls, value: str | None, info: ValidationInfo) -> None:
        if value is not None:
            what = "cert" if info.field_name == "cert_file" else "key"
            raise ValueError(f"{info.field_name} is read by `tollgate apply`; the admin API takes the PEM in {what}")
        return None


def _one_default(certificates: list[CertificateSpec]) -> list[CertificateSpec]:
    defaults = [c.name for c in certificates if c.default]
    if len(defaults) > 1:
        raise ValueError(f"at most one certificate is the default ({', '.join(defaults)} are)")
    return certificates


class GatewayConfig(BaseModel):
    """Desired state of the control plane.  Resources named here are described completely (fields left
    out take their defaults; children not listed are removed); resources not named are left alone unless
    the apply prunes."""

    model_config = ConfigDict(extra="forbid", title="Tollgate gateway config")

    version: Literal[1] = Field(default=1, description="document format version")
    certificates: list[CertificateSpec] = Field(description="TLS certificates, by name", default_factory=list)
    upstreams: list[UpstreamSpec] = Field(description="upstreams with their targets, by name", default_factory=list)
    apis: list[ApiSpec] = Field(description="APIs with their routes, by name", default_factory=list)
    usage_plans: list[UsagePlanSpec] = Field(description="usage plans, by name", default_factory=list)
    customers: list[CustomerSpec] = Field(
        description="customers, by name (their keys are never in the file)", default_factory=list
    )

    _check_certificates = field_validator("certificates")(_one_default)


# ---------------------------------------------------------------------------- apply request / answer


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: GatewayConfig = Field(description="the declarative document (gateway.schema.json)")
    prune: StrictBool = Field(default=False, description="delete resources the document does not name")
    dry_run: StrictBool = Field(default=False, description="compute the changes only (what `tollgate diff` shows)")


class Change(BaseModel):
    action: Literal["create", "update", "delete"] = Field(description="create, update or delete")
    kind: str = Field(description="kind of resource: certificate, upstream, target, api, route, usage_plan, customer")
    address: str = Field(description="human-readable identity, e.g. `api orders / route /items/{id} [GET]`")
    loc: list[str | int] | None = Field(description="where the resource is in the document (null for deletes)")
    fields: list[str] = Field(description="fields that change (updates)")
    before: dict[str, Any] | None = Field(description="the fields before (updates and deletes)")
    after: dict[str, Any] | None = Field(description="the fields after (creates and updates)")


class ApplyResult(BaseModel):
    changed: bool = Field(description="whether the control plane changed (never for a dry run)")
    dry_run: bool = Field(description="nothing was written")
    revision: int = Field(description="the config revision after the apply")
    changes: list[Change] = Field(description="one entry per resource that changes")


def json_schema() -> dict[str, Any]:
    schema = GatewayConfig.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    """The committed form (``docs/gateway.schema.json``): stable key order, trailing newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(json_schema_text())
