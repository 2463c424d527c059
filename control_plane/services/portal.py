"""The customer portal's rules: invites (one-time, time-limited links), accounts (argon2id passwords)
and the self-service keys a customer may hold (at most the operator's ``key_limit`` at once).

A customer acts only on their own rows: every function here takes the customer id from the signed-in
session, never from the request, and looks keys up through :func:`customers.get_key`, which answers
404 for a key of anyone else.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.models import ApiKey, Customer, PortalAccount, PortalInvite, utcnow
from control_plane.schemas import KeyCreate
from control_plane.services import customers as customers_svc

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
MIN_PASSWORD = 12
# verified against when the name is unknown, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invite(
    *, session: Session, customer_id: str, ttl_seconds: int, key_limit: int, now: datetime | None = None
) -> tuple[PortalInvite, str]:
    """A one-time invite for the customer; returns the row and the token of the link (shown once)."""
    customers_svc.get_customer(session=session, customer_id=customer_id)
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = PortalInvite(
        customer_id=customer_id,
        token_hash=_hash(token),
        key_limit=key_limit,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )
    session.add(row)
    session.flush()
    return row, token


def find_invite(*, session: Session, token: str, now: datetime | None = None) -> PortalInvite:
    row = session.execute(select(PortalInvite).where(PortalInvite.token_hash == _hash(token))).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= (now or utcnow()):
        # one answer for unknown, used and expired: the link tells nothing about the others
        raise NotFound("this invite link is unknown, used or expired")
    return row


def accept_invite(*, session: Session, token: str, password: str, now: datetime | None = None) -> Customer:
    """Set the customer's password from the invite and use the invite up."""
    row = find_invite(session=session, token=token, now=now)
    check_password(password)
    account = session.get(PortalAccount, row.customer_id)
    if account is None:
        account = PortalAccount(customer_id=row.customer_id, password_hash="", key_limit=row.key_limit)
        session.add(account)
    account.password_hash = _hasher.hash(password)
    account.key_limit = row.key_limit
    row.used_at = now or utcnow()
    session.flush()
    return customers_svc.get_customer(session=session, customer_id=row.customer_id)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid("password", f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise Invalid("password", "the password must have at most 1024 characters")


def authenticate(*, session: Session, name: str, password: str) -> Customer | None:
    """The customer with this name and password (and an active status), or None."""
    customer = session.execute(select(Customer).where(Customer.name == name)).scalar_one_or_none()
    account = session.get(PortalAccount, customer.id) if customer is not None else None
    try:
        _hasher.verify(account.password_hash if account is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if customer is None or account is None or customer.status != "active":
        return None
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    return customer


def account_of(*, session: Session, customer_id: str) -> PortalAccount:
    account = session.get(PortalAccount, customer_id)
    if account is None:
        raise NotFound.of("portal account", customer_id)
    return account


def live_keys(*, session: Session, customer_id: str) -> int:
    now = utcnow()
    stmt = select(func.count(ApiKey.id)).where(
        ApiKey.customer_id == customer_id,
        ApiKey.revoked_at.is_(None),
        (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
    )
    return int(session.execute(stmt).scalar_one())


def issue_own_key(*, session: Session, customer_id: str, name: str | None) -> tuple[ApiKey, str]:
    account = account_of(session=session, customer_id=customer_id)
    if live_keys(session=session, customer_id=customer_id) >= account.key_limit:
        raise Conflict(f"you may hold at most {account.key_limit} keys at once; revoke one first")
    return customers_svc.issue_key(session=session, customer_id=customer_id, data=KeyCreate(name=name or None))


def granted_api_ids(*, session: Session, customer: Customer) -> list[str]:
    """The APIs the customer may call: granted directly or through their plan."""
    from control_plane.services.plans import plan_of

    ids = set(customers_svc.granted_api_ids(customer))
    plan = plan_of(session=session, customer=customer)
    if plan is not None:
        ids.update(a.api_id for a in plan.apis)
    return sorted(ids)


def granted_api(*, session: Session, customer: Customer, api_id: str) -> None:
    """404 (as for an API that does not exist) unless the customer may call ``api_id``."""
    if api_id not in granted_api_ids(session=session, customer=customer):
        raise NotFound.of("api", api_id)


def hourly_requests(*, session: Session, customer_id: str, hours: int = 24) -> list[tuple[datetime, int]]:
    """The customer's metered requests per UTC hour over the last ``hours`` (the current one last)."""
    from control_plane.models import UsageHourly

    top = utcnow().replace(minute=0, second=0, microsecond=0)
    since = top - timedelta(hours=hours - 1)
    rows = session.execute(
        select(UsageHourly.hour, func.sum(UsageHourly.count))
        .where(UsageHourly.customer_id == customer_id, UsageHourly.hour >= since)
        .group_by(UsageHourly.hour)
    ).all()
    counts = {(h if h.tzinfo else h.replace(tzinfo=top.tzinfo)): int(n) for h, n in rows}
    return [(since + timedelta(hours=i), counts.get(since + timedelta(hours=i), 0)) for i in range(hours)]
