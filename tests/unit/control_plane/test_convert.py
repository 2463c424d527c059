"""ORM row -> response DTO (control_plane/services/convert.py) for the DTOs built field by field.

Rows are transient (never added to a session): the conversions read attributes only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_plane.errors import Invalid
from control_plane.models import Api, ApiJwks, ApiKey, Customer, CustomerApiGrant, Node, UsagePlan, UsagePlanApi
from control_plane.services import convert
from control_plane.services.jwks import refreshed_status
from control_plane.services.nodes import NodeView

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_customer_public_names_the_metadata_column_and_lists_granted_apis() -> None:
    row = Customer(id="c1", name="acme", email=None, meta={"tier": "gold"}, status="active", plan_id=None)
    row.created_at = row.updated_at = T0
    row.grants = [CustomerApiGrant(customer_id="c1", api_id="b"), CustomerApiGrant(customer_id="c1", api_id="a")]
    out = convert.customer_public(row)
    assert out.metadata == {"tier": "gold"}
    assert sorted(out.api_ids) == ["a", "b"]


@pytest.mark.parametrize(
    ("revoked_at", "expires_at", "status"),
    [(None, None, "active"), (T0, None, "revoked"), (None, T0 - timedelta(days=1), "expired")],
)
def test_key_public_status_and_issued_plaintext(
    revoked_at: datetime | None, expires_at: datetime | None, status: str
) -> None:
    row = ApiKey(id="k1", customer_id="c1", name=None, key_hash="h" * 64, prefix="tg_abc", created_at=T0)
    row.revoked_at, row.expires_at, row.last_used_at = revoked_at, expires_at, None
    assert convert.key_public(row).status == status
    issued = convert.key_issued(row, "tg_abc.secret")
    assert issued.key == "tg_abc.secret" and issued.status == status


def test_plan_public_gathers_limits_and_apis() -> None:
    row = UsagePlan(id="p1", name="gold", description="", throttle_rate=5.0, throttle_burst=10)
    row.quota_limit, row.quota_period = None, None
    row.created_at = row.updated_at = T0
    row.apis = [UsagePlanApi(plan_id="p1", api_id="a1", position=0, overrides=[])]
    out = convert.plan_public(row)
    assert out.throttle is not None and (out.throttle.rate, out.throttle.burst) == (5.0, 10)
    assert out.quota is None
    assert [a.api_id for a in out.apis] == ["a1"]
    customer = Customer(id="c1", name="acme")
    assert convert.subscription_public(customer, row).model_dump() == {
        "customer_id": "c1",
        "plan_id": "p1",
        "plan_name": "gold",
        "billing_anchor": None,
        "time_zone": None,
        "period_start": None,  # the plan has no quota: no period
        "period_end": None,
    }
    assert convert.subscription_public(customer, None).plan_id is None


def test_node_public_adds_the_view_flags() -> None:
    node = Node(id="n1", hostname="h", version="1", pid=7, revision=3, hash="ab", last_error=None)
    node.first_seen = node.last_seen = T0
    out = convert.node_public(NodeView(node=node, in_sync=True, stale=False))
    assert (out.id, out.pid, out.in_sync, out.stale) == ("n1", 7, True, False)


def test_refreshed_status_is_invalid_when_nothing_was_recorded() -> None:
    api = Api(id="a1", name="x", auth="jwt", jwt_jwks_url="https://idp.example/jwks")
    with pytest.raises(Invalid, match="changed during the fetch"):
        refreshed_status(api)
    api.jwks = ApiJwks(api_id="a1", url="https://idp.example/jwks", keys=[], checked_at=T0)
    assert convert.jwks_status(refreshed_status(api)).url == "https://idp.example/jwks"
