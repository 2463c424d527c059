"""Helpers shared by the resource services: pagination, PATCH application, integrity translation."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.errors import Conflict, Invalid

R = TypeVar("R")


def paginate(session: Session, stmt: Select[R], *, limit: int, offset: int) -> tuple[list[R], int]:
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    items = list(session.execute(stmt.limit(limit).offset(offset)).scalars())
    return items, int(total)


def paginate_keyset(
    session: Session, stmt: Select[R], at: Any, ident: Any, *, limit: int, cursor: str | None
) -> tuple[list[R], int, str | None]:
    """A page in ``(at, ident)`` order after ``cursor`` (keyset pagination: rows inserted while a client
    pages land before or after the cursor, never shift a page as an offset does); returns the items,
    the total matching ``stmt`` and the next page's cursor (None on the last page)."""
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    if cursor is not None:
        after_at, after_id = decode_cursor(cursor)
        stmt = stmt.where(or_(at > after_at, and_(at == after_at, ident > after_id)))
    items = list(session.execute(stmt.order_by(None).order_by(at, ident).limit(limit)).scalars())
    next_cursor = None
    if len(items) == limit:
        last = items[-1]
        next_cursor = encode_cursor(getattr(last, at.key), getattr(last, ident.key))
    return items, int(total), next_cursor


def encode_cursor(at: datetime, ident: str) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), str(ident)
    except (ValueError, TypeError, binascii.Error):
        raise Invalid("cursor", "cursor is not one this API returned (take it from a page's next)") from None


def apply_patch(row: object, changes: Mapping[str, Any], *, nullable: frozenset[str] = frozenset()) -> None:
    """Set the fields a PATCH body named; an explicit ``null`` is only accepted for nullable columns."""
    for name, value in changes.items():
        if value is None and name not in nullable:
            raise Invalid(name, f"{name} may not be null")
        setattr(row, name, value)


@contextmanager
def integrity_as_conflict(message: str) -> Iterator[None]:
    """A unique/FK violation the service checks missed (a race, or a rule only the DB knows) is a conflict."""
    try:
        yield
    except IntegrityError:
        raise Conflict(message) from None
