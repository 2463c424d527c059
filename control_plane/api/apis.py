"""``/v1/apis`` and ``/v1/apis/{api_id}/routes``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from control_plane.api.deps import Paging, ReadSession, Write
from control_plane.errors import Invalid
from control_plane.jwks import Fetched, try_fetch
from control_plane.models import Api, utcnow
from control_plane.schemas import (
    ApiCreate,
    ApiPublic,
    ApiUpdate,
    JwksStatus,
    Page,
    RouteCreate,
    RoutePublic,
    RouteUpdate,
)
from control_plane.services import apis as svc
from control_plane.services import jwks as jwks_svc
from control_plane.services.revision import one_revision

router = APIRouter(prefix="/apis", tags=["apis"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_api(body: ApiCreate, w: Write, request: Request) -> ApiPublic:
    fetched = _prefetch(request, body.jwt_jwks_url if body.auth == "jwt" else None)
    with one_revision(w.session):
        row = svc.create_api(session=w.session, data=body)
        _record(w, row, fetched)
    w.commit(row.id)
    return ApiPublic.model_validate(row)


@router.get("")
def list_apis(session: ReadSession, page: Paging) -> Page[ApiPublic]:
    rows, total = svc.list_apis(session=session, limit=page.limit, offset=page.offset)
    items = [ApiPublic.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{api_id}")
def get_api(api_id: str, session: ReadSession) -> ApiPublic:
    return ApiPublic.model_validate(svc.get_api(session=session, api_id=api_id))


@router.patch("/{api_id}")
def update_api(api_id: str, body: ApiUpdate, w: Write, request: Request) -> ApiPublic:
    fetched = _prefetch(request, body.jwt_jwks_url)
    with one_revision(w.session):
        row = svc.update_api(session=w.session, api_id=api_id, data=body)
        _record(w, row, fetched)
    w.commit()
    return ApiPublic.model_validate(row)


@router.delete("/{api_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_api(api_id: str, w: Write) -> Response:
    svc.delete_api(session=w.session, api_id=api_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{api_id}/jwks/refresh")
def refresh_jwks(api_id: str, w: Write, request: Request) -> JwksStatus:
    """Fetch the API's JWKS now (after an identity provider rotated its keys, say); a failed fetch
    keeps the last good keys and says why in ``last_error``."""
    api = svc.get_api(session=w.session, api_id=api_id)
    url = api.jwt_jwks_url
    if api.auth != "jwt" or url is None:
        raise Invalid("jwt_jwks_url", "this api has no jwt_jwks_url (or its auth is not jwt)")
    w.session.rollback()  # no transaction held open while the identity provider answers
    fetched = _prefetch(request, url)
    row = svc.get_api(session=w.session, api_id=api_id)
    _record(w, row, fetched)
    w.commit()
    if row.jwks is None:  # the URL or auth mode changed while fetching: nothing recorded
        raise Invalid("jwt_jwks_url", "the api changed during the fetch; try again")
    return JwksStatus.model_validate(row.jwks)


def _prefetch(request: Request, url: str | None) -> tuple[str, Fetched] | None:
    """A new JWKS URL is fetched before the write, so the snapshot that brings the URL already
    carries its keys (outside the transaction: the revision row is not held while it is fetched)."""
    if url is None:
        return None
    return url, try_fetch(url, timeout=request.app.state.settings.jwks_fetch_timeout)


def _record(w: Write, api: Api, fetched: tuple[str, Fetched] | None) -> None:
    if fetched is None or api.auth != "jwt":
        return
    url, result = fetched
    # Same transaction as the API write: one revision; no bump of its own (the write already bumped).
    jwks_svc.record_fetch(session=w.session, api_id=api.id, url=url, keys=result.keys, error=result.error, now=utcnow())


@router.post("/{api_id}/routes", status_code=status.HTTP_201_CREATED)
def create_route(api_id: str, body: RouteCreate, w: Write) -> RoutePublic:
    row = svc.create_route(session=w.session, api_id=api_id, data=body)
    w.commit(row.id)
    return RoutePublic.model_validate(row)


@router.get("/{api_id}/routes")
def list_routes(api_id: str, session: ReadSession, page: Paging) -> Page[RoutePublic]:
    rows, total = svc.list_routes(session=session, api_id=api_id, limit=page.limit, offset=page.offset)
    items = [RoutePublic.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{api_id}/routes/{route_id}")
def get_route(api_id: str, route_id: str, session: ReadSession) -> RoutePublic:
    return RoutePublic.model_validate(svc.get_route(session=session, api_id=api_id, route_id=route_id))


@router.patch("/{api_id}/routes/{route_id}")
def update_route(api_id: str, route_id: str, body: RouteUpdate, w: Write) -> RoutePublic:
    row = svc.update_route(session=w.session, api_id=api_id, route_id=route_id, data=body)
    w.commit()
    return RoutePublic.model_validate(row)


@router.delete("/{api_id}/routes/{route_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_route(api_id: str, route_id: str, w: Write) -> Response:
    svc.delete_route(session=w.session, api_id=api_id, route_id=route_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
