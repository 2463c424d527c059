"""Fixtures for the integration tests: a Cluster that stops every process it started, and a
redis-server of the test's own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require_service
from tests.integration.harness import Cluster
from tests.integration.redis_support import REDIS_SERVER, OwnRedis


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One set of processes shared by a module's tests (start-up costs seconds; tests must not
    depend on each other's changes)."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A redis-server only this test uses, so it can stop and restart it (outage tests)."""
    require_service("redis-server binary", shutil.which(REDIS_SERVER) is not None, REDIS_SERVER)
    server = OwnRedis()
    server.start()
    yield server
    server.stop()
