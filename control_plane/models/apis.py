"""ORM rows for APIs, their routes and the JWKS last fetched for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Double, ForeignKey, Integer, String, Text
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from control_plane.models.base import Base, Timestamped, new_id, utcnow


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
    # TLS: plain-HTTP requests are redirected (GET/HEAD) or refused; auth "mtls" trusts these CAs (PEM bundle)
    https_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    mtls_ca_certificates: Mapped[str | None] = mapped_column(Text, nullable=True)
    # traffic policies of every route (control_plane/schemas/policies.py; null: none); cache_epoch is
    # bumped by a cache purge (workers drop the API's cached responses when it changes)
    policies: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cache_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

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
    policies: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # each member replaces the API's

    api: Mapped[Api] = relationship(back_populates="routes")
