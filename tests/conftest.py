"""Root conftest: make ``tests.*`` importable however pytest is launched (``pytest`` or ``python -m pytest``)."""

from __future__ import annotations

import os
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
    # CI tests what ships: the compiled request path (a silent fallback to pure Python would pass
    # every test and lose half the speed).  Locally, a machine without a C compiler may run pure.
    mode = native.mode()
    if os.environ.get("CI") == "true" and not native.pure_python_requested() and mode != "compiled":
        raise pytest.UsageError(f"CI=true but the request path is {mode}, not compiled (setup.py, mypyc)")


def pytest_report_header() -> str:
    from data_plane import native

    return f"tollgate request path: {native.mode()}"
