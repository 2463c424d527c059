"""Customers' external ids: customers.external_id (unique, nullable).

Revision ID: 0022_customer_external_id
Revises: 0019_billing_cycles
Create Date: 2026-12-03 00:10:00

The customer's id in an identity provider, which a JWT's customer claim may name instead of Tollgate's
UUID.  Existing customers have none (null; unique ignores nulls on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_customer_external_id"
down_revision: str | None = "0020_portal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_customers_external_id"), ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_customers_external_id"), type_="unique")
        batch_op.drop_column("external_id")
