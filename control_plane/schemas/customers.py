"""DTOs for customers and their API keys (the plaintext key only in the answer that issues it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from control_plane.certs import CertificateProblem, client_fingerprint, client_subject
from control_plane.schemas.common import InModel, Name

CustomerStatus = Literal["active", "suspended"]


# Imported keys: printable, header- and URL-safe characters only (they travel in a header or a query).
ImportedKey = Annotated[str, Field(min_length=20, max_length=128, pattern=r"^[A-Za-z0-9._~+/=-]+$")]


Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


def _fingerprints(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    try:
        return sorted({client_fingerprint(v) for v in value})
    except CertificateProblem as exc:
        raise ValueError(exc.message) from None


def _subjects(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    try:
        return sorted({client_subject(v) for v in value})
    except CertificateProblem as exc:
        raise ValueError(exc.message) from None


# Client certificates that authenticate as the customer on mtls APIs (each identity belongs to one customer)
Fingerprints = Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=100)]
Subjects = Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=100)]


class CustomerCreate(InModel):
    name: Name
    email: Email | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: CustomerStatus = "active"
    api_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] = Field(default_factory=list, max_length=1000)
    mtls_fingerprints: Fingerprints = Field(default_factory=list, description="SHA-256 of the DER certificate")
    mtls_subjects: Subjects = Field(default_factory=list, description="RFC 4514 subjects")

    _check_fingerprints = field_validator("mtls_fingerprints")(_fingerprints)
    _check_subjects = field_validator("mtls_subjects")(_subjects)


class CustomerUpdate(InModel):
    name: Name | None = None
    email: Email | None = None  # explicit null clears it
    metadata: dict[str, Any] | None = None
    status: CustomerStatus | None = None
    api_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] | None = Field(default=None, max_length=1000)
    mtls_fingerprints: Fingerprints | None = None
    mtls_subjects: Subjects | None = None

    _check_fingerprints = field_validator("mtls_fingerprints")(_fingerprints)
    _check_subjects = field_validator("mtls_subjects")(_subjects)


class CustomerPublic(BaseModel):
    id: str
    name: str
    email: str | None
    metadata: dict[str, Any]
    status: str
    api_ids: list[str]
    plan_id: str | None = None  # set with PUT /v1/customers/{id}/plan
    mtls_fingerprints: list[str] = Field(default_factory=list)
    mtls_subjects: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class KeyCreate(InModel):
    name: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None
    key: ImportedKey | None = None  # import an existing key value (migration); omitted: one is generated


class KeyRotate(InModel):
    grace_seconds: int = Field(default=0, ge=0, le=30 * 86400)


class KeyPublic(BaseModel):
    id: str
    customer_id: str
    prefix: str
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    status: Literal["active", "revoked", "expired"]


class KeyIssued(KeyPublic):
    key: str  # shown in this response only; the control plane keeps sha256(key)
