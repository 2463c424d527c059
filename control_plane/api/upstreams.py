"""``/v1/upstreams`` and ``/v1/upstreams/{upstream_id}/targets``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from control_plane.api.deps import Paging, ReadSession, TargetId, UpstreamId, Write
from control_plane.schemas import (
    Page,
    TargetCreate,
    TargetPublic,
    TargetUpdate,
    UpstreamCreate,
    UpstreamHealthPublic,
    UpstreamPublic,
    UpstreamUpdate,
)
from control_plane.services import convert
from control_plane.services import nodes as nodes_svc
from control_plane.services import upstreams as svc

router = APIRouter(prefix="/upstreams", tags=["upstreams"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_upstream(body: UpstreamCreate, w: Write) -> UpstreamPublic:
    """Create an upstream: a pool of targets with its balancing algorithm, timeouts, retries and health checks."""
    row = svc.create_upstream(session=w.session, data=body)
    w.commit(row.id)
    return convert.upstream_public(row)


@router.get("")
def list_upstreams(session: ReadSession, page: Paging) -> Page[UpstreamPublic]:
    """List the upstreams, a page at a time."""
    rows, total = svc.list_upstreams(session=session, limit=page.limit, offset=page.offset)
    items = [convert.upstream_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{upstream_id}")
def get_upstream(upstream_id: UpstreamId, session: ReadSession) -> UpstreamPublic:
    """One upstream."""
    return convert.upstream_public(svc.get_upstream(session=session, upstream_id=upstream_id))


@router.get("/{upstream_id}/health")
def get_upstream_health(upstream_id: UpstreamId, session: ReadSession) -> UpstreamHealthPublic:
    """Each target's health as each live worker last reported it (active checks, ejections, in flight)."""
    rows = nodes_svc.upstream_health(session=session, upstream_id=upstream_id)
    return convert.upstream_health(upstream_id, rows)


@router.patch("/{upstream_id}")
def update_upstream(upstream_id: UpstreamId, body: UpstreamUpdate, w: Write) -> UpstreamPublic:
    """Change the fields given; the others keep their values (an explicit null clears a nullable field)."""
    row = svc.update_upstream(session=w.session, upstream_id=upstream_id, data=body)
    w.commit()
    return convert.upstream_public(row)


@router.delete("/{upstream_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_upstream(upstream_id: UpstreamId, w: Write) -> Response:
    """Delete an upstream and its targets (409 while routes forward to it)."""
    svc.delete_upstream(session=w.session, upstream_id=upstream_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{upstream_id}/targets", status_code=status.HTTP_201_CREATED)
def create_target(upstream_id: UpstreamId, body: TargetCreate, w: Write) -> TargetPublic:
    """Add a target (host, port, weight) to the upstream."""
    row = svc.create_target(session=w.session, upstream_id=upstream_id, data=body)
    w.commit(row.id)
    return convert.target_public(row)


@router.get("/{upstream_id}/targets")
def list_targets(upstream_id: UpstreamId, session: ReadSession, page: Paging) -> Page[TargetPublic]:
    """List the upstream's targets, a page at a time."""
    rows, total = svc.list_targets(session=session, upstream_id=upstream_id, limit=page.limit, offset=page.offset)
    items = [convert.target_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{upstream_id}/targets/{target_id}")
def get_target(upstream_id: UpstreamId, target_id: TargetId, session: ReadSession) -> TargetPublic:
    """One target of the upstream."""
    return convert.target_public(svc.get_target(session=session, upstream_id=upstream_id, target_id=target_id))


@router.patch("/{upstream_id}/targets/{target_id}")
def update_target(upstream_id: UpstreamId, target_id: TargetId, body: TargetUpdate, w: Write) -> TargetPublic:
    """Change the fields given (weight 0 drains the target: no new requests)."""
    row = svc.update_target(session=w.session, upstream_id=upstream_id, target_id=target_id, data=body)
    w.commit()
    return convert.target_public(row)


@router.delete("/{upstream_id}/targets/{target_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_target(upstream_id: UpstreamId, target_id: TargetId, w: Write) -> Response:
    """Remove the target from the upstream."""
    svc.delete_target(session=w.session, upstream_id=upstream_id, target_id=target_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
