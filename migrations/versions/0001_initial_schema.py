"""Initial schema: upstreams, targets, apis, routes, config_state (seeded at revision 0), nodes.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 08:50:02.441128
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apis",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("base_path", sa.String(length=1024), nullable=False),
        sa.Column("auth", sa.String(length=32), nullable=False),
        sa.Column("strip_base_path", sa.Boolean(), nullable=False),
        sa.Column("max_body_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apis")),
        sa.UniqueConstraint("name", name=op.f("uq_apis_name")),
    )
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apis_base_path"), ["base_path"], unique=False)

    op.create_table(
        "config_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_state")),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_last_seen"), ["last_seen"], unique=False)

    op.create_table(
        "upstreams",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("connect_timeout", sa.Double(), nullable=False),
        sa.Column("read_timeout", sa.Double(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("connect_timeout > 0", name=op.f("ck_upstreams_connect_timeout_positive")),
        sa.CheckConstraint("read_timeout > 0", name=op.f("ck_upstreams_read_timeout_positive")),
        sa.CheckConstraint("retries >= 0 AND retries <= 10", name=op.f("ck_upstreams_retries_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstreams")),
        sa.UniqueConstraint("name", name=op.f("uq_upstreams_name")),
    )
    op.create_table(
        "routes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("api_id", sa.String(length=36), nullable=False),
        sa.Column("methods", sa.JSON(), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("upstream_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_id"], ["apis.id"], name=op.f("fk_routes_api_id_apis"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["upstream_id"], ["upstreams.id"], name=op.f("fk_routes_upstream_id_upstreams"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
    )
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routes_api_id"), ["api_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_routes_upstream_id"), ["upstream_id"], unique=False)

    op.create_table(
        "targets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("upstream_id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("port >= 1 AND port <= 65535", name=op.f("ck_targets_port_range")),
        sa.CheckConstraint("weight >= 0 AND weight <= 1000", name=op.f("ck_targets_weight_range")),
        sa.ForeignKeyConstraint(
            ["upstream_id"], ["upstreams.id"], name=op.f("fk_targets_upstream_id_upstreams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_targets")),
        sa.UniqueConstraint("upstream_id", "host", "port", name=op.f("uq_targets_upstream_id_host_port")),
    )
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_targets_upstream_id"), ["upstream_id"], unique=False)

    # The single config_state row every write bumps (control_plane.services.revision).
    op.bulk_insert(
        sa.table(
            "config_state",
            sa.column("id", sa.Integer),
            sa.column("revision", sa.BigInteger),
            sa.column("updated_at", sa.DateTime(timezone=True)),
        ),
        [{"id": 1, "revision": 0, "updated_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_targets_upstream_id"))

    op.drop_table("targets")
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_routes_upstream_id"))
        batch_op.drop_index(batch_op.f("ix_routes_api_id"))

    op.drop_table("routes")
    op.drop_table("upstreams")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nodes_last_seen"))

    op.drop_table("nodes")
    op.drop_table("config_state")
    with op.batch_alter_table("apis", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apis_base_path"))

    op.drop_table("apis")
