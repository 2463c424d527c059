"""Import an OpenAPI document as an API (create or update in place, with a diff) and export it again.

The API an import updates is the one with the planned name.  After an import the API's routes are
exactly the document's operations: routes the document does not describe are removed.  An import
that changes nothing writes nothing and does not bump the config revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.errors import Invalid, InvalidDocument
from control_plane.models import Api, Route, Upstream
from control_plane.openapi.export import build_document
from control_plane.openapi.plan import ApiPlan, plan_import
from control_plane.schemas import ApiCreate
from control_plane.services.apis import check_api_overlap, drop_dangling_overrides, get_api
from control_plane.services.common import integrity_as_conflict
from control_plane.services.revision import bump_revision

RouteKey = tuple[str, tuple[str, ...]]  # (path template, methods)


@dataclass(slots=True)
class ImportOutcome:
    api: Api | None
    created: bool
    changed: bool
    api_changes: dict[str, Any] = field(default_factory=dict)
    added: list[dict[str, Any]] = field(default_factory=list)
    changed_routes: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Desired:
    upstream_id: str
    operation: dict[str, Any]


def import_document(
    *, session: Session, document: dict[str, Any], upstream: str | None, dry_run: bool
) -> ImportOutcome:
    plan = plan_import(document)
    fields = _api_fields(plan)
    default_upstream = _resolve_upstream(session, upstream, "upstream_id") if upstream else None
    desired: dict[RouteKey, _Desired] = {}
    for r in plan.routes:
        ref = r.upstream
        upstream_id = _resolve_upstream(session, ref, r.pointer) if ref else default_upstream
        if upstream_id is None:
            raise Invalid(
                "upstream_id", f"no upstream for {r.method} {r.path}: give upstream_id or x-tollgate-upstream"
            )
        desired[(r.path, (r.method,))] = _Desired(upstream_id, r.operation)

    api = session.execute(select(Api).where(Api.name == fields["name"])).scalar_one_or_none()
    existing: dict[RouteKey, Route] = {(rt.path, tuple(rt.methods)): rt for rt in (api.routes if api else [])}
    outcome = ImportOutcome(api=api, created=api is None, changed=False)
    outcome.api_changes = _api_changes(api, fields)
    for key, want in desired.items():
        have = existing.get(key)
        if have is None:
            outcome.added.append(_route_summary(key, want.upstream_id, want.operation))
        else:
            diff = [n for n in ("upstream_id", "operation") if getattr(have, n) != getattr(want, n)]
            if diff:
                outcome.changed_routes.append({**_route_summary(key, want.upstream_id, want.operation), "fields": diff})
    outcome.removed = [
        {"id": rt.id, "path": rt.path, "methods": list(rt.methods)}
        for key, rt in existing.items()
        if key not in desired
    ]
    outcome.changed = bool(outcome.api_changes or outcome.added or outcome.changed_routes or outcome.removed)
    if dry_run or not outcome.changed:
        return outcome

    bump_revision(session)
    if api is None:
        check_api_overlap(
            session=session, base_path=fields["base_path"], hosts=fields.get("hosts", []), exclude_id=None
        )
        api = Api(**fields)
        session.add(api)
        with integrity_as_conflict(f"api name {fields['name']!r} is already used"):
            session.flush()
    else:
        check_api_overlap(
            session=session, base_path=fields["base_path"], hosts=fields.get("hosts", api.hosts), exclude_id=api.id
        )
        for name, value in fields.items():
            setattr(api, name, value)
    for key, rt in existing.items():
        if key not in desired:
            session.delete(rt)
    session.flush()  # deletions first: a replacement route may have the same shape
    for key, want in desired.items():
        have = existing.get(key)
        if have is None:
            route = Route(api_id=api.id, path=key[0], methods=list(key[1]))
            route.upstream_id, route.operation = want.upstream_id, want.operation
            session.add(route)
        else:
            have.upstream_id, have.operation = want.upstream_id, want.operation
    with integrity_as_conflict("an upstream of this import was deleted concurrently"):
        session.flush()
    if outcome.removed:  # overrides of the routes the document no longer describes go with them
        drop_dangling_overrides(session=session, api_id=api.id)
    outcome.api = api
    return outcome


def export_document(*, session: Session, api_id: str, public_url: str) -> dict[str, Any]:
    api = get_api(session=session, api_id=api_id)
    return build_document(api, api.routes, public_url=public_url)


def _api_fields(plan: ApiPlan) -> dict[str, Any]:
    """The planned API fields, checked by the same DTO as ``POST /v1/apis`` (problems point into the document)."""
    given: dict[str, Any] = {"name": plan.name, "base_path": plan.base_path}
    if plan.hosts is not None:
        given["hosts"] = plan.hosts
    if plan.strip_base_path is not None:
        given["strip_base_path"] = plan.strip_base_path
    try:
        checked = ApiCreate.model_validate(given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "name"
            problems.append((plan.pointers.get(name, ""), f"{name}: {err['msg']}"))
        raise InvalidDocument(problems) from None
    fields = {name: getattr(checked, name) for name in given}
    fields["openapi"] = plan.openapi
    return fields


def _api_changes(api: Api | None, fields: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, new in fields.items():
        old = getattr(api, name) if api is not None else None
        if old == new:
            continue
        if name == "openapi":
            old_doc, new_doc = old or {}, new or {}
            changes[name] = {
                "changed": sorted(k for k in set(old_doc) | set(new_doc) if old_doc.get(k) != new_doc.get(k))
            }
        else:
            changes[name] = {"old": old, "new": new}
    return changes


def _route_summary(key: RouteKey, upstream_id: str, operation: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": key[0],
        "methods": list(key[1]),
        "upstream_id": upstream_id,
        "operation_id": operation.get("operationId"),
    }


def _resolve_upstream(session: Session, ref: str, where: str) -> str:
    """An upstream named by id or by name."""
    row = (
        session.get(Upstream, ref) or session.execute(select(Upstream).where(Upstream.name == ref)).scalar_one_or_none()
    )
    if row is None:
        if where.startswith("/"):
            raise InvalidDocument([(where + "/x-tollgate-upstream", f"upstream {ref!r} does not exist")])
        raise Invalid(where, f"upstream {ref!r} does not exist (give an upstream id or name)")
    return row.id
