"""DTOs for TLS certificates.  The private key is write-only: a field of the requests, never of a response."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from control_plane.certs import CertificateProblem, sni
from control_plane.schemas.common import InModel, Name, OutModel

# Generous bounds: a chain of a few 4096-bit RSA certificates is ~8 KiB, an RSA-8192 key ~6.5 KiB.
_CERT_MAX = 65536
_KEY_MAX = 16384


def _snis(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    try:
        return sorted({sni(v) for v in value})
    except CertificateProblem as exc:
        raise ValueError(exc.message) from None


class CertificateCreate(InModel):
    name: Name | None = None  # omitted: the first server name (``*.`` written ``wildcard.``), else the id
    cert: str = Field(min_length=1, max_length=_CERT_MAX, description="PEM chain: the leaf first, then its issuers")
    key: str = Field(min_length=1, max_length=_KEY_MAX, description="PEM private key, unencrypted (write-only)")
    snis: list[str] = Field(default_factory=list, max_length=100, description="host names and *.wildcards")
    default: bool = Field(default=False, description="served to clients whose name matches no certificate")

    _check_snis = field_validator("snis")(_snis)


class CertificateUpdate(InModel):
    name: Name | None = None
    cert: str | None = Field(default=None, min_length=1, max_length=_CERT_MAX)  # with key: renew / replace
    key: str | None = Field(default=None, min_length=1, max_length=_KEY_MAX)
    snis: list[str] | None = Field(default=None, max_length=100)
    default: bool | None = None

    _check_snis = field_validator("snis")(_snis)


class CertificatePublic(OutModel):
    id: str
    name: str
    snis: list[str]
    default: bool = Field(validation_alias="is_default")
    subject: str
    sans: list[str]
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str = Field(validation_alias="fingerprint")
    created_at: datetime
    updated_at: datetime
