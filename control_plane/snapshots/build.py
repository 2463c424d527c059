"""Build the sealed snapshot for the current revision.

This is the one place where ORM rows become snapshot types.  Ordering is total (by unique keys) so
identical database content always yields the identical content hash.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from control_plane import models
from control_plane.services.revision import current_revision
from data_plane.snapshot import Api, ApiAuth, ApiKey, Customer, Route, Snapshot, Target, Upstream


def build_snapshot(session: Session) -> Snapshot:
    """Read revision and content in one transaction and return the sealed snapshot.

    On PostgreSQL the caller's transaction is switched to REPEATABLE READ (when nothing ran in it
    yet) so the revision and the rows come from one database snapshot; SQLite read transactions
    already are.
    """
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    revision = current_revision(session)
    upstream_rows = session.execute(
        select(models.Upstream).options(selectinload(models.Upstream.targets)).order_by(models.Upstream.name)
    ).scalars()
    api_rows = session.execute(
        select(models.Api).options(selectinload(models.Api.routes)).order_by(models.Api.name)
    ).scalars()
    upstreams = tuple(
        Upstream(
            id=u.id,
            name=u.name,
            algorithm=u.algorithm,
            connect_timeout=float(u.connect_timeout),
            read_timeout=float(u.read_timeout),
            retries=u.retries,
            targets=tuple(
                Target(id=t.id, host=t.host, port=t.port, weight=t.weight)
                for t in sorted(u.targets, key=lambda t: (t.host, t.port))
            ),
        )
        for u in upstream_rows
    )
    apis = tuple(
        Api(
            id=a.id,
            name=a.name,
            base_path=a.base_path,
            hosts=tuple(sorted(a.hosts)),
            auth=a.auth,
            strip_base_path=a.strip_base_path,
            max_body_bytes=a.max_body_bytes,
            auth_settings=_auth_settings(a),
            routes=tuple(
                Route(id=r.id, path=r.path, upstream_id=r.upstream_id, methods=tuple(r.methods))
                for r in sorted(a.routes, key=lambda r: (r.path, r.id))
            ),
        )
        for a in api_rows
    )
    customer_rows = session.execute(
        select(models.Customer).options(selectinload(models.Customer.grants)).order_by(models.Customer.id)
    ).scalars()
    customers = tuple(
        Customer(id=c.id, name=c.name, status=c.status, api_ids=tuple(sorted(g.api_id for g in c.grants)))
        for c in customer_rows
    )
    # Only keys that can still work: revoked ones leave the snapshot, expiry is enforced by the worker.
    key_rows = session.execute(
        select(models.ApiKey).where(models.ApiKey.revoked_at.is_(None)).order_by(models.ApiKey.key_hash)
    ).scalars()
    keys = tuple(
        ApiKey(
            id=k.id,
            customer_id=k.customer_id,
            key_hash=k.key_hash,
            prefix=k.prefix,
            expires_at=math.ceil(k.expires_at.timestamp()) if k.expires_at is not None else None,
        )
        for k in key_rows
    )
    generated_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Snapshot(
        revision=revision, upstreams=upstreams, apis=apis, customers=customers, keys=keys, generated_at=generated_at
    ).sealed()


def _auth_settings(a: models.Api) -> ApiAuth:
    return ApiAuth(
        key_header=a.key_header.lower(),
        key_query=a.key_query,
        strip_credential=a.strip_credential,
        jwt_algorithms=tuple(a.jwt_algorithms or ()),
        jwt_secret=a.jwt_secret,
        jwt_public_key=a.jwt_public_key,
        jwt_issuer=a.jwt_issuer,
        jwt_audience=a.jwt_audience,
        jwt_customer_claim=a.jwt_customer_claim,
    )
