"""A customer's billing cycle through a real worker: the RateLimit reset, Retry-After and the 429
follow the cycle's anchor in its time zone, not the UTC calendar (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.integration.harness import Cluster, create


def test_the_quota_window_ends_at_the_cycle_anchor_time(module_cluster: Cluster) -> None:
    echo = module_cluster.echo("cycle")
    cp = module_cluster.control_plane()
    tokyo = ZoneInfo("Asia/Tokyo")
    # a DAY cycle whose boundary is 5 (or 7) hours from now (minute precision), in Tokyo time: never
    # near the next UTC midnight, so the two cannot be mistaken for each other
    now = datetime.now(UTC)
    to_midnight = ((now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0) - now).total_seconds()
    hours = 5 if abs(5 * 3600 - to_midnight) > 1800 else 7
    boundary = (datetime.now(tokyo) + timedelta(hours=hours)).replace(second=0, microsecond=0)
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        api = create(a, "/v1/apis", {"name": "daily", "base_path": "/daily", "auth": "api_key"})
        create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{p+}", "upstream_id": up["id"]})
        plan = create(
            a,
            "/v1/usage-plans",
            {"name": "two", "quota": {"limit": 2, "period": "DAY"}, "apis": [{"api_id": api["id"]}]},
        )
        cust = create(a, "/v1/customers", {"name": "tokyo-co"})
        anchor = boundary.replace(tzinfo=None).isoformat()  # a wall-clock time in the zone
        r = a.put(
            f"/v1/customers/{cust['id']}/plan",
            json={"plan_id": plan["id"], "billing_anchor": anchor, "time_zone": "Asia/Tokyo"},
        )
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["period_end"]) == boundary
        key = create(a, f"/v1/customers/{cust['id']}/keys", {})["key"]
    worker = module_cluster.worker(cp)
    worker.wait_revision(cp.revision())
    headers = {"x-api-key": key}
    expected = boundary.timestamp() - datetime.now(UTC).timestamp()
    ok = [httpx.get(f"{worker.url}/daily/x", headers=headers, timeout=5) for _ in range(2)]
    assert [r.status_code for r in ok] == [200, 200]
    reset = int(ok[0].headers["x-ratelimit-reset"])
    assert abs(reset - expected) < 60, (reset, expected)  # not the seconds to midnight UTC
    midnight_utc = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(reset - (midnight_utc - datetime.now(UTC)).total_seconds()) > 120
    refused = httpx.get(f"{worker.url}/daily/x", headers=headers, timeout=5)
    assert refused.status_code == 429 and refused.json()["message"] == "quota exhausted"
    assert abs(int(refused.headers["retry-after"]) - expected) < 60
