"""Console pages for customers (keys, plan, usage, portal invite) and usage plans (usage charts)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from control_plane.api.deps import Writer
from control_plane.schemas import (
    CustomerCreate,
    CustomerUpdate,
    KeyCreate,
    KeyRotate,
    PlanCreate,
    PlanUpdate,
)
from control_plane.schemas.portal import PortalInviteCreate
from control_plane.services import apis as apis_svc
from control_plane.services import customers as customers_svc
from control_plane.services import plans as plans_svc
from control_plane.services import portal as portal_svc
from control_plane.services import usage as usage_svc
from control_plane.web.charts import bar_chart
from control_plane.web.console.core import ALL, PATH, C, Csrf, Ctx, F, act, page, router

# ---------------------------------------------------------------------------- customers and keys


@router.get("/customers")
def customers_page(request: Request, ctx: C) -> HTMLResponse:
    return _customers_page(request, ctx)


def _customers_page(
    request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows, _, _ = customers_svc.list_customers(session=s, limit=ALL, offset=0)
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
        keys, _, _ = customers_svc.list_keys(session=s, customer_id=customer_id, limit=ALL, offset=0)
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
