"""ORM rows of the web surfaces: sign-in sessions (console and portal), portal invites and accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.models.base import Base, new_id, utcnow


class WebSession(Base):
    """A signed-in browser: ``kind`` "console" (an admin token's, with its role) or "portal" (a customer's).

    Only ``sha256(cookie value)`` is stored; the row going (sign-out, expiry, the token revoked, the
    customer deleted) ends the session on every replica at once."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    admin_token_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("admin_tokens.id", ondelete="CASCADE"), nullable=True, index=True
    )
    customer_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PortalInvite(Base):
    """A one-time link for a customer to set their portal password; only ``sha256(token)`` is stored."""

    __tablename__ = "portal_invites"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(String(36), ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class PortalAccount(Base):
    """A customer's portal sign-in: the argon2id hash of their password and the operator's cap on
    the keys they may hold at once through the portal."""

    __tablename__ = "portal_accounts"

    customer_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    key_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
