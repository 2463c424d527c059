"""DTOs of the customer portal's admin side: ``POST /v1/customers/{id}/portal-invites``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from control_plane.schemas.common import InModel


class PortalInviteCreate(InModel):
    ttl_seconds: int = Field(
        default=7 * 86400, ge=60, le=30 * 86400, description="how long the link stays valid (one use), in seconds"
    )
    key_limit: int = Field(
        default=3, ge=0, le=100, description="how many live keys the customer may hold at once through the portal"
    )


class PortalInviteIssued(BaseModel):
    id: str = Field(description="the invite's id")
    customer_id: str = Field(description="the invited customer")
    url: str = Field(description="the one-time link to send to the customer (shown only in this response)")
    expires_at: datetime = Field(description="when the link stops working")
    key_limit: int = Field(description="the cap on the customer's self-service keys")
