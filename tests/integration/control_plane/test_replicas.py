"""Two control-plane processes on one PostgreSQL database: a write through A reaches a worker
long-polling B (B learns of it by polling the revision, not from A)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane import migrate
from data_plane.snapshot import Snapshot
from tests.integration.control_plane.conftest import ADMIN_HEADERS, ADMIN_TOKEN, CLUSTER_TOKEN
from tests.integration.harness import free_port, wait_until

pytestmark = pytest.mark.postgres

Replica = tuple[str, "subprocess.Popen[bytes]"]
REPO = Path(__file__).resolve().parents[3]


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"control plane exited with {proc.returncode}: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"control plane at {base} did not become ready")


@pytest.fixture(scope="module")
def replicas(module_postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    postgres_url = module_postgres_url
    tmp_path = tmp_path_factory.mktemp("replicas")
    migrate.upgrade(postgres_url)  # once, so the two start-ups do not both wait on the migration lock
    procs: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {
                **os.environ,
                "TOLLGATE_DATABASE_URL": postgres_url,
                "TOLLGATE_DATA_DIR": str(tmp_path / name),
                "TOLLGATE_ADMIN_HOST": "127.0.0.1",
                "TOLLGATE_ADMIN_PORT": str(port),
                "TOLLGATE_CLUSTER_TOKEN": CLUSTER_TOKEN,
                "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN,
                "TOLLGATE_REVISION_POLL_INTERVAL": "0.1",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "control_plane"],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for base, proc in zip(bases, procs, strict=True):
            _wait_ready(base, proc)
        yield list(zip(bases, procs, strict=True))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def test_write_on_a_releases_long_poll_on_b(replicas: list[Replica]) -> None:
    (a, _), (b, _) = replicas
    auth = {"Authorization": f"Bearer {CLUSTER_TOKEN}"}
    known = httpx.get(f"{b}/v1/config", headers=ADMIN_HEADERS).json()["hash"]
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        result["response"] = httpx.get(
            f"{b}/cluster/v1/snapshot", params={"known_hash": known, "wait": 30}, headers=auth, timeout=40
        )
        result["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    assert "response" not in result
    created = httpx.post(f"{a}/v1/upstreams", json={"name": "via-a"}, headers=ADMIN_HEADERS)
    assert created.status_code == 201, created.text
    poller.join(timeout=15)
    assert not poller.is_alive()

    response = result["response"]
    assert response.status_code == 200
    assert result["elapsed"] < 10
    snapshot = Snapshot.from_json(response.content)
    assert [u.name for u in snapshot.upstreams] == ["via-a"]
    assert snapshot.hash == httpx.get(f"{a}/v1/config", headers=ADMIN_HEADERS).json()["hash"]


def test_both_replicas_serve_the_same_deltas_from_the_one_log(replicas: list[Replica]) -> None:
    (a, _), (b, _) = replicas
    auth = {"Authorization": f"Bearer {CLUSTER_TOKEN}"}
    start = httpx.get(f"{b}/cluster/v1/snapshot", params={"wait": 0}, headers=auth)
    since, known = int(start.headers["x-tollgate-revision"]), start.headers["x-tollgate-hash"]
    customer = httpx.post(f"{a}/v1/customers", json={"name": "replicated"}, headers=ADMIN_HEADERS).json()
    httpx.post(f"{b}/v1/customers/{customer['id']}/keys", json={}, headers=ADMIN_HEADERS).raise_for_status()
    target = max(httpx.get(f"{r}/v1/config", headers=ADMIN_HEADERS).json()["revision"] for r in (a, b))

    def delta(base: str) -> httpx.Response | None:
        resp = httpx.get(
            f"{base}/cluster/v1/snapshot", params={"since": since, "known_hash": known, "wait": 5}, headers=auth
        )
        return resp if int(resp.headers.get("x-tollgate-revision", -1)) >= target else None

    from_a = wait_until(lambda: delta(a), what="replica A at the new revision")
    from_b = wait_until(lambda: delta(b), what="replica B at the new revision")
    assert from_a.headers["x-tollgate-kind"] == from_b.headers["x-tollgate-kind"] == "delta"
    assert from_a.content == from_b.content  # same changes, same values, same hash: byte for byte
    kinds = sorted(c["kind"] for c in json.loads(from_a.content)["changes"])
    assert kinds == ["customer", "key"]


# Keep this test last in the module: it stops replica B of the module-scoped pair.
def test_shutdown_releases_held_long_polls(replicas: list[Replica]) -> None:
    """SIGTERM answers held long-polls at once instead of keeping the process alive for `wait`."""
    _, (b, proc_b) = replicas
    auth = {"Authorization": f"Bearer {CLUSTER_TOKEN}"}
    known = httpx.get(f"{b}/v1/config", headers=ADMIN_HEADERS).json()["hash"]
    result: dict[str, Any] = {}

    def poll() -> None:
        try:
            result["status"] = httpx.get(
                f"{b}/cluster/v1/snapshot", params={"known_hash": known, "wait": 60}, headers=auth, timeout=70
            ).status_code
        except httpx.TransportError as exc:
            result["status"] = type(exc).__name__

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    started = time.monotonic()
    proc_b.terminate()
    poller.join(timeout=15)
    assert not poller.is_alive()
    assert time.monotonic() - started < 10
    assert result["status"] == 304
    assert proc_b.wait(timeout=10) == 0
