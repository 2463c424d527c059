"""Traffic policies: apis.policies and routes.policies (JSON), apis.cache_epoch.

Revision ID: 0011_policies
Revises: 0010_upstream_client_certificate
Create Date: 2026-12-02 21:30:00

Existing APIs and routes have no policy (null) and a cache epoch of 0: the snapshot's defaults, so
no existing snapshot changes its hash.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_policies"
down_revision: str | None = "0010_upstream_client_certificate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policies", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("cache_epoch", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policies", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_column("policies")
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.drop_column("cache_epoch")
        batch_op.drop_column("policies")
