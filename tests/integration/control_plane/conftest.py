"""Fixtures: a fresh database per test on SQLite and on PostgreSQL, and an app/client over it.

PostgreSQL: ``TOLLGATE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
names the server; each test gets its own ``tollgate_t_<hex>`` database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from control_plane.app import create_app
from control_plane.settings import Settings, normalize_database_url
from tests.helpers import require_service

# Starlette 1.x prefers httpx2 for its TestClient and warns (an error here) when only httpx is
# installed; this repo pins httpx.  Silence exactly that warning, once, at import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CLUSTER_TOKEN = "test-cluster-token-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def postgres_base_url() -> URL:
    return make_url(normalize_database_url(os.environ.get("TOLLGATE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL))


@cache
def _postgres_problem() -> str:
    """Empty when the server answers; otherwise why not (checked once per session)."""
    engine = create_engine(
        postgres_base_url().set(database="postgres"), poolclass=NullPool, connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()
    return ""


def _admin_engine() -> Engine:
    return create_engine(postgres_base_url().set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (skipped when the server is unreachable, failed in CI)."""
    problem = _postgres_problem()
    require_service("PostgreSQL", not problem, problem)
    name = f"tollgate_t_{uuid.uuid4().hex[:16]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield postgres_base_url().set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'tollgate.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        cluster_token=CLUSTER_TOKEN,
        admin_token=ADMIN_TOKEN,
        revision_poll_interval=0.05,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # Every admin call in these tests authenticates with the bootstrap admin token.
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as test_client:
        yield test_client


@pytest.fixture
def cluster_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {CLUSTER_TOKEN}"}
