"""Helpers shared by the resource services: pagination, PATCH application, integrity translation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.errors import Conflict, Invalid

R = TypeVar("R")


def paginate(session: Session, stmt: Select[R], *, limit: int, offset: int) -> tuple[list[R], int]:
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    items = list(session.execute(stmt.limit(limit).offset(offset)).scalars())
    return items, int(total)


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
