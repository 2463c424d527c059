"""Events for webhook endpoints, written into the outbox in the transaction of what caused them.

**The outbox.** :func:`emit` inserts each event into ``webhook_events`` (``ON CONFLICT DO NOTHING`` on
its id) and, for the events that were new, one pending ``webhook_deliveries`` row per enabled endpoint
subscribed to the event's type.  Nothing is written when no enabled endpoint wants the type (no
subscriber, no outbox growth).  The caller commits: the event exists exactly when what caused it does.
The sender (control_plane/webhook_sender.py) takes it from there.

**Stable ids.** An event's id is a UUID 5 of what caused it, never random, so a repeat of the cause
writes nothing new and the receiver sees the same id on every attempt:

* ``tollgate.request.usage`` — one per (usage batch, customer, API, day) of an applied worker batch
  (batches are applied once: :func:`control_plane.services.usage.ingest_batch`);
* ``tollgate.quota.threshold_reached`` — (customer, quota period kind, period start, 80 or 100): once
  per customer, period and threshold however much more usage arrives; looked at when usage is ingested;
* ``tollgate.key.created`` / ``tollgate.key.revoked`` — (key id); a key is created once and revoked once;
* ``tollgate.key.expiring`` — (key id, expires_at): once per key (again if its expiry is moved), found by
  :func:`expiring_keys`, which the sender runs every ``scan_interval``.

Events are kept ``retention`` (40 days, longer than any quota period) so the ids that keep the
"once" promises outlive the periods they are about.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from control_plane.models import (
    Api,
    ApiKey,
    Customer,
    QuotaAdjustment,
    UsageCount,
    UsagePlan,
    UsagePlanApi,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from control_plane.schemas.webhooks import ALL, KEY_CREATED, KEY_EXPIRING, KEY_REVOKED, THRESHOLD, USAGE
from control_plane.services.cycles import cycle_of
from data_plane.limits.periods import Cycle, customer_period

THRESHOLDS = (80, 100)  # percent of the period's quota (limit + adjustments)
_NAMESPACE = uuid.UUID("4c0d7a8e-5d0b-4f57-9a8e-6f1c2b7e9d31")  # Tollgate's, for UUID 5 event ids
_CHUNK = 500  # ids per IN (...) and rows per multi-row INSERT (SQLite caps bound parameters)


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    type: str
    subject: str | None
    time: datetime
    data: dict[str, Any]


def event_id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(str(p) for p in parts)))


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


# ---------------------------------------------------------------------------- the outbox


Subscribers = list[tuple[str, list[str]]]


def subscribers(session: Session) -> Subscribers:
    """(endpoint id, event types) of every enabled endpoint."""
    rows = session.execute(select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(WebhookEndpoint.enabled))
    return [(eid, list(types or [])) for eid, types in rows]


def wants(types: Sequence[str], event_type: str) -> bool:
    return ALL in types or event_type in types


def emit(
    session: Session, events: Sequence[NewEvent], *, endpoints: Subscribers | None = None, now: datetime | None = None
) -> int:
    """Write the events not written before, with a pending delivery for each subscribed enabled endpoint;
    the number of new events.  An event no endpoint wants is not written at all."""
    endpoints = subscribers(session) if endpoints is None else endpoints
    now = now or utcnow()
    wanted = [e for e in events if any(wants(types, e.type) for _, types in endpoints)]
    insert = _insert(session)
    new: set[str] = set()
    for chunk in _chunks(wanted):
        rows = [
            {"id": e.id, "type": e.type, "subject": e.subject, "time": e.time, "data": e.data, "created_at": now}
            for e in chunk
        ]
        stmt = insert(WebhookEvent).values(rows).on_conflict_do_nothing(index_elements=["id"])
        new.update(session.execute(stmt.returning(WebhookEvent.id)).scalars())
    deliveries = [
        {
            "id": str(uuid.uuid4()),
            "endpoint_id": endpoint_id,
            "event_id": e.id,
            "event_type": e.type,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "retry_since": now,
            "created_at": now,
        }
        for e in wanted
        if e.id in new
        for endpoint_id, types in endpoints
        if wants(types, e.type)
    ]
    for chunk in _chunks(deliveries):
        session.execute(insert(WebhookDelivery).values(list(chunk)))
    return len(new)


# ---------------------------------------------------------------------------- usage and thresholds


@dataclass(frozen=True, slots=True)
class _Subscriber:
    name: str
    metadata: dict[str, Any]
    plan_id: str | None
    plan_name: str | None
    quota_limit: int | None
    quota_period: str | None
    cycle: Cycle | None = None  # the customer's billing cycle (None: UTC calendar periods)


def usage_ingested(
    *, session: Session, batch_id: str, counts: Sequence[tuple[str, str, date, int]], now: datetime | None = None
) -> int:
    """The events of one applied usage batch: its (customer, api, day, count) rows as usage events, and
    the quota thresholds its customers have reached in their current period.  The number written."""
    endpoints = subscribers(session)
    want_usage = any(wants(t, USAGE) for _, t in endpoints)
    want_thresholds = any(wants(t, THRESHOLD) for _, t in endpoints)
    if not counts or not (want_usage or want_thresholds):
        return 0
    now = now or utcnow()
    customers = _subscribers_of(session, sorted({c[0] for c in counts}))
    events: list[NewEvent] = []
    if want_usage:
        api_ids = sorted({c[1] for c in counts})
        api_names: dict[str, str] = {}
        for chunk in _chunks(api_ids):
            api_names.update(session.execute(select(Api.id, Api.name).where(Api.id.in_(chunk))).all())
        for customer_id, api_id, day, n in counts:
            who = customers.get(customer_id)
            if who is not None:
                events.append(_usage_event(batch_id, customer_id, who, api_id, api_names.get(api_id), day, n, now))
    if want_thresholds:
        events.extend(_thresholds(session, customers, now))
    return emit(session, events, endpoints=endpoints, now=now)


_SUBSCRIBER_COLUMNS = (
    Customer.id,
    Customer.name,
    Customer.meta,
    UsagePlan.id,
    UsagePlan.name,
    UsagePlan.quota_limit,
    UsagePlan.quota_period,
    Customer.billing_anchor,
    Customer.time_zone,
    Customer.cycle_since,
)


def _subscribers_of(session: Session, customer_ids: Sequence[str]) -> dict[str, _Subscriber]:
    out: dict[str, _Subscriber] = {}
    for chunk in _chunks(customer_ids):
        rows = session.execute(
            select(*_SUBSCRIBER_COLUMNS)
            .outerjoin(UsagePlan, UsagePlan.id == Customer.plan_id)
            .where(Customer.id.in_(chunk))
        )
        for cid, name, meta, plan_id, plan_name, limit, period, anchor, zone, since in rows:
            cycle = cycle_of(Customer(billing_anchor=anchor, time_zone=zone, cycle_since=since))
            out[cid] = _Subscriber(name, dict(meta or {}), plan_id, plan_name, limit, period, cycle)
    return out


def _usage_event(
    batch_id: str,
    customer_id: str,
    who: _Subscriber,
    api_id: str,
    api_name: str | None,
    day: date,
    n: int,
    now: datetime,
) -> NewEvent:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    # The CloudEvent time puts the count in its day for a meter's time windows (OpenMeter aggregates by
    # it): now for today's counts, the day's last second for a late batch about an earlier day.
    when = min(max(now, start), end - timedelta(seconds=1))
    data = {
        "customer_id": customer_id,
        "customer_name": who.name,
        # the customer's metadata: where a relay finds its id in the billing system (stripe_customer_id...)
        "customer_metadata": who.metadata,
        "api_id": api_id,
        "api_name": api_name,
        "count": n,
        "day": day.isoformat(),
        "window_start": rfc3339(start),
        "window_end": rfc3339(end),
        "plan_id": who.plan_id,
        "plan_name": who.plan_name,
        "batch_id": batch_id,
    }
    return NewEvent(event_id(USAGE, batch_id, customer_id, api_id, day), USAGE, customer_id, when, data)


def current_period(period: str, now: datetime, cycle: Cycle | None = None) -> tuple[date, date]:
    """The quota period containing ``now``: its first day and the first day of the next one (UTC dates).
    The one place that says what a customer's current period is here: its billing cycle's, else the
    UTC calendar's (usage is counted per UTC day, as in the usage reports)."""
    start, end = customer_period(period, now.timestamp(), cycle)
    return datetime.fromtimestamp(start, UTC).date(), datetime.fromtimestamp(end, UTC).date()


def _thresholds(session: Session, customers: dict[str, _Subscriber], now: datetime) -> list[NewEvent]:
    """The thresholds each customer with a quota has reached in its current period: requests counted on
    the plan's APIs >= threshold % of (limit + the period's adjustment).  Events for thresholds reached
    earlier are written again and skipped by their id: no state to keep besides the outbox."""
    periods: dict[tuple[str, date, date], list[str]] = defaultdict(list)
    for cid, who in customers.items():
        if who.quota_limit is not None and who.quota_period is not None:
            start, end = current_period(who.quota_period, now, who.cycle)
            periods[(who.quota_period, start, end)].append(cid)
    events: list[NewEvent] = []
    for (kind, start, end), ids in sorted(periods.items()):
        for chunk in _chunks(sorted(ids)):
            used = dict(
                session.execute(
                    select(UsageCount.customer_id, func.sum(UsageCount.count))
                    .join(Customer, Customer.id == UsageCount.customer_id)
                    .join(
                        UsagePlanApi,
                        and_(UsagePlanApi.plan_id == Customer.plan_id, UsagePlanApi.api_id == UsageCount.api_id),
                    )
                    .where(UsageCount.customer_id.in_(chunk), UsageCount.day >= start, UsageCount.day < end)
                    .group_by(UsageCount.customer_id)
                ).all()
            )
            extra = dict(
                session.execute(
                    select(QuotaAdjustment.customer_id, QuotaAdjustment.extra).where(
                        QuotaAdjustment.customer_id.in_(chunk),
                        QuotaAdjustment.period == kind,
                        QuotaAdjustment.period_start == start,
                    )
                ).all()
            )
            for cid in chunk:
                who = customers[cid]
                assert who.quota_limit is not None
                n, limit = int(used.get(cid) or 0), int(who.quota_limit) + int(extra.get(cid) or 0)
                for pct in THRESHOLDS:
                    if n > 0 and n * 100 >= pct * limit:
                        data = {
                            "customer_id": cid,
                            "customer_name": who.name,
                            "customer_metadata": who.metadata,
                            "plan_id": who.plan_id,
                            "plan_name": who.plan_name,
                            "threshold_percent": pct,
                            "period": kind,
                            "period_start": start.isoformat(),
                            "period_end": end.isoformat(),
                            "limit": limit,
                            "used": n,
                        }
                        events.append(NewEvent(event_id(THRESHOLD, cid, kind, start, pct), THRESHOLD, cid, now, data))
    return events


# ---------------------------------------------------------------------------- keys


def _key_data(session: Session, key: ApiKey) -> dict[str, Any]:
    customer = session.get(Customer, key.customer_id)
    return {
        "key_id": key.id,
        "prefix": key.prefix,  # the non-secret part; the key itself is never in an event
        "name": key.name,
        "customer_id": key.customer_id,
        "customer_name": customer.name if customer is not None else None,
        "created_at": rfc3339(key.created_at),
        "expires_at": rfc3339(key.expires_at) if key.expires_at is not None else None,
        "revoked_at": rfc3339(key.revoked_at) if key.revoked_at is not None else None,
    }


def key_created(*, session: Session, key: ApiKey) -> int:
    return _key_event(session, key, KEY_CREATED, key.created_at)


def key_revoked(*, session: Session, key: ApiKey) -> int:
    return _key_event(session, key, KEY_REVOKED, key.revoked_at or utcnow())


def _key_event(session: Session, key: ApiKey, kind: str, when: datetime) -> int:
    endpoints = subscribers(session)
    if not any(wants(t, kind) for _, t in endpoints):
        return 0
    session.flush()  # a new key's id and created_at
    event = NewEvent(event_id(kind, key.id), kind, key.customer_id, when, _key_data(session, key))
    return emit(session, [event], endpoints=endpoints)


def expiring_keys(*, session: Session, within: timedelta, now: datetime | None = None) -> int:
    """Events for active keys that expire within ``within`` of ``now`` (once per key and expiry)."""
    endpoints = subscribers(session)
    if not any(wants(t, KEY_EXPIRING) for _, t in endpoints):
        return 0
    now = now or utcnow()
    keys = session.execute(
        select(ApiKey).where(
            ApiKey.revoked_at.is_(None),
            ApiKey.expires_at.is_not(None),
            ApiKey.expires_at > now,
            ApiKey.expires_at <= now + within,
        )
    ).scalars()
    events = []
    for key in keys:
        assert key.expires_at is not None
        data = _key_data(session, key)
        data["expires_in_seconds"] = int((key.expires_at - now).total_seconds())
        eid = event_id(KEY_EXPIRING, key.id, rfc3339(key.expires_at))
        events.append(NewEvent(eid, KEY_EXPIRING, key.customer_id, now, data))
    return emit(session, events, endpoints=endpoints, now=now)
