"""``/portal``: the customers' self-service portal.

A customer signs in with their name and the password they set from an operator's invite.  Every
handler takes the customer from the session, never from the URL: a key id or an API id of another
customer is answered 404 exactly like one that does not exist (``customers.get_key`` checks the
owner; :func:`control_plane.services.portal.granted_api` checks the grant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from control_plane.errors import ControlPlaneError, Invalid
from control_plane.models import AuditEntry, Customer
from control_plane.openapi.sdk import generate_python_sdk, package_names
from control_plane.schemas import KeyRotate
from control_plane.services import apis as apis_svc
from control_plane.services import customers as customers_svc
from control_plane.services import openapi as openapi_svc
from control_plane.services import plans as plans_svc
from control_plane.services import portal as svc
from control_plane.services import usage as usage_svc
from control_plane.services import web_sessions
from control_plane.web.auth import (
    PRE_CSRF_COOKIE,
    SignInLimiter,
    clear_cookie,
    client_of,
    remember_signin_token,
    same,
    set_cookie,
    signin_token,
)
from control_plane.web.charts import bar_chart
from control_plane.web.pages import messages_of, render, see_other, status_of

COOKIE = "tg_portal"
PATH = "/portal"
router = APIRouter(prefix=PATH, include_in_schema=False)
F = Annotated[str, Form()]
Csrf = Annotated[str, Form(description="the form's CSRF token")]  # default "": a missing one is a 403, not a 422
CSRF_REFUSED = "the form's CSRF token is missing or wrong; reload the page"


@dataclass(frozen=True, slots=True)
class Ctx:
    customer_id: str
    name: str
    csrf: str


def current(request: Request) -> Ctx:
    token = request.cookies.get(COOKIE)
    if token:
        with request.app.state.sessions() as s:
            row = web_sessions.find(session=s, token=token, kind="portal")
            customer = web_sessions.portal_customer(session=s, row=row) if row is not None else None
            if customer is not None and customer.status == "active":
                return Ctx(customer_id=customer.id, name=customer.name, csrf=web_sessions.csrf_token(token))
    raise HTTPException(status_code=303, detail="sign in first", headers={"Location": f"{PATH}/signin"})


C = Annotated[Ctx, Depends(current)]


def _limiter(request: Request) -> SignInLimiter:
    state = request.app.state
    if getattr(state, "portal_limiter", None) is None:
        state.portal_limiter = SignInLimiter(state.settings.web_signin_per_minute)
    limiter: SignInLimiter = state.portal_limiter
    return limiter


def _form(request: Request, name: str, csrf: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, f"portal/{name}", {"csrf": csrf, "ctx": None, **context}, status_code)
    remember_signin_token(request, response, csrf, path=PATH)
    return response


def _start(request: Request, s: Session, customer: Customer) -> Response:
    ttl = request.app.state.settings.web_session_ttl
    _row, token = web_sessions.start(session=s, kind="portal", ttl=ttl, customer_id=customer.id)
    s.commit()
    response = see_other(f"{PATH}/")
    set_cookie(request, response, COOKIE, token, path=PATH, max_age=int(ttl))
    return response


# ---------------------------------------------------------------------------- invite and sign-in


@router.get("/invite/{token}")
def invite_form(request: Request, token: str) -> HTMLResponse:
    with request.app.state.sessions() as s:
        try:
            invite = svc.find_invite(session=s, token=token)
        except ControlPlaneError as exc:
            return _form(request, "invite.html", signin_token(request), 404, error=exc.message, customer=None)
        customer = customers_svc.get_customer(session=s, customer_id=invite.customer_id)
        return _form(request, "invite.html", signin_token(request), error=None, customer=customer.name)


@router.post("/invite/{token}")
def accept_invite(request: Request, token: str, password: F, confirm: F, csrf: Csrf = "") -> Response:
    if not same(csrf, request.cookies.get(PRE_CSRF_COOKIE)):
        raise HTTPException(status_code=403, detail=CSRF_REFUSED)
    with request.app.state.sessions() as s:
        try:
            if password != confirm:
                raise Invalid("confirm", "the two passwords differ")
            customer = svc.accept_invite(session=s, token=token, password=password)
        except ControlPlaneError as exc:
            s.rollback()
            name = None
            return _form(request, "invite.html", csrf, status_of(exc), error=messages_of(exc)[0], customer=name)
        return _start(request, s, customer)


@router.get("/signin")
def signin_form(request: Request) -> HTMLResponse:
    return _form(request, "signin.html", signin_token(request), error=None)


@router.post("/signin")
def signin(request: Request, name: F, password: F, csrf: Csrf = "") -> Response:
    if not same(csrf, request.cookies.get(PRE_CSRF_COOKIE)):
        raise HTTPException(status_code=403, detail=CSRF_REFUSED)
    limiter = _limiter(request)
    if not limiter.allow(client_of(request)):
        wait = limiter.retry_after(client_of(request))
        response = _form(request, "signin.html", csrf, 429, error=f"too many sign-in attempts; try again in {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response
    with request.app.state.sessions() as s:
        customer = svc.authenticate(session=s, name=name.strip(), password=password)
        if customer is None:
            return _form(request, "signin.html", csrf, 401, error="wrong name or password")
        return _start(request, s, customer)


@router.post("/signout")
def signout(request: Request, ctx: C, csrf: Csrf = "") -> Response:
    if not same(csrf, ctx.csrf):
        raise HTTPException(status_code=403, detail=CSRF_REFUSED)
    with request.app.state.sessions() as s:
        web_sessions.end(session=s, token=request.cookies.get(COOKIE, ""))
        s.commit()
    response = see_other(f"{PATH}/signin")
    clear_cookie(request, response, COOKIE, path=PATH)
    return response


# ---------------------------------------------------------------------------- home: keys, usage, APIs


@router.get("/")
def home(request: Request, ctx: C) -> HTMLResponse:
    return _home(request, ctx)


def _home(
    request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200, issued: str | None = None
) -> HTMLResponse:
    today = datetime.now(UTC).date()
    with request.app.state.sessions() as s:
        customer = customers_svc.get_customer(session=s, customer_id=ctx.customer_id)
        account = svc.account_of(session=s, customer_id=ctx.customer_id)
        keys, _, _ = customers_svc.list_keys(session=s, customer_id=ctx.customer_id, limit=1000, offset=0)
        plan = plans_svc.plan_of(session=s, customer=customer)
        usage = usage_svc.customer_usage(
            session=s, customer_id=ctx.customer_id, start=today - timedelta(days=13), end=today
        )
        apis = [apis_svc.get_api(session=s, api_id=a) for a in svc.granted_api_ids(session=s, customer=customer)]
        quota = usage.quota
        chart = bar_chart(
            [(d.day.isoformat(), d.requests) for d in usage.days],
            title="Your requests per day, last 14 days",
            limit=quota.limit if quota is not None and quota.period == "DAY" else None,
            limit_label="daily quota",
        )
        ceiling = int(plan.throttle_rate * 3600) if plan is not None and plan.throttle_rate else None
        hourly = bar_chart(
            [(h.strftime("%H:00"), n) for h, n in svc.hourly_requests(session=s, customer_id=ctx.customer_id)],
            title="Your requests per hour, last 24 hours",
            limit=ceiling,
            limit_label="throttle ceiling per hour",
        )
        return render(
            request,
            "portal/home.html",
            {
                "ctx": ctx,
                "keys": [(k, customers_svc.key_status(k)) for k in keys],
                "live": svc.live_keys(session=s, customer_id=ctx.customer_id),
                "key_limit": account.key_limit,
                "plan": plan,
                "usage": usage,
                "today": usage.days[-1] if usage.days else None,
                "chart": chart,
                "hourly": hourly,
                "apis": apis,
                "errors": errors or [],
                "issued": issued,
            },
            status_code,
        )


def _write(request: Request, ctx: Ctx, csrf: str, do: Callable[[Session], str | None]) -> Response:
    """One self-service write: CSRF checked, the service call, an audit entry naming the customer."""
    if not same(csrf, ctx.csrf):
        raise HTTPException(status_code=403, detail=CSRF_REFUSED)
    with request.app.state.sessions() as s:
        try:
            issued = do(s)
        except (ValidationError, ControlPlaneError) as exc:
            s.rollback()
            return _home(request, ctx, messages_of(exc), status_of(exc))
        s.add(
            AuditEntry(
                token_id=None,
                token_name=f"portal: {ctx.name}",
                method=request.method,
                path=request.url.path[:2048],
                resource_id=ctx.customer_id,
            )
        )
        s.commit()
    request.app.state.publisher.notify()
    if issued is not None:
        return _home(request, ctx, issued=issued, status_code=201)
    return see_other(f"{PATH}/")


@router.post("/keys")
def create_key(request: Request, ctx: C, name: F = "", csrf: Csrf = "") -> Response:
    return _write(request, ctx, csrf, lambda s: svc.issue_own_key(session=s, customer_id=ctx.customer_id, name=name)[1])


@router.post("/keys/{key_id}/rotate")
def rotate_key(request: Request, ctx: C, key_id: str, grace_seconds: F = "0", csrf: Csrf = "") -> Response:
    def do(s: Session) -> str:
        grace = KeyRotate.model_validate({"grace_seconds": grace_seconds or "0"}).grace_seconds
        return customers_svc.rotate_key(session=s, customer_id=ctx.customer_id, key_id=key_id, grace_seconds=grace)[1]

    return _write(request, ctx, csrf, do)


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, ctx: C, key_id: str, csrf: Csrf = "") -> Response:
    def do(s: Session) -> None:
        customers_svc.revoke_key(session=s, customer_id=ctx.customer_id, key_id=key_id)

    return _write(request, ctx, csrf, do)


# ---------------------------------------------------------------------------- API docs and SDK


def _granted_document(request: Request, ctx: Ctx, api_id: str) -> tuple[str, dict[str, Any]]:
    with request.app.state.sessions() as s:
        customer = customers_svc.get_customer(session=s, customer_id=ctx.customer_id)
        try:
            svc.granted_api(session=s, customer=customer, api_id=api_id)
        except ControlPlaneError as exc:
            raise HTTPException(status_code=404, detail=exc.message) from None
        name = apis_svc.get_api(session=s, api_id=api_id).name
        doc = openapi_svc.export_document(session=s, api_id=api_id, public_url=request.app.state.settings.public_url)
    return name, doc


@router.get("/apis/{api_id}")
def api_docs(request: Request, ctx: C, api_id: str) -> HTMLResponse:
    name, _doc = _granted_document(request, ctx, api_id)
    return render(
        request,
        "portal/api.html",
        {"ctx": ctx, "name": name, "api_id": api_id, "spec_url": f"{PATH}/apis/{api_id}/openapi.json"},
    )


@router.get("/apis/{api_id}/openapi.json")
def api_document(request: Request, ctx: C, api_id: str) -> JSONResponse:
    return JSONResponse(_granted_document(request, ctx, api_id)[1])


@router.get("/apis/{api_id}/sdk")
def api_sdk(request: Request, ctx: C, api_id: str) -> Response:
    name, doc = _granted_document(request, ctx, api_id)
    project, _ = package_names(name)
    headers = {"Content-Disposition": f'attachment; filename="{project}.zip"'}
    return Response(generate_python_sdk(doc, name), media_type="application/zip", headers=headers)
