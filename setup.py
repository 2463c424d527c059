"""Build: the request-path modules listed in data_plane/native.py are compiled with mypyc.

Everything else about the package is in pyproject.toml.  ``TOLLGATE_PURE_PYTHON=1`` builds without
compiling (the same code, slower); so does a machine without a C compiler (the extensions are
optional: a failed compile leaves the pure-Python modules in place).

Rebuilds are incremental: mypyc type-checks and generates all the C each time (~15 s) but rewrites a
C file only when its text changes, and setuptools skips an extension whose C sources and included
headers are older than it, so an edit recompiles only the libraries it touches (``native.GROUPS``).
"""

from __future__ import annotations

import os
import runpy
import time
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
NATIVE = runpy.run_path(str(ROOT / "data_plane" / "native.py"))
CACHE = "/dev/null"  # no mypy cache: mypyc (mypy 2.4.1) loses bitmap_attrs of classes loaded from it (ValueError)
READ_AT = time.time()  # before mypyc reads the sources: an edit after this is not in the build


def native_extensions() -> list:
    if os.environ.get("TOLLGATE_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # building without mypy installed: pure Python
        return []
    groups = [(list(members), name) for name, members in NATIVE["GROUPS"].items()]
    extensions = mypycify(["--cache-dir", CACHE, *NATIVE["COMPILED"]], opt_level="3", debug_level="1", separate=groups)
    for ext in extensions:
        ext.optional = True
    return extensions


class BuildNative(build_ext):
    """build_ext that leaves extension times saying which code they hold (``native.stale``).

    An extension setuptools skips (its C did not change) keeps the time of an older build, older than
    an edit that changed nothing in its C: each extension built or confirmed current gets the time
    the build ended, or the time mypyc read the sources if one of them changed since (then the next
    ``make install`` builds again and ``native.stale`` reports them until it has).  A failed optional
    extension would leave the others compiled against its new interface while it keeps the old one
    (mypyc bakes struct layouts into the libraries that import it), so then no compiled module is
    left in place: the request path runs pure Python until a build succeeds.
    """

    def run(self) -> None:
        self._failed: list[str] = []
        super().run()
        if self._failed:  # none in the wheel's build dir, none in place
            build_py = self.get_finalized_command("build_py")
            for ext in self.extensions:
                for path in self._get_inplace_equivalent(build_py, ext) if self.inplace else []:
                    Path(path).unlink(missing_ok=True)
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.warn(f"{', '.join(self._failed)} failed to build: the request path stays pure Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception:
            self._failed.append(ext.name)
            raise
        edited = any((ROOT / path).stat().st_mtime >= READ_AT for path in NATIVE["COMPILED"])
        built_at = READ_AT if edited else time.time()
        os.utime(self.get_ext_fullpath(ext.name), (built_at, built_at))


setup(ext_modules=native_extensions(), cmdclass={"build_ext": BuildNative})
