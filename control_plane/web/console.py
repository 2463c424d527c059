"""``/console``: the operators' web console (admin or viewer token exchanged for a session cookie).

Each page reads through the same services as ``/v1``; each form posts here and calls the same
service function with the same DTO as the admin API's route, so a bad value gets the API's message.
A viewer's session sees every page without forms, and a write posted anyway is refused (403).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, select

from control_plane.api.deps import Writer
from control_plane.config_document import ApplyRequest
from control_plane.errors import ControlPlaneError
from control_plane.models import AuditEntry, UsageHourly
from control_plane.schemas import (
    ApiCreate,
    ApiUpdate,
    CustomerCreate,
    CustomerUpdate,
    KeyCreate,
    KeyRotate,
    PlanCreate,
    PlanUpdate,
    RouteCreate,
    TargetCreate,
    UpstreamCreate,
    UpstreamUpdate,
)
from control_plane.services import admin as admin_svc
from control_plane.services import apis as apis_svc
from control_plane.services import customers as customers_svc
from control_plane.services import declarative as declarative_svc
from control_plane.services import nodes as nodes_svc
from control_plane.services import plans as plans_svc
from control_plane.services import portal as portal_svc
from control_plane.services import upstreams as upstreams_svc
from control_plane.services import usage as usage_svc
from control_plane.services import web_sessions
from control_plane.services.admin import Principal
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
from control_plane.web.pages import lines, messages_of, render, see_other, status_of

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


def _limiter(request: Request) -> SignInLimiter:
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
    limiter = _limiter(request)
    if not limiter.allow(client_of(request)):
        wait = limiter.retry_after(client_of(request))
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


# ---------------------------------------------------------------------------- overview


@router.get("/")
async def overview(request: Request, ctx: C) -> HTMLResponse:
    snapshot = await request.app.state.publisher.current()
    from starlette.concurrency import run_in_threadpool

    data = await run_in_threadpool(_overview_data, request, snapshot.hash)
    return page(request, ctx, "overview.html", revision=snapshot.revision, **data)


def _overview_data(request: Request, current_hash: str) -> dict[str, Any]:
    since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    with request.app.state.sessions() as s:
        nodes, _ = nodes_svc.list_nodes(session=s, current_hash=current_hash, limit=ALL, offset=0)
        apis, _ = apis_svc.list_apis(session=s, limit=ALL, offset=0)
        rows = s.execute(
            select(UsageHourly.api_id, UsageHourly.status_class, func.sum(UsageHourly.count))
            .where(UsageHourly.hour >= since)
            .group_by(UsageHourly.api_id, UsageHourly.status_class)
        ).all()
        hourly = s.execute(
            select(UsageHourly.hour, func.sum(UsageHourly.count))
            .where(UsageHourly.hour >= since)
            .group_by(UsageHourly.hour)
        ).all()
    per_api: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "errors": 0})
    for api_id, status_class, n in rows:
        per_api[api_id]["requests"] += int(n)
        if status_class and not status_class.startswith("2") and not status_class.startswith("3"):
            per_api[api_id]["errors"] += int(n)
    by_hour = {h.replace(tzinfo=UTC) if h.tzinfo is None else h: int(n) for h, n in hourly}
    points = [
        ((since + timedelta(hours=i)).strftime("%H:00"), by_hour.get(since + timedelta(hours=i), 0)) for i in range(24)
    ]
    names = {a.id: a.name for a in apis}
    return {
        "nodes": nodes,
        "api_counts": sorted(((names.get(k, k), v) for k, v in per_api.items()), key=lambda kv: kv[0]),
        "chart": bar_chart(points, title="Requests per hour, last 24 hours (all APIs)"),
    }


# ---------------------------------------------------------------------------- upstreams


@router.get("/upstreams")
def upstreams_page(request: Request, ctx: C) -> HTMLResponse:
    return _upstreams_page(request, ctx)


def _upstreams_page(
    request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows, _ = upstreams_svc.list_upstreams(session=s, limit=ALL, offset=0)
        items = [(u, len(u.targets)) for u in rows]
    return page(request, ctx, "upstreams.html", status_code, upstreams=items, errors=errors or [])


@router.post("/upstreams")
def create_upstream(
    request: Request, ctx: C, name: F, algorithm: F = "round_robin", targets: F = "", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        row = upstreams_svc.create_upstream(
            session=w.session, data=UpstreamCreate.model_validate({"name": name, "algorithm": algorithm})
        )
        for item in lines(targets):
            host, _, port = item.rpartition(":")
            upstreams_svc.create_target(
                session=w.session, upstream_id=row.id, data=TargetCreate.model_validate({"host": host, "port": port})
            )
        w.commit(row.id)
        return f"{PATH}/upstreams/{row.id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstreams_page(request, ctx, m, st))


@router.get("/upstreams/{upstream_id}")
def upstream_page(request: Request, ctx: C, upstream_id: str) -> HTMLResponse:
    return _upstream_page(request, ctx, upstream_id)


def _upstream_page(
    request: Request, ctx: Ctx, upstream_id: str, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        row = upstreams_svc.get_upstream(session=s, upstream_id=upstream_id)
        health = nodes_svc.upstream_health(session=s, upstream_id=upstream_id)
        return page(request, ctx, "upstream.html", status_code, u=row, health=health, errors=errors or [])


@router.post("/upstreams/{upstream_id}")
def edit_upstream(request: Request, ctx: C, upstream_id: str, name: F, algorithm: F, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        data = UpstreamUpdate.model_validate({"name": name, "algorithm": algorithm})
        upstreams_svc.update_upstream(session=w.session, upstream_id=upstream_id, data=data)
        w.commit()
        return f"{PATH}/upstreams/{upstream_id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


@router.post("/upstreams/{upstream_id}/delete")
def delete_upstream(request: Request, ctx: C, upstream_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        upstreams_svc.delete_upstream(session=w.session, upstream_id=upstream_id)
        w.commit()
        return f"{PATH}/upstreams"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


@router.post("/upstreams/{upstream_id}/targets")
def add_target(
    request: Request, ctx: C, upstream_id: str, host: F, port: F, weight: F = "100", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = TargetCreate.model_validate({"host": host, "port": port, "weight": weight})
        row = upstreams_svc.create_target(session=w.session, upstream_id=upstream_id, data=data)
        w.commit(row.id)
        return f"{PATH}/upstreams/{upstream_id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


@router.post("/upstreams/{upstream_id}/targets/{target_id}/delete")
def delete_target(request: Request, ctx: C, upstream_id: str, target_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        upstreams_svc.delete_target(session=w.session, upstream_id=upstream_id, target_id=target_id)
        w.commit()
        return f"{PATH}/upstreams/{upstream_id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


# ---------------------------------------------------------------------------- APIs and routes


@router.get("/apis")
def apis_page(request: Request, ctx: C) -> HTMLResponse:
    return _apis_page(request, ctx)


def _apis_page(request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows, _ = apis_svc.list_apis(session=s, limit=ALL, offset=0)
        return page(request, ctx, "apis.html", status_code, apis=rows, errors=errors or [])


@router.post("/apis")
def create_api(
    request: Request, ctx: C, name: F, base_path: F = "/", hosts: F = "", auth: F = "none", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = ApiCreate.model_validate({"name": name, "base_path": base_path, "hosts": lines(hosts), "auth": auth})
        row = apis_svc.create_api(session=w.session, data=data)
        w.commit(row.id)
        return f"{PATH}/apis/{row.id}"

    return act(request, ctx, csrf, do, lambda m, st: _apis_page(request, ctx, m, st))


@router.get("/apis/{api_id}")
def api_page(request: Request, ctx: C, api_id: str) -> HTMLResponse:
    return _api_page(request, ctx, api_id)


def _api_page(
    request: Request, ctx: Ctx, api_id: str, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        row = apis_svc.get_api(session=s, api_id=api_id)
        routes, _ = apis_svc.list_routes(session=s, api_id=api_id, limit=ALL, offset=0)
        ups, _ = upstreams_svc.list_upstreams(session=s, limit=ALL, offset=0)
        return page(request, ctx, "api.html", status_code, api=row, routes=routes, upstreams=ups, errors=errors or [])


@router.post("/apis/{api_id}")
def edit_api(
    request: Request, ctx: C, api_id: str, name: F, base_path: F, hosts: F = "", auth: F = "none", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = ApiUpdate.model_validate({"name": name, "base_path": base_path, "hosts": lines(hosts), "auth": auth})
        apis_svc.update_api(session=w.session, api_id=api_id, data=data)
        w.commit()
        return f"{PATH}/apis/{api_id}"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


@router.post("/apis/{api_id}/delete")
def delete_api(request: Request, ctx: C, api_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        apis_svc.delete_api(session=w.session, api_id=api_id)
        w.commit()
        return f"{PATH}/apis"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


@router.post("/apis/{api_id}/routes")
def add_route(
    request: Request, ctx: C, api_id: str, path: F, upstream_id: F, methods: F = "", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = RouteCreate.model_validate(
            {"path": path, "upstream_id": upstream_id, "methods": [m.upper() for m in lines(methods)]}
        )
        row = apis_svc.create_route(session=w.session, api_id=api_id, data=data)
        w.commit(row.id)
        return f"{PATH}/apis/{api_id}"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


@router.post("/apis/{api_id}/routes/{route_id}/delete")
def delete_route(request: Request, ctx: C, api_id: str, route_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        apis_svc.delete_route(session=w.session, api_id=api_id, route_id=route_id)
        w.commit()
        return f"{PATH}/apis/{api_id}"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


# ---------------------------------------------------------------------------- customers and keys


@router.get("/customers")
def customers_page(request: Request, ctx: C) -> HTMLResponse:
    return _customers_page(request, ctx)


def _customers_page(
    request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows, _ = customers_svc.list_customers(session=s, limit=ALL, offset=0)
        return page(request, ctx, "customers.html", status_code, customers=rows, errors=errors or [])


@router.post("/customers")
def create_customer(request: Request, ctx: C, name: F, email: F = "", csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        data = CustomerCreate.model_validate({"name": name, "email": email or None})
        row = customers_svc.create_customer(session=w.session, data=data)
        w.commit(row.id)
        return f"{PATH}/customers/{row.id}"

    return act(request, ctx, csrf, do, lambda m, st: _customers_page(request, ctx, m, st))


def _usage_chart(usage: Any, title: str) -> Any:
    quota = usage.quota
    daily_limit = quota.limit if quota is not None and quota.period == "DAY" else None
    points = [(d.day.isoformat(), d.requests) for d in usage.days]
    return bar_chart(points, title=title, limit=daily_limit, limit_label="daily quota")


@router.get("/customers/{customer_id}")
def customer_page(request: Request, ctx: C, customer_id: str) -> HTMLResponse:
    return _customer_page(request, ctx, customer_id)


def _customer_page(
    request: Request,
    ctx: Ctx,
    customer_id: str,
    errors: list[str] | None = None,
    status_code: int = 200,
    issued: str | None = None,
    invite: str | None = None,
) -> HTMLResponse:
    today = datetime.now(UTC).date()
    with request.app.state.sessions() as s:
        row = customers_svc.get_customer(session=s, customer_id=customer_id)
        keys, _ = customers_svc.list_keys(session=s, customer_id=customer_id, limit=ALL, offset=0)
        plans, _ = plans_svc.list_plans(session=s, limit=ALL, offset=0)
        apis, _ = apis_svc.list_apis(session=s, limit=ALL, offset=0)
        usage = usage_svc.customer_usage(
            session=s, customer_id=customer_id, start=today - timedelta(days=13), end=today
        )
        return page(
            request,
            ctx,
            "customer.html",
            status_code,
            c=row,
            keys=[(k, customers_svc.key_status(k)) for k in keys],
            plans=plans,
            apis=apis,
            granted=set(customers_svc.granted_api_ids(row)),
            usage=usage,
            chart=_usage_chart(usage, f"Requests per day of {row.name}, last 14 days"),
            errors=errors or [],
            issued=issued,
            invite=invite,
        )


@router.post("/customers/{customer_id}")
def edit_customer(
    request: Request,
    ctx: C,
    customer_id: str,
    name: F,
    email: F = "",
    status: F = "active",
    api_ids: Annotated[list[str] | None, Form()] = None,
    csrf: Csrf = "",
) -> Response:
    def do(w: Writer) -> str:
        data = CustomerUpdate.model_validate(
            {"name": name, "email": email or None, "status": status, "api_ids": api_ids or []}
        )
        customers_svc.update_customer(session=w.session, customer_id=customer_id, data=data)
        w.commit()
        return f"{PATH}/customers/{customer_id}"

    return act(request, ctx, csrf, do, lambda m, st: _customer_page(request, ctx, customer_id, m, st))


@router.post("/customers/{customer_id}/delete")
def delete_customer(request: Request, ctx: C, customer_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        customers_svc.delete_customer(session=w.session, customer_id=customer_id)
        w.commit()
        return f"{PATH}/customers"

    return act(request, ctx, csrf, do, lambda m, st: _customer_page(request, ctx, customer_id, m, st))


@router.post("/customers/{customer_id}/keys")
def issue_key(request: Request, ctx: C, customer_id: str, name: F = "", csrf: Csrf = "") -> Response:
    def do(w: Writer) -> HTMLResponse:
        row, plaintext = customers_svc.issue_key(
            session=w.session, customer_id=customer_id, data=KeyCreate.model_validate({"name": name or None})
        )
        w.commit(row.id)
        return _customer_page(request, ctx, customer_id, issued=plaintext)

    return act(request, ctx, csrf, do, lambda m, st: _customer_page(request, ctx, customer_id, m, st))


@router.post("/customers/{customer_id}/keys/{key_id}/rotate")
def rotate_key(
    request: Request, ctx: C, customer_id: str, key_id: str, grace_seconds: F = "0", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> HTMLResponse:
        grace = KeyRotate.model_validate({"grace_seconds": grace_seconds or "0"}).grace_seconds
        row, plaintext = customers_svc.rotate_key(
            session=w.session, customer_id=customer_id, key_id=key_id, grace_seconds=grace
        )
        w.commit(row.id)
        return _customer_page(request, ctx, customer_id, issued=plaintext)

    return act(request, ctx, csrf, do, lambda m, st: _customer_page(request, ctx, customer_id, m, st))


@router.post("/customers/{customer_id}/keys/{key_id}/revoke")
def revoke_key(request: Request, ctx: C, customer_id: str, key_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        customers_svc.revoke_key(session=w.session, customer_id=customer_id, key_id=key_id)
        w.commit()
        return f"{PATH}/customers/{customer_id}"

    return act(request, ctx, csrf, do, lambda m, st: _customer_page(request, ctx, customer_id, m, st))


@router.post("/customers/{customer_id}/plan")
def set_plan(request: Request, ctx: C, customer_id: str, plan_id: F, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        if plan_id:
            plans_svc.subscribe(session=w.session, customer_id=customer_id, plan_id=plan_id)
        else:
            plans_svc.unsubscribe(session=w.session, customer_id=customer_id)
        w.commit()
        return f"{PATH}/customers/{customer_id}"

    return act(request, ctx, csrf, do, lambda m, st: _customer_page(request, ctx, customer_id, m, st))


@router.post("/customers/{customer_id}/portal-invite")
def invite(request: Request, ctx: C, customer_id: str, key_limit: F = "3", csrf: Csrf = "") -> Response:
    from control_plane.schemas.portal import PortalInviteCreate

    def do(w: Writer) -> HTMLResponse:
        data = PortalInviteCreate.model_validate({"key_limit": key_limit})
        row, token = portal_svc.create_invite(
            session=w.session, customer_id=customer_id, ttl_seconds=data.ttl_seconds, key_limit=data.key_limit
        )
        w.commit(row.id)
        link = str(request.base_url).rstrip("/") + f"/portal/invite/{token}"
        return _customer_page(request, ctx, customer_id, invite=link)

    return act(request, ctx, csrf, do, lambda m, st: _customer_page(request, ctx, customer_id, m, st))


# ---------------------------------------------------------------------------- plans


@router.get("/plans")
def plans_page(request: Request, ctx: C) -> HTMLResponse:
    return _plans_page(request, ctx)


def _plans_page(request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows, _ = plans_svc.list_plans(session=s, limit=ALL, offset=0)
        apis, _ = apis_svc.list_apis(session=s, limit=ALL, offset=0)
        return page(request, ctx, "plans.html", status_code, plans=rows, apis=apis, errors=errors or [])


@router.post("/plans")
def create_plan(
    request: Request,
    ctx: C,
    name: F,
    rate: F = "",
    burst: F = "",
    quota_limit: F = "",
    quota_period: F = "DAY",
    api_ids: Annotated[list[str] | None, Form()] = None,
    csrf: Csrf = "",
) -> Response:
    def do(w: Writer) -> str:
        body: dict[str, Any] = {"name": name, "apis": [{"api_id": a} for a in api_ids or []]}
        if rate or burst:
            body["throttle"] = {"rate": rate, "burst": burst}
        if quota_limit:
            body["quota"] = {"limit": quota_limit, "period": quota_period}
        row = plans_svc.create_plan(session=w.session, data=PlanCreate.model_validate(body))
        w.commit(row.id)
        return f"{PATH}/plans/{row.id}"

    return act(request, ctx, csrf, do, lambda m, st: _plans_page(request, ctx, m, st))


@router.get("/plans/{plan_id}")
def plan_page(request: Request, ctx: C, plan_id: str) -> HTMLResponse:
    return _plan_page(request, ctx, plan_id)


def _plan_page(
    request: Request, ctx: Ctx, plan_id: str, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    today = datetime.now(UTC).date()
    with request.app.state.sessions() as s:
        row = plans_svc.get_plan(session=s, plan_id=plan_id)
        usage = usage_svc.plan_usage(session=s, plan_id=plan_id, start=today - timedelta(days=13), end=today)
        totals: dict[date, int] = defaultdict(int)
        for cu in usage.customers:
            for d in cu.days:
                totals[d.day] += d.requests
        chart = bar_chart(
            [(d.isoformat(), n) for d, n in sorted(totals.items())],
            title=f"Requests per day on plan {row.name} (all subscribers), last 14 days",
        )
        charts = [
            (cu.customer_name, _usage_chart(cu, f"{cu.customer_name}: requests per day")) for cu in usage.customers
        ]
        apis, _ = apis_svc.list_apis(session=s, limit=ALL, offset=0)
        granted = {a.api_id for a in row.apis}
        return page(
            request,
            ctx,
            "plan.html",
            status_code,
            p=row,
            apis=apis,
            granted=granted,
            chart=chart,
            charts=charts,
            errors=errors or [],
        )


@router.post("/plans/{plan_id}")
def edit_plan(
    request: Request,
    ctx: C,
    plan_id: str,
    name: F,
    rate: F = "",
    burst: F = "",
    quota_limit: F = "",
    quota_period: F = "DAY",
    api_ids: Annotated[list[str] | None, Form()] = None,
    csrf: Csrf = "",
) -> Response:
    def do(w: Writer) -> str:
        current = {a.api_id: a for a in plans_svc.get_plan(session=w.session, plan_id=plan_id).apis}
        apis = [{"api_id": a, "overrides": current[a].overrides if a in current else []} for a in api_ids or []]
        body: dict[str, Any] = {"name": name, "apis": apis, "throttle": None, "quota": None}
        if rate or burst:
            body["throttle"] = {"rate": rate, "burst": burst}
        if quota_limit:
            body["quota"] = {"limit": quota_limit, "period": quota_period}
        plans_svc.update_plan(session=w.session, plan_id=plan_id, data=PlanUpdate.model_validate(body))
        w.commit()
        return f"{PATH}/plans/{plan_id}"

    return act(request, ctx, csrf, do, lambda m, st: _plan_page(request, ctx, plan_id, m, st))


@router.post("/plans/{plan_id}/delete")
def delete_plan(request: Request, ctx: C, plan_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        plans_svc.delete_plan(session=w.session, plan_id=plan_id)
        w.commit()
        return f"{PATH}/plans"

    return act(request, ctx, csrf, do, lambda m, st: _plan_page(request, ctx, plan_id, m, st))


# ---------------------------------------------------------------------------- audit log


@router.get("/audit")
def audit_page(
    request: Request, ctx: C, who: str = "", method: str = "", path: str = "", since: str = ""
) -> HTMLResponse:
    stmt = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(500)
    if who:
        stmt = stmt.where(AuditEntry.token_name.contains(who, autoescape=True))
    if method:
        stmt = stmt.where(AuditEntry.method == method.upper())
    if path:
        stmt = stmt.where(AuditEntry.path.contains(path, autoescape=True))
    errors = []
    if since:
        try:
            stmt = stmt.where(AuditEntry.at >= datetime.fromisoformat(since).replace(tzinfo=UTC))
        except ValueError:
            errors.append("since: not a date (YYYY-MM-DD)")
    with request.app.state.sessions() as s:
        rows = s.execute(stmt).scalars().all()
        return page(
            request,
            ctx,
            "audit.html",
            entries=rows,
            errors=errors,
            filters={"who": who, "method": method, "path": path, "since": since},
        )


# ---------------------------------------------------------------------------- declarative config


@router.get("/config")
def config_page(request: Request, ctx: C) -> HTMLResponse:
    with request.app.state.sessions() as s:
        current = declarative_svc.export_document(session=s)
    text = yaml.safe_dump(current.model_dump(mode="json", exclude_none=True), sort_keys=False)
    return page(request, ctx, "config.html", document=text, changes=None, errors=[], applied=None)


@router.post("/config")
async def config_submit(request: Request, ctx: C) -> Response:
    form = await request.form()
    csrf = str(form.get("csrf") or "")
    upload = form.get("file")
    text = str(form.get("document") or "")
    if isinstance(upload, UploadFile) and upload.filename:
        text = (await upload.read(2_000_000)).decode("utf-8", "replace")
    apply = form.get("action") == "apply"
    prune = form.get("prune") == "on"
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_config_run, request, ctx, csrf, text, apply, prune)


def _config_run(request: Request, ctx: Ctx, csrf: str, text: str, apply: bool, prune: bool) -> Response:
    def show(errors: list[str], status_code: int, changes: Any = None, applied: Any = None) -> HTMLResponse:
        return page(
            request, ctx, "config.html", status_code, document=text, changes=changes, errors=errors, applied=applied
        )

    def do(w: Writer) -> HTMLResponse:
        try:
            parsed = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            return show([f"not YAML: {exc}"], 422)
        body = ApplyRequest.model_validate({"config": parsed, "prune": prune, "dry_run": not apply})
        result = declarative_svc.apply_config(
            session=w.session, doc=body.config, prune=body.prune, dry_run=body.dry_run, box=request.app.state.secret_box
        )
        if result.changed:
            w.commit()
        else:
            w.session.rollback()
        return show([], 200, changes=result.changes, applied=result if apply else None)

    return act(request, ctx, csrf, do, lambda m, st: show(m, st))
