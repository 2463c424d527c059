"""API DTOs, one module per resource family: ``XCreate`` (POST), ``XUpdate`` (PATCH, every field
optional), ``XPublic`` (responses).

    common      InModel (extra fields forbidden), OutModel (from ORM rows), Page, ErrorDetail, Name,
                Timeout, path_template / method_list (the snapshot contract's own checks); a leaf
    upstreams   upstreams, targets, their health
    apis        APIs (auth settings, JWKS status) and routes
    customers   customers and API keys
    certificates  TLS certificates (the private key write-only)
    plans       usage plans, subscriptions, usage reports, quota adjustments, workers' usage batches
    admin       admin tokens, the audit log
    cluster     the config in force, node status reports and views
    openapi     OpenAPI import diff and result

Resource modules import ``common`` and (one way) each other; this package re-exports every public
name, so ``from control_plane.schemas import X`` works for all of them.  Class names are the OpenAPI
component names: renaming one changes the published document.
"""

from __future__ import annotations

from control_plane.schemas.admin import AdminTokenCreate, AdminTokenIssued, AdminTokenPublic, AuditPublic, Role
from control_plane.schemas.apis import (
    ApiCreate,
    ApiPublic,
    ApiUpdate,
    AuthMode,
    BodyLimit,
    CachePurged,
    ClaimName,
    HeaderName,
    JwksStatus,
    JwtAlgorithm,
    QueryName,
    RouteCreate,
    RoutePublic,
    RouteUpdate,
)
from control_plane.schemas.certificates import CertificateCreate, CertificatePublic, CertificateUpdate
from control_plane.schemas.cluster import ConfigPublic, NodePublic, NodeStatusIn
from control_plane.schemas.common import ErrorDetail, InModel, Name, OutModel, Page, Timeout, method_list, path_template
from control_plane.schemas.customers import (
    CustomerCreate,
    CustomerPublic,
    CustomerStatus,
    CustomerUpdate,
    Email,
    ImportedKey,
    KeyCreate,
    KeyIssued,
    KeyPublic,
    KeyRotate,
)
from control_plane.schemas.openapi import ImportDiff, ImportResult
from control_plane.schemas.plans import (
    AdjustIn,
    AdjustPublic,
    ApiId,
    Burst,
    CustomerUsage,
    Period,
    PlanApiIn,
    PlanCreate,
    PlanPublic,
    PlanUpdate,
    PlanUsage,
    QuotaIn,
    Rate,
    RouteOverrideIn,
    SubscriptionIn,
    SubscriptionPublic,
    ThrottleIn,
    UsageBatchIn,
    UsageBatchResult,
    UsageCountIn,
    UsageDay,
)
from control_plane.schemas.upstreams import (
    Algorithm,
    HashOn,
    HealthCheckIn,
    KeepaliveTimeout,
    PassiveIn,
    Port,
    Retries,
    StatusCode,
    TargetCreate,
    TargetHealth,
    TargetHealthPublic,
    TargetPublic,
    TargetUpdate,
    UpstreamCreate,
    UpstreamHealthPublic,
    UpstreamPublic,
    UpstreamUpdate,
    Weight,
)

__all__ = [
    "AdjustIn",
    "AdjustPublic",
    "AdminTokenCreate",
    "AdminTokenIssued",
    "AdminTokenPublic",
    "Algorithm",
    "ApiCreate",
    "ApiId",
    "ApiPublic",
    "ApiUpdate",
    "AuditPublic",
    "AuthMode",
    "BodyLimit",
    "Burst",
    "CachePurged",
    "CertificateCreate",
    "CertificatePublic",
    "CertificateUpdate",
    "ClaimName",
    "ConfigPublic",
    "CustomerCreate",
    "CustomerPublic",
    "CustomerStatus",
    "CustomerUpdate",
    "CustomerUsage",
    "Email",
    "ErrorDetail",
    "HashOn",
    "HeaderName",
    "HealthCheckIn",
    "ImportDiff",
    "ImportResult",
    "ImportedKey",
    "InModel",
    "JwksStatus",
    "JwtAlgorithm",
    "KeepaliveTimeout",
    "KeyCreate",
    "KeyIssued",
    "KeyPublic",
    "KeyRotate",
    "Name",
    "NodePublic",
    "NodeStatusIn",
    "OutModel",
    "Page",
    "PassiveIn",
    "Period",
    "PlanApiIn",
    "PlanCreate",
    "PlanPublic",
    "PlanUpdate",
    "PlanUsage",
    "Port",
    "QueryName",
    "QuotaIn",
    "Rate",
    "Retries",
    "Role",
    "RouteCreate",
    "RouteOverrideIn",
    "RoutePublic",
    "RouteUpdate",
    "StatusCode",
    "SubscriptionIn",
    "SubscriptionPublic",
    "TargetCreate",
    "TargetHealth",
    "TargetHealthPublic",
    "TargetPublic",
    "TargetUpdate",
    "ThrottleIn",
    "Timeout",
    "UpstreamCreate",
    "UpstreamHealthPublic",
    "UpstreamPublic",
    "UpstreamUpdate",
    "UsageBatchIn",
    "UsageBatchResult",
    "UsageCountIn",
    "UsageDay",
    "Weight",
    "method_list",
    "path_template",
]
