"""Sign-in sessions of the web console and the customer portal (rows in ``web_sessions``).

The browser holds a random 256-bit token in an HttpOnly cookie; the row holds only its SHA-256 (as
admin tokens and API keys: a database dump opens no session).  The CSRF token of a session is an
HMAC of the session token, so it needs no storage and changes with every sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from control_plane.models import AdminToken, Customer, WebSession, utcnow
from control_plane.services.admin import Principal


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(session_token: str) -> str:
    """The value every form of this session must carry back (compare with :func:`hmac.compare_digest`)."""
    return hmac.new(session_token.encode(), b"tollgate csrf v1", hashlib.sha256).hexdigest()


def start(
    *,
    session: Session,
    kind: str,
    ttl: float,
    admin_token_id: str | None = None,
    customer_id: str | None = None,
    now: datetime | None = None,
) -> tuple[WebSession, str]:
    """A new session row and the token for the cookie (shown nowhere else)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = WebSession(
        token_hash=_hash(token),
        kind=kind,
        admin_token_id=admin_token_id,
        customer_id=customer_id,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    session.add(row)
    # expired rows of anyone are swept on each sign-in: the table stays as small as the live sessions
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    session.flush()
    return row, token


def find(*, session: Session, token: str, kind: str, now: datetime | None = None) -> WebSession | None:
    """The live session of this cookie value, or None (unknown, another kind, or expired)."""
    row = session.execute(select(WebSession).where(WebSession.token_hash == _hash(token))).scalar_one_or_none()
    if row is None or row.kind != kind:
        return None
    if row.expires_at <= (now or utcnow()):
        return None
    return row


def console_principal(*, session: Session, row: WebSession) -> Principal | None:
    """The admin token a console session was opened with, while it is not revoked."""
    token = session.get(AdminToken, row.admin_token_id) if row.admin_token_id else None
    if token is None or token.revoked_at is not None:
        return None
    return Principal(token_id=token.id, name=f"{token.name} (console)", role=token.role)


def portal_customer(*, session: Session, row: WebSession) -> Customer | None:
    return session.get(Customer, row.customer_id) if row.customer_id else None


def end(*, session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))
    session.flush()
