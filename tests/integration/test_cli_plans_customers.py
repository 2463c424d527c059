"""`tollgate plans|customers|keys ...` and `tollgate usage` against a real control plane process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.cli_support import ok_json, tg
from tests.integration.harness import Cluster, ControlPlane


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> Iterator[ControlPlane]:
    yield module_cluster.control_plane()


def test_plans_create_list_get_delete(cp: ControlPlane) -> None:
    plan = ok_json(cp, "plans", "create", "name=cli-gold", 'quota={"limit": 100, "period": "DAY"}', "description=x")
    assert (plan["name"], plan["quota"], plan["apis"]) == ("cli-gold", {"limit": 100, "period": "DAY"}, [])
    assert "cli-gold" in [p["name"] for p in ok_json(cp, "plans", "list")]
    table = tg(cp, "plans", "list")
    assert table.exit_code == 0 and "cli-gold" in table.stdout
    assert ok_json(cp, "plans", "update", "cli-gold", 'throttle={"rate": 2, "burst": 4}')["throttle"]["burst"] == 4
    assert tg(cp, "plans", "delete", "cli-gold").exit_code == 0
    assert "cli-gold" not in [p["name"] for p in ok_json(cp, "plans", "list")]


def test_customers_and_keys_the_key_is_printed_once(cp: ControlPlane) -> None:
    customer = ok_json(cp, "customers", "create", "name=cli-acme", "email=ops@acme.example")
    assert (customer["name"], customer["status"], customer["api_ids"]) == ("cli-acme", "active", [])
    assert "cli-acme" in [c["name"] for c in ok_json(cp, "customers", "list")]

    issued = tg(cp, "keys", "create", "--customer", "cli-acme", "name=ci")  # the table form people see
    assert issued.exit_code == 0, issued.output
    key = next(w for w in issued.stdout.split() if w.startswith("tg_") and w.count("_") >= 2 and len(w) > 20)
    listed = ok_json(cp, "keys", "list", "--customer", "cli-acme")
    assert [(k["name"], k["status"]) for k in listed] == [("ci", "active")]
    assert key.startswith(listed[0]["prefix"])
    for shown in (tg(cp, "keys", "list", "--customer", "cli-acme"), tg(cp, "customers", "get", "cli-acme")):
        assert shown.exit_code == 0 and listed[0]["prefix"] in shown.stdout and key not in shown.stdout

    assert tg(cp, "keys", "delete", "--customer", "cli-acme", listed[0]["id"]).exit_code == 0
    assert ok_json(cp, "keys", "get", "--customer", "cli-acme", listed[0]["id"])["status"] == "revoked"
    assert tg(cp, "customers", "delete", "cli-acme").exit_code == 0
    assert "cli-acme" not in [c["name"] for c in ok_json(cp, "customers", "list")]
    gone = tg(cp, "keys", "list", "--customer", "cli-acme")
    assert gone.exit_code == 1 and "customer 'cli-acme' not found" in gone.stderr


def _ingest(cp: ControlPlane, counts: list[dict[str, Any]]) -> None:
    body = {"batch_id": f"cli-usage-{len(counts)}", "node_id": "t", "counts": counts}
    headers = {"authorization": f"Bearer {cp.cluster_token}"}
    r = httpx.post(f"{cp.url}/cluster/v1/usage", json=body, headers=headers, timeout=10.0)
    assert r.status_code == 200 and r.json()["applied"] is True, r.text


def test_usage_shows_requests_per_day_and_quota_remaining(cp: ControlPlane) -> None:
    with cp.admin() as admin:
        up = admin.post("/v1/upstreams", json={"name": "cli-usage-up"}).json()
        api = admin.post("/v1/apis", json={"name": "cli-usage-api", "base_path": "/cli-usage"}).json()
        assert admin.post(f"/v1/apis/{api['id']}/routes", json={"path": "/", "upstream_id": up["id"]}).is_success
        plan = admin.post(
            "/v1/usage-plans",
            json={
                "name": "cli-usage-plan",
                "quota": {"limit": 1000, "period": "MONTH"},
                "apis": [{"api_id": api["id"]}],
            },
        ).json()
        customer = admin.post("/v1/customers", json={"name": "cli-usage-cust"}).json()
        assert admin.put(f"/v1/customers/{customer['id']}/plan", json={"plan_id": plan["id"]}).is_success
    today = datetime.now(UTC).date()
    # Same month as today (so both days count against one period): yesterday unless today is the 1st.
    earlier = today - timedelta(days=1) if today.day > 1 else today
    days = [earlier, today] if earlier != today else [today]
    _ingest(cp, [{"customer_id": customer["id"], "api_id": api["id"], "day": d.isoformat(), "count": 7} for d in days])
    used = 7 * len(days)

    report = ok_json(cp, "usage", "cli-usage-cust", "--start", days[0].isoformat(), "--end", today.isoformat())
    assert [d["requests"] for d in report["days"]] == [7] * len(days)
    assert report["days"][-1]["quota_remaining"] == 1000 - used
    assert report["days"][-1]["apis"] == {api["id"]: 7}

    table = tg(cp, "usage", "cli-usage-cust")  # default: the last 7 days
    assert table.exit_code == 0, table.output
    assert "plan cli-usage-plan" in table.stdout and "quota 1000 per month" in table.stdout
    row = next(line for line in table.stdout.splitlines() if today.isoformat() in line)
    assert "7" in row and str(1000 - used) in row and "cli-usage-api=7" in row
    assert len([line for line in table.stdout.splitlines() if line.startswith("│ 20")]) == 7

    bad = tg(cp, "usage", "cli-usage-cust", "--start", "yesterday")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
    missing = tg(cp, "usage", "nobody")
    assert missing.exit_code == 1 and "customer 'nobody' not found" in missing.stderr
