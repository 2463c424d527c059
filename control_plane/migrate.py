"""Run the Alembic migrations programmatically (``tollgate migrate`` and control-plane start-up)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.pool import NullPool

from control_plane.db import make_engine
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
    """Bring the schema at ``database_url`` to the newest revision (``alembic upgrade head``).
    Logged only when it changes something (not on every start)."""
    try:
        state, db_heads, code_heads = schema_state(database_url)
    except CommandError:
        state, db_heads, code_heads = "behind", set(), set()
    if state == "current":
        log.debug("database schema is current")
        return
    log.info(
        "migrating the database schema from %s to %s",
        ", ".join(sorted(db_heads)) or "empty",
        ", ".join(sorted(code_heads)) or "head",
    )
    command.upgrade(alembic_config(database_url), "head")


def schema_state(database_url: str) -> tuple[str, set[str], set[str]]:
    """Where the database's schema stands against this code's migrations: ``("current", db, code)``,
    ``("behind", ...)`` (``tollgate migrate`` would change it; an empty database is behind) or
    ``("ahead", ...)`` (the database carries a revision this code does not know: a newer release
    migrated it).  The database revisions and this code's heads come with it, for the message.

    ``ahead`` counts as ready: during a rolling upgrade the migration Job of the new release runs
    while replicas of the old one still serve, and an old replica restarting then must start too.
    """
    script = ScriptDirectory.from_config(alembic_config(database_url))
    code_heads = set(script.get_heads())
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            db_heads = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    if db_heads == code_heads:
        return "current", db_heads, code_heads
    for revision in db_heads:
        try:
            script.get_revision(revision)
        except CommandError:  # not in this code's history: a newer release wrote it
            return "ahead", db_heads, code_heads
    return "behind", db_heads, code_heads
