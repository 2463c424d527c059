"""``POST /v1/customers/{customer_id}/portal-invites``: a one-time link for the customer portal."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from control_plane.api.deps import CustomerId, Write
from control_plane.schemas.portal import PortalInviteCreate, PortalInviteIssued
from control_plane.services import portal as svc

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("/{customer_id}/portal-invites", status_code=status.HTTP_201_CREATED)
def create_portal_invite(
    customer_id: CustomerId, body: PortalInviteCreate, request: Request, w: Write
) -> PortalInviteIssued:
    """Invite the customer to the portal: the link (in this response only) lets them set a password once,
    within ``ttl_seconds``; a later invite replaces the password and the key cap when accepted."""
    row, token = svc.create_invite(
        session=w.session, customer_id=customer_id, ttl_seconds=body.ttl_seconds, key_limit=body.key_limit
    )
    w.commit(row.id)
    return PortalInviteIssued(
        id=row.id,
        customer_id=customer_id,
        url=str(request.base_url).rstrip("/") + f"/portal/invite/{token}",
        expires_at=row.expires_at,
        key_limit=row.key_limit,
    )
