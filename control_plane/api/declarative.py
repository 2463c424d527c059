"""``/v1/config/apply``, ``/v1/config/export``, ``/v1/config/schema``: the declarative config.

An apply is one transaction and at most one revision: committed only when something changed (and it
is not a dry run), rolled back otherwise.  Errors name the place in the document
(``loc: ["body", "config", "apis", 0, "routes", 1, "upstream"]``), so a client can point at the line.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from control_plane.api.deps import Box, ReadSession, Write
from control_plane.config_document import ApplyRequest, ApplyResult, GatewayConfig, json_schema
from control_plane.services import declarative as svc

router = APIRouter(prefix="/config", tags=["config"])


@router.post("/apply")
def apply_config(body: ApplyRequest, w: Write, box: Box) -> ApplyResult:
    """Apply a declarative document (what ``tollgate apply`` sends): create and update what it names,
    delete the rest with ``prune``; ``dry_run`` returns the changes only."""
    result = svc.apply_config(session=w.session, doc=body.config, prune=body.prune, dry_run=body.dry_run, box=box)
    if result.changed:
        w.commit()
    else:
        w.session.rollback()  # a dry run, or nothing to change: not even the revision moves
    return result


@router.get("/export")
def export_config(session: ReadSession) -> GatewayConfig:
    """The config as a declarative document (no secrets, no keys), ready to apply elsewhere."""
    return svc.export_document(session=session)


@router.get("/schema")
def config_schema() -> dict[str, Any]:
    """The JSON Schema of the declarative document (docs/gateway.schema.json)."""
    return json_schema()
