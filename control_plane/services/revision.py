"""The config revision: one row, bumped by one in the same transaction as every config write."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from control_plane.models import CONFIG_STATE_ID, ConfigState, utcnow


def bump_revision(session: Session) -> int:
    """Increment the revision in the caller's transaction and return the new value.

    ``revision = revision + 1`` is evaluated by the database under the row lock, so two replicas
    writing at once never lose a bump (a read-modify-write in Python would).
    """
    stmt = (
        update(ConfigState)
        .where(ConfigState.id == CONFIG_STATE_ID)
        .values(revision=ConfigState.revision + 1, updated_at=utcnow())
        .returning(ConfigState.revision)
        .execution_options(synchronize_session=False)
    )
    new = session.execute(stmt).scalar_one_or_none()
    if new is None:  # the migration seeds the row; this only covers a hand-made schema
        session.add(ConfigState(id=CONFIG_STATE_ID, revision=1, updated_at=utcnow()))
        session.flush()
        return 1
    return int(new)


def current_revision(session: Session) -> int:
    value = session.execute(select(ConfigState.revision).where(ConfigState.id == CONFIG_STATE_ID)).scalar_one_or_none()
    return int(value or 0)
