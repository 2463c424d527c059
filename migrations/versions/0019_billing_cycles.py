"""Billing cycles: customers.billing_anchor, time_zone, cycle_since.

Revision ID: 0019_billing_cycles
Revises: 0018_quota_overage
Create Date: 2026-12-02 22:10:00

Existing customers keep UTC calendar periods (all three null).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_billing_cycles"
down_revision: str | None = "0018_quota_overage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("billing_anchor", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cycle_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("cycle_since")
        batch_op.drop_column("time_zone")
        batch_op.drop_column("billing_anchor")
