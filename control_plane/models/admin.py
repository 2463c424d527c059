"""ORM rows for admin access: the admin API's bearer tokens and the audit log of admin writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.models.base import Base, new_id, utcnow


class AdminToken(Base):
    """A bearer token for the admin API (/v1); stored as sha256 hex."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEntry(Base):
    """One admin write: who (token), what (method, path, resource id), when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    token_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    token_name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(2048))
    resource_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # what changed, for writes that say (quota changes: {"extra": {"before": b, "after": a}, ...})
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class IdempotencyRecord(Base):
    """A POST sent with an ``Idempotency-Key`` (control_plane/idempotency.py): what it asked and,
    once answered, the answer replayed for a repeat within :data:`RETENTION` (24 h).

    ``scope`` is the SHA-256 of the caller's bearer token (the admin token's own ``token_hash``), so
    two tokens never see each other's keys and nothing secret is stored.  ``committed`` is set in the
    transaction of the write itself: a record that is committed but has no answer (the process died
    between the commit and storing the answer) is never executed again."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path, query and body
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    committed: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: not answered yet
    content_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    location: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
