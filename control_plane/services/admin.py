"""Admin API access: bearer tokens (roles ``admin`` / ``viewer``, stored as sha256 hex) and the audit log.

Not config: these writes never bump the revision.  Tokens look like ``tga_<43 url-safe chars>``
(256 random bits), so a plain SHA-256 is as good as a slow KDF here and costs nothing per request.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.errors import NotFound
from control_plane.models import AdminToken, AuditEntry, utcnow
from control_plane.schemas import AdminTokenCreate
from control_plane.services.common import paginate

log = logging.getLogger(__name__)

BOOTSTRAP_NAME = "bootstrap (TOLLGATE_ADMIN_TOKEN)"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the admin API (what the audit log records)."""

    token_id: str
    name: str
    role: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(*, session: Session, token: str) -> Principal | None:
    row = session.execute(select(AdminToken).where(AdminToken.token_hash == hash_token(token))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return Principal(token_id=row.id, name=row.name, role=row.role)


def create_token(*, session: Session, data: AdminTokenCreate) -> tuple[AdminToken, str]:
    token = f"tga_{secrets.token_urlsafe(32)}"
    row = AdminToken(name=data.name, role=data.role, token_hash=hash_token(token), prefix=token[:10])
    session.add(row)
    session.flush()
    return row, token


def list_tokens(*, session: Session, limit: int, offset: int) -> tuple[list[AdminToken], int]:
    return paginate(
        session, select(AdminToken).order_by(AdminToken.created_at, AdminToken.id), limit=limit, offset=offset
    )


def revoke_token(*, session: Session, token_id: str) -> None:
    row = session.get(AdminToken, token_id)
    if row is None:
        raise NotFound.of("admin token", token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()


def ensure_bootstrap_token(*, session: Session, token: str) -> None:
    """Make ``token`` (from ``TOLLGATE_ADMIN_TOKEN``) a working admin token: created, or restored to admin."""
    digest = hash_token(token)
    row = session.execute(select(AdminToken).where(AdminToken.token_hash == digest)).scalar_one_or_none()
    if row is None:
        session.add(AdminToken(name=BOOTSTRAP_NAME, role="admin", token_hash=digest, prefix=token[:4]))
        log.info("registered the admin token from TOLLGATE_ADMIN_TOKEN")
    elif row.role != "admin" or row.revoked_at is not None:
        log.warning("TOLLGATE_ADMIN_TOKEN names a revoked or viewer token; restoring it as an active admin token")
        row.role, row.revoked_at = "admin", None
    session.flush()


def has_active_admin(*, session: Session) -> bool:
    stmt = select(AdminToken.id).where(AdminToken.role == "admin", AdminToken.revoked_at.is_(None)).limit(1)
    return session.execute(stmt).first() is not None


def record_write(
    *,
    session: Session,
    who: Principal,
    method: str,
    path: str,
    resource_id: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            token_id=who.token_id,
            token_name=who.name,
            method=method,
            path=path[:2048],
            resource_id=resource_id,
            detail=detail,
        )
    )


def list_audit(*, session: Session, limit: int, offset: int) -> tuple[list[AuditEntry], int]:
    stmt = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    return paginate(session, stmt, limit=limit, offset=offset)
