"""usage_hourly: admitted requests per UTC hour, customer, API, route, status class and plan (usage export)

Revision ID: 0017_usage_hourly
Revises: 0016_webhooks
Create Date: 2026-12-03 10:00:00

The usage counted before this revision is known per day only: it is copied from usage_counts at
00:00 UTC of its day with "" for route, status class and plan (not known), so an export of an
earlier period still adds up to what the reports and quotas counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_usage_hourly"
down_revision: str | None = "0016_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("api_id", sa.String(length=36), nullable=False),
        sa.Column("route_id", sa.String(length=36), nullable=False),
        sa.Column("status_class", sa.String(length=3), nullable=False),
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "customer_id", "api_id", "route_id", "status_class", "plan_id", name=op.f("pk_usage_hourly")
        ),
    )
    with op.batch_alter_table("usage_hourly", schema=None) as batch_op:
        batch_op.create_index("ix_usage_hourly_customer_id_hour", ["customer_id", "hour"], unique=False)
    # One statement on the server, whatever the size of usage_counts.  SQLite keeps a DateTime as the
    # text SQLAlchemy writes ("YYYY-MM-DD HH:MM:SS.ffffff"); PostgreSQL needs the day as a UTC instant.
    if op.get_bind().dialect.name == "postgresql":
        hour = "(day::timestamp AT TIME ZONE 'UTC')"
    else:
        hour = "(day || ' 00:00:00.000000')"
    op.execute(
        "INSERT INTO usage_hourly (hour, customer_id, api_id, route_id, status_class, plan_id, day, count) "
        f"SELECT {hour}, customer_id, api_id, '', '', '', day, count FROM usage_counts"
    )


def downgrade() -> None:
    with op.batch_alter_table("usage_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_hourly_customer_id_hour")
    op.drop_table("usage_hourly")
