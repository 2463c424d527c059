"""DTOs for the config in force and the proxy workers: what a worker reports, what the admin API shows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from control_plane.schemas.common import OutModel
from control_plane.schemas.upstreams import TargetHealth


class ConfigPublic(BaseModel):
    revision: int
    hash: str


class NodeStatusIn(BaseModel):
    """What a worker reports.  Unknown fields are ignored (newer workers may send more); long text
    is truncated rather than refused, because a status report should never bounce.  ``keys_used``
    maps key id -> last use (epoch seconds) since the previous report."""

    hostname: str = ""
    version: str = ""
    revision: int | None = Field(default=None, ge=0)
    hash: str | None = Field(default=None, max_length=64)
    last_error: str | None = None
    pid: int | None = Field(default=None, ge=0)
    targets: dict[Annotated[str, Field(max_length=64)], TargetHealth] | None = Field(default=None, max_length=10000)
    keys_used: dict[str, Annotated[int, Field(ge=0, le=253402300799)]] | None = Field(default=None, max_length=100_000)

    @field_validator("hostname", "version", "last_error", mode="after")
    @classmethod
    def _truncate(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = {"hostname": 255, "version": 64, "last_error": 4000}[info.field_name or ""]
        return value[:limit] if value is not None else None


class NodePublic(OutModel):
    id: str
    hostname: str
    version: str
    pid: int | None
    revision: int | None
    hash: str | None
    last_error: str | None
    first_seen: datetime
    last_seen: datetime
    in_sync: bool
    stale: bool
