"""Run the Alembic migrations programmatically (``tollgate migrate`` and control-plane start-up)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from control_plane.settings import normalize_database_url

log = logging.getLogger(__name__)

# The migrations package ships inside the distribution, so this works from a wheel too (no alembic.ini needed).
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser interpolation: a '%' in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_database_url(database_url).replace("%", "%%"))
    # Keep the host application's logging as it is (env.py would otherwise load alembic.ini's).
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str) -> None:
    """Bring the schema at ``database_url`` to the newest revision (``alembic upgrade head``)."""
    log.info("applying database migrations")
    command.upgrade(alembic_config(database_url), "head")
