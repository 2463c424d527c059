"""The process log holds what an operator acts on: no library INFO lines (alembic on every start,
httpx per heartbeat and long-poll) unless --log-level debug; every TOLLGATE_ variable is documented."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane import migrate
from tollgate.logformat import QUIET_LIBRARIES, setup

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in QUIET_LIBRARIES})
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_library_info_lines_only_at_debug(restore_logging: None) -> None:
    setup("info")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
    assert logging.getLogger("data_plane.sync").isEnabledFor(logging.INFO)  # ours stay
    setup("debug")
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)


def test_a_start_on_a_current_schema_logs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    setup("info")  # as `tollgate control-plane` does (it replaces the root handlers: caplog's comes back)
    logging.getLogger().addHandler(caplog.handler)
    url = f"sqlite:///{tmp_path / 'tollgate.db'}"
    with caplog.at_level(logging.INFO):
        migrate.upgrade(url)
    assert any("migrating the database schema from empty" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        migrate.upgrade(url)  # the second start: the schema is current
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


def test_the_readme_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"TOLLGATE_[A-Z0-9_]+", readme))
    wildcards = [w.rstrip("*") for w in re.findall(r"TOLLGATE_[A-Z0-9_]+_\*", readme)]
    used: set[str] = set()
    for package in ("control_plane", "data_plane", "tollgate"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r"\"(TOLLGATE_[A-Z0-9_]+)\"", path.read_text()))
    missing = sorted(v for v in used - documented if not any(v.startswith(w) for w in wildcards))
    assert not missing, f"README's variable table lacks {', '.join(missing)}"
