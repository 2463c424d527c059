"""What every DTO module shares: the input/output base models, the page envelope, the error body,
names, timeouts, and the path-template and method-list checks (the snapshot contract's own helpers,
so the admin API never accepts something a worker would refuse).  A leaf: imports nothing of ours
but the snapshot contract.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from data_plane.snapshot import HTTP_METHODS, SnapshotError, split_template

T = TypeVar("T")

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\- ]*$")]


Timeout = Annotated[float, Field(gt=0, le=3600)]


def path_template(value: str | None) -> str | None:
    """A route path template (``/pets/{id}``) as a worker parses it; a pydantic field validator."""
    if value is None:
        return None
    try:
        split_template(value)
    except SnapshotError as exc:
        raise ValueError(str(exc)) from None
    return value


def method_list(value: list[str] | None) -> list[str] | None:
    """HTTP methods, upper-cased, in the snapshot contract's canonical order; a pydantic field validator."""
    if value is None:
        return None
    upper = {m.strip().upper() for m in value}
    unknown = sorted(upper - set(HTTP_METHODS))
    if unknown:
        raise ValueError(f"unknown HTTP method(s): {', '.join(unknown)}")
    return [m for m in HTTP_METHODS if m in upper]  # canonical order: identical sets hash identically


class InModel(BaseModel):
    """Request bodies: an unknown field is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class OutModel(BaseModel):
    """Responses read from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T] = Field(description="this page's items")
    total: int = Field(description="items matching the query (all pages)")
    limit: int = Field(description="page size asked for")
    offset: int = Field(description="items skipped (offset paging; 0 with a cursor)")
    next: str | None = Field(
        default=None,
        description="cursor of the next page (pass it as `cursor`); null on the last page, or on lists without cursors",
    )


class ErrorDetail(BaseModel):
    detail: str
