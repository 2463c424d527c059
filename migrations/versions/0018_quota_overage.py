"""Quota overage: usage_plans.quota_overage ("deny" | "allow") and quota_hard_cap; the overage part of
usage counts (usage_counts.overage, usage_hourly.overage).

Revision ID: 0018_quota_overage
Revises: 0017_usage_hourly
Create Date: 2026-12-02 22:00:00

Existing plans deny beyond their quota (the behaviour so far) and have no hard cap.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_quota_overage"
down_revision: str | None = "0017_usage_hourly"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_overage", sa.String(length=8), server_default="deny", nullable=False))
        batch_op.add_column(sa.Column("quota_hard_cap", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_usage_plans_quota_overage_known"), "quota_overage IN ('deny', 'allow')"
        )
    for table in ("usage_counts", "usage_hourly"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("overage", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    for table in ("usage_hourly", "usage_counts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("overage")
    with op.batch_alter_table("usage_plans", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_usage_plans_quota_overage_known"), type_="check")
        batch_op.drop_column("quota_hard_cap")
        batch_op.drop_column("quota_overage")
