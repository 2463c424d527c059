"""Root conftest: make ``tests.*`` importable however pytest is launched (``pytest`` or ``python -m pytest``)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def pytest_configure(config: object) -> None:
    # A compiled request-path module older than its .py would test the old code (data_plane/native.py).
    import pytest

    from data_plane import native

    stale = [] if native.pure_python_requested() else native.stale()
    if stale:
        raise pytest.UsageError(f"compiled modules older than their source: {', '.join(stale)}; run `make install`")


def pytest_report_header() -> str:
    from data_plane import native

    return f"tollgate request path: {native.mode()}"
