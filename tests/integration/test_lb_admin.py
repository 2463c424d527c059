"""Balancing configured through the admin API: consistent hashing across a target removal, drain by
weight 0, validation of the new upstream fields, and the per-worker health view."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster, create, wait_until


@pytest.fixture(scope="module")
def admin_lb(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    backends = [c.echo(f"e{i}") for i in range(3)]
    cp = c.control_plane()
    with cp.admin() as admin:
        up = create(
            admin,
            "/v1/upstreams",
            {
                "name": "sticky",
                "algorithm": "consistent_hash",
                "hash_on": "header",
                "hash_key": "X-User",
                "passive": {"consecutive_failures": 3},
            },
        )
        tids = [
            create(admin, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": b.port})["id"]
            for b in backends
        ]
        api = create(admin, "/v1/apis", {"name": "sticky", "base_path": "/sticky"})
        create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
    worker = c.worker(cp, name="admin-lb-worker", env={"TOLLGATE_HEARTBEAT_INTERVAL": "0.3"})
    worker.wait_revision(cp.revision())
    return {"cp": cp, "worker": worker, "upstream": up["id"], "targets": tids, "backends": backends}


def _owners(worker_url: str, users: list[str]) -> dict[str, str]:
    with httpx.Client(base_url=worker_url) as client:
        return {u: client.get("/sticky/x", headers={"x-user": u}).json()["server"] for u in users}


def test_health_endpoint_joins_each_workers_view(admin_lb) -> None:
    cp, up = admin_lb["cp"], admin_lb["upstream"]

    def view() -> dict[str, Any] | None:
        body = cp.get(f"/v1/upstreams/{up}/health").json()
        ok = all("admin-lb-worker" in t["nodes"] for t in body["targets"])
        return body if ok else None

    body = wait_until(view, what="worker health in the control plane")
    assert {t["id"] for t in body["targets"]} == set(admin_lb["targets"])
    state = body["targets"][0]["nodes"]["admin-lb-worker"]
    assert state["healthy"] is True and state["ejected_until"] is None and state["in_flight"] == 0
    assert cp.get("/v1/upstreams/nope/health").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hash_on": "header"}, "hash_key"),
        ({"hash_on": "planet"}, "hash_on"),
        ({"health_check": {"interval": 0}}, "interval"),
        ({"passive": {"max_ejection_percent": 150}}, "max_ejection_percent"),
        ({"passive": {"base_ejection_time": 60, "max_ejection_time": 10}}, "passive"),
    ],
)
def test_invalid_upstream_fields_are_422_naming_the_field(admin_lb, body: dict[str, Any], field: str) -> None:
    with admin_lb["cp"].admin() as admin:
        r = admin.post("/v1/upstreams", json={"name": "bad", **body})
    assert r.status_code == 422, r.text
    assert any(field in [str(x) for x in err["loc"]] for err in r.json()["detail"]), r.text


def test_patch_hash_on_alone_is_checked_against_the_stored_key(admin_lb) -> None:
    cp = admin_lb["cp"]
    with cp.admin() as admin:
        up = create(admin, "/v1/upstreams", {"name": "plain"})
        r = admin.patch(f"/v1/upstreams/{up['id']}", json={"hash_on": "cookie"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "hash_key"]
        r = admin.patch(f"/v1/upstreams/{up['id']}", json={"hash_on": "cookie", "hash_key": "sid"})
        assert r.status_code == 200 and r.json()["hash_key"] == "sid"
        assert admin.delete(f"/v1/upstreams/{up['id']}").status_code == 204


def test_consistent_hash_keeps_keys_when_a_target_leaves_and_weight_zero_drains(admin_lb) -> None:
    cp, worker, up, tids = admin_lb["cp"], admin_lb["worker"], admin_lb["upstream"], admin_lb["targets"]
    users = [f"user-{i}" for i in range(60)]
    before = _owners(worker.url, users)
    assert _owners(worker.url, users) == before  # same key, same target
    assert len(set(before.values())) == 3
    gone = before[users[0]]
    gone_id = tids[int(gone[1:])]
    with cp.admin() as admin:
        assert admin.delete(f"/v1/upstreams/{up}/targets/{gone_id}").status_code == 204
    worker.wait_revision(cp.revision())
    after = _owners(worker.url, users)
    assert gone not in after.values()
    assert {u: s for u, s in after.items() if before[u] != gone} == {u: s for u, s in before.items() if s != gone}

    drained = after[users[0]]
    with cp.admin() as admin:
        r = admin.patch(f"/v1/upstreams/{up}/targets/{tids[int(drained[1:])]}", json={"weight": 0})
        assert r.status_code == 200
    worker.wait_revision(cp.revision())
    assert set(_owners(worker.url, users).values()) == {s for s in after.values() if s != drained}
