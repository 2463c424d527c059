"""``/v1/customers`` and ``/v1/customers/{customer_id}/keys`` (issue, import, list, revoke, rotate)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from control_plane.api.deps import Paging, ReadSession, Write
from control_plane.schemas import (
    CustomerCreate,
    CustomerPublic,
    CustomerUpdate,
    KeyCreate,
    KeyIssued,
    KeyPublic,
    KeyRotate,
    Page,
)
from control_plane.services import convert
from control_plane.services import customers as svc

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_customer(body: CustomerCreate, w: Write) -> CustomerPublic:
    row = svc.create_customer(session=w.session, data=body)
    w.commit(row.id)
    return convert.customer_public(row)


@router.get("")
def list_customers(session: ReadSession, page: Paging) -> Page[CustomerPublic]:
    rows, total = svc.list_customers(session=session, limit=page.limit, offset=page.offset)
    return Page(items=[convert.customer_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/{customer_id}")
def get_customer(customer_id: str, session: ReadSession) -> CustomerPublic:
    return convert.customer_public(svc.get_customer(session=session, customer_id=customer_id))


@router.patch("/{customer_id}")
def update_customer(customer_id: str, body: CustomerUpdate, w: Write) -> CustomerPublic:
    row = svc.update_customer(session=w.session, customer_id=customer_id, data=body)
    w.commit()
    return convert.customer_public(row)


@router.delete("/{customer_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_customer(customer_id: str, w: Write) -> Response:
    svc.delete_customer(session=w.session, customer_id=customer_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{customer_id}/keys", status_code=status.HTTP_201_CREATED)
def issue_key(customer_id: str, body: KeyCreate, w: Write) -> KeyIssued:
    """Issue a key (or import ``key``).  The plaintext is in this response only."""
    row, plaintext = svc.issue_key(session=w.session, customer_id=customer_id, data=body)
    w.commit(row.id)
    return convert.key_issued(row, plaintext)


@router.get("/{customer_id}/keys")
def list_keys(customer_id: str, session: ReadSession, page: Paging) -> Page[KeyPublic]:
    rows, total = svc.list_keys(session=session, customer_id=customer_id, limit=page.limit, offset=page.offset)
    return Page(items=[convert.key_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/{customer_id}/keys/{key_id}")
def get_key(customer_id: str, key_id: str, session: ReadSession) -> KeyPublic:
    return convert.key_public(svc.get_key(session=session, customer_id=customer_id, key_id=key_id))


@router.delete("/{customer_id}/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(customer_id: str, key_id: str, w: Write) -> Response:
    svc.revoke_key(session=w.session, customer_id=customer_id, key_id=key_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{customer_id}/keys/{key_id}/rotate", status_code=status.HTTP_201_CREATED)
def rotate_key(customer_id: str, key_id: str, body: KeyRotate, w: Write) -> KeyIssued:
    """A new key; the old one keeps working for ``grace_seconds`` and then stops by itself."""
    row, plaintext = svc.rotate_key(
        session=w.session, customer_id=customer_id, key_id=key_id, grace_seconds=body.grace_seconds
    )
    w.commit(row.id)
    return convert.key_issued(row, plaintext)
