"""``tollgate migrate --check [--wait S]``: the init step of every control-plane replica on Kubernetes
(deploy/kubernetes), so replicas start only after the migration Job, and never migrate themselves."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from control_plane import migrate
from tests.integration.harness import ROOT


def _check(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollgate", "migrate", "--check", *extra],
        env={"TOLLGATE_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_fails_on_an_empty_database_and_passes_once_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    behind = _check(url)
    assert behind.returncode == 1
    assert "run `tollgate migrate`" in behind.stderr
    assert not (set(migrate.schema_state(url)[1])), "--check must change nothing"
    migrate.upgrade(url)
    current = _check(url)
    assert current.returncode == 0, current.stderr
    assert "current" in current.stdout


def test_a_database_migrated_by_a_newer_release_counts_as_ready(tmp_path: Path) -> None:
    # A rolling upgrade: the new release's Job migrated; a replica of the old release restarts.
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    assert migrate.schema_state(url)[0] == "ahead"
    ahead = _check(url)
    assert ahead.returncode == 0, ahead.stderr
    assert "newer release" in ahead.stdout


def test_wait_returns_as_soon_as_the_migration_ran(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    waiting = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "migrate", "--check", "--wait", "60"],
        env={"TOLLGATE_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)  # let it see the empty database first (it says so and keeps waiting)
        assert waiting.poll() is None
        migrate.upgrade(url)
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert "current" in out


def test_an_unreachable_database_fails_after_the_wait_without_showing_the_url() -> None:
    started = time.monotonic()
    down = _check("postgresql://tollgate:s3cret-password@127.0.0.1:1/tollgate", "--wait", "1")
    assert down.returncode == 1
    assert "database unreachable" in down.stderr
    assert "s3cret-password" not in down.stderr + down.stdout
    assert time.monotonic() - started < 30
