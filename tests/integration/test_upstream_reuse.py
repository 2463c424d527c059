"""Pooled upstream connections through a real worker: what is resent after a reset, and when a
kept-alive connection is too old to reuse (docs/architecture.md, "Failures, retries, timeouts").

The lab backend's ``reset_reused`` mode reads a request that arrives on a connection which already
carried one, then resets the connection unanswered: a server closing an idle keep-alive connection
just as the gateway reuses it.  The request may have been processed, so only an idempotent one (by
method, or by an ``Idempotency-Key`` header) is sent again, on a fresh connection; a POST gets a 502
and reaches the backend exactly once, even on an upstream with retries.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, Worker, snapshot_file, targets


@pytest.fixture(scope="module")
def lab(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    # One backend (so one pool) per test: a retry's fresh connection goes back to the pool too.
    resets = {name: c.lab(name) for name in ("post", "keyed", "get")}
    for backend in resets.values():
        backend.control(reset_reused=1)
    upstreams = [
        # retries: 2 — so a POST that is not resent is not resent for lack of retries either
        {"id": name, "name": name, "retries": 2, "targets": targets(b)}
        for name, b in resets.items()
    ]
    mounts = {f"/{name}": name for name in resets}
    worker = c.worker(snapshot=snapshot_file(c.tmp / "reuse.json", upstreams, mounts), name="reuse-worker")
    return {"worker": worker, **resets}


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
