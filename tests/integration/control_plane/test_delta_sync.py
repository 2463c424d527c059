"""Incremental sync (issue 21, item 1): after every step of a random sequence of admin writes, the
worker-side state built from deltas equals a fresh full load of the same revision (same hash), on
SQLite and PostgreSQL.

The worker side is the worker's own code: the delta parser and entity store
(``data_plane.snapshot.delta``) and the in-place apply (``data_plane.incremental``) on a compiled
config; the full load is ``GET /cluster/v1/snapshot`` without ``since``.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_plane.auth import AuthTables
from data_plane.compiler import CompiledConfig, compile_snapshot
from data_plane.incremental import apply_delta
from data_plane.snapshot import Snapshot
from data_plane.snapshot.delta import EntityStore, parse_delta
from tests.integration.control_plane.conftest import CLUSTER_TOKEN
from tests.integration.harness import wait_until

CLUSTER = {"Authorization": f"Bearer {CLUSTER_TOKEN}"}

# One admin write: (operation, a number choosing among the existing rows, a number for names).
Step = tuple[str, int, int]
OPS = (
    "customer",
    "customer_update",
    "customer_delete",
    "key",
    "key_revoke",
    "key_rotate",
    "upstream",
    "target",
    "target_delete",
    "api",
    "api_update",
    "api_delete",
    "route",
    "route_update",
    "route_delete",
    "plan",
    "plan_update",
    "plan_delete",
    "subscribe",
)
steps = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50), st.integers(0, 10**6)), min_size=1, max_size=12)


class WorkerSide:
    """What a worker holds: its entities and its compiled config, moved by deltas only."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        full = self.full()
        self.store = EntityStore.of(full)
        self.config = compile_snapshot(full)
        self.deltas = 0

    def full(self) -> Snapshot:
        resp = self.client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=CLUSTER)
        assert resp.status_code == 200 and resp.headers["x-tollgate-kind"] == "snapshot"
        return Snapshot.from_json(resp.content)

    def sync(self) -> None:
        params: dict[str, Any] = {"since": self.store.revision, "known_hash": self.store.hash, "wait": 0}
        resp = self.client.get("/cluster/v1/snapshot", params=params, headers=CLUSTER)
        if resp.status_code == 304:
            return
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-tollgate-kind"] == "delta", "a worker one step behind must get a delta"
        delta = parse_delta(resp.content)
        done = self.store.apply(delta)

        def recompile(snap: Snapshot, auth: AuthTables | None, keep: frozenset[str] | None) -> CompiledConfig:
            return compile_snapshot(snap, self.config, auth=auth, keep_apis=keep)

        self.config = apply_delta(self.store, self.config, done, recompile)
        self.deltas += 1

    def check(self) -> None:
        full = self.full()
        assert self.store.hash == full.hash == self.config.hash
        # (a write that changed nothing the snapshot holds bumps the revision, not the hash: the long-poll,
        # which compares hashes, then has nothing to send and the worker stays at its revision)
        assert self.store.revision == self.config.revision <= full.revision
        # the entities re-encoded by this worker's rules hash as the control plane's full snapshot
        mine = dataclasses.replace(self.store.snapshot(), hash="").sealed()
        assert mine.hash == full.hash
        fresh = compile_snapshot(full)
        assert fresh.auth is not None and self.config.auth is not None
        assert _served(self.config.auth) == _keys(fresh.auth)
        assert _customers(self.config.auth) == _customers(fresh.auth)
        assert sorted(self.config.upstreams) == sorted(fresh.upstreams)
        assert _routes(self.config, full) == _routes(fresh, full)


def _keys(t: AuthTables) -> dict[str, tuple[str, str, str, int | None, bytes]]:
    return {h: (k.id, k.customer.id, k.prefix, k.expires_at, k.inject()) for h, k in t.entries().items()}


def _served(t: AuthTables) -> dict[str, tuple[str, str, str, int | None, bytes]]:
    """What the request path's lookup answers (the entries it made on first use first) for every key
    it holds or has made an entry for: each check fills those entries, so the next step's delta must
    drop the ones it changes."""
    out = {}
    for h in {*t.keys, *(k.key_hash for k in t.source)}:
        k = t.keys.get(h) or t.find_key(h)
        if k is not None:
            out[h] = (k.id, k.customer.id, k.prefix, k.expires_at, k.inject())
    return out


def _customers(t: AuthTables) -> dict[str, tuple[bool, frozenset[str], str | None]]:
    return {c.id: (c.active, c.api_ids, c.plan_id) for c in t.customers.values()}


def _routes(cfg: CompiledConfig, full: Snapshot) -> list[tuple[str, str, str, str, int]]:
    """What the router answers for a GET and a POST to every route of the full snapshot."""
    out = []
    for api in full.apis:
        for route in api.routes:
            path = ("" if api.base_path == "/" else api.base_path) + route.path
            for method in ("GET", "POST"):
                found = cfg.router.match("example.test", method, path)
                if isinstance(found, tuple):
                    out.append((method, path, found[0].id, found[0].upstream.id, len(found[0].policies)))
                else:
                    out.append((method, path, "-", "-", 0))
    return out


class Admin:
    """The random writes, through the admin API; refusals (409/422/404) are part of the game."""

    def __init__(self, client: TestClient) -> None:
        self.c = client

    def ids(self, path: str) -> list[str]:
        resp = self.c.get(path, params={"limit": 500})
        assert resp.status_code == 200, resp.text
        return [item["id"] for item in resp.json()["items"]]

    def pick(self, path: str, n: int) -> str | None:
        ids = self.ids(path)
        return ids[n % len(ids)] if ids else None

    def run(self, op: str, n: int, name: int) -> None:
        c = self.c
        if op == "customer":
            api = self.pick("/v1/apis", n)
            c.post("/v1/customers", json={"name": f"c{name}", "api_ids": [api] if api else []})
        elif op == "customer_update" and (cid := self.pick("/v1/customers", n)):
            c.patch(f"/v1/customers/{cid}", json={"status": "suspended" if name % 2 else "active"})
        elif op == "customer_delete" and (cid := self.pick("/v1/customers", n)):
            c.delete(f"/v1/customers/{cid}")
        elif op == "key" and (cid := self.pick("/v1/customers", n)):
            c.post(f"/v1/customers/{cid}/keys", json={"name": f"k{name}"})
        elif op in ("key_revoke", "key_rotate") and (cid := self.pick("/v1/customers", n)):
            kid = self.pick(f"/v1/customers/{cid}/keys", name)
            if kid and op == "key_revoke":
                c.delete(f"/v1/customers/{cid}/keys/{kid}")
            elif kid:
                c.post(f"/v1/customers/{cid}/keys/{kid}/rotate", json={"grace_seconds": name % 2 * 60})
        elif op == "upstream":
            c.post("/v1/upstreams", json={"name": f"u{name}"})
        elif op == "target" and (uid := self.pick("/v1/upstreams", n)):
            c.post(f"/v1/upstreams/{uid}/targets", json={"host": "127.0.0.1", "port": 1000 + name % 5000})
        elif op == "target_delete" and (uid := self.pick("/v1/upstreams", n)):
            tid = self.pick(f"/v1/upstreams/{uid}/targets", name)
            if tid:
                c.delete(f"/v1/upstreams/{uid}/targets/{tid}")
        elif op == "api":
            c.post("/v1/apis", json={"name": f"a{name}", "base_path": f"/a{name}", "auth": "api_key"})
        elif op == "api_update" and (aid := self.pick("/v1/apis", n)):
            c.patch(f"/v1/apis/{aid}", json={"strip_base_path": bool(name % 2)})
        elif op == "api_delete" and (aid := self.pick("/v1/apis", n)):
            c.delete(f"/v1/apis/{aid}")
        elif op == "route" and (aid := self.pick("/v1/apis", n)) and (uid := self.pick("/v1/upstreams", name)):
            c.post(f"/v1/apis/{aid}/routes", json={"path": f"/r{name % 97}", "upstream_id": uid})
        elif op == "route_update" and (aid := self.pick("/v1/apis", n)):
            rid = self.pick(f"/v1/apis/{aid}/routes", name)
            if rid:
                c.patch(f"/v1/apis/{aid}/routes/{rid}", json={"methods": ["GET"] if name % 2 else []})
        elif op == "route_delete" and (aid := self.pick("/v1/apis", n)):
            rid = self.pick(f"/v1/apis/{aid}/routes", name)
            if rid:
                c.delete(f"/v1/apis/{aid}/routes/{rid}")
        elif op == "plan":
            api = self.pick("/v1/apis", n)
            body = {"name": f"p{name}", "throttle": {"rate": 5, "burst": 10}, "apis": [{"api_id": api}] if api else []}
            c.post("/v1/usage-plans", json=body)
        elif op == "plan_update" and (pid := self.pick("/v1/usage-plans", n)):
            c.patch(f"/v1/usage-plans/{pid}", json={"throttle": {"rate": 1 + name % 7, "burst": 10}})
        elif op == "plan_delete" and (pid := self.pick("/v1/usage-plans", n)):
            c.delete(f"/v1/usage-plans/{pid}")
        elif op == "subscribe" and (cid := self.pick("/v1/customers", n)) and (pid := self.pick("/v1/usage-plans", n)):
            c.put(f"/v1/customers/{cid}/plan", json={"plan_id": pid})


def test_deltas_after_every_random_write_equal_a_full_load(client: TestClient) -> None:
    worker = WorkerSide(client)
    admin = Admin(client)

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps)
    def run(sequence: list[Step]) -> None:
        for op, n, name in sequence:
            admin.run(op, n, name)
            worker.sync()
            worker.check()

    run()
    assert worker.deltas > 0


def test_a_worker_several_revisions_behind_gets_one_delta_with_the_net_changes(client: TestClient) -> None:
    worker = WorkerSide(client)
    cid = client.post("/v1/customers", json={"name": "acme"}).json()["id"]
    first = client.post(f"/v1/customers/{cid}/keys", json={}).json()["id"]
    client.post(f"/v1/customers/{cid}/keys", json={})
    client.delete(f"/v1/customers/{cid}/keys/{first}")
    params = {"since": worker.store.revision, "known_hash": worker.store.hash, "wait": 0}
    resp = client.get("/cluster/v1/snapshot", params=params, headers=CLUSTER)
    doc = json.loads(resp.content)
    kinds = sorted((c["kind"], c["op"]) for c in doc["changes"])
    assert kinds == [("customer", "upsert"), ("key", "delete"), ("key", "upsert")]
    worker.sync()
    worker.check()


def test_a_write_that_changes_nothing_costs_a_worker_behind_it_no_full_snapshot(client: TestClient) -> None:
    """Revoking a key twice answers 204 both times and bumps the revision the second time too, with
    no entity changed: the log records that as nothing (skipped), not as an untracked change, so a
    worker behind it still gets a delta (found by the randomised test above, one run in ten)."""
    cid = client.post("/v1/customers", json={"name": "acme"}).json()["id"]
    kid = client.post(f"/v1/customers/{cid}/keys", json={}).json()["id"]
    assert client.delete(f"/v1/customers/{cid}/keys/{kid}").status_code == 204
    worker = WorkerSide(client)
    before = client.get("/v1/config").json()["revision"]
    assert client.delete(f"/v1/customers/{cid}/keys/{kid}").status_code == 204
    assert client.get("/v1/config").json()["revision"] == before + 1
    params = {"since": worker.store.revision, "known_hash": worker.store.hash, "wait": 0}
    assert client.get("/cluster/v1/snapshot", params=params, headers=CLUSTER).status_code == 304  # same hash
    client.post(f"/v1/customers/{cid}/keys", json={})
    resp = client.get("/cluster/v1/snapshot", params=params, headers=CLUSTER)
    assert resp.headers["x-tollgate-kind"] == "delta"
    assert [(c["kind"], c["op"]) for c in json.loads(resp.content)["changes"]] == [("key", "upsert")]
    worker.sync()
    worker.check()


def test_a_worker_behind_the_compacted_log_gets_the_full_snapshot(client: TestClient) -> None:
    worker = WorkerSide(client)
    client.post("/v1/upstreams", json={"name": "one"})
    from control_plane.services import changelog

    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        changelog.compact(session, keep_after=10**9)
        session.commit()
    client.post("/v1/upstreams", json={"name": "two"})
    params = {"since": worker.store.revision, "known_hash": worker.store.hash, "wait": 0}
    resp = client.get("/cluster/v1/snapshot", params=params, headers=CLUSTER)
    assert resp.headers["x-tollgate-kind"] == "snapshot"
    assert sorted(u.name for u in Snapshot.from_json(resp.content).upstreams) == ["one", "two"]


def test_full_snapshots_travel_gzipped_when_the_worker_accepts_it(client: TestClient) -> None:
    client.post("/v1/upstreams", json={"name": "one"})
    plain = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers={**CLUSTER, "accept-encoding": "identity"})
    zipped = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers={**CLUSTER, "accept-encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # (decoded by the client)
    assert Snapshot.from_json(plain.content).hash == plain.headers["x-tollgate-hash"]
    # once the gzip is made only it is kept: a client without gzip (and the admin export) get it decompressed
    again = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers={**CLUSTER, "accept-encoding": "identity"})
    assert "content-encoding" not in again.headers and again.content == plain.content
    assert client.get("/v1/config/snapshot").content == plain.content
    # the next revision's gzip: its changed chunk deflated again, the others as kept; sent in parts
    # with the length of their sum
    client.post("/v1/upstreams", json={"name": "two"})
    gzip_headers = {**CLUSTER, "accept-encoding": "gzip"}
    with client.stream("GET", "/cluster/v1/snapshot", params={"wait": 0}, headers=gzip_headers) as resp:
        raw = b"".join(resp.iter_raw())
        assert int(resp.headers["content-length"]) == len(raw)
    plain = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers={**CLUSTER, "accept-encoding": "identity"})
    assert gzip.decompress(raw) == plain.content
    assert sorted(u.name for u in Snapshot.from_json(plain.content).upstreams) == ["one", "two"]


def test_the_control_plane_makes_the_full_gzip_at_start_before_a_worker_asks(client: TestClient) -> None:
    publisher = client.app.state.publisher  # type: ignore[attr-defined]
    published = publisher._published
    wait_until(lambda: published.full_gzip is not None, timeout=10, what="full gzip made at start")
    made = published.full_gzip
    zipped = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers={**CLUSTER, "accept-encoding": "gzip"})
    assert zipped.headers["x-tollgate-revision"] == str(published.revision)
    assert Snapshot.from_json(zipped.content).hash == published.hash
    assert publisher._published.full_gzip is made  # served what was made at start, not made again


@pytest.mark.parametrize("kind", ["waf_rule"])
def test_a_delta_with_an_unknown_kind_is_applied_without_it(client: TestClient, kind: str) -> None:
    worker = WorkerSide(client)
    client.post("/v1/upstreams", json={"name": "one"})
    params = {"since": worker.store.revision, "known_hash": worker.store.hash, "wait": 0}
    doc = json.loads(client.get("/cluster/v1/snapshot", params=params, headers=CLUSTER).content)
    doc["changes"].append({"kind": kind, "id": "w1", "op": "upsert", "value": {"id": "w1", "pattern": "x"}})
    doc["changes"][0]["value"]["slow_start"] = {"window": 30}  # an unknown field of a known kind
    doc["schema_version"] = "1.99"
    delta = parse_delta(json.dumps(doc))
    assert delta.skipped == 1
    worker.store.apply(delta)
    assert [u.name for u in worker.store.upstreams.values()] == ["one"]


def test_a_route_change_in_one_api_reaches_the_router_and_the_others_are_kept(client: TestClient) -> None:
    up = client.post("/v1/upstreams", json={"name": "u"}).json()["id"]
    a1 = client.post("/v1/apis", json={"name": "a1", "base_path": "/a1"}).json()["id"]
    a2 = client.post("/v1/apis", json={"name": "a2", "base_path": "/a2"}).json()["id"]
    client.post(f"/v1/apis/{a2}/routes", json={"path": "/old", "upstream_id": up}).raise_for_status()
    worker = WorkerSide(client)
    kept = worker.config.router.match("h", "GET", "/a2/old")
    client.post(f"/v1/apis/{a1}/routes", json={"path": "/new", "upstream_id": up}).raise_for_status()
    worker.sync()
    worker.check()
    found = worker.config.router.match("h", "GET", "/a1/new")
    assert isinstance(found, tuple) and found[0].upstream.id == up
    again = worker.config.router.match("h", "GET", "/a2/old")
    assert isinstance(kept, tuple) and isinstance(again, tuple) and again[0] is kept[0]  # not recompiled
