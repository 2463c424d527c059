"""``/v1/webhooks``: endpoints that receive events (secret shown once), their deliveries, and a retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from control_plane.api.deps import Box, DeliveryId, Paging, ReadSession, WebhookId, Write
from control_plane.schemas import (
    DeliveryPublic,
    DeliveryStatus,
    Page,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from control_plane.services import convert
from control_plane.services import webhooks as svc

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_webhook(body: WebhookCreate, w: Write, box: Box) -> WebhookCreated:
    """Add an endpoint.  The signing secret is in this response only (generated unless given)."""
    row, secret = svc.create_webhook(session=w.session, box=box, data=body)
    w.commit(row.id)
    return convert.webhook_created(row, secret)


@router.get("")
def list_webhooks(session: ReadSession, page: Paging) -> Page[WebhookPublic]:
    """List the webhook endpoints, a page at a time (never their secrets)."""
    rows, total = svc.list_webhooks(session=session, limit=page.limit, offset=page.offset)
    return Page(items=[convert.webhook_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/{webhook_id}")
def get_webhook(webhook_id: WebhookId, session: ReadSession) -> WebhookPublic:
    """One webhook endpoint (never its secret nor its Authorization value)."""
    return convert.webhook_public(svc.get_webhook(session=session, webhook_id=webhook_id))


@router.patch("/{webhook_id}")
def update_webhook(webhook_id: WebhookId, body: WebhookUpdate, w: Write, box: Box) -> WebhookPublic:
    """Change the fields given; a new secret signs the deliveries from now on."""
    row = svc.update_webhook(session=w.session, box=box, webhook_id=webhook_id, data=body)
    w.commit()
    return convert.webhook_public(row)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: WebhookId, w: Write) -> Response:
    """Remove the endpoint and its deliveries (pending ones are not sent)."""
    svc.delete_webhook(session=w.session, webhook_id=webhook_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries")
def list_deliveries(
    webhook_id: WebhookId,
    session: ReadSession,
    page: Paging,
    status_: Annotated[DeliveryStatus | None, Query(alias="status", description="only these")] = None,
) -> Page[DeliveryPublic]:
    """The endpoint's deliveries, newest first: one per event, with its attempts and outcome."""
    rows, total = svc.list_deliveries(
        session=session, webhook_id=webhook_id, status=status_, limit=page.limit, offset=page.offset
    )
    return Page(items=[convert.delivery_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry")
def retry_delivery(webhook_id: WebhookId, delivery_id: DeliveryId, w: Write, request: Request) -> DeliveryPublic:
    """Send the event again now (failed, or delivered and lost by the receiver), with a fresh retry window."""
    row = svc.retry_delivery(session=w.session, webhook_id=webhook_id, delivery_id=delivery_id)
    w.commit()
    request.app.state.webhooks.poke()
    return convert.delivery_public(row)
