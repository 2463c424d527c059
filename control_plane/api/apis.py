"""``/v1/apis`` and ``/v1/apis/{api_id}/routes``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from control_plane.api.deps import ApiId, Paging, ReadSession, RouteId, Write
from control_plane.schemas import (
    ApiCreate,
    ApiPublic,
    ApiUpdate,
    CachePurged,
    JwksStatus,
    Page,
    RouteCreate,
    RoutePublic,
    RouteUpdate,
)
from control_plane.services import apis as svc
from control_plane.services import convert
from control_plane.services import jwks as jwks_svc

router = APIRouter(prefix="/apis", tags=["apis"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_api(body: ApiCreate, w: Write, request: Request) -> ApiPublic:
    """Create an API: hosts, base path, authentication and traffic policies; routes are added below it."""
    row = jwks_svc.create_api(session=w.session, data=body, timeout=_jwks_timeout(request))
    w.commit(row.id)
    return convert.api_public(row)


@router.get("")
def list_apis(session: ReadSession, page: Paging) -> Page[ApiPublic]:
    """List the APIs, a page at a time."""
    rows, total = svc.list_apis(session=session, limit=page.limit, offset=page.offset)
    items = [convert.api_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{api_id}")
def get_api(api_id: ApiId, session: ReadSession) -> ApiPublic:
    """One API (the JWT secret is never returned, only whether it is set)."""
    return convert.api_public(svc.get_api(session=session, api_id=api_id))


@router.patch("/{api_id}")
def update_api(api_id: ApiId, body: ApiUpdate, w: Write, request: Request) -> ApiPublic:
    """Change the fields given; the others keep their values (an explicit null clears a nullable field)."""
    row = jwks_svc.update_api(session=w.session, api_id=api_id, data=body, timeout=_jwks_timeout(request))
    w.commit()
    return convert.api_public(row)


@router.delete("/{api_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_api(api_id: ApiId, w: Write) -> Response:
    """Delete the API and its routes."""
    svc.delete_api(session=w.session, api_id=api_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{api_id}/jwks/refresh")
def refresh_jwks(api_id: ApiId, w: Write, request: Request) -> JwksStatus:
    """Fetch the API's JWKS now (after an identity provider rotated its keys, say); a failed fetch
    keeps the last good keys and says why in ``last_error``."""
    row = jwks_svc.refresh(session=w.session, api_id=api_id, timeout=_jwks_timeout(request))
    w.commit()  # also when nothing was recorded: the attempt is audited
    return convert.jwks_status(jwks_svc.refreshed_status(row))


@router.post("/{api_id}/cache/purge", status_code=status.HTTP_202_ACCEPTED)
def purge_cache(api_id: ApiId, w: Write) -> CachePurged:
    """Drop the API's cached responses in every worker: its ``cache_epoch`` goes up by one in a new
    config revision; a worker purges when it applies that revision (watch ``/v1/nodes``)."""
    row, revision = svc.purge_cache(session=w.session, api_id=api_id)
    w.commit()
    return CachePurged(api_id=row.id, cache_epoch=row.cache_epoch, revision=revision)


def _jwks_timeout(request: Request) -> float:
    timeout: float = request.app.state.settings.jwks_fetch_timeout
    return timeout


@router.post("/{api_id}/routes", status_code=status.HTTP_201_CREATED)
def create_route(api_id: ApiId, body: RouteCreate, w: Write) -> RoutePublic:
    """Add a route (methods + path template) to the API, forwarding to an upstream."""
    row = svc.create_route(session=w.session, api_id=api_id, data=body)
    w.commit(row.id)
    return convert.route_public(row)


@router.get("/{api_id}/routes")
def list_routes(api_id: ApiId, session: ReadSession, page: Paging) -> Page[RoutePublic]:
    """List the API's routes, a page at a time."""
    rows, total = svc.list_routes(session=session, api_id=api_id, limit=page.limit, offset=page.offset)
    items = [convert.route_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{api_id}/routes/{route_id}")
def get_route(api_id: ApiId, route_id: RouteId, session: ReadSession) -> RoutePublic:
    """One route of the API."""
    return convert.route_public(svc.get_route(session=session, api_id=api_id, route_id=route_id))


@router.patch("/{api_id}/routes/{route_id}")
def update_route(api_id: ApiId, route_id: RouteId, body: RouteUpdate, w: Write) -> RoutePublic:
    """Change the fields given; the others keep their values."""
    row = svc.update_route(session=w.session, api_id=api_id, route_id=route_id, data=body)
    w.commit()
    return convert.route_public(row)


@router.delete("/{api_id}/routes/{route_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_route(api_id: ApiId, route_id: RouteId, w: Write) -> Response:
    """Remove the route from the API."""
    svc.delete_route(session=w.session, api_id=api_id, route_id=route_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
