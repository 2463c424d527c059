"""Load balancing and health through a real worker (standalone snapshot) and real backend processes."""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, Worker, snapshot_file, targets, wait_until

HEALTH = {"path": "/health", "interval": 0.1, "timeout": 0.5, "healthy_threshold": 2, "unhealthy_threshold": 2}


@pytest.fixture(scope="module")
def lb(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    a, b, cc = c.lab("a"), c.lab("b"), c.lab("c")
    act1, act2 = c.lab("act1"), c.lab("act2")
    pas1, pas2 = c.lab("pas1"), c.lab("pas2")
    k1, k2 = c.echo("k1"), c.echo("k2")
    upstreams = [
        {"id": "rr", "name": "rr", "targets": targets(a, b, cc, weights=(1, 2, 3))},
        {"id": "lr", "name": "lr", "algorithm": "least_request", "targets": targets(a, b)},
        {"id": "act", "name": "act", "health_check": HEALTH, "targets": targets(act1, act2)},
        {
            "id": "pas",
            "name": "pas",
            "passive": {"consecutive_failures": 3, "base_ejection_time": 60, "max_ejection_percent": 50},
            "targets": targets(pas1, pas2),
        },
        {
            "id": "kill",
            "name": "kill",
            "retries": 2,
            "connect_timeout": 1.0,
            "passive": {"consecutive_failures": 2, "base_ejection_time": 30},
            "targets": targets(k1, k2),
        },
    ]
    mounts = {"/rr": "rr", "/lr": "lr", "/act": "act", "/pas": "pas", "/kill": "kill"}
    snap = snapshot_file(c.tmp / "lb-snapshot.json", upstreams, mounts)
    worker = c.worker(snapshot=snap, name="lb-worker")
    return {"worker": worker, "a": a, "b": b, "c": cc, "act1": act1, "act2": act2, "pas1": pas1, "pas2": pas2}


def _counts(*backends: Backend) -> list[int]:
    return [b.count() for b in backends]


def test_round_robin_follows_weights_exactly(lb) -> None:
    a, b, c = lb["a"], lb["b"], lb["c"]
    before = _counts(a, b, c)
    with httpx.Client(base_url=lb["worker"].url) as client:
        for _ in range(600):
            assert client.get("/rr/x").status_code == 200
    after = _counts(a, b, c)
    assert [y - x for x, y in zip(before, after, strict=True)] == [100, 200, 300]


def test_least_request_avoids_the_stalled_target(lb) -> None:
    a, worker = lb["a"], lb["worker"]
    a_before = a.count()
    stalled: list[socket.socket] = []
    a.control(stall=1)
    try:
        # a now never answers; send requests until one of them sits on a (b answers its share).
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", worker.port), timeout=5)
            s.sendall(b"GET /lr/x HTTP/1.1\r\nhost: t\r\n\r\n")
            stalled.append(s)
            try:
                wait_until(lambda: a.count() > a_before, timeout=0.3, what="a stalled request on a")
                break
            except AssertionError:
                continue
        assert a.count() > a_before
        seen = collections.Counter()
        with httpx.Client(base_url=worker.url) as client:
            for _ in range(50):
                seen[client.get("/lr/x").json()["server"]] += 1
        # a has a request in flight that never ends, b has none between requests: P2C over two
        # targets compares both every time, so every request goes to b.
        assert seen == {"b": 50}, seen
    finally:
        for s in stalled:
            s.close()
        a.control(stall=0)


def _target_state(worker: Worker, target_id: str) -> dict[str, Any]:
    return worker.status()["targets"][target_id]  # type: ignore[no-any-return]


def test_active_check_takes_target_out_and_back(lb) -> None:
    worker, act1, act2 = lb["worker"], lb["act1"], lb["act2"]
    act1.control(probe="fail")
    try:
        wait_until(lambda: not _target_state(worker, "t-act1")["healthy"], what="act1 marked unhealthy")
        before = _counts(act1, act2)
        with httpx.Client(base_url=worker.url) as client:
            for _ in range(20):
                assert client.get("/act/x").status_code == 200
        after = _counts(act1, act2)
        assert after[0] == before[0] and after[1] == before[1] + 20
    finally:
        act1.control(probe="ok")
    wait_until(lambda: _target_state(worker, "t-act1")["healthy"], what="act1 healthy again")
    before = act1.count()
    with httpx.Client(base_url=worker.url) as client:
        for _ in range(20):
            assert client.get("/act/x").status_code == 200
    assert 8 <= act1.count() - before <= 12  # back in the rotation


def test_passive_ejection_bounds_client_visible_failures(lb) -> None:
    worker, pas1 = lb["worker"], lb["pas1"]
    pas1.control(status=500)
    try:
        statuses = []
        with httpx.Client(base_url=worker.url) as client:
            for _ in range(40):
                statuses.append(client.get("/pas/x").status_code)
        assert statuses.count(500) <= 3, statuses
        assert statuses[-30:] == [200] * 30
        state = _target_state(worker, "t-pas1")
        assert state["healthy"] is False and state["ejected_until"] > time.time()
    finally:
        pas1.control(status=200)


def test_killing_a_backend_under_load_fails_no_request(lb, module_cluster: Cluster) -> None:
    worker = lb["worker"]
    victim = next(p for p in module_cluster.procs if p.name == "echo-k1")
    results: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=worker.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    results.append(client.get("/kill/x").status_code)
                except httpx.HTTPError as exc:
                    results.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(results) > 100, what="load running")
        victim.kill()
        n = len(results)
        wait_until(lambda: len(results) > n + 200, what="load after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    failures = [r for r in results if r != 200]
    assert failures == [], failures[:5]
