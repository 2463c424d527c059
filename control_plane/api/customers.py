"""``/v1/customers`` and ``/v1/customers/{customer_id}/keys`` (issue, import, list, revoke, rotate)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from control_plane.api.deps import CustomerId, KeyId, Paging, ReadSession, Write
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
    """Create a customer (who calls the APIs); give it keys, a plan or direct API grants afterwards."""
    row = svc.create_customer(session=w.session, data=body)
    w.commit(row.id)
    return convert.customer_public(row)


@router.get("")
def list_customers(
    session: ReadSession,
    page: Paging,
    cursor: Annotated[
        str | None, Query(max_length=300, description="a previous page's `next`: the page after it")
    ] = None,
    name: Annotated[str | None, Query(max_length=200, description="customers whose name starts with this")] = None,
    email: Annotated[str | None, Query(max_length=320, description="customers with this email")] = None,
    plan_id: Annotated[str | None, Query(max_length=36, description="customers subscribed to this plan")] = None,
) -> Page[CustomerPublic]:
    """Customers, oldest first.  Page with `cursor` (each page's `next`; stable while rows are added)
    or with `offset`; `total` counts every match."""
    rows, total, next_cursor = svc.list_customers(
        session=session, limit=page.limit, offset=page.offset, cursor=cursor, name=name, email=email, plan_id=plan_id
    )
    items = [convert.customer_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset, next=next_cursor)


@router.get("/{customer_id}")
def get_customer(customer_id: CustomerId, session: ReadSession) -> CustomerPublic:
    """One customer."""
    return convert.customer_public(svc.get_customer(session=session, customer_id=customer_id))


@router.patch("/{customer_id}")
def update_customer(customer_id: CustomerId, body: CustomerUpdate, w: Write) -> CustomerPublic:
    """Change the fields given; ``status: suspended`` refuses every key of the customer."""
    row = svc.update_customer(session=w.session, customer_id=customer_id, data=body)
    w.commit()
    return convert.customer_public(row)


@router.delete("/{customer_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_customer(customer_id: CustomerId, w: Write) -> Response:
    """Delete the customer and its keys."""
    svc.delete_customer(session=w.session, customer_id=customer_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{customer_id}/keys", status_code=status.HTTP_201_CREATED)
def issue_key(customer_id: CustomerId, body: KeyCreate, w: Write) -> KeyIssued:
    """Issue a key (or import ``key``).  The plaintext is in this response only."""
    row, plaintext = svc.issue_key(session=w.session, customer_id=customer_id, data=body)
    w.commit(row.id)
    return convert.key_issued(row, plaintext)


@router.get("/{customer_id}/keys")
def list_keys(
    customer_id: CustomerId,
    session: ReadSession,
    page: Paging,
    cursor: Annotated[
        str | None, Query(max_length=300, description="a previous page's `next`: the page after it")
    ] = None,
    prefix: Annotated[str | None, Query(max_length=16, description="keys whose prefix starts with this")] = None,
    key_status: Annotated[
        Literal["active", "revoked"] | None,
        Query(alias="status", description="active (not revoked) or revoked keys only"),
    ] = None,
) -> Page[KeyPublic]:
    """A customer's keys, oldest first; paged like the customers list."""
    rows, total, next_cursor = svc.list_keys(
        session=session,
        customer_id=customer_id,
        limit=page.limit,
        offset=page.offset,
        cursor=cursor,
        prefix=prefix,
        status=key_status,
    )
    items = [convert.key_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset, next=next_cursor)


@router.get("/{customer_id}/keys/{key_id}")
def get_key(customer_id: CustomerId, key_id: KeyId, session: ReadSession) -> KeyPublic:
    """One API key of the customer (its prefix, never the key)."""
    return convert.key_public(svc.get_key(session=session, customer_id=customer_id, key_id=key_id))


@router.delete("/{customer_id}/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(customer_id: CustomerId, key_id: KeyId, w: Write) -> Response:
    """Revoke the key: workers refuse it (403) once they apply the new config."""
    svc.revoke_key(session=w.session, customer_id=customer_id, key_id=key_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{customer_id}/keys/{key_id}/rotate", status_code=status.HTTP_201_CREATED)
def rotate_key(customer_id: CustomerId, key_id: KeyId, body: KeyRotate, w: Write) -> KeyIssued:
    """A new key; the old one keeps working for ``grace_seconds`` and then stops by itself."""
    row, plaintext = svc.rotate_key(
        session=w.session, customer_id=customer_id, key_id=key_id, grace_seconds=body.grace_seconds
    )
    w.commit(row.id)
    return convert.key_issued(row, plaintext)
