"""Metered usage: ingesting worker batches, per-day reports, and quota adjustments.

**Ingestion** (``POST /cluster/v1/usage``) is idempotent by ``batch_id``: the id is inserted into
``usage_batches`` with ``ON CONFLICT DO NOTHING`` in the same transaction that adds the counts (per
day to ``usage_counts``; per hour, route, status class and plan to ``usage_hourly``, which usage export
reads: :mod:`control_plane.services.usage_export`), and the counts are added only when that insert
happened — a worker whose 2xx was lost sends the batch again and nothing is counted twice.  Counts
are upserts (``count = count + excluded.count``), so two replicas applying different batches at once
never lose an increment.  Counts of customers deleted in
the meantime are dropped.  Usage is not config: nothing here bumps the revision.  The batch's webhook
events (usage, quota thresholds reached: ``services/webhook_events.py``) are written in the same
transaction.

**Reports**: per UTC day, requests and (for customers on a plan with a quota) the quota remaining for
the period that contains the day = limit + that period's adjustment − requests counted on the plan's
APIs in the period.  The control plane knows usage up to the workers' last flush (1 s by default;
with Redis, the last collection: control_plane/usage_collector.py);
the enforcing counters are the limiter's.

**Adjustments** add extra quota for the customer's current period (per customer, period kind and
period start); they travel in the snapshot (``customers[].quota_extra``), so they bump the revision.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from control_plane.errors import Conflict, Invalid
from control_plane.models import (
    Customer,
    QuotaAdjustment,
    UsageBatch,
    UsageCount,
    UsageHourly,
    UsagePlan,
    UsageRefusal,
)
from control_plane.schemas import (
    AdjustPublic,
    CustomerUsage,
    PlanUsage,
    QuotaIn,
    RemainingPublic,
    UsageBatchIn,
    UsageDay,
)
from control_plane.services import webhook_events
from control_plane.services.customers import get_customer
from control_plane.services.cycles import cycle_of
from control_plane.services.plans import get_plan, plan_of, quota_of
from control_plane.services.revision import bump_revision
from data_plane.limits.periods import Cycle, customer_period

DEFAULT_REPORT_DAYS = 7  # a report without dates: the last 7 UTC days, today included
MAX_REPORT_DAYS = 366
_CHUNK = 500  # rows per multi-row INSERT (SQLite caps bound parameters per statement)


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _utc_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _ts(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


# ---------------------------------------------------------------------------- ingestion


def ingest_batch(*, session: Session, batch: UsageBatchIn) -> bool:
    """Apply one worker batch; False when this ``batch_id`` was applied before (nothing added).

    Every count goes to ``usage_counts`` (per day: reports and quotas) and to ``usage_hourly`` (per hour,
    route, status class and plan: export) in the caller's transaction, so the two always agree."""
    insert = _insert(session)
    marked = session.execute(
        insert(UsageBatch)
        .values(batch_id=batch.batch_id, node_id=batch.node_id, received_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["batch_id"])
        .returning(UsageBatch.batch_id)
    ).scalar_one_or_none()
    if marked is None:  # RETURNING is empty when the conflict clause skipped the row
        return False
    sums: dict[tuple[str, str, date], int] = defaultdict(int)
    over: dict[tuple[str, str, date], int] = defaultdict(int)  # the overage part of sums
    hourly: dict[tuple[datetime, str, str, str, str, str], list[int]] = {}
    for c in batch.counts:
        day = c.utc_day
        sums[(c.customer_id, c.api_id, day)] += c.count
        if c.overage:
            over[(c.customer_id, c.api_id, day)] += c.overage
        # a worker that reports days only: at 00:00 of the day, route, status class and plan unknown ("")
        hour = c.hour if c.hour is not None else datetime(day.year, day.month, day.day, tzinfo=UTC)
        hkey = (hour, c.customer_id, c.api_id, c.route_id, c.status_class or "", c.plan_id or "")
        acc = hourly.setdefault(hkey, [0, 0])
        acc[0] += c.count
        acc[1] += c.overage
    customer_ids = {k[0] for k in sums}
    known = set(session.execute(select(Customer.id).where(Customer.id.in_(customer_ids))).scalars())
    # n == 0: a day whose counts cancel out (Redis-collected status moves: control_plane/usage_collector.py)
    kept = [(cid, aid, day, n) for (cid, aid, day), n in sorted(sums.items()) if cid in known and n]
    rows = [
        {"customer_id": cid, "api_id": aid, "day": day, "count": n, "overage": over.get((cid, aid, day), 0)}
        for cid, aid, day, n in kept
    ]
    for i in range(0, len(rows), _CHUNK):
        stmt = insert(UsageCount).values(rows[i : i + _CHUNK])
        stmt = stmt.on_conflict_do_update(
            index_elements=["customer_id", "day", "api_id"],
            set_={
                "count": UsageCount.count + stmt.excluded.count,
                "overage": UsageCount.overage + stmt.excluded.overage,
            },
        )
        session.execute(stmt)
    hour_rows = [
        {
            "hour": hour,
            "customer_id": cid,
            "api_id": aid,
            "route_id": rid,
            "status_class": klass,
            "plan_id": pid,
            "day": hour.date(),
            "count": n,
            "overage": o,
        }
        for (hour, cid, aid, rid, klass, pid), (n, o) in sorted(hourly.items())
        if cid in known  # the same counts as usage_counts: a customer deleted meanwhile is not billed
    ]
    for i in range(0, len(hour_rows), _CHUNK):
        hstmt = insert(UsageHourly).values(hour_rows[i : i + _CHUNK])
        hstmt = hstmt.on_conflict_do_update(
            index_elements=["hour", "customer_id", "api_id", "route_id", "status_class", "plan_id"],
            set_={
                "count": UsageHourly.count + hstmt.excluded.count,
                "overage": UsageHourly.overage + hstmt.excluded.overage,
            },
        )
        session.execute(hstmt)
    _add_refusals(session, batch)
    webhook_events.usage_ingested(session=session, batch_id=batch.batch_id, counts=kept)
    return True


def _add_refusals(session: Session, batch: UsageBatchIn) -> None:
    """The batch's refusal counts into ``usage_refusals`` (the caller's transaction: once per batch id)."""
    if not batch.refusals:
        return
    sums: dict[tuple[datetime, str, int], int] = defaultdict(int)
    for r in batch.refusals:
        sums[(r.hour, r.api_id, r.status)] += r.count
    insert = _insert(session)
    rows = [{"hour": h, "api_id": a, "status": st, "count": n} for (h, a, st), n in sorted(sums.items())]
    for i in range(0, len(rows), _CHUNK):
        stmt = insert(UsageRefusal).values(rows[i : i + _CHUNK])
        stmt = stmt.on_conflict_do_update(
            index_elements=["hour", "api_id", "status"], set_={"count": UsageRefusal.count + stmt.excluded.count}
        )
        session.execute(stmt)


def refusals_since(*, session: Session, since: datetime) -> dict[str, dict[int, int]]:
    """api id -> status -> requests the gateway refused since ``since`` (the console's overview)."""
    out: dict[str, dict[int, int]] = defaultdict(dict)
    for api_id, status, n in session.execute(
        select(UsageRefusal.api_id, UsageRefusal.status, func.sum(UsageRefusal.count))
        .where(UsageRefusal.hour >= since)
        .group_by(UsageRefusal.api_id, UsageRefusal.status)
    ):
        out[api_id][int(status)] = int(n)
    return dict(out)


# ---------------------------------------------------------------------------- reports


def report_range(start: date | None, end: date | None, *, today: date) -> tuple[date, date]:
    """The days of a usage report: without ``end``, up to ``today`` (UTC); without ``start``, the
    ``DEFAULT_REPORT_DAYS`` days ending at ``end`` (what ``tollgate usage`` shows without dates)."""
    last = end if end is not None else today
    first = start if start is not None else last - timedelta(days=DEFAULT_REPORT_DAYS - 1)
    return first, last


def _check_range(start: date, end: date) -> None:
    if end < start:
        raise Invalid("end", "end must not be before start", loc=("query", "end"))
    if (end - start).days + 1 > MAX_REPORT_DAYS:
        raise Invalid("end", f"at most {MAX_REPORT_DAYS} days per report", loc=("query", "end"))


def customer_usage(*, session: Session, customer_id: str, start: date, end: date) -> CustomerUsage:
    _check_range(start, end)
    customer = get_customer(session=session, customer_id=customer_id)
    return _usage_of(session, customer, plan_of(session=session, customer=customer), start, end)


def plan_usage(*, session: Session, plan_id: str, start: date, end: date) -> PlanUsage:
    """Usage of the plan's current subscribers."""
    _check_range(start, end)
    plan = get_plan(session=session, plan_id=plan_id)
    customers = session.execute(select(Customer).where(Customer.plan_id == plan.id).order_by(Customer.name)).scalars()
    return PlanUsage(
        plan_id=plan.id, start=start, end=end, customers=[_usage_of(session, c, plan, start, end) for c in customers]
    )


def _usage_of(session: Session, customer: Customer, plan: UsagePlan | None, start: date, end: date) -> CustomerUsage:
    quota = quota_of(plan) if plan is not None else None
    cycle = cycle_of(customer)
    lo, hi = start, end
    if quota is not None:  # the periods containing start and end may reach outside [start, end]
        lo = _utc_date(_period(quota.period, _ts(start), cycle)[0])
        hi = _utc_date(_period(quota.period, _ts(end) + 86399, cycle)[1] - 1)
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    overage: dict[date, int] = defaultdict(int)
    for day, api_id, n, o in session.execute(
        select(UsageCount.day, UsageCount.api_id, UsageCount.count, UsageCount.overage).where(
            UsageCount.customer_id == customer.id, UsageCount.day >= lo, UsageCount.day <= hi
        )
    ):
        counts[day][api_id] = int(n)
        overage[day] += int(o or 0)
    used: dict[date, int] = {}  # period start -> requests on the plan's APIs in that period
    extras: dict[date, int] = {}
    if quota is not None and plan is not None:
        plan_apis = {a.api_id for a in plan.apis}
        for day, per_api in counts.items():
            p = _utc_date(_period(quota.period, _day_point(day), cycle)[0])
            used[p] = used.get(p, 0) + sum(n for a, n in per_api.items() if a in plan_apis)
        for adj in session.execute(
            select(QuotaAdjustment).where(
                QuotaAdjustment.customer_id == customer.id,
                QuotaAdjustment.period == quota.period,
                QuotaAdjustment.period_start >= lo,
                QuotaAdjustment.period_start <= hi,
            )
        ).scalars():
            extras[adj.period_start] = int(adj.extra)
    days = []
    day = start
    while day <= end:
        per_api = counts.get(day, {})
        remaining = None
        if quota is not None:
            p = _utc_date(_period(quota.period, _day_point(day), cycle)[0])
            remaining = max(0, quota.limit + extras.get(p, 0) - used.get(p, 0))
        days.append(
            UsageDay(
                day=day,
                requests=sum(per_api.values()),
                overage=overage.get(day, 0),
                apis=per_api,
                quota_remaining=remaining,
            )
        )
        day += timedelta(days=1)
    return CustomerUsage(
        customer_id=customer.id,
        customer_name=customer.name,
        plan_id=plan.id if plan is not None else None,
        quota=quota,
        days=days,
    )


# ---------------------------------------------------------------------------- seeds


def current_usage(*, session: Session, now: float | None = None) -> list[dict[str, Any]]:
    """What each customer on a plan with a quota has used of its current period (on the plan's APIs),
    as the workers have reported it: ``{customer_id, period, start, end, used}`` (epoch seconds).  A
    worker on the in-process store seeds its counters with it when it starts (``GET
    /cluster/v1/usage/current``), so a restart does not give a quota back."""
    ts = datetime.now(UTC).timestamp() if now is None else now
    plans = {p.id: p for p in session.execute(select(UsagePlan).where(UsagePlan.quota_limit.is_not(None))).scalars()}
    if not plans:
        return []
    wanted: dict[str, tuple[str, int, int, set[str]]] = {}  # customer -> (period, start, end, plan apis)
    for customer in session.execute(select(Customer).where(Customer.plan_id.in_(plans))).scalars():
        plan = plans[customer.plan_id or ""]
        quota = quota_of(plan)
        if quota is None:
            continue
        lo, hi = _period(quota.period, ts, cycle_of(customer))
        wanted[customer.id] = (quota.period, lo, hi, {a.api_id for a in plan.apis})
    if not wanted:
        return []
    earliest = _utc_date(min(lo for _, lo, _, _ in wanted.values()))
    used: dict[str, int] = defaultdict(int)
    for cid, api_id, day, n in session.execute(
        select(UsageCount.customer_id, UsageCount.api_id, UsageCount.day, UsageCount.count).where(
            UsageCount.day >= earliest
        )
    ):
        want = wanted.get(cid)
        if want is None or api_id not in want[3]:
            continue
        # the same days as quota_remaining in the reports (_adjustment_row): those the period touches
        if _utc_date(want[1]) <= day <= _utc_date(want[2] - 1):
            used[cid] += int(n)
    return [
        {"customer_id": cid, "period": period, "start": lo, "end": hi, "used": used[cid]}
        for cid, (period, lo, hi, _) in sorted(wanted.items())
        if used.get(cid)
    ]


# ---------------------------------------------------------------------------- adjustments


def adjust_quota(*, session: Session, customer_id: str, extra: int, now: float | None = None) -> AdjustPublic:
    """Add ``extra`` to this period's extra quota (negative takes away)."""
    row, quota, ts, _used = _adjustment_row(session, customer_id, now)
    row.extra = int(row.extra) + extra
    session.flush()
    return _adjust_public(row, quota, ts, cycle_of(get_customer(session=session, customer_id=customer_id)))


def set_remaining(
    *, session: Session, customer_id: str, remaining: int, now: float | None = None
) -> tuple[RemainingPublic, int]:
    """Make this period's remaining quota ``remaining`` (AWS UpdateUsage): the extra quota becomes
    ``remaining - limit + used``, ``used`` being the requests the workers reported for the period so far
    (up to a flush interval behind what their counters hold).  Sending it twice sets it twice: idempotent.
    Returns the new state and the extra quota it replaced."""
    row, quota, ts, used = _adjustment_row(session, customer_id, now)
    before = int(row.extra)
    row.extra = remaining - quota.limit + used
    session.flush()
    out = _adjust_public(row, quota, ts, cycle_of(get_customer(session=session, customer_id=customer_id)))
    return RemainingPublic(**out.model_dump(), used=used, remaining=remaining), before


def _adjustment_row(
    session: Session, customer_id: str, now: float | None
) -> tuple[QuotaAdjustment, QuotaIn, float, int]:
    """This period's adjustment row of the customer (created at 0), its plan's quota, the time, and the
    requests reported for the period on the plan's APIs."""
    bump_revision(session)
    customer = get_customer(session=session, customer_id=customer_id)
    plan = plan_of(session=session, customer=customer)
    quota = quota_of(plan) if plan is not None else None
    if quota is None or plan is None:
        raise Conflict(f"customer {customer.name!r} has no usage plan with a quota to adjust")
    ts = datetime.now(UTC).timestamp() if now is None else now
    lo, hi = _period(quota.period, ts, cycle_of(customer))
    start = _utc_date(lo)
    end = _utc_date(hi - 1)
    row = session.get(QuotaAdjustment, (customer.id, quota.period, start))
    if row is None:
        row = QuotaAdjustment(customer_id=customer.id, period=quota.period, period_start=start, extra=0)
        session.add(row)
    plan_apis = [a.api_id for a in plan.apis]
    used = session.execute(
        select(func.coalesce(func.sum(UsageCount.count), 0)).where(
            UsageCount.customer_id == customer.id,
            UsageCount.day >= start,
            UsageCount.day <= end,
            UsageCount.api_id.in_(plan_apis),
        )
    ).scalar_one()
    return row, quota, ts, int(used)


def _adjust_public(row: QuotaAdjustment, quota: QuotaIn, ts: float, cycle: Cycle | None) -> AdjustPublic:
    return AdjustPublic(
        customer_id=row.customer_id,
        period=quota.period,
        period_start=row.period_start,
        period_end=_utc_date(_period(quota.period, ts, cycle)[1] - 1),
        extra=row.extra,
        limit=quota.limit + row.extra,
    )


def current_extras(session: Session, now: float) -> dict[str, tuple[int, int, int]]:
    """customer id -> (extra, period start, period end) in epoch seconds, for each customer whose plan has
    a quota and who has an adjustment for the period containing ``now`` (the snapshot's ``quota_extra``)."""
    out: dict[str, tuple[int, int, int]] = {}
    rows = session.execute(
        select(Customer, UsagePlan.quota_period, QuotaAdjustment.period_start, QuotaAdjustment.extra)
        .join(UsagePlan, UsagePlan.id == Customer.plan_id)
        .join(
            QuotaAdjustment,
            (QuotaAdjustment.customer_id == Customer.id) & (QuotaAdjustment.period == UsagePlan.quota_period),
        )
        .where(UsagePlan.quota_limit.is_not(None), QuotaAdjustment.extra != 0)
    )
    for customer, period, pstart, extra in rows:
        if period is None:
            continue
        start, end = _period(period, now, cycle_of(customer))
        if _utc_date(start) == pstart:
            out[customer.id] = (int(extra), start, end)
    return out


def _period(period: str, ts: float, cycle: Cycle | None) -> tuple[int, int]:
    """(start, end) of the customer's quota period containing ``ts``: its billing cycle's, else UTC's."""
    return customer_period(period, ts, cycle)


def _day_point(day: date) -> float:
    """The instant a UTC day's usage is counted at: usage is reported per UTC day, so a cycle that
    starts inside a day gets that day's requests when the day's last hour falls in it (the day's end)."""
    return _ts(day) + 86399
