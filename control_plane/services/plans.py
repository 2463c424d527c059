"""Usage plans and customer subscriptions.

A plan has an optional plan-wide throttle and quota and grants a list of APIs, each with optional
per-route throttle overrides (method + path template of one of the API's routes).  A customer is
subscribed to at most one plan (``customers.plan_id``).  Unknown ``api_id``s are 422 naming the field,
as for a route's ``upstream_id``; deleting a plan with subscribers is a conflict.  Every write bumps
the revision (the snapshot carries plans and subscriptions).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.models import Api, Customer, Route, UsagePlan, UsagePlanApi
from control_plane.schemas import PlanApiIn, PlanCreate, PlanUpdate, QuotaIn, ThrottleIn
from control_plane.services.apis import override_matches
from control_plane.services.common import integrity_as_conflict, paginate
from control_plane.services.customers import get_customer
from control_plane.services.revision import bump_revision


def throttle_of(row: UsagePlan) -> ThrottleIn | None:
    if row.throttle_rate is None or row.throttle_burst is None:
        return None
    return ThrottleIn(rate=row.throttle_rate, burst=row.throttle_burst)


def quota_of(row: UsagePlan) -> QuotaIn | None:
    if row.quota_limit is None or row.quota_period is None:
        return None
    return QuotaIn(
        limit=row.quota_limit,
        period=row.quota_period,  # type: ignore[arg-type]
        overage=row.quota_overage,  # type: ignore[arg-type]
        hard_cap=row.quota_hard_cap,
    )


def list_plans(*, session: Session, limit: int, offset: int) -> tuple[list[UsagePlan], int]:
    stmt = select(UsagePlan).options(selectinload(UsagePlan.apis)).order_by(UsagePlan.created_at, UsagePlan.id)
    return paginate(session, stmt, limit=limit, offset=offset)


def get_plan(*, session: Session, plan_id: str) -> UsagePlan:
    plan = session.get(UsagePlan, plan_id)
    if plan is None:
        raise NotFound.of("usage plan", plan_id)
    return plan


def create_plan(*, session: Session, data: PlanCreate) -> UsagePlan:
    bump_revision(session)
    _check_name_free(session, data.name)
    plan = UsagePlan(name=data.name, description=data.description)
    _set_limits(plan, {"throttle": data.throttle, "quota": data.quota})
    session.add(plan)
    with integrity_as_conflict(f"usage plan name {data.name!r} is already used"):
        session.flush()
    _set_apis(session, plan, data.apis)
    return plan


def update_plan(*, session: Session, plan_id: str, data: PlanUpdate) -> UsagePlan:
    bump_revision(session)
    plan = get_plan(session=session, plan_id=plan_id)
    changes: dict[str, Any] = {k: getattr(data, k) for k in data.model_fields_set}
    for field in ("name", "description", "apis"):
        if field in changes and changes[field] is None:
            raise Invalid(field, f"{field} may not be null")
    if changes.get("name") not in (None, plan.name):
        _check_name_free(session, changes["name"])
        plan.name = changes["name"]
    if "description" in changes:
        plan.description = changes["description"]
    _set_limits(plan, changes)
    with integrity_as_conflict("usage plan name is already used"):
        session.flush()
    if "apis" in changes:
        _set_apis(session, plan, changes["apis"])
    return plan


def delete_plan(*, session: Session, plan_id: str) -> None:
    bump_revision(session)
    plan = get_plan(session=session, plan_id=plan_id)
    users = session.execute(select(func.count()).where(Customer.plan_id == plan_id)).scalar_one()
    if users:
        raise Conflict(f"usage plan {plan.name!r} has {users} subscribed customer(s); unsubscribe them first")
    session.delete(plan)
    with integrity_as_conflict("usage plan gained a subscriber concurrently"):
        session.flush()


def _check_name_free(session: Session, name: str) -> None:
    if session.execute(select(UsagePlan.id).where(UsagePlan.name == name)).first() is not None:
        raise Conflict(f"usage plan name {name!r} is already used")


def _set_limits(plan: UsagePlan, changes: dict[str, Any]) -> None:
    if "throttle" in changes:
        t: ThrottleIn | None = changes["throttle"]
        plan.throttle_rate, plan.throttle_burst = (t.rate, t.burst) if t is not None else (None, None)
    if "quota" in changes:
        q: QuotaIn | None = changes["quota"]
        plan.quota_limit, plan.quota_period = (q.limit, q.period) if q is not None else (None, None)
        plan.quota_overage, plan.quota_hard_cap = (q.overage, q.hard_cap) if q is not None else ("deny", None)


def _set_apis(session: Session, plan: UsagePlan, apis: list[PlanApiIn]) -> None:
    ids = [a.api_id for a in apis]
    # API names for the messages: an id means nothing to someone applying a file (nor one created
    # in the same, rolled-back, transaction)
    names = {r.id: r.name for r in session.execute(select(Api.id, Api.name).where(Api.id.in_(ids)))} if ids else {}
    routes: dict[str, list[tuple[str, list[str]]]] = {}
    for row in session.execute(select(Route.api_id, Route.path, Route.methods).where(Route.api_id.in_(ids))):
        routes.setdefault(row.api_id, []).append((row.path, list(row.methods)))
    for i, a in enumerate(apis):
        if a.api_id not in names:
            raise Invalid("apis", f"api {a.api_id!r} does not exist", loc=("apis", i, "api_id"))
        for j, o in enumerate(a.overrides):
            if not override_matches(o.method, o.path, routes.get(a.api_id, [])):
                raise Invalid(
                    "apis",
                    f"api {names[a.api_id]!r} has no route {o.method} {o.path}",
                    loc=("apis", i, "overrides", j, "path"),
                )
    plan.apis.clear()
    session.flush()
    for pos, a in enumerate(apis):
        plan.apis.append(UsagePlanApi(api_id=a.api_id, position=pos, overrides=[o.model_dump() for o in a.overrides]))
    with integrity_as_conflict("an api of the plan was deleted concurrently"):
        session.flush()


# ---------------------------------------------------------------------------- subscriptions


def subscribe(
    *, session: Session, customer_id: str, plan_id: str, cycle: dict[str, Any] | None = None
) -> tuple[Customer, UsagePlan]:
    """Subscribe (or move) a customer to a plan.  Usage counters belong to the customer and the period,
    not the plan, so the usage counted so far in the current period carries over.  ``cycle``: the
    ``billing_anchor`` / ``time_zone`` the request named (absent: unchanged); a new anchor or zone
    starts a new cycle now (``cycle_since``), so nothing counted in the old one counts again."""
    bump_revision(session)
    customer = get_customer(session=session, customer_id=customer_id)
    plan = session.get(UsagePlan, plan_id)
    if plan is None:
        raise Invalid("plan_id", f"usage plan {plan_id!r} does not exist")
    customer.plan_id = plan.id
    if cycle:
        _set_cycle(customer, cycle)
    with integrity_as_conflict("the usage plan was deleted concurrently"):
        session.flush()
    return customer, plan


def _set_cycle(customer: Customer, given: dict[str, Any]) -> None:
    zone_name = given["time_zone"] if "time_zone" in given else customer.time_zone
    anchor = given["billing_anchor"] if "billing_anchor" in given else customer.billing_anchor
    if "billing_anchor" in given and anchor is None and "time_zone" not in given:
        zone_name = None  # null anchor: back to the UTC calendar
    if anchor is not None and anchor.tzinfo is None:  # a wall-clock time in the cycle's zone
        anchor = anchor.replace(tzinfo=ZoneInfo(zone_name) if zone_name else UTC)
    anchor = anchor.astimezone(UTC) if anchor is not None else None
    if (anchor, zone_name) != (_utc(customer.billing_anchor), customer.time_zone):
        customer.billing_anchor, customer.time_zone = anchor, zone_name
        customer.cycle_since = datetime.now(UTC) if (anchor is not None or zone_name) else None


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None and value.tzinfo is not None else value


def unsubscribe(*, session: Session, customer_id: str) -> None:
    bump_revision(session)
    customer = get_customer(session=session, customer_id=customer_id)
    customer.plan_id = None
    session.flush()


def plan_of(*, session: Session, customer: Customer) -> UsagePlan | None:
    return session.get(UsagePlan, customer.plan_id) if customer.plan_id else None
