"""DTOs for the config in force and the proxy workers: what a worker reports, what the admin API shows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from control_plane.schemas.common import OutModel
from control_plane.schemas.upstreams import TargetHealth


class ConfigPublic(BaseModel):
    revision: int = Field(description="the config revision in force (bumped by every write)")
    hash: str = Field(description="content hash of the snapshot built for it")


class NodeStatusIn(BaseModel):
    """What a worker reports.  Unknown fields are ignored (newer workers may send more); long text
    is truncated rather than refused, because a status report should never bounce.  ``keys_used``
    maps key id -> last use (epoch seconds) since the previous report."""

    hostname: str = Field(default="", description="the worker's host name")
    version: str = Field(default="", description="the worker's Tollgate version")
    revision: int | None = Field(description="config revision the worker applied; null: none yet", default=None, ge=0)
    hash: str | None = Field(description="snapshot hash the worker applied", default=None, max_length=64)
    last_error: str | None = Field(default=None, description="the worker's last config error; null: none")
    pid: int | None = Field(description="the worker's process id", default=None, ge=0)
    targets: dict[Annotated[str, Field(max_length=64)], TargetHealth] | None = Field(
        description="target id -> this worker's view of its health", default=None, max_length=10000
    )
    keys_used: dict[str, Annotated[int, Field(ge=0, le=253402300799)]] | None = Field(
        description="key id -> last use (epoch seconds) since the previous report", default=None, max_length=100_000
    )

    @field_validator("hostname", "version", "last_error", mode="after")
    @classmethod
    def _truncate(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = {"hostname": 255, "version": 64, "last_error": 4000}[info.field_name or ""]
        return value[:limit] if value is not None else None


class NodePublic(OutModel):
    id: str = Field(description="the worker's node id")
    hostname: str = Field(description="the worker's host name")
    version: str = Field(description="the worker's Tollgate version")
    pid: int | None = Field(description="the worker's process id")
    revision: int | None = Field(description="config revision the worker applied; null: none yet")
    hash: str | None = Field(description="snapshot hash the worker applied")
    last_error: str | None = Field(description="the worker's last config error; null: none")
    first_seen: datetime = Field(description="first report from the worker")
    last_seen: datetime = Field(description="last report from the worker")
    in_sync: bool = Field(description="the worker applied the current config")
    stale: bool = Field(description="not seen for 30 s")
