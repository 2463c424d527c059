"""Balancing and health: upstream hash_on/hash_key, health_check, passive, panic, total_timeout,
max_connections; route timeout overrides; per-node target health.

Revision ID: 0003_balancing_health
Revises: 0002_openapi
Create Date: 2026-11-28 09:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_balancing_health"
down_revision: str | None = "0002_openapi"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("total_timeout", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("hash_on", sa.String(length=16), server_default="ip", nullable=False))
        batch_op.add_column(sa.Column("hash_key", sa.String(length=200), server_default="", nullable=False))
        batch_op.add_column(sa.Column("health_check", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("passive", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("panic", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("max_connections", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connect_timeout", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("read_timeout", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("total_timeout", sa.Double(), nullable=True))
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("targets", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("targets")
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_column("total_timeout")
        batch_op.drop_column("read_timeout")
        batch_op.drop_column("connect_timeout")
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        for name in ("max_connections", "panic", "passive", "health_check", "hash_key", "hash_on", "total_timeout"):
            batch_op.drop_column(name)
