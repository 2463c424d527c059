"""Customers, their API grants and their API keys.

Keys: ``tg_<8 hex>_<43 url-safe chars>`` — the random part is 256 bits from :mod:`secrets`, the
8-hex part plus ``tg_`` is the non-secret *prefix* kept in clear to identify the key in lists and
logs.  Only ``sha256(key)`` hex is stored: the key is shown once, in the response that issued it.
Imported keys (migration from another gateway) keep their value; their prefix is their first 6
characters.  Revoked keys stay listed (status ``revoked``) but leave the snapshot; expiry travels
in the snapshot and the worker enforces it by its own clock.  Issuing and revoking a key write its
webhook event (``services/webhook_events.py``) in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.models import Api, ApiKey, Customer, CustomerApiGrant, CustomerMtlsIdentity, utcnow
from control_plane.schemas import CustomerCreate, CustomerUpdate, KeyCreate
from control_plane.services import changelog, webhook_events
from control_plane.services.common import apply_patch, integrity_as_conflict, paginate, paginate_keyset
from control_plane.services.revision import bump_revision

IMPORTED_PREFIX_LEN = 6


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new key and its prefix."""
    prefix = f"tg_{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def key_status(key: ApiKey, now: datetime | None = None) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


# ---------------------------------------------------------------------------- customers


def list_customers(
    *,
    session: Session,
    limit: int,
    offset: int,
    cursor: str | None = None,
    name: str | None = None,
    email: str | None = None,
    plan_id: str | None = None,
) -> tuple[list[Customer], int, str | None]:
    """A page of customers, oldest first; ``name`` matches a prefix, ``email`` and ``plan_id`` exactly.
    With ``cursor`` (a previous page's next) keyset paging, else ``offset``."""
    stmt = select(Customer)
    if name:
        stmt = stmt.where(Customer.name.startswith(name, autoescape=True))
    if email:
        stmt = stmt.where(Customer.email == email)
    if plan_id:
        stmt = stmt.where(Customer.plan_id == plan_id)
    if cursor is not None or offset == 0:
        return paginate_keyset(session, stmt, Customer.created_at, Customer.id, limit=limit, cursor=cursor)
    items, total = paginate(session, stmt.order_by(Customer.created_at, Customer.id), limit=limit, offset=offset)
    return items, total, None


def get_customer(*, session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound.of("customer", customer_id)
    return customer


def granted_api_ids(customer: Customer) -> list[str]:
    return sorted(g.api_id for g in customer.grants)


def create_customer(*, session: Session, data: CustomerCreate) -> Customer:
    bump_revision(session)
    _check_name_free(session, data.name)
    _check_external_id_free(session, data.external_id)
    customer = Customer(
        name=data.name, email=data.email, external_id=data.external_id, meta=data.metadata, status=data.status
    )
    session.add(customer)
    with integrity_as_conflict(f"customer name {data.name!r} or its external id is already used"):
        session.flush()
    _set_grants(session, customer, data.api_ids)
    _set_identities(session, customer, data.mtls_fingerprints, data.mtls_subjects)
    return customer


def update_customer(*, session: Session, customer_id: str, data: CustomerUpdate) -> Customer:
    bump_revision(session)
    customer = get_customer(session=session, customer_id=customer_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if changes.get("name") not in (None, customer.name):
        _check_name_free(session, changes["name"])
    api_ids = changes.pop("api_ids", None)
    fingerprints, subjects = changes.pop("mtls_fingerprints", None), changes.pop("mtls_subjects", None)
    if "metadata" in changes:
        changes["meta"] = changes.pop("metadata")
    if changes.get("external_id") not in (None, customer.external_id):
        _check_external_id_free(session, changes["external_id"])
    apply_patch(customer, changes, nullable=frozenset({"email", "external_id"}))
    with integrity_as_conflict("customer name or external id is already used"):
        session.flush()
    if api_ids is not None:
        _set_grants(session, customer, api_ids)
    if fingerprints is not None or subjects is not None:
        _set_identities(
            session,
            customer,
            customer.mtls_fingerprints if fingerprints is None else fingerprints,
            customer.mtls_subjects if subjects is None else subjects,
        )
    return customer


def delete_customer(*, session: Session, customer_id: str) -> None:
    bump_revision(session)
    session.delete(get_customer(session=session, customer_id=customer_id))  # keys and grants cascade
    session.flush()


def _check_external_id_free(session: Session, external_id: str | None) -> None:
    """Unique among external ids, and no customer's Tollgate id: a JWT's customer claim is looked up
    as an id first, then as an external id, so the two must never name different customers."""
    if external_id is None:
        return
    clash = or_(Customer.external_id == external_id, Customer.id == external_id)
    if session.execute(select(exists().where(clash))).scalar():
        raise Conflict(f"external id {external_id!r} is already used by another customer")


def _check_name_free(session: Session, name: str) -> None:
    if session.execute(select(exists().where(Customer.name == name))).scalar():
        raise Conflict(f"customer name {name!r} is already used")


def _set_grants(session: Session, customer: Customer, api_ids: list[str]) -> None:
    wanted = set(api_ids)
    known = set(session.execute(select(Api.id).where(Api.id.in_(wanted))).scalars()) if wanted else set()
    missing = sorted(wanted - known)
    if missing:
        raise Invalid("api_ids", f"api {missing[0]!r} does not exist")
    changelog.record(session, "customer", customer.id, table=CustomerApiGrant.__tablename__)  # the bulk delete below
    session.execute(delete(CustomerApiGrant).where(CustomerApiGrant.customer_id == customer.id))
    session.add_all(CustomerApiGrant(customer_id=customer.id, api_id=a) for a in sorted(wanted))
    with integrity_as_conflict("a granted api was deleted concurrently"):
        session.flush()
    session.expire(customer, ["grants"])


def _set_identities(session: Session, customer: Customer, fingerprints: list[str], subjects: list[str]) -> None:
    """The client certificates that authenticate as ``customer`` (values normalised by the schema); an
    identity of another customer is a conflict naming that customer."""
    wanted = {("fingerprint", v) for v in fingerprints} | {("subject", v) for v in subjects}
    if wanted == {(i.kind, i.value) for i in customer.mtls_identities}:
        return
    for kind, value in sorted(wanted):
        other = session.execute(
            select(Customer.name)
            .join(CustomerMtlsIdentity, CustomerMtlsIdentity.customer_id == Customer.id)
            .where(
                CustomerMtlsIdentity.kind == kind,
                CustomerMtlsIdentity.value == value,
                Customer.id != customer.id,
            )
        ).scalar()
        if other is not None:
            raise Conflict(f"client certificate {kind} {value!r} already identifies customer {other!r}")
    customer.mtls_identities = []  # delete-orphan: old rows go first, so a kept identity is not inserted twice
    session.flush()
    customer.mtls_identities = [
        CustomerMtlsIdentity(kind=k, value=v, customer_id=customer.id) for k, v in sorted(wanted)
    ]
    with integrity_as_conflict("a client certificate identity was given to another customer concurrently"):
        session.flush()


# ---------------------------------------------------------------------------- keys


def list_keys(
    *,
    session: Session,
    customer_id: str,
    limit: int,
    offset: int,
    cursor: str | None = None,
    prefix: str | None = None,
    status: str | None = None,
) -> tuple[list[ApiKey], int, str | None]:
    """A page of a customer's keys, oldest first; ``prefix`` matches the key's prefix from its start,
    ``status`` is ``active`` (not revoked) or ``revoked``."""
    get_customer(session=session, customer_id=customer_id)
    stmt = select(ApiKey).where(ApiKey.customer_id == customer_id)
    if prefix:
        stmt = stmt.where(ApiKey.prefix.startswith(prefix, autoescape=True))
    if status == "active":
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    elif status == "revoked":
        stmt = stmt.where(ApiKey.revoked_at.is_not(None))
    if cursor is not None or offset == 0:
        return paginate_keyset(session, stmt, ApiKey.created_at, ApiKey.id, limit=limit, cursor=cursor)
    items, total = paginate(session, stmt.order_by(ApiKey.created_at, ApiKey.id), limit=limit, offset=offset)
    return items, total, None


def get_key(*, session: Session, customer_id: str, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.customer_id != customer_id:
        get_customer(session=session, customer_id=customer_id)
        raise NotFound.of("key", key_id)
    return key


def issue_key(*, session: Session, customer_id: str, data: KeyCreate) -> tuple[ApiKey, str]:
    """A new key (or the imported one) for the customer; returns the row and the plaintext."""
    bump_revision(session)
    get_customer(session=session, customer_id=customer_id)
    expires_at = _aware(data.expires_at)
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("expires_at", "expires_at must be in the future")
    if data.key is not None:
        plaintext, prefix = data.key, data.key[:IMPORTED_PREFIX_LEN]
    else:
        plaintext, prefix = generate_key()
    key = _add_key(session, customer_id, plaintext, prefix, data.name, expires_at)
    webhook_events.key_created(session=session, key=key)
    return key, plaintext


def revoke_key(*, session: Session, customer_id: str, key_id: str) -> None:
    bump_revision(session)
    key = get_key(session=session, customer_id=customer_id, key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        webhook_events.key_revoked(session=session, key=key)
    session.flush()


def rotate_key(*, session: Session, customer_id: str, key_id: str, grace_seconds: int) -> tuple[ApiKey, str]:
    """Issue a successor and let the old key run for ``grace_seconds`` more (never longer than it had)."""
    bump_revision(session)
    old = get_key(session=session, customer_id=customer_id, key_id=key_id)
    if key_status(old) != "active":
        raise Conflict(f"key {key_id!r} is {key_status(old)}; only an active key can be rotated")
    now = utcnow()
    until = now + timedelta(seconds=grace_seconds)
    old.expires_at = until if old.expires_at is None else min(old.expires_at, until)
    if grace_seconds == 0:
        old.revoked_at = now
        webhook_events.key_revoked(session=session, key=old)
    plaintext, prefix = generate_key()
    key = _add_key(session, customer_id, plaintext, prefix, old.name, None)
    webhook_events.key_created(session=session, key=key)
    return key, plaintext


def record_key_use(*, session: Session, keys_used: dict[str, int]) -> None:
    """Workers' approximate last use (epoch seconds); keeps the newest per key, ignores unknown ids."""
    if not keys_used:
        return
    rows = session.execute(select(ApiKey).where(ApiKey.id.in_(list(keys_used)))).scalars()
    for key in rows:
        seen = datetime.fromtimestamp(keys_used[key.id], UTC)
        if key.last_used_at is None or seen > key.last_used_at:
            key.last_used_at = seen
    session.flush()


def _add_key(
    session: Session, customer_id: str, plaintext: str, prefix: str, name: str | None, expires_at: datetime | None
) -> ApiKey:
    key_hash = hash_key(plaintext)
    if session.execute(select(exists().where(ApiKey.key_hash == key_hash))).scalar():
        raise Conflict("this key value is already registered")
    key = ApiKey(customer_id=customer_id, key_hash=key_hash, prefix=prefix, name=name, expires_at=expires_at)
    session.add(key)
    with integrity_as_conflict("this key value is already registered"):
        session.flush()
    return key


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
