"""The config change log: config_changes (revision, kind, entity_id, op), and the indexes of the
admin lists' keyset order (customers, keys), issue 21.

Revision ID: 0023_change_log
Revises: 0019_billing_cycles
Create Date: 2026-12-03 00:20:00

Empty at first: a worker behind the first logged revision takes a full snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_change_log"
down_revision: str | None = "0022_customer_external_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "config_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_changes")),
    )
    op.create_index("ix_config_changes_revision", "config_changes", ["revision"], unique=False)
    # keyset pagination of the admin lists (issue 21 item 4)
    op.create_index("ix_customers_created_at_id", "customers", ["created_at", "id"], unique=False)
    op.create_index("ix_api_keys_customer_created", "api_keys", ["customer_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_api_keys_customer_created", table_name="api_keys")
    op.drop_index("ix_customers_created_at_id", table_name="customers")
    op.drop_index("ix_config_changes_revision", table_name="config_changes")
    op.drop_table("config_changes")
