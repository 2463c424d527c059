"""The config revision: one row, bumped by one in the same transaction as every config write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from control_plane.models import CONFIG_STATE_ID, ConfigState, utcnow
from control_plane.services import changelog

# session.info key: present while a one_revision() block is open; holds the revision once bumped.
_ONE_REVISION = "tollgate.one_revision"


@contextmanager
def one_revision(session: Session) -> Iterator[None]:
    """Many writes, one revision: inside the block only the first :func:`bump_revision` updates the row;
    later calls return the same value.  The row lock taken by the first bump is held to the end of the
    transaction, so the block stays serialised against other writers.  Used by the declarative apply,
    which calls the ordinary service functions (each of which bumps) for every change.
    """
    if _ONE_REVISION in session.info:
        yield  # nested: the outer block owns the revision
        return
    session.info[_ONE_REVISION] = None
    try:
        yield
    finally:
        session.info.pop(_ONE_REVISION, None)


def bump_revision(session: Session) -> int:
    """Increment the revision in the caller's transaction and return the new value.

    ``revision = revision + 1`` is evaluated by the database under the row lock, so two replicas
    writing at once never lose a bump (a read-modify-write in Python would).
    """
    if session.info.get(_ONE_REVISION) is not None:
        return int(session.info[_ONE_REVISION])
    new = _increment(session)
    changelog.set_revision(session, new)  # what this transaction changed is logged under it at commit
    if _ONE_REVISION in session.info:
        session.info[_ONE_REVISION] = new
    return new


def _increment(session: Session) -> int:
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
