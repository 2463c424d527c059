"""What every console page shares: the router, the signed-in operator (:class:`Ctx`), rendering and
:func:`act`, the one way a console form writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from control_plane.api.deps import Writer
from control_plane.errors import ControlPlaneError
from control_plane.services import web_sessions
from control_plane.services.admin import Principal
from control_plane.web.auth import (
    SignInLimiter,
    same,
)
from control_plane.web.pages import messages_of, render, see_other, status_of

COOKIE = "tg_console"
PATH = "/console"
ALL = 10_000  # list pages show everything up to this many rows

router = APIRouter(prefix=PATH, include_in_schema=False)
F = Annotated[str, Form()]
Csrf = Annotated[str, Form(description="the form's CSRF token")]  # default "": a missing one is a 403, not a 422


@dataclass(frozen=True, slots=True)
class Ctx:
    principal: Principal
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.principal.role == "admin"


def limiter(request: Request) -> SignInLimiter:
    state = request.app.state
    if getattr(state, "console_limiter", None) is None:
        state.console_limiter = SignInLimiter(state.settings.web_signin_per_minute)
    limiter: SignInLimiter = state.console_limiter
    return limiter


def current(request: Request) -> Ctx:
    """The signed-in operator; no or a dead session → to the sign-in page."""
    token = request.cookies.get(COOKIE)
    if token:
        with request.app.state.sessions() as s:
            row = web_sessions.find(session=s, token=token, kind="console")
            principal = web_sessions.console_principal(session=s, row=row) if row is not None else None
        if principal is not None:
            return Ctx(principal=principal, csrf=web_sessions.csrf_token(token))
    raise HTTPException(status_code=303, detail="sign in first", headers={"Location": f"{PATH}/signin"})


C = Annotated[Ctx, Depends(current)]


def page(request: Request, ctx: Ctx, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return render(request, f"console/{name}", {"ctx": ctx, **context}, status_code)


def act(
    request: Request,
    ctx: Ctx,
    csrf: str,
    do: Callable[[Writer], str | HTMLResponse],
    on_error: Callable[[list[str], int], HTMLResponse],
) -> Response:
    """Run one console write like an admin API write: CSRF and role checked, then the service call in a
    :class:`Writer` (audit entry and revision in one transaction); a domain or validation error is shown
    on the form's page with the API's message."""
    if not same(csrf, ctx.csrf):
        raise HTTPException(status_code=403, detail="the form's CSRF token is missing or wrong; reload the page")
    if not ctx.can_write:
        raise HTTPException(status_code=403, detail=f"role {ctx.principal.role!r} may only read")
    request.state.principal = ctx.principal
    with request.app.state.sessions() as s:
        w = Writer(session=s, publisher=request.app.state.publisher, request=request)
        try:
            out = do(w)
        except (ValidationError, ControlPlaneError) as exc:
            s.rollback()
            return on_error(messages_of(exc), status_of(exc))
    return see_other(out) if isinstance(out, str) else out
