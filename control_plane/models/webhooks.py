"""ORM rows for webhooks: the endpoints events go to, the events (an outbox), and one delivery per
(endpoint, event).

An event is written in the transaction of what caused it (a usage batch, a key issued, a threshold
crossed); its id is the CloudEvent id and is derived from what caused it, so writing the same event
twice is a no-op (the primary key), which is also how "once per customer, period and threshold" and
"once per expiring key" are kept.  A delivery is the state of sending one event to one endpoint:
``pending`` (due at ``next_attempt_at``), ``delivered`` or ``failed``; ``lease`` / ``locked_until``
say which sender holds it right now (control_plane/services/webhook_outbox.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.models.base import Base, Timestamped, new_id, utcnow


class WebhookEndpoint(Timestamped, Base):
    """Where events are POSTed.  ``secret_encrypted`` (and ``authorization_encrypted``, an optional
    ``Authorization`` header value for receivers such as OpenMeter Cloud) are sealed at rest
    (:mod:`control_plane.secretbox`, the row id as associated data): the sender must read them back."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)  # CloudEvent types, or ["*"]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    secret_encrypted: Mapped[str] = mapped_column(Text)
    authorization_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)


class WebhookEvent(Base):
    """One CloudEvent, as it will be sent (``source`` is added by the sender, from its settings)."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(64), nullable=True)
    time: Mapped[datetime]  # the CloudEvent ``time``: when what it reports happened
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        # the sender's claim: due pending deliveries, oldest due first
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # indexed by the unique constraint, which starts with it
    endpoint_id: Mapped[str] = mapped_column(String(36), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64), ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))  # copied from the event: lists filter without a join
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # retried for the sender's max age from here (the event's writing; a manual retry moves it to the retry)
    retry_since: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # the sender holding it: a random token per claim, valid until locked_until (then anyone may take it)
    lease: Mapped[str | None] = mapped_column(String(36), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
