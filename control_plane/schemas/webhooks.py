"""DTOs for webhook endpoints and their deliveries.  The signing secret and the ``authorization``
header value are write-only: the secret is in the create response once (like an API key), then never."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, field_validator

from control_plane.schemas.common import InModel, OutModel, documented_pattern, not_null

# The CloudEvent ``type`` of each event (docs/webhooks.md has their payloads).
USAGE = "tollgate.request.usage"
THRESHOLD = "tollgate.quota.threshold_reached"
KEY_CREATED = "tollgate.key.created"
KEY_REVOKED = "tollgate.key.revoked"
KEY_EXPIRING = "tollgate.key.expiring"
EVENT_TYPES = (USAGE, THRESHOLD, KEY_CREATED, KEY_REVOKED, KEY_EXPIRING)
ALL = "*"

EventType = Literal[
    "tollgate.request.usage",
    "tollgate.quota.threshold_reached",
    "tollgate.key.created",
    "tollgate.key.revoked",
    "tollgate.key.expiring",
    "*",
]
DeliveryStatus = Literal["pending", "delivered", "failed"]

_URL_MAX = 2048
_SECRET_RE = re.compile(r"^[!-~]{16,256}$")  # visible ASCII, no spaces
_AUTH_RE = re.compile(r"^[ -~]{1,4096}$")  # a header value: printable ASCII, no CR/LF
Secret = Annotated[str, documented_pattern(_SECRET_RE.pattern)]
AuthorizationValue = Annotated[str, documented_pattern(_AUTH_RE.pattern)]


def webhook_url(value: str | None) -> str | None:
    """An absolute http(s) URL with a host, no fragment, no whitespace; a pydantic field validator."""
    if value is None:
        return None
    value = value.strip()
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("url must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("url must name a host")
    if parts.fragment or value.endswith("#"):
        raise ValueError("url must not have a #fragment")
    return value


def normalize_event_types(value: list[str] | None) -> list[str] | None:
    """Deduplicated, in the enumeration's order; ``*`` (everything, including types added later) alone."""
    if value is None:
        return None
    if ALL in value:
        return [ALL]
    return [t for t in EVENT_TYPES if t in value]


def _secret(value: str | None) -> str | None:
    if value is not None and not _SECRET_RE.match(value):
        raise ValueError("secret must be 16 to 256 visible ASCII characters (no spaces)")
    return value


def _authorization(value: str | None) -> str | None:
    if value is not None and not _AUTH_RE.match(value):
        raise ValueError("authorization must be a header value: printable ASCII, no line breaks")
    return value


def _everything() -> list[EventType]:
    return ["*"]


Url = Annotated[
    str,
    documented_pattern(r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+[^\s#]*$"),
    Field(
        min_length=1,
        max_length=_URL_MAX,
        description="http:// or https:// URL events are POSTed to",
    ),
]
EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EVENT_TYPES) + 1, description='the CloudEvent types sent, or ["*"] for all'),
]
Description = Annotated[str, Field(max_length=500)]


class WebhookCreate(InModel):
    url: Url
    event_types: EventTypes = Field(default_factory=_everything)
    secret: Secret | None = Field(
        default=None,
        description="signing secret (write-only); omitted: one is generated and shown in this response only",
    )
    authorization: AuthorizationValue | None = Field(
        default=None,
        description="sent as the Authorization header of every delivery (write-only), e.g. 'Bearer <api key>' "
        "for a receiver such as OpenMeter's ingest endpoint",
    )
    enabled: StrictBool = Field(
        default=True, description="false: events are not sent to this endpoint (nor kept for it)"
    )
    description: Description | None = Field(default=None, description="what the endpoint is, for people")

    _check_url = field_validator("url")(webhook_url)
    _check_types = field_validator("event_types")(normalize_event_types)
    _check_secret = field_validator("secret")(_secret)
    _check_authorization = field_validator("authorization")(_authorization)


class WebhookUpdate(InModel):
    url: Url | None = Field(
        json_schema_extra=not_null, default=None, description="http:// or https:// URL events are POSTed to"
    )
    event_types: EventTypes | None = Field(
        json_schema_extra=not_null, default=None, description='the CloudEvent types sent, or ["*"] for all'
    )
    secret: Secret | None = Field(
        json_schema_extra=not_null, default=None, description="a new signing secret (write-only)"
    )
    authorization: AuthorizationValue | None = Field(
        default=None, description="a new Authorization header value; null: none"
    )
    enabled: StrictBool | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="false: events are not sent to this endpoint (nor kept for it)",
    )
    description: Description | None = Field(default=None, description="what the endpoint is, for people")

    _check_url = field_validator("url")(webhook_url)
    _check_types = field_validator("event_types")(normalize_event_types)
    _check_secret = field_validator("secret")(_secret)
    _check_authorization = field_validator("authorization")(_authorization)


class WebhookPublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    url: str = Field(description="http:// or https:// URL events are POSTed to")
    event_types: list[str] = Field(description='the CloudEvent types sent, or ["*"] for all')
    enabled: bool = Field(description="false: events are not sent to this endpoint (nor kept for it)")
    description: str | None = Field(description="what the endpoint is, for people")
    has_authorization: bool = Field(description="an Authorization header is sent (its value is never shown)")
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="the signing secret: shown in this response only")


class DeliveryPublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    webhook_id: str = Field(description="the endpoint", validation_alias="endpoint_id")
    event_id: str = Field(description="the CloudEvent id, the same on every attempt (receivers de-duplicate by it)")
    event_type: str = Field(description="the CloudEvent type")
    status: DeliveryStatus = Field(description="pending (will be tried again), delivered, or failed (gave up)")
    attempts: int = Field(description="attempts so far")
    last_status_code: int | None = Field(description="HTTP status of the last attempt; null: no answer")
    last_error: str | None = Field(description="the last attempt's error; null: none")
    last_attempt_at: datetime | None = Field(description="when it was last tried")
    next_attempt_at: datetime | None = Field(description="when the next attempt is due (pending only)")
    delivered_at: datetime | None = Field(description="when the receiver answered 2xx; null: not yet")
    created_at: datetime = Field(description="when the resource was created (UTC)")
