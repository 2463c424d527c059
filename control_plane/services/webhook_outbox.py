"""The sender's side of the outbox: claim due deliveries, record each attempt, purge old events.

**Claims are leases.**  :func:`claim` picks due pending deliveries of enabled endpoints and stamps them
with a random ``lease`` token and ``locked_until`` = now + the lease time, in one short transaction.
On PostgreSQL the pick is a ``SELECT ... FOR UPDATE SKIP LOCKED`` inside the ``UPDATE``, so replicas
claiming at the same moment take disjoint rows without waiting for each other; on SQLite the one
statement runs under the database's single write lock, so a row already taken is not taken twice.  A replica that dies
holding a lease simply lets it run out: the delivery is due again and anyone claims it.

**Results only count under the lease.**  :func:`record` updates the row ``WHERE lease = <mine>``: an
attempt that outlived its lease (or whose delivery was retried by hand or deleted meanwhile) changes
nothing, and the delivery is simply attempted again — at-least-once, never a lost delivery.

**Retry schedule.**  After the n-th failed attempt the next is due after ``min(cap, base * 2**(n-1))``,
jittered to between half and all of it (so receivers that failed together are not retried in step),
unless that is past ``retry_since + max_age``: then the delivery is ``failed``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from control_plane.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_ERROR_MAX = 500


@dataclass(frozen=True, slots=True)
class Claimed:
    """One delivery to attempt, with everything the attempt needs (read once, at the claim)."""

    delivery_id: str
    lease: str
    attempts: int  # before this one
    retry_since: datetime
    endpoint_id: str
    url: str
    secret_encrypted: str
    authorization_encrypted: str | None
    event_id: str
    event_type: str
    subject: str | None
    time: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status_code: int | None = None  # None: no answer (connection failed, timed out)
    error: str | None = None


def claim(*, session: Session, limit: int, lease_for: timedelta, now: datetime) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries (oldest due first) and return them; commits."""
    due: Any = (
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
            WebhookEndpoint.enabled,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=WebhookDelivery)
    lease = str(uuid.uuid4())
    # One statement, so the pick and the stamp are one atomic write on both databases (SQLite runs it
    # under its write lock; PostgreSQL re-checks each row it locks and skips rows others hold).
    taken = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due.scalar_subquery()))
        .values(lease=lease, locked_until=now + lease_for)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if not getattr(taken, "rowcount", 0):
        return []
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint, WebhookEvent)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.lease == lease)
        .order_by(WebhookDelivery.next_attempt_at)
    ).all()
    return [
        Claimed(
            delivery_id=d.id,
            lease=lease,
            attempts=d.attempts,
            retry_since=d.retry_since,
            endpoint_id=ep.id,
            url=ep.url,
            secret_encrypted=ep.secret_encrypted,
            authorization_encrypted=ep.authorization_encrypted,
            event_id=ev.id,
            event_type=ev.type,
            subject=ev.subject,
            time=ev.time,
            data=dict(ev.data),
        )
        for d, ep, ev in rows
    ]


def backoff(attempts: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
    delay = min(cap, base * 2.0 ** min(attempts - 1, 62))
    return delay / 2 + rand() * delay / 2


def record(
    *,
    session: Session,
    claimed: Claimed,
    outcome: Outcome,
    now: datetime,
    max_age: timedelta,
    base: float,
    cap: float,
) -> str | None:
    """Store one attempt's outcome under its lease; the delivery's new status, None when the lease was
    lost (nothing stored).  The caller commits."""
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": outcome.status_code,
        "last_error": (outcome.error or None) and (outcome.error or "")[:_ERROR_MAX],
        "last_attempt_at": now,
        "lease": None,
        "locked_until": None,
    }
    if outcome.ok:
        values.update(status=DELIVERED, delivered_at=now)
    else:
        due = now + timedelta(seconds=backoff(attempts, base=base, cap=cap))
        if due > claimed.retry_since + max_age:
            values.update(status=FAILED)
        else:
            values.update(status=PENDING, next_attempt_at=due)
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claimed.delivery_id, WebhookDelivery.lease == claimed.lease)
        .values(**values)
    )
    return str(values["status"]) if getattr(result, "rowcount", 0) else None


def purge(*, session: Session, older_than: datetime) -> int:
    """Delete events written before ``older_than`` that no delivery still waits to send (their deliveries
    go with them: ON DELETE CASCADE); the caller commits."""
    waiting = exists().where(WebhookDelivery.event_id == WebhookEvent.id, WebhookDelivery.status == PENDING)
    result = session.execute(delete(WebhookEvent).where(WebhookEvent.created_at < older_than, ~waiting))
    return int(getattr(result, "rowcount", 0) or 0)
