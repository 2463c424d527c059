"""DTOs for admin access: admin tokens (the token only in the answer that creates it) and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from control_plane.schemas.common import InModel, Name, OutModel

Role = Literal["admin", "viewer"]


class AdminTokenCreate(InModel):
    name: Name = Field(description="a label for the token (who or what uses it)")
    role: Role = Field(description="admin: read and write; viewer: read only")


class AdminTokenPublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    name: str = Field(description="a label for the token (who or what uses it)")
    role: str = Field(description="admin: read and write; viewer: read only")
    prefix: str = Field(
        description="the first characters of the token, to recognise it (the token itself is never shown again)"
    )
    created_at: datetime = Field(description="when the resource was created (UTC)")
    revoked_at: datetime | None = Field(description="when the token was revoked; null: active")


class AdminTokenIssued(AdminTokenPublic):
    token: str = Field(description="the admin token, shown in this response only (the control plane keeps its hash)")


class AuditPublic(OutModel):
    id: int = Field(description="the audit entry's number (increasing)")
    at: datetime = Field(description="when the write was committed (UTC)")
    token_id: str | None = Field(
        description="the admin token that made the write; null: a token deleted since, or the declarative apply"
    )
    token_name: str = Field(description="that token's name at the time")
    method: str = Field(description="HTTP method of the write")
    path: str = Field(description="path of the write (/v1/...)")
    resource_id: str | None = Field(description="id of the resource written, when the write names one")
    detail: dict[str, Any] | None = Field(
        default=None, description="what the write changed, when it says (quota adjustments: before and after)"
    )
