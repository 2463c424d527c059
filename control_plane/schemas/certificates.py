"""DTOs for TLS certificates.  The private key is write-only: a field of the requests, never of a response."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StrictBool, field_validator

from control_plane.certs import CertificateProblem, sni
from control_plane.schemas.apis import PEM_CERTIFICATE
from control_plane.schemas.common import InModel, Name, OutModel, documented_pattern, not_null

# Generous bounds: a chain of a few 4096-bit RSA certificates is ~8 KiB, an RSA-8192 key ~6.5 KiB.
_CERT_MAX = 65536
_KEY_MAX = 16384
SniName = Annotated[str, Field(max_length=253), documented_pattern(r"^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$")]


def _snis(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    try:
        return sorted({sni(v) for v in value})
    except CertificateProblem as exc:
        raise ValueError(exc.message) from None


class CertificateCreate(InModel):
    name: Name | None = Field(
        default=None, description="unique name; omitted: the first server name (*. written wildcard.), else the id"
    )
    cert: Annotated[str, documented_pattern(PEM_CERTIFICATE)] = Field(
        min_length=1,
        max_length=_CERT_MAX,
        description="PEM chain: the leaf first, then its issuers",
    )
    key: str = Field(min_length=1, max_length=_KEY_MAX, description="PEM private key, unencrypted (write-only)")
    snis: list[SniName] = Field(default_factory=list, max_length=100, description="host names and *.wildcards")
    default: StrictBool = Field(default=False, description="served to clients whose name matches no certificate")

    _check_snis = field_validator("snis")(_snis)


class CertificateUpdate(InModel):
    name: Name | None = Field(json_schema_extra=not_null, default=None, description="a new unique name")
    cert: Annotated[str, documented_pattern(PEM_CERTIFICATE), Field(min_length=1, max_length=_CERT_MAX)] | None = Field(
        json_schema_extra=not_null,
        description="a new PEM chain (the leaf first); with key: renew or replace",
        default=None,
    )
    key: Annotated[str, Field(min_length=1, max_length=_KEY_MAX)] | None = Field(
        json_schema_extra=not_null, description="the new chain's PEM private key (write-only)", default=None
    )
    snis: Annotated[list[SniName], Field(max_length=100)] | None = Field(
        json_schema_extra=not_null, description="host names and *.wildcards the certificate is served for", default=None
    )
    default: StrictBool | None = Field(
        json_schema_extra=not_null, default=None, description="served to clients whose name matches no certificate"
    )

    _check_snis = field_validator("snis")(_snis)


class CertificatePublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    name: str = Field(description="unique name; omitted: the first server name (*. written wildcard.), else the id")
    snis: list[str] = Field(description="host names and *.wildcards the certificate is served for")
    default: bool = Field(
        description="served to clients whose name matches no certificate", validation_alias="is_default"
    )
    subject: str = Field(description="the leaf certificate's subject (RFC 4514)")
    sans: list[str] = Field(description="the leaf's subject alternative names")
    issuer: str = Field(description="the leaf's issuer (RFC 4514)")
    not_before: datetime = Field(description="start of the leaf's validity")
    not_after: datetime = Field(description="end of the leaf's validity")
    fingerprint_sha256: str = Field(
        description="SHA-256 of the leaf certificate (DER), hex", validation_alias="fingerprint"
    )
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")
