"""Auth: customers, grants, api keys, admin tokens, audit log, api auth settings

Revision ID: 0004_auth
Revises: 0003_balancing_health
Create Date: 2026-11-28 09:04:53.609371

Existing apis rows get the auth defaults through server defaults (key_header x-api-key, strip_credential
true, jwt_algorithms [], jwt_customer_claim sub).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_auth"
down_revision: str | None = "0003_balancing_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_tokens_token_hash")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=True),
        sa.Column("token_name", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("name", name=op.f("uq_customers_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_api_keys_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "customer_api_grants",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("api_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_id"], ["apis.id"], name=op.f("fk_customer_api_grants_api_id_apis"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_api_grants_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "api_id", name=op.f("pk_customer_api_grants")),
    )
    with op.batch_alter_table("customer_api_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_api_grants_api_id"), ["api_id"], unique=False)

    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_header", sa.String(length=100), nullable=False, server_default="x-api-key"))
        batch_op.add_column(sa.Column("key_query", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("strip_credential", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("jwt_algorithms", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("jwt_secret", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("jwt_public_key", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("jwt_issuer", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("jwt_audience", sa.String(length=1024), nullable=True))
        batch_op.add_column(
            sa.Column("jwt_customer_claim", sa.String(length=100), nullable=False, server_default="sub")
        )


def downgrade() -> None:
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.drop_column("jwt_customer_claim")
        batch_op.drop_column("jwt_audience")
        batch_op.drop_column("jwt_issuer")
        batch_op.drop_column("jwt_public_key")
        batch_op.drop_column("jwt_secret")
        batch_op.drop_column("jwt_algorithms")
        batch_op.drop_column("strip_credential")
        batch_op.drop_column("key_query")
        batch_op.drop_column("key_header")

    with op.batch_alter_table("customer_api_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_api_grants_api_id"))

    op.drop_table("customer_api_grants")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_customer_id"))

    op.drop_table("api_keys")
    op.drop_table("customers")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    op.drop_table("admin_tokens")
