"""The resource table of the declarative config: one :class:`Kind` per resource type.

A kind says where its entries live in the document, what identifies one, how to read its rows and how
to create / update / delete one through the ordinary service functions.  The engine
(:mod:`control_plane.services.declarative`) knows nothing else about resources.

A new resource type is a section in ``GatewayConfig`` and one ``Kind`` here, in dependency order (what
is referred to before what refers to it: certificates, upstreams, APIs, usage plans, customers).  ``refs`` name the
fields that hold names of other resources (``"apis.*.api"``: the ``api`` of every entry of ``apis``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.certs import CertificateProblem, leaf_fingerprint
from control_plane.config_document import (
    ApiSpec,
    CertificateSpec,
    CustomerSpec,
    RouteSpec,
    TargetSpec,
    UpstreamSpec,
    UsagePlanSpec,
)
from control_plane.errors import Invalid
from control_plane.models import Api, Certificate, Customer, Route, Target, Upstream, UsagePlan
from control_plane.schemas import (
    ApiCreate,
    ApiUpdate,
    CertificateCreate,
    CertificateUpdate,
    CustomerCreate,
    CustomerUpdate,
    PlanCreate,
    PlanUpdate,
    RouteCreate,
    RouteUpdate,
    TargetCreate,
    TargetUpdate,
    UpstreamCreate,
    UpstreamUpdate,
)
from control_plane.secretbox import SecretBox
from control_plane.services import apis as api_svc
from control_plane.services import certificates as certificate_svc
from control_plane.services import customers as customer_svc
from control_plane.services import plans as plan_svc
from control_plane.services import upstreams as upstream_svc

Address = tuple[tuple[str, str], ...]
Fields = dict[str, Any]


@dataclass
class Ctx:
    """Ids by address (current rows, then rows created during the apply) and top-level keys by row id
    (so a route read from the database can name its upstream)."""

    ids: dict[Address, str] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    box: SecretBox | None = None  # encrypts certificates' keys at rest (an apply that writes one)

    def id_of(self, kind: str, key: str) -> str:
        return self.ids[((kind, key),)]


@dataclass(frozen=True)
class Kind:
    name: str
    section: str  # key of the list in the document, or in the parent's entry
    spec: type[BaseModel]  # the document model of one entry
    key: Callable[[Fields], str]  # identity (unique among siblings)
    rows: Callable[[Session], Iterable[Any]]  # every row of this kind
    create: Callable[[Session, Ctx, str | None, Fields], str]  # (session, ctx, parent id, fields) -> new id
    update: Callable[[Session, Ctx, str, str | None, Fields], object]  # (session, ctx, id, parent id, changes)
    delete: Callable[[Session, str, str | None], object]  # (session, id, parent id)
    to_doc: Callable[[Any, Ctx], Fields] | None = None  # row -> document fields; default: same-named columns
    parent: str | None = None  # parent kind's name (children only)
    parent_of: Callable[[Any], str] | None = None  # row -> parent row id
    # field path ("upstream", "apis.*", "apis.*.api") -> name of the top-level kind it names
    refs: Mapping[str, str] = field(default_factory=dict)
    children: tuple[Kind, ...] = ()
    delete_first: bool = False  # referrers: deleted before creates/updates; others after
    unordered: frozenset[str] = frozenset()  # list fields that are sets: order is not a change
    # the form compared and shown in changes (default: the entry itself); raises ValueError on a bad entry
    view: Callable[[Fields], Fields] | None = None
    expand: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # view field -> entry fields it stands for
    secret_fields: tuple[str, ...] = ()  # write-only (excluded from dumps): read from the document's models

    def compared(self, entry: Fields) -> Fields:
        return self.view(entry) if self.view is not None else dict(entry)

    def differs(self, name: str, want: Any, have: Any) -> bool:
        if name in self.unordered and isinstance(want, list) and isinstance(have, list):
            return sorted(want) != sorted(have)
        return bool(want != have)

    @property
    def child_sections(self) -> frozenset[str]:
        return frozenset(c.section for c in self.children)

    def doc_fields(self, row: Any, ctx: Ctx) -> Fields:
        if self.to_doc is not None:
            fields = self.to_doc(row, ctx)
        else:
            fields = {
                f: getattr(row, f)
                for f, info in self.spec.model_fields.items()
                if f not in self.child_sections and not info.exclude  # excluded: write-only secrets
            }
        return self.normalised(fields)

    def normalised(self, fields: Fields) -> Fields:
        """A row's fields in the form the document model gives them (defaults filled in, nested models
        complete): a stored partial value (a PATCH that set ``health_check: {path: /h}`` on an older
        release) then compares equal to the same value written in a file, so ``dump`` → ``diff`` is a no-op."""
        try:
            dumped = self.spec.model_validate(fields).model_dump(mode="json")
        except ValidationError:
            return fields  # a row the document model refuses is compared (and reported) as it is
        return {k: v for k, v in dumped.items() if k not in self.child_sections}


def _all(model: type[Any]) -> Callable[[Session], Iterable[Any]]:
    return lambda session: session.execute(select(model)).scalars()


# ---------------------------------------------------------------------------- certificates


def _certificate_doc(row: Certificate, ctx: Ctx) -> Fields:
    return {"name": row.name, "cert": row.cert, "snis": row.snis, "default": row.is_default}


def _certificate_view(f: Fields) -> Fields:
    """Compared and shown: the leaf's fingerprint stands for the chain; the key is never part of it."""
    try:
        fingerprint = leaf_fingerprint(f["cert"])
    except CertificateProblem as exc:
        raise ValueError(f"cert: {exc.message}") from None
    return {"name": f["name"], "fingerprint": fingerprint, "snis": sorted(f["snis"]), "default": f["default"]}


def _box(ctx: Ctx) -> SecretBox:
    if ctx.box is None:
        raise RuntimeError("an apply that writes certificates needs the secret box")
    return ctx.box


def _create_certificate(s: Session, ctx: Ctx, f: Fields) -> str:
    if f.get("key") is None:
        raise Invalid("key", "a new certificate needs its private key (key_file)")
    body = {k: f[k] for k in ("name", "cert", "key", "snis", "default")}
    return certificate_svc.create_certificate(session=s, box=_box(ctx), data=CertificateCreate.model_validate(body)).id


def _update_certificate(s: Session, ctx: Ctx, id_: str, ch: Fields) -> None:
    if "cert" in ch and ch.get("key") is None:
        raise Invalid("key", "replacing the certificate (its fingerprint changes) needs its private key (key_file)")
    certificate_svc.update_certificate(
        session=s, box=_box(ctx), certificate_id=id_, data=CertificateUpdate.model_validate(ch)
    )


CERTIFICATE = Kind(
    name="certificate",
    section="certificates",
    spec=CertificateSpec,
    key=lambda f: str(f["name"]),
    rows=_all(Certificate),
    to_doc=_certificate_doc,
    view=_certificate_view,
    expand={"fingerprint": ("cert", "key")},
    secret_fields=("key",),
    unordered=frozenset({"snis"}),
    create=lambda s, ctx, _p, f: _create_certificate(s, ctx, f),
    update=lambda s, ctx, id_, _p, ch: _update_certificate(s, ctx, id_, ch),
    delete=lambda s, id_, _p: certificate_svc.delete_certificate(session=s, certificate_id=id_),
)


# ---------------------------------------------------------------------------- upstreams and targets


def _target_key(f: Fields) -> str:
    host = f"[{f['host']}]" if ":" in f["host"] else f["host"]
    return f"{host}:{f['port']}"


TARGET = Kind(
    name="target",
    section="targets",
    spec=TargetSpec,
    key=_target_key,
    rows=_all(Target),
    parent="upstream",
    parent_of=lambda row: row.upstream_id,
    create=lambda s, ctx, up, f: (
        upstream_svc.create_target(session=s, upstream_id=str(up), data=TargetCreate.model_validate(f)).id
    ),
    update=lambda s, ctx, id_, up, ch: upstream_svc.update_target(
        session=s, upstream_id=str(up), target_id=id_, data=TargetUpdate.model_validate(ch)
    ),
    delete=lambda s, id_, up: upstream_svc.delete_target(session=s, upstream_id=str(up), target_id=id_),
)


def _upstream_doc(row: Upstream, ctx: Ctx) -> Fields:
    fields = {
        f: getattr(row, f)
        for f in UpstreamSpec.model_fields
        if f not in ("targets", "client_certificate", "client_certificate_id")
    }
    cert = row.client_certificate_id
    fields["client_certificate"] = ctx.keys[("certificate", cert)] if cert is not None else None
    return fields


def _upstream_body(ctx: Ctx, f: Fields) -> Fields:
    """Document fields → admin API fields: the client certificate is named in the file, an id in the API."""
    body = {k: v for k, v in f.items() if k not in ("client_certificate", "client_certificate_id")}
    if "client_certificate" in f:
        name = f["client_certificate"]
        body["client_certificate_id"] = ctx.id_of("certificate", name) if name is not None else None
    return body


UPSTREAM = Kind(
    name="upstream",
    section="upstreams",
    spec=UpstreamSpec,
    key=lambda f: str(f["name"]),
    rows=_all(Upstream),
    children=(TARGET,),
    to_doc=_upstream_doc,
    refs={"client_certificate": "certificate"},
    create=lambda s, ctx, _p, f: (
        upstream_svc.create_upstream(session=s, data=UpstreamCreate.model_validate(_upstream_body(ctx, f))).id
    ),
    update=lambda s, ctx, id_, _p, ch: upstream_svc.update_upstream(
        session=s, upstream_id=id_, data=UpstreamUpdate.model_validate(_upstream_body(ctx, ch))
    ),
    delete=lambda s, id_, _p: upstream_svc.delete_upstream(session=s, upstream_id=id_),
)


# ---------------------------------------------------------------------------- apis and routes


def _route_key(f: Fields) -> str:
    return f"{f['path']} [{','.join(f['methods']) or '*'}]"


def _route_doc(row: Route, ctx: Ctx) -> Fields:
    doc = {"path": row.path, "methods": list(row.methods), "upstream": ctx.keys[("upstream", row.upstream_id)]}
    # optional members only when set (the document model leaves them out when null)
    optional = {
        "policies": row.policies or None,
        "connect_timeout": row.connect_timeout,
        "read_timeout": row.read_timeout,
        "total_timeout": row.total_timeout,
        "operation": row.operation,
    }
    return {**doc, **{k: v for k, v in optional.items() if v is not None}}


def _route_body(ctx: Ctx, f: Fields) -> Fields:
    """Document fields → admin API fields: the upstream is named in the file, referenced by id in the API;
    the imported OpenAPI operation is no admin API field (an import writes it): set on the row."""
    body = {k: v for k, v in f.items() if k not in ("upstream", "operation")}
    if "upstream" in f:
        body["upstream_id"] = ctx.id_of("upstream", f["upstream"])
    return body


def _set_imported(session: Session, model: type[Any], row_id: str, name: str, f: Fields) -> None:
    """The parts of an OpenAPI import kept with an API (``openapi``) or a route (``operation``), which
    only ``POST /v1/apis/import`` writes through the admin API: a dump keeps them, so an apply restores them."""
    if name in f:
        row = session.get(model, row_id)
        assert row is not None
        setattr(row, name, f[name])
        session.flush()


def _create_route(s: Session, ctx: Ctx, api_id: str, f: Fields) -> str:
    route = api_svc.create_route(session=s, api_id=api_id, data=RouteCreate.model_validate(_route_body(ctx, f)))
    _set_imported(s, Route, route.id, "operation", f)
    return route.id


def _update_route(s: Session, ctx: Ctx, id_: str, api_id: str, ch: Fields) -> None:
    body = _route_body(ctx, ch)
    if body:
        api_svc.update_route(session=s, api_id=api_id, route_id=id_, data=RouteUpdate.model_validate(body))
    _set_imported(s, Route, id_, "operation", ch)


def _api_body(f: Fields) -> Fields:
    return {k: v for k, v in f.items() if k != "openapi"}


def _create_api(s: Session, f: Fields) -> str:
    api = api_svc.create_api(session=s, data=ApiCreate.model_validate(_api_body(f)))
    _set_imported(s, Api, api.id, "openapi", f)
    return api.id


def _update_api(s: Session, id_: str, ch: Fields) -> None:
    body = _api_body(ch)
    if body:
        api_svc.update_api(session=s, api_id=id_, data=ApiUpdate.model_validate(body))
    _set_imported(s, Api, id_, "openapi", ch)


ROUTE = Kind(
    name="route",
    section="routes",
    spec=RouteSpec,
    key=_route_key,
    rows=_all(Route),
    to_doc=_route_doc,
    parent="api",
    parent_of=lambda row: row.api_id,
    refs={"upstream": "upstream"},
    delete_first=True,
    create=lambda s, ctx, api, f: _create_route(s, ctx, str(api), f),
    update=lambda s, ctx, id_, api, ch: _update_route(s, ctx, id_, str(api), ch),
    delete=lambda s, id_, api: api_svc.delete_route(session=s, api_id=str(api), route_id=id_),
)

API = Kind(
    name="api",
    section="apis",
    spec=ApiSpec,
    key=lambda f: str(f["name"]),
    rows=_all(Api),
    children=(ROUTE,),
    delete_first=True,
    create=lambda s, ctx, _p, f: _create_api(s, f),
    update=lambda s, ctx, id_, _p, ch: _update_api(s, id_, ch),
    delete=lambda s, id_, _p: api_svc.delete_api(session=s, api_id=id_),
)

# ---------------------------------------------------------------------------- usage plans


def _plan_doc(row: UsagePlan, ctx: Ctx) -> Fields:
    throttle, quota = plan_svc.throttle_of(row), plan_svc.quota_of(row)
    return {
        "name": row.name,
        "description": row.description,
        "throttle": throttle.model_dump() if throttle else None,
        "quota": quota.model_dump() if quota else None,
        "apis": [{"api": ctx.keys[("api", a.api_id)], "overrides": list(a.overrides)} for a in row.apis],
    }


def _plan_body(ctx: Ctx, f: Fields) -> Fields:
    """API names (document) → ids (admin API)."""
    body = dict(f)
    if "apis" in f:
        body["apis"] = [{"api_id": ctx.id_of("api", a["api"]), "overrides": a["overrides"]} for a in f["apis"]]
    return body


USAGE_PLAN = Kind(
    name="usage_plan",
    section="usage_plans",
    spec=UsagePlanSpec,
    key=lambda f: str(f["name"]),
    rows=_all(UsagePlan),
    to_doc=_plan_doc,
    refs={"apis.*.api": "api"},
    # Deleted after creates/updates: the customers the document moves to another plan have moved by then.
    create=lambda s, ctx, _p, f: plan_svc.create_plan(session=s, data=PlanCreate.model_validate(_plan_body(ctx, f))).id,
    update=lambda s, ctx, id_, _p, ch: plan_svc.update_plan(
        session=s, plan_id=id_, data=PlanUpdate.model_validate(_plan_body(ctx, ch))
    ),
    delete=lambda s, id_, _p: plan_svc.delete_plan(session=s, plan_id=id_),
)


# ---------------------------------------------------------------------------- customers


def _customer_doc(row: Customer, ctx: Ctx) -> Fields:
    return {
        "name": row.name,
        "email": row.email,
        "external_id": row.external_id,
        "metadata": row.meta,
        "status": row.status,
        "plan": ctx.keys[("usage_plan", row.plan_id)] if row.plan_id else None,
        "apis": sorted(ctx.keys[("api", g.api_id)] for g in row.grants),
        "mtls_fingerprints": row.mtls_fingerprints,
        "mtls_subjects": row.mtls_subjects,
    }


def _customer_body(ctx: Ctx, f: Fields) -> Fields:
    body = {k: v for k, v in f.items() if k not in ("apis", "plan")}
    if "apis" in f:
        body["api_ids"] = [ctx.id_of("api", name) for name in f["apis"]]
    return body


def _subscribe(s: Session, ctx: Ctx, customer_id: str, f: Fields) -> None:
    if "plan" not in f:
        return
    if f["plan"] is None:
        plan_svc.unsubscribe(session=s, customer_id=customer_id)
    else:
        plan_svc.subscribe(session=s, customer_id=customer_id, plan_id=ctx.id_of("usage_plan", f["plan"]))


def _create_customer(s: Session, ctx: Ctx, f: Fields) -> str:
    customer = customer_svc.create_customer(session=s, data=CustomerCreate.model_validate(_customer_body(ctx, f)))
    if f.get("plan") is not None:
        _subscribe(s, ctx, customer.id, f)
    return customer.id


def _update_customer(s: Session, ctx: Ctx, id_: str, ch: Fields) -> None:
    body = _customer_body(ctx, ch)
    if body:
        customer_svc.update_customer(session=s, customer_id=id_, data=CustomerUpdate.model_validate(body))
    _subscribe(s, ctx, id_, ch)


CUSTOMER = Kind(
    name="customer",
    section="customers",
    spec=CustomerSpec,
    key=lambda f: str(f["name"]),
    rows=_all(Customer),
    to_doc=_customer_doc,
    refs={"plan": "usage_plan", "apis.*": "api"},
    unordered=frozenset({"apis", "mtls_fingerprints", "mtls_subjects"}),
    delete_first=True,  # deleting a customer (and its keys) frees its plan for deletion
    create=lambda s, ctx, _p, f: _create_customer(s, ctx, f),
    update=lambda s, ctx, id_, _p, ch: _update_customer(s, ctx, id_, ch),
    delete=lambda s, id_, _p: customer_svc.delete_customer(session=s, customer_id=id_),
)

# Dependency order: what is referred to comes before what refers to it.
KINDS: tuple[Kind, ...] = (CERTIFICATE, UPSTREAM, API, USAGE_PLAN, CUSTOMER)
