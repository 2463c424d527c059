"""ORM rows for the cluster: the config revision (one row) and the proxy workers as last seen.

Node rows are not config: writing them never bumps the revision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.models.base import Base, utcnow

CONFIG_STATE_ID = 1


class ConfigState(Base):
    """Single row (id = 1): the config revision, bumped by every admin write in its own transaction."""

    __tablename__ = "config_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConfigChange(Base):
    """One entity a config write changed (the change log, issue 21): written by
    :mod:`control_plane.changelog` in the transaction that bumped the revision to ``revision``.

    ``kind`` is the snapshot member (``upstream``, ``api``, ``customer``, ``key``, ``plan``,
    ``certificate``; nested rows name their parent: a target its upstream, a route its API) or ``*``
    (something changed that was not tracked: a worker behind it takes a full snapshot).  ``op`` is
    ``upsert`` or ``delete`` as written; a reader takes the entity's state at the revision it serves.
    Rows older than the retention window are deleted (compaction, docs/architecture.md "Config sync v2").
    """

    __tablename__ = "config_changes"
    __table_args__ = (Index("ix_config_changes_revision", "revision"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8))


class Node(Base):
    """A proxy worker as last seen by any control-plane replica (not config: writes never bump the revision)."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revision: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # {target_id: {"healthy", "ejected_until", "in_flight"}} as last reported by this worker.
    targets: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
