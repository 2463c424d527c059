"""What every DTO module shares: the input/output base models, the page envelope, the error body,
names, timeouts, and the path-template and method-list checks (the snapshot contract's own helpers,
so the admin API never accepts something a worker would refuse).  A leaf: imports nothing of ours
but the snapshot contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from data_plane.snapshot import HTTP_METHODS, SnapshotError, split_template

T = TypeVar("T")

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\- ]*$")]


Timeout = Annotated[float, Field(gt=0, le=3600)]


@dataclass(frozen=True)
class DocumentedPattern:
    """A ``pattern`` for the JSON Schema only, as ``Annotated`` metadata: the field's validator checks the
    rule (it is at least as strict) and says what is wrong in words; pydantic's own pattern check would
    only say "String should match pattern ...".  The schema then tells clients (and schemathesis) the
    part of the rule a regular expression can state."""

    pattern: str

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def not_null(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a PATCH field that may be left out but not set to null (the service
    refuses the null with a 422 naming the field): the schema does not offer the null.  The field stays
    ``X | None`` for pydantic, so its errors keep their plain ``loc``."""
    alternatives = schema.get("anyOf")
    if alternatives:
        kept = [a for a in alternatives if a != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    schema.pop("default", None)  # null: the default of an absent field, not a value to send


def documented_pattern(pattern: str) -> DocumentedPattern:
    return DocumentedPattern(pattern)


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
    detail: str = Field(description="what went wrong, in words")


class Problem(BaseModel):
    """One reason a request was refused (422)."""

    loc: list[str | int] = Field(
        description="where: the part of the request (body, query, path, header), then the field"
    )
    msg: str = Field(description="what is wrong, in words (never the rejected value)")
    type: str = Field(description="kind of problem, e.g. missing, value_error, openapi_invalid")
    pointer: str | None = Field(
        default=None, description="OpenAPI import: an RFC 6901 JSON pointer into the submitted document"
    )


class ValidationFailed(BaseModel):
    """A 422 body: one entry per problem (FastAPI's shape without the input: it may be a secret)."""

    detail: list[Problem] = Field(description="the problems found")
