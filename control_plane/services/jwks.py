"""The fetched JWKS of ``auth: jwt`` APIs: which are due for a fetch, and storing what a fetch gave.

The keys a worker uses are the ``api_jwks`` row's keys while its ``url`` is the API's
``jwt_jwks_url`` (none otherwise).  :func:`record_fetch` bumps the config revision exactly when that
effective key set changes, in the same transaction, so a rotated key set reaches the workers as a new
snapshot and an unchanged one costs nothing.  A failed fetch keeps the last good keys and records
the error.

The admin API's writes of an ``auth: jwt`` API go through :func:`create_api` / :func:`update_api` /
:func:`refresh`: a new JWKS URL is fetched *before* the write's transaction (the revision row is not
held while an identity provider answers) and recorded in it, so the snapshot that brings the URL
already carries its keys.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.errors import Invalid
from control_plane.jwks import Fetched, try_fetch
from control_plane.models import Api, ApiJwks, utcnow
from control_plane.schemas import ApiCreate, ApiUpdate
from control_plane.services import apis as api_svc
from control_plane.services.revision import bump_revision, one_revision

Prefetched = tuple[str, Fetched]  # (the URL fetched, what the fetch gave)


def due_for_fetch(*, session: Session, now: datetime, interval: float) -> tuple[list[tuple[str, str]], float]:
    """``(api_id, url)`` of the jwt APIs whose key set is missing, from another URL, or checked more
    than ``interval`` seconds ago; and the seconds until the next one falls due (at most ``interval``)."""
    stmt = (
        select(Api.id, Api.jwt_jwks_url, ApiJwks.url, ApiJwks.checked_at)
        .outerjoin(ApiJwks, ApiJwks.api_id == Api.id)
        .where(Api.auth == "jwt", Api.jwt_jwks_url.is_not(None))
        .order_by(Api.id)
    )
    due: list[tuple[str, str]] = []
    wait = interval
    for api_id, url, fetched_url, checked_at in session.execute(stmt):
        if url is None:
            continue
        if fetched_url != url or checked_at is None:
            due.append((api_id, url))
            continue
        left = (checked_at + timedelta(seconds=interval) - now).total_seconds()
        if left <= 0:
            due.append((api_id, url))
        else:
            wait = min(wait, left)
    return due, wait


def record_fetch(
    *, session: Session, api_id: str, url: str, keys: list[dict[str, str]] | None, error: str | None, now: datetime
) -> bool:
    """Store one fetch of ``url`` for the API (``keys`` on success, else ``error``); True when the key set
    the workers use changed (the revision was bumped).  Nothing happens when the API is gone or its URL
    changed while the fetch ran: the next round fetches the new URL."""
    api = session.get(Api, api_id)
    if api is None or api.jwt_jwks_url != url:
        return False
    row = api.jwks
    if row is None:
        row = ApiJwks(api_id=api_id, url=url, keys=[], checked_at=now)
        api.jwks = row
    before = row.keys if row.url == url else []
    if keys is not None:
        row.keys, row.fetched_at, row.last_error = keys, now, None
    else:
        row.last_error = error
        if row.url != url:  # the old URL's keys must never verify tokens for the new one
            row.keys, row.fetched_at = [], None
    row.url, row.checked_at = url, now
    changed = row.keys != before
    if changed:
        bump_revision(session)
    session.flush()
    return changed


def effective_keys(api: Api) -> list[dict[str, str]]:
    """The keys the snapshot carries for the API: the fetched ones, when fetched from its current URL."""
    row = api.jwks
    if api.jwt_jwks_url is None or row is None or row.url != api.jwt_jwks_url:
        return []
    return list(row.keys)


def create_api(*, session: Session, data: ApiCreate, timeout: float) -> Api:
    """``services.apis.create_api``, with the JWKS of a jwt API's ``jwt_jwks_url`` fetched first and
    recorded in the same transaction (one revision)."""
    fetched = prefetch(url=data.jwt_jwks_url if data.auth == "jwt" else None, timeout=timeout)
    with one_revision(session):
        row = api_svc.create_api(session=session, data=data)
        record_prefetched(session=session, api=row, fetched=fetched)
    return row


def update_api(*, session: Session, api_id: str, data: ApiUpdate, timeout: float) -> Api:
    """``services.apis.update_api``, with a JWKS URL named in the PATCH fetched first (as :func:`create_api`)."""
    fetched = prefetch(url=data.jwt_jwks_url, timeout=timeout)
    with one_revision(session):
        row = api_svc.update_api(session=session, api_id=api_id, data=data)
        record_prefetched(session=session, api=row, fetched=fetched)
    return row


def refresh(*, session: Session, api_id: str, timeout: float) -> Api:
    """Fetch the API's JWKS now and record the outcome (a failed fetch keeps the last good keys and
    says why in ``last_error``); the caller commits, then reads :func:`refreshed_status`."""
    api = api_svc.get_api(session=session, api_id=api_id)
    url = api.jwt_jwks_url
    if api.auth != "jwt" or url is None:
        raise Invalid("jwt_jwks_url", "this api has no jwt_jwks_url (or its auth is not jwt)")
    session.rollback()  # no transaction held open while the identity provider answers
    fetched = prefetch(url=url, timeout=timeout)
    row = api_svc.get_api(session=session, api_id=api_id)
    record_prefetched(session=session, api=row, fetched=fetched)
    return row


def refreshed_status(api: Api) -> ApiJwks:
    """The key set :func:`refresh` recorded; :class:`Invalid` when nothing was (the URL or the auth
    mode changed while fetching)."""
    if api.jwks is None:
        raise Invalid("jwt_jwks_url", "the api changed during the fetch; try again")
    return api.jwks


def prefetch(*, url: str | None, timeout: float) -> Prefetched | None:
    """Fetch ``url`` (None: nothing to fetch), outside any transaction."""
    if url is None:
        return None
    return url, try_fetch(url, timeout=timeout)


def record_prefetched(*, session: Session, api: Api, fetched: Prefetched | None) -> None:
    """Store a :func:`prefetch` for the API just written, unless its auth is not jwt (any more)."""
    if fetched is None or api.auth != "jwt":
        return
    url, result = fetched
    # Same transaction as the API write: one revision; no bump of its own (the write already bumped).
    record_fetch(session=session, api_id=api.id, url=url, keys=result.keys, error=result.error, now=utcnow())
