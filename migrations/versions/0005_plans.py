"""Usage plans: plans and their APIs, customers.plan_id, quota adjustments, usage counts and applied batches

Revision ID: 0005_plans
Revises: 0004_auth
Create Date: 2026-11-28 09:39:10.926702

Existing customers get no plan (plan_id NULL): their direct grants keep working unlimited.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_plans"
down_revision: str | None = "0004_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit_headers", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.create_table(
        "usage_batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_usage_batches")),
    )
    with op.batch_alter_table("usage_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_batches_received_at"), ["received_at"], unique=False)

    op.create_table(
        "usage_plans",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("throttle_rate", sa.Double(), nullable=True),
        sa.Column("throttle_burst", sa.Integer(), nullable=True),
        sa.Column("quota_limit", sa.BigInteger(), nullable=True),
        sa.Column("quota_period", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quota_limit IS NULL OR quota_limit >= 1", name=op.f("ck_usage_plans_quota_limit_positive")),
        sa.CheckConstraint(
            "throttle_burst IS NULL OR throttle_burst >= 1", name=op.f("ck_usage_plans_throttle_burst_positive")
        ),
        sa.CheckConstraint(
            "throttle_rate IS NULL OR throttle_rate > 0", name=op.f("ck_usage_plans_throttle_rate_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_plans")),
        sa.UniqueConstraint("name", name=op.f("uq_usage_plans_name")),
    )
    op.create_table(
        "usage_plan_apis",
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("api_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_id"], ["apis.id"], name=op.f("fk_usage_plan_apis_api_id_apis"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["usage_plans.id"], name=op.f("fk_usage_plan_apis_plan_id_usage_plans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("plan_id", "api_id", name=op.f("pk_usage_plan_apis")),
    )
    with op.batch_alter_table("usage_plan_apis", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_plan_apis_api_id"), ["api_id"], unique=False)

    op.create_table(
        "quota_adjustments",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("extra", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_quota_adjustments_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "period", "period_start", name=op.f("pk_quota_adjustments")),
    )
    op.create_table(
        "usage_counts",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("api_id", sa.String(length=36), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_usage_counts_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("customer_id", "day", "api_id", name=op.f("pk_usage_counts")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_customers_plan_id"), ["plan_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_customers_plan_id_usage_plans"), "usage_plans", ["plan_id"], ["id"], ondelete="RESTRICT"
        )


def downgrade() -> None:
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.drop_column("rate_limit_headers")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_customers_plan_id_usage_plans"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_customers_plan_id"))
        batch_op.drop_column("plan_id")

    op.drop_table("usage_counts")
    op.drop_table("quota_adjustments")
    with op.batch_alter_table("usage_plan_apis", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_plan_apis_api_id"))

    op.drop_table("usage_plan_apis")
    op.drop_table("usage_plans")
    with op.batch_alter_table("usage_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_batches_received_at"))

    op.drop_table("usage_batches")
