"""Webhook endpoints (``/v1/webhooks``) and the state of their deliveries.

The signing secret is ``whsec_`` + 256 random bits unless the caller brings one; it is sealed at rest
with the :class:`~control_plane.secretbox.SecretBox` (the sender must sign with it, so a hash would
not do), returned by :func:`create_webhook` for the create response only, and never again.  The
optional ``authorization`` header value is sealed the same way.  Webhooks are not config for the
workers: nothing here bumps the revision.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.errors import Invalid, NotFound
from control_plane.models import WebhookDelivery, WebhookEndpoint, new_id, utcnow
from control_plane.schemas import WebhookCreate, WebhookUpdate
from control_plane.secretbox import SecretBox
from control_plane.services.common import paginate

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_aad(endpoint_id: str) -> str:
    return f"webhook_endpoints/{endpoint_id}/secret"


def authorization_aad(endpoint_id: str) -> str:
    return f"webhook_endpoints/{endpoint_id}/authorization"


def list_webhooks(*, session: Session, limit: int, offset: int) -> tuple[list[WebhookEndpoint], int]:
    stmt = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    return paginate(session, stmt, limit=limit, offset=offset)


def get_webhook(*, session: Session, webhook_id: str) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, webhook_id)
    if row is None:
        raise NotFound.of("webhook", webhook_id)
    return row


def create_webhook(*, session: Session, box: SecretBox, data: WebhookCreate) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its signing secret in clear (for the response only)."""
    row = WebhookEndpoint(
        id=new_id(),
        url=data.url,
        description=data.description,
        event_types=list(data.event_types),
        enabled=data.enabled,
    )
    plaintext = data.secret or generate_secret()
    row.secret_encrypted = box.encrypt(plaintext.encode(), aad=secret_aad(row.id))
    if data.authorization is not None:
        row.authorization_encrypted = box.encrypt(data.authorization.encode(), aad=authorization_aad(row.id))
    session.add(row)
    session.flush()
    return row, plaintext


def update_webhook(*, session: Session, box: SecretBox, webhook_id: str, data: WebhookUpdate) -> WebhookEndpoint:
    row = get_webhook(session=session, webhook_id=webhook_id)
    changes: dict[str, Any] = {k: getattr(data, k) for k in data.model_fields_set}
    for name in ("url", "event_types", "secret", "enabled"):
        if name in changes and changes[name] is None:
            raise Invalid(name, f"{name} may not be null")
    if "url" in changes:
        row.url = changes["url"]
    if "event_types" in changes:
        row.event_types = list(changes["event_types"])
    if "enabled" in changes:
        row.enabled = changes["enabled"]
    if "description" in changes:
        row.description = changes["description"]
    if "secret" in changes:  # deliveries from now on are signed with it, pending ones included
        row.secret_encrypted = box.encrypt(changes["secret"].encode(), aad=secret_aad(row.id))
    if "authorization" in changes:
        value = changes["authorization"]
        row.authorization_encrypted = (
            None if value is None else box.encrypt(value.encode(), aad=authorization_aad(row.id))
        )
    session.flush()
    return row


def delete_webhook(*, session: Session, webhook_id: str) -> None:
    """The endpoint and its deliveries (cascade); events stay for the other endpoints."""
    session.delete(get_webhook(session=session, webhook_id=webhook_id))
    session.flush()


# ---------------------------------------------------------------------------- deliveries


def list_deliveries(
    *, session: Session, webhook_id: str, status: str | None, limit: int, offset: int
) -> tuple[list[WebhookDelivery], int]:
    """Newest first."""
    get_webhook(session=session, webhook_id=webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == webhook_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    stmt = stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
    return paginate(session, stmt, limit=limit, offset=offset)


def get_delivery(*, session: Session, webhook_id: str, delivery_id: str) -> WebhookDelivery:
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != webhook_id:
        get_webhook(session=session, webhook_id=webhook_id)
        raise NotFound.of("delivery", delivery_id)
    return row


def retry_delivery(
    *, session: Session, webhook_id: str, delivery_id: str, now: datetime | None = None
) -> WebhookDelivery:
    """Send it again now, with a fresh retry window (the max age counts from now): a failed delivery
    after the receiver was fixed, or a delivered one the receiver lost (it de-duplicates by event id)."""
    row = get_delivery(session=session, webhook_id=webhook_id, delivery_id=delivery_id)
    now = now or utcnow()
    row.status = "pending"
    row.next_attempt_at = now
    row.retry_since = now
    row.delivered_at = None
    row.lease = row.locked_until = None  # an attempt in flight now records nothing: this retry runs afresh
    session.flush()
    return row
