"""Fixtures: a fresh database per test on SQLite and on PostgreSQL, and an app/client over it.

PostgreSQL: ``TOLLGATE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
names the server; each test gets its own ``tollgate_t_<hex>`` database, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from control_plane import migrate
from control_plane.app import create_app
from control_plane.models import Base
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


def _create_database(name: str, template: str | None = None) -> str:
    clause = f' TEMPLATE "{template}"' if template else ""
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    finally:
        admin.dispose()
    return postgres_base_url().set(database=name).render_as_string(hide_password=False)


def _drop_database(name: str) -> None:
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _unique_name(prefix: str = "tollgate_t_") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def fresh_postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (skipped when the server is unreachable, failed in CI)."""
    problem = _postgres_problem()
    require_service("PostgreSQL", not problem, problem)
    name = _unique_name()
    yield _create_database(name)
    _drop_database(name)


postgres_url = pytest.fixture(fresh_postgres_database, name="postgres_url")
module_postgres_url = pytest.fixture(fresh_postgres_database, name="module_postgres_url", scope="module")


@pytest.fixture(scope="session")
def shared_postgres_database() -> Iterator[str | None]:
    """One migrated throw-away database for the whole session (None when PostgreSQL is down).

    CREATE/DROP DATABASE costs close to a second each, which per test would blow the time budget;
    instead :func:`_reset_postgres` empties it before every test (TRUNCATE is milliseconds).
    """
    if _postgres_problem():
        yield None
        return
    name = _unique_name()
    url = _create_database(name)
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            # Test-only: skip the WAL flush per commit (a throw-away database; several times faster).
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    finally:
        admin.dispose()
    migrate.upgrade(url)
    yield url
    _drop_database(name)


def _reset_postgres(url: str) -> None:
    """Back to the state right after ``alembic upgrade head``: no rows, revision 0."""
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name != "config_state")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))
            conn.execute(text("UPDATE config_state SET revision = 0"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tollgate.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at the current schema, for each backend: SQLite gets a new file per test,
    PostgreSQL a session-wide throw-away database emptied before each test."""
    if request.param == "sqlite":
        target = tmp_path / "db" / "tollgate.db"
        target.parent.mkdir()
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    problem = _postgres_problem()
    require_service("PostgreSQL", not problem, problem)
    url: str = request.getfixturevalue("shared_postgres_database")
    _reset_postgres(url)
    yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        cluster_token=CLUSTER_TOKEN,
        admin_token=ADMIN_TOKEN,
        revision_poll_interval=0.05,
        # The fixture databases are already at head; start-up migration is covered by test_migrations
        # and by the replica processes.
        migrate_on_start=False,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # Every admin call in these tests authenticates with the bootstrap admin token.
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as test_client:
        yield test_client


@pytest.fixture
def cluster_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {CLUSTER_TOKEN}"}
