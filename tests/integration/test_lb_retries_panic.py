"""Retries and panic mode through a real worker (standalone snapshot) and real backend processes.

Retries (docs/architecture.md, "Failures, retries, timeouts"): a 502/503/504 answer to an
idempotent request whose body was not sent is discarded and the request goes to a target not tried
yet; a non-idempotent request (or one whose body already went upstream) is never sent twice, so its
client gets the upstream's answer.  Panic ("Load balancing"): with ``panic: true`` an upstream whose
targets are *all* unavailable is balanced over all of them (Envoy's panic mode at a 100 % threshold);
while any target is healthy, only healthy ones get traffic; without panic the answer is 503.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, Worker, snapshot_file, targets, wait_until

HEALTH = {"path": "/health", "interval": 0.1, "timeout": 0.5, "healthy_threshold": 2, "unhealthy_threshold": 2}
N = 20


@pytest.fixture(scope="module")
def lab(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    good, bad = c.lab("good"), c.lab("bad")
    p1, p2 = c.lab("p1"), c.lab("p2")
    bad.control(status=503)  # every ordinary request to "bad" is answered 503 by the backend itself

    def renamed(prefix: str, *backends: Backend) -> list[dict[str, Any]]:
        return [{**t, "id": f"{prefix}-{b.name}"} for t, b in zip(targets(*backends), backends, strict=True)]

    upstreams = [
        {"id": "retry", "name": "retry", "retries": 1, "targets": targets(good, bad)},
        {"id": "noretry", "name": "noretry", "targets": renamed("nr", good, bad)},
        {"id": "panic", "name": "panic", "panic": True, "health_check": HEALTH, "targets": targets(p1, p2)},
        {"id": "nopanic", "name": "nopanic", "health_check": HEALTH, "targets": renamed("np", p1, p2)},
    ]
    mounts = {"/retry": "retry", "/noretry": "noretry", "/panic": "panic", "/nopanic": "nopanic"}
    worker = c.worker(snapshot=snapshot_file(c.tmp / "retries-panic.json", upstreams, mounts), name="rp-worker")
    return {"worker": worker, "good": good, "bad": bad, "p1": p1, "p2": p2}


def _send(worker: Worker, method: str, path: str, body: bytes | None = None) -> list[httpx.Response]:
    with httpx.Client(base_url=worker.url, timeout=10) as client:
        return [client.request(method, path, content=body) for _ in range(N)]


def test_idempotent_get_is_retried_on_the_other_target_after_503(lab) -> None:
    worker, good, bad = lab["worker"], lab["good"], lab["bad"]
    before = good.count(), bad.count()
    responses = _send(worker, "GET", "/retry/x")
    assert [r.status_code for r in responses] == [200] * N
    assert {r.json()["server"] for r in responses} == {"good"}
    got_good, got_bad = good.count() - before[0], bad.count() - before[1]
    assert got_good == N  # every request was answered by good, once
    assert got_bad > 0  # ... and some of them had been to bad first: its 503s were retried, not seen


def test_get_without_retries_gets_the_upstream_503(lab) -> None:
    # The same two targets with retries = 0 (the default): bad's 503s reach the client.
    worker, good, bad = lab["worker"], lab["good"], lab["bad"]
    before = good.count(), bad.count()
    responses = _send(worker, "GET", "/noretry/x")
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    assert all(r.json()["server"] == ("good" if r.status_code == 200 else "bad") for r in responses)
    assert (good.count() - before[0]) + (bad.count() - before[1]) == N  # one attempt each


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", None), ("POST", b'{"order": 1}'), ("PUT", b'{"order": 1}')],
    ids=["post", "post_with_body", "put_with_body"],
)
def test_request_that_must_not_be_replayed_gets_the_upstream_503(lab, method: str, body: bytes | None) -> None:
    # POST is not idempotent; a PUT is, but its body went upstream with the head and is not kept
    # for a replay. Either way each request reaches exactly one target, and bad's 503 is relayed.
    worker, good, bad = lab["worker"], lab["good"], lab["bad"]
    before = good.count(), bad.count()
    responses = _send(worker, method, "/retry/x", body)
    got_good, got_bad = good.count() - before[0], bad.count() - before[1]
    assert got_good + got_bad == N  # nothing sent twice
    assert got_bad > 0
    statuses = [r.status_code for r in responses]
    assert statuses.count(503) == got_bad and statuses.count(200) == got_good, statuses
    # The 503 is the backend's answer relayed as is, not a gateway error.
    assert all(r.json()["server"] == "bad" for r in responses if r.status_code == 503)


def _healthy(worker: Worker, target_id: str) -> bool:
    return bool(worker.status()["targets"][target_id]["healthy"])


def _wait_health(worker: Worker, ids: tuple[str, ...], healthy: bool) -> None:
    wait_until(
        lambda: all(_healthy(worker, t) is healthy for t in ids),
        what=f"{ids} {'healthy' if healthy else 'unhealthy'}",
    )


def test_panic_balances_over_all_targets_only_when_none_is_healthy(lab) -> None:
    worker, p1, p2 = lab["worker"], lab["p1"], lab["p2"]
    try:
        # One of two down: below no threshold that matters, the healthy one takes everything.
        p1.control(probe="fail")
        _wait_health(worker, ("t-p1", "np-p1"), healthy=False)
        before = p1.count(), p2.count()
        assert [r.status_code for r in _send(worker, "GET", "/panic/x")] == [200] * N
        assert (p1.count() - before[0], p2.count() - before[1]) == (0, N)

        # Both down: panic spreads the traffic over both; without panic the gateway answers 503.
        p2.control(probe="fail")
        _wait_health(worker, ("t-p1", "t-p2", "np-p1", "np-p2"), healthy=False)
        before = p1.count(), p2.count()
        responses = _send(worker, "GET", "/panic/x")
        assert [r.status_code for r in responses] == [200] * N
        assert {r.json()["server"] for r in responses} == {"p1", "p2"}  # random over both (P(one only) ~ 2e-6)
        assert (p1.count() - before[0]) + (p2.count() - before[1]) == N

        before = p1.count(), p2.count()
        refused = _send(worker, "GET", "/nopanic/x")
        assert [r.status_code for r in refused] == [503] * N
        assert {r.json()["message"] for r in refused} == {"no healthy upstream"}
        assert (p1.count(), p2.count()) == before  # nothing reached a backend
    finally:
        p1.control(probe="ok")
        p2.control(probe="ok")
    _wait_health(worker, ("t-p1", "t-p2", "np-p1", "np-p2"), healthy=True)
    # Healthy again: round robin over both, panic or not.
    before = p1.count(), p2.count()
    assert [r.status_code for r in _send(worker, "GET", "/nopanic/x")] == [200] * N
    assert (p1.count() - before[0], p2.count() - before[1]) == (N // 2, N // 2)
