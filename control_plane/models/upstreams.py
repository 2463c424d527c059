"""ORM rows for upstreams and their targets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Double, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from control_plane.models.base import Base, Timestamped, new_id
from data_plane.snapshot import DEFAULT_KEEPALIVE_TIMEOUT


class Upstream(Timestamped, Base):
    __tablename__ = "upstreams"
    __table_args__ = (
        CheckConstraint("connect_timeout > 0", name="connect_timeout_positive"),
        CheckConstraint("read_timeout > 0", name="read_timeout_positive"),
        CheckConstraint("retries >= 0 AND retries <= 10", name="retries_range"),
        CheckConstraint("keepalive_timeout > 0", name="keepalive_timeout_positive"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    algorithm: Mapped[str] = mapped_column(String(32), default="round_robin")
    connect_timeout: Mapped[float] = mapped_column(Double, default=5.0)
    read_timeout: Mapped[float] = mapped_column(Double, default=60.0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    total_timeout: Mapped[float | None] = mapped_column(Double, nullable=True)
    hash_on: Mapped[str] = mapped_column(String(16), default="ip", server_default="ip")
    hash_key: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # Validated objects (schemas.HealthCheckIn / PassiveIn); JSON because they are read whole.
    health_check: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    passive: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    panic: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    max_connections: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # idle seconds after which a worker stops reusing a pooled connection (default below Node's 5 s;
    # data_plane/snapshot.py DEFAULT_KEEPALIVE_TIMEOUT says why)
    keepalive_timeout: Mapped[float] = mapped_column(Double, default=DEFAULT_KEEPALIVE_TIMEOUT, server_default="4")
    # TLS to the targets whose scheme is https (data_plane/tls/client.py): verify their certificate
    # (chain and name), against this PEM bundle (None: the system trust store), sending this server
    # name (None: the target's host)
    tls_verify: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    ca_certificates: Mapped[str | None] = mapped_column(Text, nullable=True)
    sni: Mapped[str | None] = mapped_column(String(253), nullable=True)
    # the certificate (of /v1/certificates) shown to https targets that ask for one (mTLS to the backend);
    # a certificate in use cannot be deleted (409)
    client_certificate_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("certificates.id", ondelete="RESTRICT"), nullable=True, index=True
    )

    targets: Mapped[list[Target]] = relationship(
        back_populates="upstream", cascade="all, delete-orphan", passive_deletes=True
    )


class Target(Timestamped, Base):
    __tablename__ = "targets"
    __table_args__ = (
        UniqueConstraint("upstream_id", "host", "port"),
        CheckConstraint("port >= 1 AND port <= 65535", name="port_range"),
        CheckConstraint("weight >= 0 AND weight <= 1000", name="weight_range"),
        CheckConstraint("scheme IN ('http', 'https')", name="scheme_known"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    upstream_id: Mapped[str] = mapped_column(String(36), ForeignKey("upstreams.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=100)
    scheme: Mapped[str] = mapped_column(String(8), default="http", server_default="http")  # https: TLS to it

    upstream: Mapped[Upstream] = relationship(back_populates="targets")
