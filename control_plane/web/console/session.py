"""Console sign-in (an admin or viewer token for a session cookie) and sign-out."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from control_plane.services import admin as admin_svc
from control_plane.services import web_sessions
from control_plane.web.auth import (
    PRE_CSRF_COOKIE,
    clear_cookie,
    client_of,
    remember_signin_token,
    same,
    set_cookie,
    signin_token,
)
from control_plane.web.console.core import COOKIE, PATH, C, Csrf, F, limiter, router
from control_plane.web.pages import render, see_other

# ---------------------------------------------------------------------------- sign-in


@router.get("/signin")
def signin_form(request: Request) -> HTMLResponse:
    return render_signin(request, signin_token(request), None, 200)


def render_signin(request: Request, csrf: str, error: str | None, status_code: int) -> HTMLResponse:
    response = render(request, "console/signin.html", {"error": error, "csrf": csrf}, status_code)
    remember_signin_token(request, response, csrf, path=PATH)
    return response


@router.post("/signin")
def signin(request: Request, token: F, csrf: Csrf = "") -> Response:
    if not same(csrf, request.cookies.get(PRE_CSRF_COOKIE)):
        raise HTTPException(status_code=403, detail="the form's CSRF token is missing or wrong; reload the page")
    gate = limiter(request)
    if not gate.allow(client_of(request)):
        wait = gate.retry_after(client_of(request))
        response = render_signin(request, csrf, f"too many sign-in attempts; try again in {wait} s", 429)
        response.headers["Retry-After"] = str(wait)
        return response
    ttl = request.app.state.settings.web_session_ttl
    with request.app.state.sessions() as s:
        principal = admin_svc.authenticate(session=s, token=token.strip())
        if principal is None:
            return render_signin(request, csrf, "unknown or revoked token", 401)
        _row, session_token = web_sessions.start(session=s, kind="console", ttl=ttl, admin_token_id=principal.token_id)
        s.commit()
    done = see_other(f"{PATH}/")
    set_cookie(request, done, COOKIE, session_token, path=PATH, max_age=int(ttl))
    return done


@router.post("/signout")
def signout(request: Request, ctx: C, csrf: Csrf = "") -> Response:
    if not same(csrf, ctx.csrf):
        raise HTTPException(status_code=403, detail="the form's CSRF token is missing or wrong; reload the page")
    with request.app.state.sessions() as s:
        web_sessions.end(session=s, token=request.cookies.get(COOKIE, ""))
        s.commit()
    response = see_other(f"{PATH}/signin")
    clear_cookie(request, response, COOKIE, path=PATH)
    return response
