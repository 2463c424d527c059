"""``/v1/usage-plans`` (CRUD, usage report) and a customer's plan, usage and quota adjustment
(``/v1/customers/{customer_id}/plan``, ``/usage``, ``/usage/adjust``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from control_plane.api.deps import CustomerId, Paging, PlanId, ReadSession, Write
from control_plane.schemas import (
    AdjustIn,
    AdjustPublic,
    CustomerUsage,
    Page,
    PlanCreate,
    PlanPublic,
    PlanUpdate,
    PlanUsage,
    RemainingIn,
    RemainingPublic,
    SubscriptionIn,
    SubscriptionPublic,
)
from control_plane.services import convert
from control_plane.services import customers as customer_svc
from control_plane.services import plans as svc
from control_plane.services import usage as usage_svc

router = APIRouter(prefix="/usage-plans", tags=["usage plans"])
customer_router = APIRouter(prefix="/customers/{customer_id}", tags=["usage plans"])

Start = Annotated[
    date | None,
    Query(description="first UTC day, YYYY-MM-DD (inclusive); default: 6 days before end (7 days in all)"),
]
End = Annotated[date | None, Query(description="last UTC day, YYYY-MM-DD (inclusive); default: today (UTC)")]


def _today() -> date:
    return datetime.now(UTC).date()


@router.post("", status_code=status.HTTP_201_CREATED)
def create_plan(body: PlanCreate, w: Write) -> PlanPublic:
    """Create a usage plan: a throttle, a quota and the APIs it grants."""
    row = svc.create_plan(session=w.session, data=body)
    w.commit(row.id)
    return convert.plan_public(row)


@router.get("")
def list_plans(session: ReadSession, page: Paging) -> Page[PlanPublic]:
    """List the usage plans, a page at a time."""
    rows, total = svc.list_plans(session=session, limit=page.limit, offset=page.offset)
    return Page(items=[convert.plan_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/{plan_id}")
def get_plan(plan_id: PlanId, session: ReadSession) -> PlanPublic:
    """One usage plan."""
    return convert.plan_public(svc.get_plan(session=session, plan_id=plan_id))


@router.patch("/{plan_id}")
def update_plan(plan_id: PlanId, body: PlanUpdate, w: Write) -> PlanPublic:
    """Change the fields given; an explicit null removes the throttle or the quota."""
    row = svc.update_plan(session=w.session, plan_id=plan_id, data=body)
    w.commit()
    return convert.plan_public(row)


@router.delete("/{plan_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_plan(plan_id: PlanId, w: Write) -> Response:
    """409 while customers are subscribed."""
    svc.delete_plan(session=w.session, plan_id=plan_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{plan_id}/usage")
def plan_usage(plan_id: PlanId, session: ReadSession, start: Start = None, end: End = None) -> PlanUsage:
    """Per day and current subscriber: requests counted and quota remaining (at most 366 days;
    without dates, the last 7 UTC days)."""
    first, last = usage_svc.report_range(start, end, today=_today())
    return usage_svc.plan_usage(session=session, plan_id=plan_id, start=first, end=last)


# ---------------------------------------------------------------------------- a customer's plan and usage


@customer_router.get("/plan")
def get_subscription(customer_id: CustomerId, session: ReadSession) -> SubscriptionPublic:
    """The customer's plan and its current billing period."""
    customer = customer_svc.get_customer(session=session, customer_id=customer_id)
    plan = svc.plan_of(session=session, customer=customer)
    return convert.subscription_public(customer, plan)


@customer_router.put("/plan")
def subscribe(customer_id: CustomerId, body: SubscriptionIn, w: Write) -> SubscriptionPublic:
    """Subscribe or move to a plan, optionally with a billing cycle (``billing_anchor``, ``time_zone``).
    Moving plan keeps the cycle and the usage counted in the current period; a new anchor or time zone
    starts a new cycle now (the quota counts from zero; what was counted stays in the reports)."""
    cycle = body.model_dump(exclude_unset=True, include={"billing_anchor", "time_zone"})
    customer, plan = svc.subscribe(session=w.session, customer_id=customer_id, plan_id=body.plan_id, cycle=cycle)
    w.commit()
    return convert.subscription_public(customer, plan)


@customer_router.delete("/plan", status_code=status.HTTP_204_NO_CONTENT)
def unsubscribe(customer_id: CustomerId, w: Write) -> Response:
    """End the customer's subscription: the plan's APIs and limits no longer apply to it."""
    svc.unsubscribe(session=w.session, customer_id=customer_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@customer_router.get("/usage")
def customer_usage(
    customer_id: CustomerId, session: ReadSession, start: Start = None, end: End = None
) -> CustomerUsage:
    """The customer's requests per day and API, and the quota remaining in the period of each day (at
    most 366 days; without dates, the last 7 UTC days, as ``tollgate usage`` shows)."""
    first, last = usage_svc.report_range(start, end, today=_today())
    return usage_svc.customer_usage(session=session, customer_id=customer_id, start=first, end=last)


@customer_router.post("/usage/adjust")
def adjust_quota(customer_id: CustomerId, body: AdjustIn, w: Write) -> AdjustPublic:
    """Extra quota for the current period (409 when the customer's plan has no quota). Not idempotent by
    itself: send an ``Idempotency-Key`` so a retry after a lost answer is not granted twice."""
    result = usage_svc.adjust_quota(session=w.session, customer_id=customer_id, extra=body.extra)
    detail = {"period_start": str(result.period_start), "extra": _change(result.extra - body.extra, result.extra)}
    w.commit(detail=detail)
    return result


@customer_router.put("/usage/remaining")
def set_remaining(customer_id: CustomerId, body: RemainingIn, w: Write) -> RemainingPublic:
    """Set what is left of the current period's quota (409 when the customer's plan has no quota):
    naturally idempotent (the same body twice leaves the same state)."""
    result, before = usage_svc.set_remaining(session=w.session, customer_id=customer_id, remaining=body.remaining)
    w.commit(
        detail={
            "period_start": str(result.period_start),
            "extra": _change(before, result.extra),
            # (result.limit - result.extra: the plan's own limit)
            "remaining": _change(result.limit - result.extra + before - result.used, result.remaining),
        }
    )
    return result


def _change(before: int, after: int) -> dict[str, int]:
    return {"before": before, "after": after}
