"""The control plane's web surfaces, every asset shipped in the package (no CDN, no web font).

- ``/static/...``: the package's ``static/`` folder (our CSS and copy script, vendored Swagger UI);
- ``/docs``: Swagger UI over ``/openapi.json`` from the vendored files (it loaded from a CDN before);
- ``/console``: the operators' console (:mod:`control_plane.web.console`);
- ``/portal``: the customers' self-service portal (:mod:`control_plane.web.portal`).

Pages are server-rendered Jinja2 templates; forms post back to the console's or portal's routes,
which call the same services as the admin API, so rules and validation messages have one source.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from control_plane.web.templating import templates

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER = "/static/vendor/swagger-ui"


def install(app: FastAPI) -> None:
    """Mount the static files and the web routes (the app is created with ``docs_url=None``)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        context = {"title": "Tollgate admin API", "spec_url": "/openapi.json", "swagger": SWAGGER}
        return templates.TemplateResponse(request, "swagger.html", context)

    from control_plane.web import console, portal  # noqa: PLC0415 (they import this package's helpers)

    app.include_router(console.router)
    app.include_router(portal.router)
