"""The request-path modules compiled to C with mypyc at install time, and how this process runs them.

The modules below are ordinary, type-checked Python; ``setup.py`` compiles them with mypyc
(``TOLLGATE_PURE_PYTHON=1`` skips it, and a machine without a C compiler falls back to pure Python).
The same source runs either way: mypyc changes how fast it runs, not what it does.  A compiled
module is an extension file (``exchange.cpython-311-x86_64-linux-gnu.so``) next to its ``.py``,
which Python's import system prefers, so an edited ``.py`` with an older extension beside it would
run the old code: :func:`stale` finds those, ``make install`` rebuilds them, and the test suite
refuses to run on them.

``TOLLGATE_PURE_PYTHON=1`` in the environment also works at run time: :func:`prefer_source`
(called by ``data_plane/__init__``, before any submodule loads) makes this process import the
``.py`` files even where extensions exist, for debuggers, coverage, and the test run that keeps
the pure-Python path honest.

This module only reads file names and times; importing it imports none of the compiled modules.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Paths relative to the repository root: setup.py hands them to mypycify as they are.
COMPILED = (
    "data_plane/auth.py",
    "data_plane/balancer.py",
    "data_plane/compiler.py",
    "data_plane/health.py",
    "data_plane/http/admission.py",
    "data_plane/http/canonical.py",
    "data_plane/http/env.py",
    "data_plane/http/exchange.py",
    "data_plane/http/flow.py",
    "data_plane/http/headers.py",
    "data_plane/http/protocol.py",
    "data_plane/http/realip.py",
    "data_plane/http/responses.py",
    "data_plane/http/upstream.py",
    "data_plane/limits/headers.py",
    "data_plane/limits/memory.py",
    "data_plane/limits/periods.py",
    "data_plane/limits/policy.py",
    "data_plane/limits/redis.py",
    "data_plane/limits/shared.py",
    "data_plane/limits/topology.py",
    "data_plane/metering/meter.py",
    "data_plane/observe/accesslog.py",
    "data_plane/observe/observer.py",
    "data_plane/observe/stats.py",
    "data_plane/observe/otlp_wire.py",
    "data_plane/observe/tracing.py",
    "data_plane/policies/cache.py",
    "data_plane/policies/cors.py",
    "data_plane/policies/iprules.py",
    "data_plane/policies/route.py",
    "data_plane/policies/transform.py",
    "data_plane/router.py",
    "data_plane/server.py",
    "data_plane/settings.py",
    "data_plane/snapshot/keytable.py",  # a million keys per full snapshot, and the key lookups
)

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent  # the directory holding the data_plane package


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


_NAMES = frozenset(_module(p) for p in COMPILED)


def _extension(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def pure_python_requested() -> bool:
    return os.environ.get("TOLLGATE_PURE_PYTHON", "") not in ("", "0")


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the listed modules' ``.py`` files, ahead of the extension the default finder would pick."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _NAMES:
            return None
        return importlib.util.spec_from_file_location(fullname, _ROOT / (fullname.replace(".", "/") + ".py"))


def prefer_source() -> None:
    if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())


def mode() -> str:
    """``"compiled"`` when every listed module loads from an extension, ``"pure-python"`` when none
    does, else ``"mixed"`` (a partial build)."""
    if any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        return "pure-python"
    loaded = []
    for path in COMPILED:
        spec = importlib.util.find_spec(_module(path))
        origin = spec.origin if spec is not None else None
        loaded.append(origin is not None and not origin.endswith(".py"))
    if all(loaded):
        return "compiled"
    return "pure-python" if not any(loaded) else "mixed"


def _built_at(ext: Path) -> float:
    """When the code behind a module's extension was built.  The module's extension is a small shim
    that loads the one library holding every compiled module's code (``_native__mypyc.*.so``): both
    must be newer than the source.  setup.py renews both for every extension a build confirms
    current (built, or skipped because its C did not change), and neither when the build failed or
    a source changed under it."""
    built = ext.stat().st_mtime
    libraries = list(_HERE.glob("_native__mypyc*"))
    return min([built, *(lib.stat().st_mtime for lib in libraries)]) if libraries else 0.0


def stale() -> list[str]:
    """Compiled modules whose ``.py`` changed after their extension was built (they would run old code).

    Only in a source checkout (an editable install, where ``.py`` files get edited): an installed
    wheel's files all carry the time pip wrote them, in no useful order, and are never edited."""
    if not (_ROOT / "setup.py").exists():
        return []
    out = []
    for path in COMPILED:
        source = _ROOT / path
        ext = _extension(source)
        if ext is not None and source.exists() and source.stat().st_mtime > _built_at(ext):
            out.append(_module(path))
    return out
