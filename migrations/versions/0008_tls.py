"""TLS: certificates (private keys encrypted at rest) with their server names, apis' https_only and mtls
trusted CAs, customers' client-certificate identities

Revision ID: 0008_tls
Revises: 0007_upstream_keepalive
Create Date: 2026-12-02 19:00:00

Existing APIs stay reachable over plain HTTP (https_only false) and keep their auth mode; existing
customers have no client-certificate identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_tls"
down_revision: str | None = "0007_upstream_keepalive"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cert", sa.Text(), nullable=False),
        sa.Column("key_encrypted", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("subject", sa.String(length=2048), nullable=False),
        sa.Column("issuer", sa.String(length=2048), nullable=False),
        sa.Column("sans", sa.JSON(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sa.UniqueConstraint("name", name=op.f("uq_certificates_name")),
    )
    op.create_index(op.f("ix_certificates_fingerprint"), "certificates", ["fingerprint"], unique=False)
    op.create_table(
        "certificate_snis",
        sa.Column("sni", sa.String(length=255), nullable=False),
        sa.Column("certificate_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
            name=op.f("fk_certificate_snis_certificate_id_certificates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sni", name=op.f("pk_certificate_snis")),
    )
    op.create_index(op.f("ix_certificate_snis_certificate_id"), "certificate_snis", ["certificate_id"], unique=False)
    op.create_table(
        "customer_mtls_identities",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=1024), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_mtls_identities_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("kind", "value", name=op.f("pk_customer_mtls_identities")),
    )
    op.create_index(
        op.f("ix_customer_mtls_identities_customer_id"), "customer_mtls_identities", ["customer_id"], unique=False
    )
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.add_column(sa.Column("https_only", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("mtls_ca_certificates", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.drop_column("mtls_ca_certificates")
        batch_op.drop_column("https_only")
    op.drop_index(op.f("ix_customer_mtls_identities_customer_id"), table_name="customer_mtls_identities")
    op.drop_table("customer_mtls_identities")
    op.drop_index(op.f("ix_certificate_snis_certificate_id"), table_name="certificate_snis")
    op.drop_table("certificate_snis")
    op.drop_index(op.f("ix_certificates_fingerprint"), table_name="certificates")
    op.drop_table("certificates")
