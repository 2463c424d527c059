"""Upstreams' client certificate: a certificate of /v1/certificates shown to https targets (mTLS to backends).

Revision ID: 0010_upstream_client_certificate
Revises: 0009_upstream_tls
Create Date: 2026-12-02 20:00:00

A certificate in use by an upstream cannot be deleted (RESTRICT; the admin API answers 409 first).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_upstream_client_certificate"
down_revision: str | None = "0009_upstream_tls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_certificate_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_upstreams_client_certificate_id"), ["client_certificate_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_upstreams_client_certificate_id_certificates"),
            "certificates",
            ["client_certificate_id"],
            ["id"],
            ondelete="RESTRICT",
        )


def downgrade() -> None:
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_upstreams_client_certificate_id_certificates"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_upstreams_client_certificate_id"))
        batch_op.drop_column("client_certificate_id")
