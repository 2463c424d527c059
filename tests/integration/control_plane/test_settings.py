"""Settings from the environment and the cluster token file (no database needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from control_plane.settings import Settings, SettingsError, ensure_cluster_token


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///.tollgate/tollgate.db"
    assert (s.admin_host, s.admin_port, s.revision_poll_interval) == ("127.0.0.1", 8001, 0.25)
    assert s.cluster_token is None and s.migrate_on_start is True


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgres_url_uses_psycopg(scheme: str) -> None:
    s = Settings.from_env({"TOLLGATE_DATABASE_URL": f"{scheme}://u:p@db:5432/tollgate"})
    assert s.database_url == "postgresql+psycopg://u:p@db:5432/tollgate"


def test_data_dir_drives_the_default_database(tmp_path: Path) -> None:
    s = Settings.from_env({"TOLLGATE_DATA_DIR": str(tmp_path), "TOLLGATE_ADMIN_PORT": "9001"})
    assert s.database_url == f"sqlite:///{tmp_path}/tollgate.db" and s.admin_port == 9001


@pytest.mark.parametrize(
    ("name", "value"),
    [("TOLLGATE_ADMIN_PORT", "http"), ("TOLLGATE_ADMIN_PORT", "70000"), ("TOLLGATE_REVISION_POLL_INTERVAL", "0")],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_cluster_token_generated_once_with_mode_0600(tmp_path: Path) -> None:
    s = Settings.from_env({"TOLLGATE_DATA_DIR": str(tmp_path / "data")})
    token = ensure_cluster_token(s)
    path = tmp_path / "data" / "cluster-token"
    assert len(token) >= 32 and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_cluster_token(s) == token  # reused on the next start


def test_configured_cluster_token_wins(tmp_path: Path) -> None:
    s = Settings.from_env({"TOLLGATE_DATA_DIR": str(tmp_path), "TOLLGATE_CLUSTER_TOKEN": "from-env"})
    assert ensure_cluster_token(s) == "from-env"
    assert not (tmp_path / "cluster-token").exists()
