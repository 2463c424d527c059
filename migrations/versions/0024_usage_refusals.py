"""usage_refusals: requests the gateway answered itself, per UTC hour, API and status (the console)

Revision ID: 0024_usage_refusals
Revises: 0023_change_log
Create Date: 2026-12-03 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_usage_refusals"
down_revision: str | None = "0023_change_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_refusals",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("api_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "api_id", "status", name=op.f("pk_usage_refusals")),
    )


def downgrade() -> None:
    op.drop_table("usage_refusals")
