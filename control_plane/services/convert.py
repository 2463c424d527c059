"""ORM rows (and service results) -> the admin API's response DTOs: the one place the two meet.

Most ``XPublic`` read their row's attributes directly (``from_attributes``); the others are built here
field by field because the row names a field differently (``Customer.meta`` is ``metadata``), derives
it (a key's ``status``, a customer's ``api_ids``), or the DTO gathers several rows.  Routers call these
and never build a response from a row themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from control_plane.models import (
    AdminToken,
    Api,
    ApiJwks,
    ApiKey,
    AuditEntry,
    Certificate,
    Customer,
    Route,
    Target,
    Upstream,
    UsagePlan,
    WebhookDelivery,
    WebhookEndpoint,
)
from control_plane.schemas import (
    AdminTokenIssued,
    AdminTokenPublic,
    ApiPublic,
    AuditPublic,
    CertificatePublic,
    CustomerPublic,
    DeliveryPublic,
    ImportDiff,
    ImportResult,
    JwksStatus,
    KeyIssued,
    KeyPublic,
    NodePublic,
    PlanApiIn,
    PlanPublic,
    RoutePublic,
    SubscriptionPublic,
    TargetHealth,
    TargetHealthPublic,
    TargetPublic,
    UpstreamHealthPublic,
    UpstreamPublic,
    WebhookCreated,
    WebhookPublic,
)
from control_plane.services.customers import granted_api_ids, key_status
from control_plane.services.nodes import NodeView
from control_plane.services.openapi import ImportOutcome
from control_plane.services.plans import quota_of, throttle_of
from data_plane.limits.periods import customer_period

_NODE_FIELDS = ("id", "hostname", "version", "pid", "revision", "hash", "last_error", "first_seen", "last_seen")

# ---------------------------------------------------------------------------- upstreams


def upstream_public(row: Upstream) -> UpstreamPublic:
    return UpstreamPublic.model_validate(row)


def target_public(row: Target) -> TargetPublic:
    return TargetPublic.model_validate(row)


def upstream_health(
    upstream_id: str, rows: Iterable[tuple[Target, Mapping[str, Mapping[str, Any]]]]
) -> UpstreamHealthPublic:
    """``rows``: each target with ``{node id: that worker's view}`` (``services.nodes.upstream_health``)."""
    targets = [
        TargetHealthPublic(
            id=t.id,
            host=t.host,
            port=t.port,
            weight=t.weight,
            nodes={node: TargetHealth.model_validate(view) for node, view in views.items()},
        )
        for t, views in rows
    ]
    return UpstreamHealthPublic(upstream_id=upstream_id, targets=targets)


# ---------------------------------------------------------------------------- apis


def api_public(row: Api) -> ApiPublic:
    return ApiPublic.model_validate(row)


def route_public(row: Route) -> RoutePublic:
    return RoutePublic.model_validate(row)


def jwks_status(row: ApiJwks) -> JwksStatus:
    return JwksStatus.model_validate(row)


def import_result(outcome: ImportOutcome, *, dry_run: bool) -> ImportResult:
    return ImportResult(
        api=api_public(outcome.api) if outcome.api is not None else None,
        created=outcome.created and not dry_run,
        changed=outcome.changed,
        dry_run=dry_run,
        diff=ImportDiff(
            api=outcome.api_changes,
            added=outcome.added,
            changed=outcome.changed_routes,
            removed=outcome.removed,
        ),
    )


# ---------------------------------------------------------------------------- customers and keys


def customer_public(row: Customer) -> CustomerPublic:
    return CustomerPublic(
        id=row.id,
        name=row.name,
        email=row.email,
        external_id=row.external_id,
        metadata=row.meta,
        status=row.status,
        api_ids=granted_api_ids(row),
        plan_id=row.plan_id,
        mtls_fingerprints=row.mtls_fingerprints,
        mtls_subjects=row.mtls_subjects,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def key_public(row: ApiKey) -> KeyPublic:
    return KeyPublic(
        id=row.id,
        customer_id=row.customer_id,
        prefix=row.prefix,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        status=key_status(row),  # type: ignore[arg-type]
    )


def key_issued(row: ApiKey, plaintext: str) -> KeyIssued:
    return KeyIssued(**key_public(row).model_dump(), key=plaintext)


# ---------------------------------------------------------------------------- certificates


def certificate_public(row: Certificate) -> CertificatePublic:
    return CertificatePublic.model_validate(row)  # no key field: the private key never leaves the service


# ---------------------------------------------------------------------------- usage plans


def plan_public(row: UsagePlan) -> PlanPublic:
    return PlanPublic(
        id=row.id,
        name=row.name,
        description=row.description,
        throttle=throttle_of(row),
        quota=quota_of(row),
        apis=[PlanApiIn(api_id=a.api_id, overrides=a.overrides) for a in row.apis],  # type: ignore[arg-type]
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def subscription_public(customer: Customer, plan: UsagePlan | None, now: float | None = None) -> SubscriptionPublic:
    """The subscription with its billing cycle and, for a plan with a quota, the current period."""
    from control_plane.services.cycles import cycle_of
    from control_plane.services.plans import quota_of

    cycle = cycle_of(customer)
    zone = ZoneInfo(customer.time_zone) if customer.time_zone else UTC
    anchor = customer.billing_anchor.astimezone(zone) if customer.billing_anchor is not None else None
    start = end = None
    quota = quota_of(plan) if plan is not None else None
    if quota is not None:
        ts = datetime.now(UTC).timestamp() if now is None else now
        lo, hi = customer_period(quota.period, ts, cycle)
        start, end = datetime.fromtimestamp(lo, zone), datetime.fromtimestamp(hi, zone)
    return SubscriptionPublic(
        customer_id=customer.id,
        plan_id=plan.id if plan else None,
        plan_name=plan.name if plan else None,
        billing_anchor=anchor,
        time_zone=customer.time_zone,
        period_start=start,
        period_end=end,
    )


# ---------------------------------------------------------------------------- admin access, nodes


def admin_token_public(row: AdminToken) -> AdminTokenPublic:
    return AdminTokenPublic.model_validate(row)


def admin_token_issued(row: AdminToken, token: str) -> AdminTokenIssued:
    return AdminTokenIssued(**admin_token_public(row).model_dump(), token=token)


def audit_public(row: AuditEntry) -> AuditPublic:
    return AuditPublic.model_validate(row)


def node_public(view: NodeView) -> NodePublic:
    return NodePublic.model_validate(
        {**{k: getattr(view.node, k) for k in _NODE_FIELDS}, "in_sync": view.in_sync, "stale": view.stale}
    )


# ---------------------------------------------------------------------------- webhooks


def webhook_public(row: WebhookEndpoint) -> WebhookPublic:
    return WebhookPublic(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        enabled=row.enabled,
        description=row.description,
        has_authorization=row.authorization_encrypted is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def webhook_created(row: WebhookEndpoint, secret: str) -> WebhookCreated:
    return WebhookCreated(**webhook_public(row).model_dump(), secret=secret)


def delivery_public(row: WebhookDelivery) -> DeliveryPublic:
    out = DeliveryPublic.model_validate(row)
    if row.status != "pending":
        out.next_attempt_at = None
    return out
