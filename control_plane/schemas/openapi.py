"""DTOs for OpenAPI import: the diff against the API as stored, and the outcome."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from control_plane.schemas.apis import ApiPublic


class ImportDiff(BaseModel):
    api: dict[str, Any] = Field(description="changed API fields: {field: {old, new}}; openapi: {changed: [keys]}")
    added: list[dict[str, Any]] = Field(description="routes to create: path, methods, upstream_id, operation_id")
    changed: list[dict[str, Any]] = Field(description="routes to update, with the changed fields")
    removed: list[dict[str, Any]] = Field(description="routes the document no longer describes: id, path, methods")


class ImportResult(BaseModel):
    api: ApiPublic | None = Field(description="the API as written (null for a dry run of a new API)")
    created: bool = Field(description="the API was created by this import")
    changed: bool = Field(description="false: the document matches the API exactly; nothing was written")
    dry_run: bool = Field(description="nothing was written: the diff is what an import would do")
    diff: ImportDiff = Field(description="the changes against the API as stored")
