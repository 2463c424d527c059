"""Domain errors → HTTP.  Bodies are ``{"detail": ...}`` like FastAPI's own errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from control_plane.errors import Conflict, Invalid, InvalidDocument, NotFound, Unavailable
from control_plane.schemas import ErrorDetail, ValidationFailed

# Declared on every /v1 operation so clients (and schemathesis) know the shapes of the domain errors.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "the request body could not be parsed"},
    404: {"model": ErrorDetail, "description": "a resource named in the path does not exist"},
    409: {"model": ErrorDetail, "description": "the write would duplicate or orphan something"},
    422: {"model": ValidationFailed, "description": "the request breaks a rule of the fields or of the resource"},
}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this path (RFC 9110 15.5.6: a 405 lists them all).

    Starlette's own 405 names only the methods of the first route whose path matched, and a path such
    as ``/v1/customers/{id}`` is served by one route per method.  A path some route names literally
    (``/v1/apis/import``) lists only the methods of such routes.  FastAPI >= 0.16x keeps included
    routers as branches (``effective_candidates``), walked here like Starlette's mounts (``routes``)."""
    static: set[str] = set()  # routes without {parameters}: /v1/apis/import owns its path over /v1/apis/{api_id}
    templated: set[str] = set()

    def walk(routes: Iterable[Any]) -> None:
        for route in routes:
            branch = getattr(route, "effective_candidates", None)
            if callable(branch):
                walk(branch())
            elif isinstance(getattr(route, "routes", None), list) and not hasattr(route, "methods"):
                walk(route.routes)
            elif getattr(route, "methods", None):
                match, _ = route.matches(request.scope)
                if match is not Match.NONE:
                    (templated if "{" in getattr(route, "path", "{") else static).update(route.methods)

    walk(request.app.router.routes)
    return sorted(static or templated)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
            exc = StarletteHTTPException(405, detail=exc.detail, headers=headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each offending "input" (and pydantic's "ctx"): that would hand back
        # a rejected API key, JWT secret or token in the error body. Keep loc/msg/type only.
        detail = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=409)

    @app.exception_handler(Invalid)
    async def _invalid(_request: Request, exc: Invalid) -> JSONResponse:
        # Same shape as FastAPI's request validation errors, so clients parse one format for 422.
        # A location that names its own part of the request (("query", "end")) keeps it; a field is the body's.
        loc = list(exc.loc) if exc.loc[:1] in (("query",), ("path",)) else ["body", *exc.loc]
        detail = [{"loc": loc, "msg": exc.message, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(InvalidDocument)
    async def _invalid_document(_request: Request, exc: InvalidDocument) -> JSONResponse:
        # One entry per problem; "pointer" is an RFC 6901 JSON pointer into the submitted document.
        detail = [
            {"loc": ["body", *pointer_parts(pointer)], "pointer": pointer, "msg": message, "type": "openapi_invalid"}
            for pointer, message in exc.problems
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Unavailable)
    async def _unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=503)


def pointer_parts(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
