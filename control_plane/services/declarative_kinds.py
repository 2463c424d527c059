"""The resource table of the declarative config: one :class:`Kind` per resource type.

A kind says where its entries live in the document, what identifies one, how to read its rows and how
to create / update / delete one through the ordinary service functions.  The engine
(:mod:`control_plane.services.declarative`) knows nothing else about resources.

To add customers or usage plans: a section in ``GatewayConfig``, then one ``Kind`` here, in dependency
order (a usage plan before the customers that name it: ``refs={"plan": "usage_plan"}``;
``delete_first=True`` for referrers such as customers, so pruning one frees what it referred to).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.config_document import ApiSpec, RouteSpec, TargetSpec, UpstreamSpec
from control_plane.models import Api, Route, Target, Upstream
from control_plane.schemas import (
    ApiCreate,
    ApiUpdate,
    RouteCreate,
    RouteUpdate,
    TargetCreate,
    TargetUpdate,
    UpstreamCreate,
    UpstreamUpdate,
)
from control_plane.services import apis as api_svc
from control_plane.services import upstreams as upstream_svc

Address = tuple[tuple[str, str], ...]
Fields = dict[str, Any]


@dataclass
class Ctx:
    """Ids by address (current rows, then rows created during the apply) and top-level keys by row id
    (so a route read from the database can name its upstream)."""

    ids: dict[Address, str] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

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
    refs: Mapping[str, str] = field(default_factory=dict)  # field -> name of the top-level kind it names
    children: tuple[Kind, ...] = ()
    delete_first: bool = False  # referrers: deleted before creates/updates; others after

    @property
    def child_sections(self) -> frozenset[str]:
        return frozenset(c.section for c in self.children)

    def doc_fields(self, row: Any, ctx: Ctx) -> Fields:
        if self.to_doc is not None:
            return self.to_doc(row, ctx)
        return {
            f: getattr(row, f)
            for f, info in self.spec.model_fields.items()
            if f not in self.child_sections and not info.exclude  # excluded: write-only secrets
        }


def _all(model: type[Any]) -> Callable[[Session], Iterable[Any]]:
    return lambda session: session.execute(select(model)).scalars()


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

UPSTREAM = Kind(
    name="upstream",
    section="upstreams",
    spec=UpstreamSpec,
    key=lambda f: str(f["name"]),
    rows=_all(Upstream),
    children=(TARGET,),
    create=lambda s, ctx, _p, f: upstream_svc.create_upstream(session=s, data=UpstreamCreate.model_validate(f)).id,
    update=lambda s, ctx, id_, _p, ch: upstream_svc.update_upstream(
        session=s, upstream_id=id_, data=UpstreamUpdate.model_validate(ch)
    ),
    delete=lambda s, id_, _p: upstream_svc.delete_upstream(session=s, upstream_id=id_),
)


# ---------------------------------------------------------------------------- apis and routes


def _route_key(f: Fields) -> str:
    return f"{f['path']} [{','.join(f['methods']) or '*'}]"


def _route_doc(row: Route, ctx: Ctx) -> Fields:
    return {"path": row.path, "methods": list(row.methods), "upstream": ctx.keys[("upstream", row.upstream_id)]}


def _route_body(ctx: Ctx, f: Fields) -> Fields:
    """Document fields → admin API fields: the upstream is named in the file, referenced by id in the API."""
    body = {k: v for k, v in f.items() if k != "upstream"}
    if "upstream" in f:
        body["upstream_id"] = ctx.id_of("upstream", f["upstream"])
    return body


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
    create=lambda s, ctx, api, f: (
        api_svc.create_route(session=s, api_id=str(api), data=RouteCreate.model_validate(_route_body(ctx, f))).id
    ),
    update=lambda s, ctx, id_, api, ch: api_svc.update_route(
        session=s, api_id=str(api), route_id=id_, data=RouteUpdate.model_validate(_route_body(ctx, ch))
    ),
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
    create=lambda s, ctx, _p, f: api_svc.create_api(session=s, data=ApiCreate.model_validate(f)).id,
    update=lambda s, ctx, id_, _p, ch: api_svc.update_api(session=s, api_id=id_, data=ApiUpdate.model_validate(ch)),
    delete=lambda s, id_, _p: api_svc.delete_api(session=s, api_id=id_),
)

# Dependency order: what is referred to comes before what refers to it.
KINDS: tuple[Kind, ...] = (UPSTREAM, API)
