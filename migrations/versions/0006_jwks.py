"""JWT keys from a JWKS URL: apis.jwt_jwks_url and the fetched key set per API (api_jwks)

Revision ID: 0006_jwks
Revises: 0005_plans
Create Date: 2026-11-28 12:50:00.000000

Existing APIs get no JWKS URL: their jwt_public_key keeps working as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_jwks"
down_revision: str | None = "0005_plans"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.add_column(sa.Column("jwt_jwks_url", sa.String(length=2048), nullable=True))
    op.create_table(
        "api_jwks",
        sa.Column("api_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["api_id"], ["apis.id"], name=op.f("fk_api_jwks_api_id_apis"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("api_id", name=op.f("pk_api_jwks")),
    )


def downgrade() -> None:
    op.drop_table("api_jwks")
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.drop_column("jwt_jwks_url")
