"""Quota overage through a real worker (issue 17, item 3): an overage plan admits beyond its limit up to
its hard cap, and the requests beyond the limit reach the usage report and the export as overage."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from tests.integration.harness import Cluster, create, wait_until


def test_overage_is_admitted_up_to_the_cap_and_reported_apart(module_cluster: Cluster) -> None:
    echo = module_cluster.echo("overage")
    cp = module_cluster.control_plane(name="cp-overage")
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        api = create(a, "/v1/apis", {"name": "metered", "base_path": "/m", "auth": "api_key"})
        create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{p+}", "upstream_id": up["id"]})
        quota = {"limit": 3, "period": "MONTH", "overage": "allow", "hard_cap": 5}
        plan = create(a, "/v1/usage-plans", {"name": "pay-as-you-go", "quota": quota, "apis": [{"api_id": api["id"]}]})
        assert plan["quota"] == quota
        bad = a.post("/v1/usage-plans", json={"name": "bad", "quota": {**quota, "hard_cap": 2}})
        assert bad.status_code == 422 and "below the quota limit" in bad.text
        cust = create(a, "/v1/customers", {"name": "heavy-user"})
        assert a.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
        key = create(a, f"/v1/customers/{cust['id']}/keys", {})["key"]
    worker = module_cluster.worker(cp, name="overage-worker", env={"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"})
    worker.wait_revision(cp.revision())
    answers = [httpx.get(f"{worker.url}/m/x", headers={"x-api-key": key}, timeout=5) for _ in range(7)]
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 2  # 3 in the quota, 2 overage, then the cap
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:5]] == ["2", "1", "0", "0", "0"]
    today = datetime.now(UTC).date().isoformat()

    def report() -> dict[str, int]:
        r = cp.get(f"/v1/customers/{cust['id']}/usage?start={today}&end={today}")
        assert r.status_code == 200, r.text
        day = r.json()["days"][0]
        return {"requests": day["requests"], "overage": day["overage"]}

    wait_until(lambda: report()["requests"] == 5, timeout=20, what="the usage to reach the control plane")
    assert report() == {"requests": 5, "overage": 2}
    rows = [
        json.loads(line)
        for line in cp.get(f"/v1/usage/export?start={today}&end={today}&format=jsonl").text.splitlines()
    ]
    assert sum(r["requests"] for r in rows) == 5 and sum(r["overage_requests"] for r in rows) == 2
