"""DTOs for admin access: admin tokens (the token only in the answer that creates it) and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from control_plane.schemas.common import InModel, Name, OutModel

Role = Literal["admin", "viewer"]


class AdminTokenCreate(InModel):
    name: Name
    role: Role


class AdminTokenPublic(OutModel):
    id: str
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class AdminTokenIssued(AdminTokenPublic):
    token: str  # shown in this response only


class AuditPublic(OutModel):
    id: int
    at: datetime
    token_id: str | None
    token_name: str
    method: str
    path: str
    resource_id: str | None
    detail: dict[str, Any] | None = None  # what the write changed, when it says (quota: before / after)
