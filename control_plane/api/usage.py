"""``GET /v1/usage/export``: admitted requests per customer, API, route, status class and plan, per UTC
hour or day, streamed as CSV or JSON Lines (:mod:`control_plane.services.usage_export`).

The range is checked before the response starts (a bad one is a 422 with nothing sent); the rows then
stream from one query on a session of the response's own, fetched and encoded a chunk at a time in a
worker thread, so neither the event loop nor the memory holds the export.  If the database fails
mid-way the response is cut off (no terminating chunk): a client cannot mistake it for a whole export.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Annotated

from anyio import CancelScope
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from control_plane.api.deps import Sessions
from control_plane.services import usage_export as svc

router = APIRouter(prefix="/usage", tags=["usage"])

_BOUND = "a UTC day YYYY-MM-DD (inclusive) or an ISO 8601 date-time on the hour"


def _chunks(
    sessions: sessionmaker[Session],
    rng: svc.ExportRange,
    granularity: svc.Granularity,
    fmt: svc.Format,
    customer_id: str | None,
    api_id: str | None,
) -> Generator[bytes, None, None]:
    with sessions() as session:
        records = svc.rows(session=session, rng=rng, granularity=granularity, customer_id=customer_id, api_id=api_id)
        yield from svc.encode(records, fmt)


async def _stream(chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """Pull each chunk in a worker thread (the query blocks); close the generator, and with it the
    session and its cursor, however the response ends (a client that went away included)."""
    try:
        while True:
            chunk = await run_in_threadpool(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        with CancelScope(shield=True):
            await run_in_threadpool(chunks.close)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the rows, streamed; CSV with a header row, or one JSON object per line",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        },
        422: {"description": "a bad range: unparsable, not on the hour, end not after start, too long"},
    },
)
def export_usage(
    sessions: Sessions,
    start: Annotated[str, Query(description=f"first hour or day: {_BOUND}")],
    end: Annotated[str, Query(description=f"end: {_BOUND} (a date-time is exclusive)")],
    granularity: Annotated[svc.Granularity, Query(description="one row per UTC hour or per UTC day")] = "day",
    format: Annotated[svc.Format, Query(description="csv or jsonl (JSON Lines)")] = "csv",
    customer_id: Annotated[str | None, Query(max_length=36, description="only this customer")] = None,
    api_id: Annotated[str | None, Query(max_length=36, description="only this API")] = None,
) -> StreamingResponse:
    """Admitted requests per customer, API, route, status class and plan; totals equal what the workers
    counted (and what the usage reports and quotas count), up to the workers' last usage flush."""
    rng = svc.parse_range(start, end, granularity)
    name = f"usage-{rng.start:%Y%m%dT%H}-{rng.end:%Y%m%dT%H}-{granularity}.{format}"
    return StreamingResponse(
        _stream(_chunks(sessions, rng, granularity, format, customer_id, api_id)),
        media_type=svc.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
