"""OpenAPI structure: apis.openapi (document-level parts) and routes.operation (the operation object).

Both nullable: APIs and routes created through the admin API have no OpenAPI description.

Revision ID: 0002_openapi
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_openapi"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.add_column(sa.Column("openapi", sa.JSON(), nullable=True))
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("operation", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_column("operation")
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.drop_column("openapi")
