"""DTOs for customers and their API keys (the plaintext key only in the answer that issues it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from control_plane.certs import CertificateProblem, client_fingerprint, client_subject
from control_plane.schemas.common import InModel, Name, not_null

CustomerStatus = Literal["active", "suspended"]


# Imported keys: printable, header- and URL-safe characters only (they travel in a header or a query).
ImportedKey = Annotated[str, Field(min_length=20, max_length=128, pattern=r"^[A-Za-z0-9._~+/=-]+$")]


Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]

# An identity provider's id for the customer (Auth0 "auth0|64f...", Okta "00u...", a UUID of theirs):
# printable ASCII without spaces, as a JWT claim carries it.
ExternalId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")]
_EXTERNAL_ID = (
    "the customer's id in your identity provider (unique): an API with auth jwt accepts a token whose "
    "customer claim holds it instead of the Tollgate id"
)


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
    name: Name = Field(description="unique name of the customer")
    email: Email | None = Field(default=None, description="contact address; null: none")
    external_id: ExternalId | None = Field(default=None, description=_EXTERNAL_ID + "; null: none")
    metadata: dict[str, Any] = Field(description="free-form JSON of your own (CRM ids, notes)", default_factory=dict)
    status: CustomerStatus = Field(
        default="active", description="suspended: every key of the customer is refused (403)"
    )
    api_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] = Field(
        description="APIs granted directly (besides those of the customer's plan)",
        default_factory=list,
        max_length=1000,
    )
    mtls_fingerprints: Fingerprints = Field(default_factory=list, description="SHA-256 of the DER certificate")
    mtls_subjects: Subjects = Field(default_factory=list, description="RFC 4514 subjects")

    _check_fingerprints = field_validator("mtls_fingerprints")(_fingerprints)
    _check_subjects = field_validator("mtls_subjects")(_subjects)


class CustomerUpdate(InModel):
    name: Name | None = Field(json_schema_extra=not_null, default=None, description="unique name of the customer")
    email: Email | None = Field(default=None, description="contact address; explicit null clears it")
    external_id: ExternalId | None = Field(default=None, description=_EXTERNAL_ID + "; explicit null clears it")
    metadata: dict[str, Any] | None = Field(
        json_schema_extra=not_null, default=None, description="free-form JSON of your own (CRM ids, notes)"
    )
    status: CustomerStatus | None = Field(
        json_schema_extra=not_null, default=None, description="suspended: every key of the customer is refused (403)"
    )
    api_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] | None = Field(
        description="APIs granted directly (besides those of the customer's plan)", default=None, max_length=1000
    )
    mtls_fingerprints: Fingerprints | None = Field(
        default=None,
        description="SHA-256 (of the DER) of each client certificate that authenticates as the customer",
    )
    mtls_subjects: Subjects | None = Field(
        default=None,
        description="RFC 4514 subjects of client certificates that authenticate as the customer (mtls APIs)",
    )

    _check_fingerprints = field_validator("mtls_fingerprints")(_fingerprints)
    _check_subjects = field_validator("mtls_subjects")(_subjects)


class CustomerPublic(BaseModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    name: str = Field(description="unique name of the customer")
    email: str | None = Field(description="contact address; null: none")
    external_id: str | None = Field(default=None, description=_EXTERNAL_ID + "; null: none")
    metadata: dict[str, Any] = Field(description="free-form JSON of your own (CRM ids, notes)")
    status: str = Field(description="suspended: every key of the customer is refused (403)")
    api_ids: list[str] = Field(description="APIs granted directly (besides those of the customer's plan)")
    plan_id: str | None = Field(
        default=None,
        description="the usage plan the customer is subscribed to (PUT /v1/customers/{id}/plan); null: none",
    )
    mtls_fingerprints: list[str] = Field(
        description="SHA-256 (of the DER) of each client certificate that authenticates as the customer",
        default_factory=list,
    )
    mtls_subjects: list[str] = Field(
        description="RFC 4514 subjects of client certificates that authenticate as the customer (mtls APIs)",
        default_factory=list,
    )
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")


class KeyCreate(InModel):
    name: str | None = Field(description="a label for the key", default=None, max_length=200)
    expires_at: datetime | None = Field(
        default=None, description="when the key stops working (in the future); null: never"
    )
    key: ImportedKey | None = Field(
        default=None, description="import an existing key value (migration); omitted: one is generated"
    )


class KeyRotate(InModel):
    grace_seconds: int = Field(
        description="how long the old key keeps working after the rotation (0: revoked at once)",
        default=0,
        ge=0,
        le=30 * 86400,
    )


class KeyPublic(BaseModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    customer_id: str = Field(description="the customer the key belongs to")
    prefix: str = Field(description="the first characters of the key, to recognise it")
    name: str | None = Field(description="the key's label")
    created_at: datetime = Field(description="when the resource was created (UTC)")
    expires_at: datetime | None = Field(description="when the key stops working; null: never")
    last_used_at: datetime | None = Field(
        description="last request authenticated with it, as the workers report (about a minute late); null: never"
    )
    status: Literal["active", "revoked", "expired"] = Field(description="active, revoked or expired")


class KeyIssued(KeyPublic):
    key: str = Field(description="the API key, shown in this response only (the control plane keeps its SHA-256)")
