"""Build: the request-path modules listed in data_plane/native.py are compiled with mypyc.

Everything else about the package is in pyproject.toml.  ``TOLLGATE_PURE_PYTHON=1`` builds without
compiling (the same code, slower); so does a machine without a C compiler (the extensions are
optional: a failed compile leaves the pure-Python modules in place).
"""

from __future__ import annotations

import inspect
import os
import runpy
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def native_extensions() -> list:
    if os.environ.get("TOLLGATE_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # building without mypy installed: pure Python
        return []
    compiled = runpy.run_path(str(ROOT / "data_plane" / "native.py"))["COMPILED"]
    options: dict[str, object] = {"opt_level": "3", "debug_level": "1"}
    if "group_name" in inspect.signature(mypycify).parameters:
        # The shared library lands inside the package (data_plane/_native__mypyc.*.so) instead of
        # as a top-level module, so an editable install finds it from any working directory.
        options["group_name"] = "data_plane._native"
    extensions = mypycify(list(compiled), **options)
    for ext in extensions:
        ext.optional = True
    return extensions


setup(ext_modules=native_extensions())
