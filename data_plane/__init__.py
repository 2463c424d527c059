"""Tollgate data plane: the stateless proxy worker. Never imports control_plane."""

__version__ = "0.1.0"

# TOLLGATE_PURE_PYTHON=1: run the .py sources of the mypyc-compiled modules (data_plane/native.py).
from data_plane import native as _native  # noqa: E402

if _native.pure_python_requested():
    _native.prefer_source()
