"""ORM rows for TLS certificates the workers serve, and the server names (SNI) each answers for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from control_plane.models.base import Base, Timestamped, new_id


class Certificate(Timestamped, Base):
    """A certificate chain and its private key.  ``key_encrypted`` is the key sealed at rest
    (:mod:`control_plane.secretbox`, the row id as associated data); the clear key is never stored.
    The other columns are read from the leaf when the chain is written, for lists and metrics."""

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    cert: Mapped[str] = mapped_column(Text)  # PEM chain, the leaf first
    key_encrypted: Mapped[str] = mapped_column(Text)
    # at most one; the service keeps it so (setting it on one certificate clears it on the others)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    subject: Mapped[str] = mapped_column(String(2048))
    issuer: Mapped[str] = mapped_column(String(2048))
    sans: Mapped[list[str]] = mapped_column(JSON, default=list)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the leaf's DER, hex

    sni_rows: Mapped[list[CertificateSni]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="CertificateSni.sni"
    )

    @property
    def snis(self) -> list[str]:
        return [s.sni for s in self.sni_rows]


class CertificateSni(Base):
    """A server name answered with a certificate: the primary key makes one certificate per name."""

    __tablename__ = "certificate_snis"

    sni: Mapped[str] = mapped_column(String(255), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("certificates.id", ondelete="CASCADE"), index=True
    )
