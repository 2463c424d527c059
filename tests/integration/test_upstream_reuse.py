"""Pooled upstream connections through a real worker: what is resent after a reset, and when a
kept-alive connection is too old to reuse (docs/architecture.md, "Failures, retries, timeouts").

The lab backend's ``reset_reused`` mode reads a request that arrives on a connection which already
carried one, then resets the connection unanswered: a server closing an idle keep-alive connection
just as the gateway reuses it.  The request may have been processed, so only an idempotent one (by
method, or by an ``Idempotency-Key`` header) is sent again, on a fresh connection; a POST gets a 502
and reaches the backend exactly once, even on an upstream with retries.  Separately, a connection
idle for longer than the upstream's ``keepalive_timeout`` is never reused, and the worker closes it.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, Worker, snapshot_file, targets, wait_until

KEEPALIVE = 0.5


@pytest.fixture(scope="module")
def lab(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    # One backend (so one pool) per test: a retry's fresh connection goes back to the pool too.
    resets = {name: c.lab(name) for name in ("post", "keyed", "get")}
    for backend in resets.values():
        backend.control(reset_reused=1)
    idle = c.lab("idle")
    upstreams = [
        # retries: 2 — so a POST that is not resent is not resent for lack of retries either
        {"id": name, "name": name, "retries": 2, "targets": targets(b)}
        for name, b in resets.items()
    ]
    upstreams.append({"id": "idle", "name": "idle", "keepalive_timeout": KEEPALIVE, "targets": targets(idle)})
    mounts = {f"/{name}": name for name in (*resets, "idle")}
    worker = c.worker(snapshot=snapshot_file(c.tmp / "reuse.json", upstreams, mounts), name="reuse-worker")
    return {"worker": worker, **resets, "idle": idle}


def _seen(backend: Backend) -> dict[str, Any]:
    return httpx.get(f"{backend.url}/__echo/count", timeout=2.0).json()  # type: ignore[no-any-return]


def _warm(worker: Worker, base: str) -> None:
    """One answered request: the worker's pool for that backend now holds one idle connection."""
    r = httpx.get(f"{worker.url}{base}/warm", timeout=5.0)
    assert r.status_code == 200 and r.json()["seen"] == 1, r.text


def test_post_reset_after_reading_is_not_sent_again(lab) -> None:
    worker, backend = lab["worker"], lab["post"]
    _warm(worker, "/post")
    r = httpx.post(f"{worker.url}/post/charge", content=b"", timeout=5.0)  # Content-Length: 0
    assert r.status_code == 502, r.text
    assert r.json()["message"] == "upstream connection failed"
    seen = _seen(backend)
    assert seen["requests"] == {"GET /warm": 1, "POST /charge": 1}  # exactly once
    assert seen["connections"] == 1  # and no fresh connection was dialled for it


def test_post_with_idempotency_key_is_sent_again_on_a_fresh_connection(lab) -> None:
    worker, backend = lab["worker"], lab["keyed"]
    _warm(worker, "/keyed")
    r = httpx.post(f"{worker.url}/keyed/charge", content=b"", headers={"Idempotency-Key": "order-42"}, timeout=5.0)
    assert r.status_code == 200, r.text
    assert r.json()["seen"] == 2  # the client got the second delivery's answer
    assert ["idempotency-key", "order-42"] in r.json()["headers"]  # the key is forwarded as is
    seen = _seen(backend)
    assert seen["requests"] == {"GET /warm": 1, "POST /charge": 2}
    assert seen["connections"] == 2


def test_get_reset_after_reading_is_still_retried(lab) -> None:
    worker, backend = lab["worker"], lab["get"]
    _warm(worker, "/get")
    r = httpx.get(f"{worker.url}/get/again", timeout=5.0)
    assert r.status_code == 200, r.text
    assert r.json()["seen"] == 2
    assert _seen(backend)["requests"] == {"GET /warm": 1, "GET /again": 2}


def test_connection_idle_past_keepalive_timeout_is_not_reused_and_gets_closed(lab) -> None:
    worker, backend = lab["worker"], lab["idle"]
    # The backend would close idle connections only after 1 s (a server's keep-alive timeout above
    # the upstream's 0.5 s), and resets a reused connection: what the gateway must not run into.
    backend.control(idle_close_ms=1000, reset_reused=0)
    _warm(worker, "/idle")
    assert httpx.get(f"{worker.url}/idle/soon", timeout=5.0).status_code == 200  # right away: reused
    assert _seen(backend)["connections"] == 1

    backend.control(reset_reused=1)  # from now on a reused connection would be reset
    time.sleep(KEEPALIVE + 0.3)  # idle past keepalive_timeout, before the backend's own 1 s
    r = httpx.post(f"{worker.url}/idle/charge", content=b"", timeout=5.0)
    assert r.status_code == 200 and r.json()["seen"] == 1, r.text  # a fresh connection, nothing reset
    assert _seen(backend)["connections"] == 2

    # The worker closes what idles past the timeout itself (its periodic sweep): the backend no
    # longer closes idle connections (a request cancels its pending close), yet none stays open.
    backend.control(idle_close_ms=0, reset_reused=0)
    r = httpx.get(f"{worker.url}/idle/last", timeout=5.0)
    assert r.status_code == 200 and r.json()["seen"] == 1, r.text  # on connection 2 (0 s idle)
    wait_until(lambda: _seen(backend)["open"] == 0, timeout=5.0, what="the worker to close its idle connection")
    assert _seen(backend)["connections"] == 2
