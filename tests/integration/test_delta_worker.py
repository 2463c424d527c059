"""Incremental sync with real processes (issue 21): a worker takes keys, customers and routes as deltas
(its log says so), serves them, journals them, and starts again from cache + journal at the last
revision it applied, control plane down."""

from __future__ import annotations

import httpx

from tests.integration.harness import Cluster, ControlPlane, create, wait_until


def _api(cp: ControlPlane, port: int) -> dict[str, str]:
    with cp.admin() as admin:
        up = create(admin, "/v1/upstreams", {"name": "svc"})
        create(admin, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": port})
        api = create(admin, "/v1/apis", {"name": "svc", "base_path": "/svc", "auth": "api_key"})
        create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
        customer = create(admin, "/v1/customers", {"name": "acme", "api_ids": [api["id"]]})
    return {"upstream": up["id"], "api": api["id"], "customer": customer["id"]}


def test_keys_and_routes_arrive_as_deltas_and_survive_a_restart_from_the_journal(cluster: Cluster) -> None:
    backend = cluster.echo("b")
    cp = cluster.control_plane()
    ids = _api(cp, backend.port)
    cache = cluster.tmp / "delta-cache"
    worker = cluster.worker(cp, name="w", cache_dir=cache)
    worker.wait_revision(cp.revision())

    with cp.admin() as admin:
        key = create(admin, f"/v1/customers/{ids['customer']}/keys", {})
    headers = {"x-api-key": key["key"]}
    wait_until(lambda: httpx.get(f"{worker.url}/svc/a", headers=headers).status_code == 200, what="new key served")
    with cp.admin() as admin:
        create(admin, f"/v1/apis/{ids['api']}/routes", {"path": "/fresh/{id}", "upstream_id": ids["upstream"]})
        other = create(admin, f"/v1/customers/{ids['customer']}/keys", {})
        assert admin.delete(f"/v1/customers/{ids['customer']}/keys/{key['id']}").status_code == 204
    revision = cp.revision()
    worker.wait_revision(revision)
    assert httpx.get(f"{worker.url}/svc/a", headers=headers).status_code == 403  # revoked
    fresh = httpx.get(f"{worker.url}/svc/fresh/1", headers={"x-api-key": other["key"]})
    assert fresh.status_code == 200 and fresh.json()["path"] == "/fresh/1"
    log = worker.proc.log()
    assert "applied delta to revision" in log  # keys: in place, no compile
    assert worker.status()["hash"] == cp.get("/v1/config").json()["hash"]
    journal = next(cache.glob("*.deltas"))
    assert len(journal.read_bytes().splitlines()) >= 3

    cp.proc.kill()
    port = worker.port
    worker.proc.stop()
    assert next(cache.glob("*.packed"))  # the cached snapshot's packed companion (keys in one buffer)
    worker = cluster.worker(cp, name="w", cache_dir=cache, port=port)
    assert "cached config read from its packed form" in worker.proc.log()  # not parsed again
    assert "deltas of the journal" in worker.proc.log()  # into the entity store, then compiled once
    assert worker.status()["revision"] == revision  # the snapshot, then the journal's deltas
    assert httpx.get(f"{worker.url}/svc/a", headers=headers).status_code == 403
    assert httpx.get(f"{worker.url}/svc/x", headers={"x-api-key": other["key"]}).status_code == 200
