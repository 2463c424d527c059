"""What the console's and portal's routes share: rendering, error messages, redirects."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from control_plane.errors import Conflict, ControlPlaneError, Invalid, NotFound
from control_plane.web.templating import templates

# what a page may load: only this origin (the request log test in tests/e2e checks the same in a browser)
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def messages_of(exc: Exception) -> list[str]:
    """The messages the admin API would answer with, one per problem (no offending input echoed)."""
    if isinstance(exc, ValidationError):
        out = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            out.append(f"{loc}: {e['msg']}" if loc else e["msg"])
        return out
    if isinstance(exc, Invalid):
        return [f"{'.'.join(str(p) for p in exc.loc)}: {exc.message}"]
    if isinstance(exc, ControlPlaneError):
        return [exc.message]
    return [str(exc)]


def status_of(exc: Exception) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    return 422


def lines(value: str) -> list[str]:
    """A textarea or comma list as items (blank ones dropped)."""
    return [p.strip() for p in value.replace(",", "\n").splitlines() if p.strip()]
