"""``/v1/config`` (revision and hash in force) and ``/v1/nodes`` (workers as last seen)."""

from __future__ import annotations

from fastapi import APIRouter
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
