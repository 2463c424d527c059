"""Build the sealed snapshot for the current revision.

This is the one place where ORM rows become snapshot types.  Ordering is total (by unique keys) so
identical database content always yields the identical content hash.

Certificates' private keys are stored encrypted at rest (:mod:`control_plane.secretbox`); the build
opens each one and at once seals it for the workers with the cluster token
(:func:`data_plane.tls.seal.seal`, deterministic, so the hash stays stable).  The clear key exists only
between those two calls.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from control_plane import models
from control_plane.models import UsagePlan
from control_plane.secretbox import SecretBox
from control_plane.services.certificates import private_key_pem
from control_plane.services.cycles import cycle_of
from control_plane.services.jwks import effective_keys
from control_plane.services.revision import current_revision
from control_plane.services.usage import current_extras
from data_plane.snapshot import (
    Api,
    ApiAuth,
    ApiKey,
    Certificate,
    Customer,
    HealthCheck,
    Jwk,
    Passive,
    Plan,
    PlanApi,
    PlanOverride,
    PlanQuota,
    PlanThrottle,
    Route,
    Snapshot,
    Target,
    Upstream,
)
from data_plane.tls.seal import seal


def build_snapshot(session: Session, *, box: SecretBox | None = None, cluster_token: str | None = None) -> Snapshot:
    """Read revision and content in one transaction and return the sealed snapshot.

    ``box`` (the data key at rest) and ``cluster_token`` (what the workers open keys with) are needed
    once there is a certificate; without them a build with certificates raises ``ValueError``.

    On PostgreSQL the caller's transaction is switched to REPEATABLE READ (when nothing ran in it
    yet) so the revision and the rows come from one database snapshot.  pysqlite runs SELECTs
    outside a transaction, so a write committed while the rows are read could land in a snapshot
    labelled with the previous revision (and the next revision would then carry the same hash, which
    a worker waiting for that revision never receives): the revision is read again afterwards and
    the build repeated when it moved.  Every config write bumps it, so an unchanged revision means
    no write committed in between.
    """
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    for _ in range(9):
        snapshot = _build(session, box, cluster_token)
        if current_revision(session) == snapshot.revision:
            return snapshot
    return _build(session, box, cluster_token)  # writes keep landing: the next notification rebuilds anyway


def _build(session: Session, box: SecretBox | None, cluster_token: str | None) -> Snapshot:
    revision = current_revision(session)
    upstream_rows = session.execute(_UPSTREAMS.order_by(models.Upstream.name)).scalars()
    api_rows = session.execute(_APIS.order_by(models.Api.name)).scalars()
    upstreams = tuple(_upstream(u) for u in upstream_rows)
    apis = tuple(_api(a) for a in api_rows)
    customer_rows = session.execute(_CUSTOMERS.order_by(models.Customer.id)).scalars()
    now = datetime.now(UTC)
    extras = current_extras(session, now.timestamp())
    customers = tuple(_customer(c, extras) for c in customer_rows)
    # Only keys that can still work: revoked ones leave the snapshot, expiry is enforced by the worker.
    # Columns, not ORM rows: a million keys as mapped objects held by the session cost gigabytes.
    k = models.ApiKey
    key_rows = session.execute(
        select(k.id, k.customer_id, k.key_hash, k.prefix, k.expires_at)
        .where(k.revoked_at.is_(None))
        .order_by(k.key_hash)
        .execution_options(yield_per=10_000)
    )
    keys = tuple(_key(row) for row in key_rows)
    plan_rows = session.execute(_PLANS.order_by(UsagePlan.id)).scalars()
    plans = tuple(_plan(p) for p in plan_rows)
    certificate_rows = session.execute(_CERTIFICATES.order_by(models.Certificate.id)).scalars()
    certificates = tuple(_certificate(c, box, cluster_token) for c in certificate_rows)
    generated_at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Snapshot(
        revision=revision,
        upstreams=upstreams,
        apis=apis,
        customers=customers,
        keys=keys,
        plans=plans,
        certificates=certificates,
        generated_at=generated_at,
    ).sealed()


# The rows of each snapshot member, with what their conversion reads loaded in the same query.
_UPSTREAMS = select(models.Upstream).options(selectinload(models.Upstream.targets))
_APIS = select(models.Api).options(selectinload(models.Api.routes), selectinload(models.Api.jwks))
_CUSTOMERS = select(models.Customer).options(
    selectinload(models.Customer.grants), selectinload(models.Customer.mtls_identities)
)
_KEYS = select(models.ApiKey).where(models.ApiKey.revoked_at.is_(None))
_PLANS = select(UsagePlan).options(selectinload(UsagePlan.apis))
_CERTIFICATES = select(models.Certificate).options(selectinload(models.Certificate.sni_rows))

Entity = Upstream | Api | Customer | ApiKey | Plan | Certificate


def load_entities(
    session: Session,
    kind: str,
    ids: Collection[str],
    *,
    box: SecretBox | None = None,
    cluster_token: str | None = None,
) -> dict[str, Entity]:
    """The snapshot entities of one kind (the change log's kinds) with these ids, as the full build
    makes them; an id missing from the result is not in the snapshot (deleted, or a revoked key)."""
    out: dict[str, Entity] = {}
    id_list = sorted(ids)
    for i in range(0, len(id_list), 500):  # bound the IN list
        chunk = id_list[i : i + 500]
        if kind == "upstream":
            for u in session.execute(_UPSTREAMS.where(models.Upstream.id.in_(chunk))).scalars():
                out[u.id] = _upstream(u)
        elif kind == "api":
            for a in session.execute(_APIS.where(models.Api.id.in_(chunk))).scalars():
                out[a.id] = _api(a)
        elif kind == "customer":
            extras = current_extras(session, datetime.now(UTC).timestamp())
            for c in session.execute(_CUSTOMERS.where(models.Customer.id.in_(chunk))).scalars():
                out[c.id] = _customer(c, extras)
        elif kind == "key":
            for k in session.execute(_KEYS.where(models.ApiKey.id.in_(chunk))).scalars():
                out[k.id] = _key(k)
        elif kind == "plan":
            for p in session.execute(_PLANS.where(UsagePlan.id.in_(chunk))).scalars():
                out[p.id] = _plan(p)
        elif kind == "certificate":
            for cert in session.execute(_CERTIFICATES.where(models.Certificate.id.in_(chunk))).scalars():
                out[cert.id] = _certificate(cert, box, cluster_token)
        else:
            raise ValueError(f"unknown entity kind {kind!r}")
    return out


def _upstream(u: models.Upstream) -> Upstream:
    return Upstream(
        id=u.id,
        name=u.name,
        algorithm=u.algorithm,
        connect_timeout=float(u.connect_timeout),
        read_timeout=float(u.read_timeout),
        retries=u.retries,
        targets=tuple(
            Target(id=t.id, host=t.host, port=t.port, weight=t.weight, scheme=t.scheme)
            for t in sorted(u.targets, key=lambda t: (t.host, t.port))
        ),
        hash_on=u.hash_on,
        hash_key=u.hash_key,
        health_check=_health_check(u.health_check),
        passive=_passive(u.passive),
        panic=u.panic,
        total_timeout=u.total_timeout,
        max_connections=u.max_connections,
        keepalive_timeout=float(u.keepalive_timeout),
        tls_verify=u.tls_verify,
        ca_certificates=u.ca_certificates,
        sni=u.sni,
        client_certificate_id=u.client_certificate_id,
    )


def _api(a: models.Api) -> Api:
    return Api(
        id=a.id,
        name=a.name,
        base_path=a.base_path,
        hosts=tuple(sorted(a.hosts)),
        auth=a.auth,
        strip_base_path=a.strip_base_path,
        max_body_bytes=a.max_body_bytes,
        auth_settings=_auth_settings(a),
        rate_limit_headers=a.rate_limit_headers,
        https_only=a.https_only,
        policies=a.policies or None,
        cache_epoch=a.cache_epoch,
        routes=tuple(
            Route(
                id=r.id,
                path=r.path,
                upstream_id=r.upstream_id,
                methods=tuple(r.methods),
                connect_timeout=r.connect_timeout,
                read_timeout=r.read_timeout,
                total_timeout=r.total_timeout,
                policies=r.policies or None,
            )
            for r in sorted(a.routes, key=lambda r: (r.path, r.id))
        ),
    )


def _customer(c: models.Customer, extras: dict[str, tuple[int, int, int]]) -> Customer:
    extra = extras.get(c.id) or (0, 0, 0)
    return Customer(
        id=c.id,
        name=c.name,
        status=c.status,
        api_ids=tuple(sorted(g.api_id for g in c.grants)),
        plan_id=c.plan_id,
        quota_extra=extra[0],
        quota_extra_start=extra[1],
        quota_extra_end=extra[2],
        mtls_fingerprints=tuple(c.mtls_fingerprints),
        mtls_subjects=tuple(c.mtls_subjects),
        external_id=c.external_id or "",
        **_cycle_fields(c),
    )


def _key(k: Any) -> ApiKey:
    """A key from its row (an ORM ``ApiKey`` or a row of its columns: both have these attributes)."""
    return ApiKey(
        id=k.id,
        customer_id=k.customer_id,
        key_hash=k.key_hash,
        prefix=k.prefix,
        expires_at=math.ceil(k.expires_at.timestamp()) if k.expires_at is not None else None,
    )


def _certificate(c: models.Certificate, box: SecretBox | None, cluster_token: str | None) -> Certificate:
    if box is None or not cluster_token:
        raise ValueError("building a snapshot with certificates needs the secret box and the cluster token")
    return Certificate(
        id=c.id,
        cert=c.cert,
        key=seal(private_key_pem(box=box, row=c), c.id, cluster_token),
        snis=tuple(c.snis),
        default=c.is_default,
    )


def _cycle_fields(c: models.Customer) -> dict[str, Any]:
    """The snapshot's billing cycle of a customer (none: UTC calendar periods, the defaults)."""
    cycle = cycle_of(c)
    if cycle is None:
        return {}
    return {
        "billing_anchor": int(cycle.anchor.timestamp()),
        "time_zone": c.time_zone or "",
        "cycle_since": cycle.since,
    }


def _plan(p: UsagePlan) -> Plan:
    throttle = None
    if p.throttle_rate is not None and p.throttle_burst is not None:
        throttle = PlanThrottle(rate=float(p.throttle_rate), burst=p.throttle_burst)
    quota = None
    if p.quota_limit is not None and p.quota_period is not None:
        quota = PlanQuota(
            limit=int(p.quota_limit),
            period=p.quota_period,
            overage=p.quota_overage == "allow",
            hard_cap=int(p.quota_hard_cap) if p.quota_hard_cap is not None else None,
        )
    return Plan(
        id=p.id,
        name=p.name,
        throttle=throttle,
        quota=quota,
        apis=tuple(
            PlanApi(
                api_id=a.api_id,
                overrides=tuple(
                    PlanOverride(method=o["method"], path=o["path"], rate=float(o["rate"]), burst=int(o["burst"]))
                    for o in a.overrides
                ),
            )
            for a in p.apis
        ),
    )


def _health_check(doc: dict[str, Any] | None) -> HealthCheck | None:
    # The JSON column holds what schemas.HealthCheckIn validated; missing keys take the defaults.
    if doc is None:
        return None
    d = HealthCheck()
    return HealthCheck(
        path=doc.get("path", d.path),
        method=doc.get("method", d.method),
        interval=float(doc.get("interval", d.interval)),
        timeout=float(doc.get("timeout", d.timeout)),
        expected_statuses=tuple(sorted(set(doc.get("expected_statuses", ())))),
        healthy_threshold=int(doc.get("healthy_threshold", d.healthy_threshold)),
        unhealthy_threshold=int(doc.get("unhealthy_threshold", d.unhealthy_threshold)),
    )


def _passive(doc: dict[str, Any] | None) -> Passive | None:
    if doc is None:
        return None
    d = Passive()
    return Passive(
        consecutive_failures=int(doc.get("consecutive_failures", d.consecutive_failures)),
        statuses=tuple(sorted(set(doc.get("statuses", d.statuses)))),
        base_ejection_time=float(doc.get("base_ejection_time", d.base_ejection_time)),
        max_ejection_time=float(doc.get("max_ejection_time", d.max_ejection_time)),
        max_ejection_percent=int(doc.get("max_ejection_percent", d.max_ejection_percent)),
    )


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
        jwt_jwks_url=a.jwt_jwks_url,
        # sorted by kid when fetched (control_plane.jwks.parse_jwks)
        jwt_jwks=tuple(Jwk(**k) for k in effective_keys(a)),
        mtls_ca_certificates=a.mtls_ca_certificates,
    )
