"""ORM rows (SQLAlchemy 2.0 ``Mapped``), one module per resource family.  The schema only changes
through ``migrations/``.

Ids are UUID4 strings; rows have ``created_at``/``updated_at`` (UTC).  Importing this package
imports every module, so ``Base.metadata`` (Alembic's env, the test fixtures) knows every table.

    base        Base, Timestamped, new_id, utcnow, UTCDateTime (a leaf)
    upstreams   Upstream, Target
    apis        Api, ApiJwks, Route
    customers   Customer, CustomerApiGrant, CustomerMtlsIdentity, ApiKey
    certificates  Certificate, CertificateSni
    plans       UsagePlan, UsagePlanApi, QuotaAdjustment, UsageCount, UsageHourly, UsageRefusal, UsageBatch
    admin       AdminToken, AuditEntry, IdempotencyRecord
    cluster     ConfigState, ConfigChange, Node
    webhooks    WebhookEndpoint, WebhookEvent, WebhookDelivery
    web         WebSession, PortalInvite, PortalAccount

Resource modules import only ``base``; rows of other modules are named by table (foreign keys) or by
class name (relationships), never imported.
"""

from __future__ import annotations

from control_plane.models.admin import AdminToken, AuditEntry, IdempotencyRecord
from control_plane.models.apis import Api, ApiJwks, Route
from control_plane.models.base import NAMING_CONVENTION, Base, Timestamped, UTCDateTime, new_id, utcnow
from control_plane.models.certificates import Certificate, CertificateSni
from control_plane.models.cluster import CONFIG_STATE_ID, ConfigChange, ConfigState, Node
from control_plane.models.customers import ApiKey, Customer, CustomerApiGrant, CustomerMtlsIdentity
from control_plane.models.plans import (
    QuotaAdjustment,
    UsageBatch,
    UsageCount,
    UsageHourly,
    UsagePlan,
    UsagePlanApi,
    UsageRefusal,
)
from control_plane.models.upstreams import Target, Upstream
from control_plane.models.web import PortalAccount, PortalInvite, WebSession
from control_plane.models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "CONFIG_STATE_ID",
    "NAMING_CONVENTION",
    "AdminToken",
    "Api",
    "ApiJwks",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Certificate",
    "CertificateSni",
    "ConfigChange",
    "ConfigState",
    "Customer",
    "CustomerApiGrant",
    "CustomerMtlsIdentity",
    "IdempotencyRecord",
    "Node",
    "PortalAccount",
    "PortalInvite",
    "QuotaAdjustment",
    "Route",
    "Target",
    "Timestamped",
    "WebSession",
    "UTCDateTime",
    "Upstream",
    "UsageBatch",
    "UsageCount",
    "UsageHourly",
    "UsageRefusal",
    "UsagePlan",
    "UsagePlanApi",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "new_id",
    "utcnow",
]
