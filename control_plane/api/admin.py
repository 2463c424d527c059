"""``/v1/admin-tokens`` (create: token shown once, list, revoke) and ``/v1/audit`` (newest first)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from control_plane.api.deps import Paging, ReadSession, TokenId, Write
from control_plane.schemas import AdminTokenCreate, AdminTokenIssued, AdminTokenPublic, AuditPublic, Page
from control_plane.services import admin as svc
from control_plane.services import convert

router = APIRouter(tags=["admin"])


@router.post("/admin-tokens", status_code=status.HTTP_201_CREATED)
def create_admin_token(body: AdminTokenCreate, w: Write) -> AdminTokenIssued:
    """Issue an admin token (role admin or viewer); the token is in this response only."""
    row, token = svc.create_token(session=w.session, data=body)
    w.commit(row.id)
    return convert.admin_token_issued(row, token)


@router.get("/admin-tokens")
def list_admin_tokens(session: ReadSession, page: Paging) -> Page[AdminTokenPublic]:
    """List the admin tokens (prefixes only), a page at a time."""
    rows, total = svc.list_tokens(session=session, limit=page.limit, offset=page.offset)
    items = [convert.admin_token_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.delete("/admin-tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_admin_token(token_id: TokenId, w: Write) -> Response:
    """Revoke the admin token: it is refused from now on."""
    svc.revoke_token(session=w.session, token_id=token_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit")
def list_audit(session: ReadSession, page: Paging) -> Page[AuditPublic]:
    """Who changed what: one entry per admin write, newest first, a page at a time."""
    rows, total = svc.list_audit(session=session, limit=page.limit, offset=page.offset)
    items = [convert.audit_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
