"""ORM rows for customers, the APIs granted to them and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from control_plane.models.base import Base, Timestamped, new_id, utcnow


class Customer(Timestamped, Base):
    __tablename__ = "customers"
    # the admin list's keyset order (services/common.paginate_keyset)
    __table_args__ = (Index("ix_customers_created_at_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # The customer's id in the caller's identity provider (issue 19): a JWT's customer claim may name it.
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    # "metadata" is reserved on declarative classes; the column keeps the API's name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # RESTRICT: a plan with subscribers cannot be deleted (the service reports a conflict first).
    plan_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("usage_plans.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    # the billing cycle (issue 17): quota periods start at the anchor's wall clock in time_zone (IANA);
    # both null: UTC calendar periods.  cycle_since: when the anchor or zone was last set.
    billing_anchor: Mapped[datetime | None] = mapped_column(nullable=True)
    time_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cycle_since: Mapped[datetime | None] = mapped_column(nullable=True)

    grants: Mapped[list[CustomerApiGrant]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    keys: Mapped[list[ApiKey]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    mtls_identities: Mapped[list[CustomerMtlsIdentity]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def mtls_fingerprints(self) -> list[str]:
        return sorted(i.value for i in self.mtls_identities if i.kind == "fingerprint")

    @property
    def mtls_subjects(self) -> list[str]:
        return sorted(i.value for i in self.mtls_identities if i.kind == "subject")


class CustomerApiGrant(Base):
    """A customer may call an API.  Its own table so usage plans can add a second grant path later."""

    __tablename__ = "customer_api_grants"

    customer_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    api_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apis.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomerMtlsIdentity(Base):
    """A client certificate that authenticates as the customer on ``mtls`` APIs: its SHA-256 fingerprint
    (``kind`` "fingerprint", 64 lower-case hex) or its subject (``kind`` "subject", RFC 4514).  The
    primary key makes each identity belong to one customer."""

    __tablename__ = "customer_mtls_identities"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), ForeignKey("customers.id", ondelete="CASCADE"), index=True)


class ApiKey(Base):
    """An API key: only ``sha256(key)`` and a non-secret prefix are stored, never the key."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_customer_created", "customer_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(String(36), ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
