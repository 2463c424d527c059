"""Upstream keepalive_timeout: idle seconds after which a worker stops reusing a pooled connection.

Revision ID: 0007_upstream_keepalive
Revises: 0006_jwks
Create Date: 2026-11-29 09:00:00

Existing upstreams get 4 s, the default: below the 5 s idle timeout of Node.js, uvicorn and Apache,
so a worker closes a pooled connection before the server does and never sends a request on one the
server is closing (data_plane/snapshot/types.py, DEFAULT_KEEPALIVE_TIMEOUT).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_upstream_keepalive"
down_revision: str | None = "0006_jwks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keepalive_timeout", sa.Double(), server_default="4", nullable=False))
        batch_op.create_check_constraint(op.f("ck_upstreams_keepalive_timeout_positive"), "keepalive_timeout > 0")


def downgrade() -> None:
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_upstreams_keepalive_timeout_positive"), type_="check")
        batch_op.drop_column("keepalive_timeout")
