"""TLS to targets: targets.scheme (http | https), upstreams.tls_verify, ca_certificates and sni.

Revision ID: 0009_upstream_tls
Revises: 0008_tls
Create Date: 2026-12-02 19:00:00

Existing targets stay plain HTTP (scheme "http"); existing upstreams verify certificates
(tls_verify true) against the system trust store (ca_certificates null) and send the target's host
as the server name (sni null) — the snapshot's defaults, so no existing snapshot changes its hash.
The client certificate an upstream shows its targets (the snapshot's client_certificate_id) is
linked when the certificates table exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_upstream_tls"
down_revision: str | None = "0008_tls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scheme", sa.String(length=8), server_default="http", nullable=False))
        batch_op.create_check_constraint(op.f("ck_targets_scheme_known"), "scheme IN ('http', 'https')")
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tls_verify", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("ca_certificates", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sni", sa.String(length=253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upstreams", schema=None) as batch_op:
        batch_op.drop_column("sni")
        batch_op.drop_column("ca_certificates")
        batch_op.drop_column("tls_verify")
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_targets_scheme_known"), type_="check")
        batch_op.drop_column("scheme")
