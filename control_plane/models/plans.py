"""ORM rows for usage plans, subscriptions, quota adjustments and metered usage (migration ``0005_plans``;
``usage_hourly``: ``0017_usage_hourly``).

Usage rows are not config: writing them never bumps the revision.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Date, Double, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from control_plane.models.base import Base, Timestamped, new_id, utcnow


class UsagePlan(Timestamped, Base):
    __tablename__ = "usage_plans"
    __table_args__ = (
        CheckConstraint("throttle_rate IS NULL OR throttle_rate > 0", name="throttle_rate_positive"),
        CheckConstraint("throttle_burst IS NULL OR throttle_burst >= 1", name="throttle_burst_positive"),
        CheckConstraint("quota_limit IS NULL OR quota_limit >= 1", name="quota_limit_positive"),
        CheckConstraint("quota_overage IN ('deny', 'allow')", name="quota_overage_known"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(String(1000), default="")
    throttle_rate: Mapped[float | None] = mapped_column(Double, nullable=True)  # both null: no throttle
    throttle_burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quota_limit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # both null: no quota
    quota_period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # beyond the limit: "deny" (429) or "allow" (metered as overage) up to quota_hard_cap (null: no cap)
    quota_overage: Mapped[str] = mapped_column(String(8), default="deny", server_default="deny")
    quota_hard_cap: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    apis: Mapped[list[UsagePlanApi]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="UsagePlanApi.position"
    )


class UsagePlanApi(Base):
    """An API granted by a plan, with its per-route throttle overrides (a JSON list, read whole)."""

    __tablename__ = "usage_plan_apis"

    plan_id: Mapped[str] = mapped_column(String(36), ForeignKey("usage_plans.id", ondelete="CASCADE"), primary_key=True)
    # Deleting an API removes it from the plans that granted it (as it removes direct grants).
    api_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apis.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)  # the order the admin gave
    overrides: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class QuotaAdjustment(Base):
    """Extra quota for one customer for one period (like AWS UpdateUsage); per (customer, period start)."""

    __tablename__ = "quota_adjustments"

    customer_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    extra: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UsageCount(Base):
    """Requests admitted per (customer, api, UTC day), summed from the workers' batches.

    ``api_id`` has no foreign key: usage of a deleted API stays reportable."""

    __tablename__ = "usage_counts"

    customer_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    api_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    overage: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # of count: beyond the quota


class UsageHourly(Base):
    """Requests admitted per (UTC hour, customer, api, route, status class, plan): what usage export reads.

    Fed in the same transaction and from the same batches as :class:`UsageCount`, so summed over a day
    the two agree.  No foreign keys: usage of a deleted customer, API, route or plan stays exportable
    (a bill for the last period).  Counts from workers that report days only are kept at 00:00 of
    their day with "" for route, status class and plan ("" = not known; plan "" is also "no plan").
    ``day`` is the hour's UTC day, stored so day exports group by a column on every backend.
    The primary key leads with ``hour``: an export is a range scan in its own order."""

    __tablename__ = "usage_hourly"
    __table_args__ = (Index("ix_usage_hourly_customer_id_hour", "customer_id", "hour"),)

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    route_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status_class: Mapped[str] = mapped_column(String(3), primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    overage: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # of count: beyond the quota


class UsageRefusal(Base):
    """Requests the gateway answered itself (401, 403, 413, 429, ...: never forwarded, never billed) per
    (UTC hour, API, status), from the same worker batches as the usage (idempotent by their batch id):
    the console's refusal counts.  Requests that matched no API are not counted here."""

    __tablename__ = "usage_refusals"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    api_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageBatch(Base):
    """A worker batch already applied: makes ``POST /cluster/v1/usage`` idempotent."""

    __tablename__ = "usage_batches"

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
