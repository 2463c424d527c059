"""ORM rows (SQLAlchemy 2.0 ``Mapped``).  The schema only changes through ``migrations/``.

Ids are UUID4 strings; every row has ``created_at``/``updated_at`` (UTC).  The MetaData naming
convention gives every constraint a stable name, so Alembic autogenerate/check see no drift.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from data_plane.snapshot import DEFAULT_KEEPALIVE_TIMEOUT

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CONFIG_STATE_ID = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamp with time zone`` that always hands back aware UTC datetimes.

    SQLite has no time zones and returns naive values; storing UTC and re-attaching it on the way
    out keeps both backends identical to the API layer.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


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

    targets: Mapped[list[Target]] = relationship(
        back_populates="upstream", cascade="all, delete-orphan", passive_deletes=True
    )


class Target(Timestamped, Base):
    __tablename__ = "targets"
    __table_args__ = (
        UniqueConstraint("upstream_id", "host", "port"),
        CheckConstraint("port >= 1 AND port <= 65535", name="port_range"),
        CheckConstraint("weight >= 0 AND weight <= 1000", name="weight_range"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    upstream_id: Mapped[str] = mapped_column(String(36), ForeignKey("upstreams.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=100)

    upstream: Mapped[Upstream] = relationship(back_populates="targets")


class Api(Timestamped, Base):
    __tablename__ = "apis"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    hosts: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: any host
    base_path: Mapped[str] = mapped_column(String(1024), default="/", index=True)
    auth: Mapped[str] = mapped_column(String(32), default="none")
    strip_base_path: Mapped[bool] = mapped_column(Boolean, default=True)
    max_body_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Document-level parts of an imported OpenAPI description (openapi version, info, components, tags),
    # kept so the API can be exported again; null for APIs created through the admin API.
    openapi: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # auth settings (api_key / jwt); jwt_secret is config the worker needs, never returned by the API
    key_header: Mapped[str] = mapped_column(String(100), default="x-api-key")
    key_query: Mapped[str | None] = mapped_column(String(100), nullable=True)
    strip_credential: Mapped[bool] = mapped_column(Boolean, default=True)
    jwt_algorithms: Mapped[list[str]] = mapped_column(JSON, default=list)
    jwt_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    jwt_public_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    jwt_issuer: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    jwt_audience: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    jwt_customer_claim: Mapped[str] = mapped_column(String(100), default="sub")
    # RS256 / ES256 keys from this JWKS URL instead of jwt_public_key; the fetched keys live in ApiJwks
    jwt_jwks_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # usage plans: send RateLimit-* / X-RateLimit-* headers on plan-limited responses
    rate_limit_headers: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())

    routes: Mapped[list[Route]] = relationship(back_populates="api", cascade="all, delete-orphan", passive_deletes=True)
    jwks: Mapped[ApiJwks | None] = relationship(cascade="all, delete-orphan", passive_deletes=True)

    @property
    def jwt_secret_set(self) -> bool:
        return self.jwt_secret is not None


class ApiJwks(Base):
    """The key set last fetched from an API's ``jwt_jwks_url`` and how the last fetch went.

    Kept in the database (not in a replica's memory) so the keys survive a restart and every replica
    builds the same snapshot.  ``url`` is the URL the keys came from: while it differs from the API's
    (just changed) the keys are not used.  ``keys`` holds public JWK members only.
    """

    __tablename__ = "api_jwks"

    api_id: Mapped[str] = mapped_column(String(36), ForeignKey("apis.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    keys: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    fetched_at: Mapped[datetime | None] = mapped_column(nullable=True)  # last successful fetch
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)  # last attempt, successful or not
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)  # fixed phrases, never a secret

    @property
    def kids(self) -> list[str]:
        return [k["kid"] for k in self.keys]


class Route(Timestamped, Base):
    __tablename__ = "routes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    api_id: Mapped[str] = mapped_column(String(36), ForeignKey("apis.id", ondelete="CASCADE"), index=True)
    methods: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: any method
    path: Mapped[str] = mapped_column(String(2048))
    # RESTRICT: an upstream still routed to cannot be deleted (the service reports it as a conflict first).
    upstream_id: Mapped[str] = mapped_column(String(36), ForeignKey("upstreams.id", ondelete="RESTRICT"), index=True)
    # The OpenAPI operation object this route was imported from (parameters, request body, responses).
    operation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    connect_timeout: Mapped[float | None] = mapped_column(Double, nullable=True)  # None: the upstream's
    read_timeout: Mapped[float | None] = mapped_column(Double, nullable=True)
    total_timeout: Mapped[float | None] = mapped_column(Double, nullable=True)

    api: Mapped[Api] = relationship(back_populates="routes")


class ConfigState(Base):
    """Single row (id = 1): the config revision, bumped by every admin write in its own transaction."""

    __tablename__ = "config_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Node(Base):
    """A proxy worker as last seen by any control-plane replica (not config: writes never bump the revision)."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revision: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # {target_id: {"healthy", "ejected_until", "in_flight"}} as last reported by this worker.
    targets: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Customer(Timestamped, Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # "metadata" is reserved on declarative classes; the column keeps the API's name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # RESTRICT: a plan with subscribers cannot be deleted (the service reports a conflict first).
    plan_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("usage_plans.id", ondelete="RESTRICT"), nullable=True, index=True
    )

    grants: Mapped[list[CustomerApiGrant]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    keys: Mapped[list[ApiKey]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class CustomerApiGrant(Base):
    """A customer may call an API.  Its own table so usage plans can add a second grant path later."""

    __tablename__ = "customer_api_grants"

    customer_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    api_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apis.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key: only ``sha256(key)`` and a non-secret prefix are stored, never the key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(String(36), ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AdminToken(Base):
    """A bearer token for the admin API (/v1); stored as sha256 hex."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEntry(Base):
    """One admin write: who (token), what (method, path, resource id), when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    token_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    token_name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(2048))
    resource_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


# Usage plan tables live in their own module; importing it here registers them on Base.metadata.
from control_plane import models_plans as models_plans  # noqa: E402
