"""``POST /v1/apis/import``, ``GET /v1/apis/{id}/openapi.json|.yaml``, ``GET /v1/apis/{id}/sdk``.

Import body: the OpenAPI document itself (``application/json``, ``application/yaml`` or
``text/yaml``), or a JSON envelope ``{"document": <object or JSON/YAML text>, "upstream_id": ...,
"dry_run": ...}`` (recognised by a ``document`` member and no ``openapi`` member; query parameters
win over envelope members).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from control_plane.api.deps import ApiId, Publisher, ReadSession, Sessions, Writer
from control_plane.errors import Invalid
from control_plane.openapi import document as docs
from control_plane.openapi.sdk import generate_python_sdk, package_names
from control_plane.schemas import ImportResult
from control_plane.services import convert
from control_plane.services import openapi as svc
from control_plane.services.apis import get_api

router = APIRouter(prefix="/apis", tags=["openapi"])

_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "An OpenAPI 3.0/3.1 document (JSON or YAML), or the envelope {document, upstream_id, dry_run}",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
            "text/yaml": {"schema": {"type": "string"}},
        },
    }
}


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > docs.MAX_DOCUMENT_BYTES:
        raise Invalid("body", f"the document is larger than {docs.MAX_DOCUMENT_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > docs.MAX_DOCUMENT_BYTES:
            raise Invalid("body", f"the document is larger than {docs.MAX_DOCUMENT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _unwrap(parsed: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(parsed, dict) and "document" in parsed and "openapi" not in parsed:
        options = {k: v for k, v in parsed.items() if k != "document"}
        unknown = sorted(set(options) - {"upstream_id", "dry_run"})
        if unknown:
            raise Invalid(unknown[0], "unknown envelope member (expected document, upstream_id, dry_run)")
        inner = parsed["document"]
        return (docs.parse_text(inner) if isinstance(inner, str) else inner), options
    return parsed, {}


@router.post(
    "/import", openapi_extra=_IMPORT_BODY, responses={201: {"model": ImportResult}, 200: {"model": ImportResult}}
)
async def import_api(
    request: Request,
    sessions: Sessions,
    publisher: Publisher,
    upstream_id: Annotated[str | None, Query(description="default upstream of the routes (id or name)")] = None,
    dry_run: Annotated[bool | None, Query(description="only return the diff")] = None,
) -> JSONResponse:
    """Create or update an API and its routes from an OpenAPI 3.0/3.1 document (JSON or YAML);
    ``dry_run`` returns the diff without writing."""
    body = await _read_limited(request)
    parsed = docs.parse_body(body, request.headers.get("content-type"))
    document, options = _unwrap(parsed)
    upstream = upstream_id if upstream_id is not None else options.get("upstream_id")
    if upstream is not None and not isinstance(upstream, str):
        raise Invalid("upstream_id", "must be a string")
    dry = dry_run if dry_run is not None else options.get("dry_run", False)
    if not isinstance(dry, bool):
        raise Invalid("dry_run", "must be true or false")

    def run() -> tuple[ImportResult, int]:
        validated = docs.validate(document)
        with sessions() as session:
            w = Writer(session=session, publisher=publisher, request=request)
            outcome = svc.import_document(session=session, document=validated, upstream=upstream, dry_run=dry)
            if outcome.changed and not dry:
                w.commit(outcome.api.id if outcome.api is not None else None)
            result = convert.import_result(outcome, dry_run=dry)
        return result, 201 if result.created else 200

    result, status = await run_in_threadpool(run)
    return JSONResponse(result.model_dump(mode="json"), status_code=status)


@router.get("/{api_id}/openapi.json")
def export_json(api_id: ApiId, request: Request, session: ReadSession) -> JSONResponse:
    """The API's customer-facing OpenAPI document (JSON), with the gateway's auth and 429 responses."""
    doc = svc.export_document(session=session, api_id=api_id, public_url=request.app.state.settings.public_url)
    return JSONResponse(doc)


@router.get("/{api_id}/openapi.yaml", response_class=Response)
def export_yaml(api_id: ApiId, request: Request, session: ReadSession) -> Response:
    """The API's customer-facing OpenAPI document (YAML)."""
    doc = svc.export_document(session=session, api_id=api_id, public_url=request.app.state.settings.public_url)
    return Response(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), media_type="application/yaml")


@router.get("/{api_id}/sdk", response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def download_sdk(
    api_id: ApiId,
    request: Request,
    sessions: Sessions,
    lang: Annotated[Literal["python"], Query(description="SDK language")] = "python",
) -> Response:
    """A generated Python client package for the API (zip), with ``gateway.connect(api_key)`` (503
    without the sdk extra)."""
    # The session is closed before the generator runs (seconds), so no connection is held meanwhile.
    with sessions() as session:
        name = get_api(session=session, api_id=api_id).name
        doc = svc.export_document(session=session, api_id=api_id, public_url=request.app.state.settings.public_url)
    data = generate_python_sdk(doc, name)
    project, _ = package_names(name)
    headers = {"Content-Disposition": f'attachment; filename="{project}.zip"'}
    return Response(data, media_type="application/zip", headers=headers)
