"""The worker ↔ control-plane channel (``/cluster/v1``), separate from the admin API.

Authenticated by ``Authorization: Bearer <cluster token>``, compared in constant time.

* ``GET /cluster/v1/snapshot?known_hash=&wait=[&since=]`` — 200 with the snapshot JSON (headers
  ``X-Tollgate-Revision``/``X-Tollgate-Hash``, ``X-Tollgate-Kind: snapshot``; gzip-encoded when the
  worker accepts it) as soon as the current hash differs from ``known_hash``; with ``since`` (the
  worker's revision) a delta (``X-Tollgate-Kind: delta``, ``data_plane.snapshot.delta``) when the
  change log covers it; otherwise a long-poll held until the config changes or ``wait`` seconds
  pass, then 304 with no body.  ``X-Tollgate-Node-*`` request headers refresh the node's ``last_seen``.
* ``POST /cluster/v1/nodes/{node_id}/status`` — the worker reports what it applied; 204.
* ``POST /cluster/v1/usage`` — one metering batch (``services/usage.py``); 200 whether it was applied
  now or before (idempotent by ``batch_id``), 422 when malformed.
* ``GET /cluster/v1/usage/current`` — each quota customer's use of its current period (the seed of a
  worker on the in-process store).
"""

from __future__ import annotations

import hmac
import logging
import re
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from control_plane.api.deps import Publisher, Sessions
from control_plane.schemas import NodeStatusIn, UsageBatchIn, UsageBatchResult
from control_plane.services import nodes as svc
from control_plane.services import usage as usage_svc

log = logging.getLogger(__name__)

NODE_ID_PATTERN = r"^[!-~]{1,128}$"  # printable ASCII, no spaces
_NODE_ID_RE = re.compile(NODE_ID_PATTERN)
MAX_WAIT = 60.0


def require_cluster_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    expected: str = request.app.state.cluster_token
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="cluster token required",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(prefix="/cluster/v1", tags=["cluster"], dependencies=[Depends(require_cluster_token)])


@router.get(
    "/snapshot",
    responses={
        200: {"description": "the snapshot (wire form), or a delta when `since` was given and the log covers it"},
        304: {"description": "no change within wait"},
    },
)
async def get_snapshot(
    publisher: Publisher,
    sessions: Sessions,
    known_hash: Annotated[str, Query(max_length=64, pattern=r"^[0-9a-fA-F]*$")] = "",
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 30.0,
    since: Annotated[
        int | None,
        Query(ge=0, description="the revision the worker holds (with its hash in known_hash): answer with a delta"),
    ] = None,
    accept_encoding: Annotated[str, Header()] = "",
    x_tollgate_node_id: Annotated[str | None, Header()] = None,
    x_tollgate_node_hostname: Annotated[str | None, Header()] = None,
    x_tollgate_node_version: Annotated[str | None, Header()] = None,
) -> Response:
    # Node headers are bookkeeping: odd values are ignored rather than refused, so a worker with an
    # unusual node id still gets its config.
    if x_tollgate_node_id and _NODE_ID_RE.match(x_tollgate_node_id):
        await run_in_threadpool(_touch, sessions, x_tollgate_node_id, x_tollgate_node_hostname, x_tollgate_node_version)
    reply = await publisher.wait_for_change(
        known_hash.lower(), wait, since=since, gzip_ok=_accepts_gzip(accept_encoding)
    )
    if reply is None:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED)
    # The bytes were built once for this revision (and start revision) and are shared by every waiter.
    headers = {
        "X-Tollgate-Revision": str(reply.revision),
        "X-Tollgate-Hash": reply.hash,
        "X-Tollgate-Kind": "delta" if reply.delta else "snapshot",
        "Vary": "Accept-Encoding",
    }
    if reply.gzipped:
        headers["Content-Encoding"] = "gzip"
    return PartsResponse(reply.parts, media_type="application/json", headers=headers)


class PartsResponse(Response):
    """A body sent as the parts it is kept in (a full snapshot's gzip: ~1,300 deflated chunks at a
    million keys, shared by every worker asking), with its Content-Length and without a joined copy."""

    def __init__(self, parts: tuple[bytes, ...], media_type: str, headers: dict[str, str]) -> None:
        super().__init__(media_type=media_type, headers=headers)
        self.parts = parts
        self.headers["content-length"] = str(sum(len(p) for p in parts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})
        if last < 0:
            await send({"type": "http.response.body", "body": b""})


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@router.post("/nodes/{node_id}/status", status_code=status.HTTP_204_NO_CONTENT)
def post_status(
    node_id: Annotated[str, Path(pattern=NODE_ID_PATTERN)], body: NodeStatusIn, sessions: Sessions, request: Request
) -> Response:
    purge_after = timedelta(seconds=request.app.state.settings.node_purge_after)
    with sessions() as session:
        svc.record_status(session=session, node_id=node_id, status=body)
        # Heartbeats are the natural clock for housekeeping: no extra task, and with several
        # replicas whichever hears a heartbeat purges (the DELETE is idempotent).
        svc.purge_nodes(session=session, older_than=purge_after)
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/usage")
def post_usage(body: UsageBatchIn, sessions: Sessions, request: Request) -> UsageBatchResult:
    with sessions() as session:
        applied = usage_svc.ingest_batch(session=session, batch=body)
        session.commit()  # the batch id, its counts and its webhook events together, or none of them
    if applied:
        request.app.state.webhooks.poke()
    return UsageBatchResult(batch_id=body.batch_id, applied=applied)


@router.get("/usage/current")
def get_current_usage(sessions: Sessions) -> dict[str, list[dict[str, object]]]:
    """Each quota customer's use of its current period, for a worker on the in-process store to seed
    its counters with at start (``data_plane/server.py``, ``Worker.seed_limits``)."""
    with sessions() as session:
        return {"customers": usage_svc.current_usage(session=session)}


def _touch(sessions: sessionmaker[Session], node_id: str, hostname: str | None, version: str | None) -> None:
    # Bookkeeping only: a failure here must never cost the worker its snapshot.
    try:
        with sessions() as session:
            svc.touch_node(session=session, node_id=node_id, hostname=hostname, version=version)
            session.commit()
    except Exception:
        log.warning("could not record last_seen for node %s", node_id, exc_info=True)
