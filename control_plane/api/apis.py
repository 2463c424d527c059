"""``/v1/apis`` and ``/v1/apis/{api_id}/routes``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from control_plane.api.deps import Paging, ReadSession, Write
from control_plane.schemas import ApiCreate, ApiPublic, ApiUpdate, Page, RouteCreate, RoutePublic, RouteUpdate
from control_plane.services import apis as svc

router = APIRouter(prefix="/apis", tags=["apis"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_api(body: ApiCreate, w: Write) -> ApiPublic:
    row = svc.create_api(session=w.session, data=body)
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
def update_api(api_id: str, body: ApiUpdate, w: Write) -> ApiPublic:
    row = svc.update_api(session=w.session, api_id=api_id, data=body)
    w.commit()
    return ApiPublic.model_validate(row)


@router.delete("/{api_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_api(api_id: str, w: Write) -> Response:
    svc.delete_api(session=w.session, api_id=api_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
