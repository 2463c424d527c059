"""``GET /healthz``: liveness and readiness for load balancers and container healthchecks.

Ready means the database answers (a replica without it cannot serve admin writes or snapshots).
No authentication: it reveals only the config revision this replica distributes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return JSONResponse({"status": "database unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "revision": request.app.state.publisher.revision})
