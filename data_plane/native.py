"""The request-path modules compiled to C with mypyc at install time, and how this process runs them.

The modules below are ordinary, type-checked Python; ``setup.py`` compiles them with mypyc
(``TOLLGATE_PURE_PYTHON=1`` skips it, and a machine without a C compiler falls back to pure Python).
The same source runs either way: mypyc changes how fast it runs, not what it does.  A compiled
module is an extension file (``exchange.cpython-311-x86_64-linux-gnu.so``) next to its ``.py``,
which Python's import system prefers, so an edited ``.py`` with an older extension beside it would
run the old code: :func:`stale` finds those, ``make install`` rebuilds them, and the test suite
refuses to run on them.

This module only reads file names and times; importing it imports none of the compiled modules.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

# Paths relative to the repository root: setup.py hands them to mypycify as they are.
COMPILED = (
    "data_plane/auth.py",
    "data_plane/balancer.py",
    "data_plane/exchange.py",
    "data_plane/limits_memory.py",
    "data_plane/limits_redis.py",
    "data_plane/observe.py",
    "data_plane/periods.py",
    "data_plane/protocol.py",
    "data_plane/ratelimit.py",
    "data_plane/ratelimit_headers.py",
    "data_plane/router.py",
    "data_plane/stats.py",
    "data_plane/upstream.py",
)

_HERE = Path(__file__).resolve().parent


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _extension(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def mode() -> str:
    """``"compiled"`` when every listed module loads from an extension, ``"pure-python"`` when none
    does, else ``"mixed"`` (a partial build)."""
    loaded = []
    for path in COMPILED:
        spec = importlib.util.find_spec(_module(path))
        origin = spec.origin if spec is not None else None
        loaded.append(origin is not None and not origin.endswith(".py"))
    if all(loaded):
        return "compiled"
    return "pure-python" if not any(loaded) else "mixed"


def stale() -> list[str]:
    """Compiled modules whose ``.py`` changed after their extension was built (they would run old code)."""
    out = []
    for path in COMPILED:
        source = _HERE / Path(path).name
        ext = _extension(source)
        if ext is not None and source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            out.append(_module(path))
    return out
