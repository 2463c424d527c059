"""``/v1/config`` (revision and hash in force), ``/v1/config/snapshot`` (the snapshot itself, for
``tollgate snapshot export``) and ``/v1/nodes`` (workers as last seen)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from control_plane.api.deps import Paging, Publisher, Sessions
from control_plane.schemas import ConfigPublic, NodePublic, Page
from control_plane.services import convert
from control_plane.services import nodes as svc

router = APIRouter(tags=["config"])


@router.get("/config")
async def get_config(publisher: Publisher) -> ConfigPublic:
    """The config revision in force and its snapshot hash."""
    snapshot = await publisher.current()
    return ConfigPublic(revision=snapshot.revision, hash=snapshot.hash)


@router.get(
    "/config/snapshot",
    responses={
        200: {"description": "the snapshot in its wire form (what `tollgate worker --snapshot FILE` serves)"},
        403: {"description": "only an admin token may read it (it holds key hashes and sealed certificate keys)"},
    },
)
async def get_snapshot(request: Request, publisher: Publisher) -> Response:
    """The config snapshot in force, as workers receive it: for a worker without a control plane
    (`tollgate snapshot export`).  Certificates' keys are sealed with the cluster token, as on the
    cluster channel.  Admin role only."""
    principal = getattr(request.state, "principal", None)
    if principal is None or principal.role != "admin":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="only an admin token may export the snapshot")
    snapshot = await publisher.current()
    headers = {"X-Tollgate-Revision": str(snapshot.revision), "X-Tollgate-Hash": snapshot.hash}
    body = await publisher.full_body(snapshot)
    return Response(content=body, media_type="application/json", headers=headers)


@router.get("/nodes", tags=["nodes"])
async def list_nodes(publisher: Publisher, sessions: Sessions, page: Paging) -> Page[NodePublic]:
    """The proxy workers: the revision each applied, whether it is in sync, when it was last seen."""
    current = await publisher.current()
    return await run_in_threadpool(_list_nodes, sessions, current.hash, page.limit, page.offset)


def _list_nodes(sessions: sessionmaker[Session], current_hash: str, limit: int, offset: int) -> Page[NodePublic]:
    with sessions() as session:
        views, total = svc.list_nodes(session=session, current_hash=current_hash, limit=limit, offset=offset)
        items = [convert.node_public(v) for v in views]
    return Page(items=items, total=total, limit=limit, offset=offset)
