"""Build: the request-path modules listed in data_plane/native.py are compiled with mypyc.

Everything else about the package is in pyproject.toml.  ``TOLLGATE_PURE_PYTHON=1`` builds without
compiling (the same code, slower); so does a machine without a C compiler (the extensions are
optional: a failed compile leaves the pure-Python modules in place).

All compiled modules share one library (``data_plane/_native__mypyc.*.so``; each module's own
extension is a shim that loads it): one library per module (mypyc's separate mode) rebuilt faster
but cost 0.65-1.03% more instructions per request.  Rebuilds are cheap another way: mypyc writes
one C file per module (``multi_file``) and rewrites only those whose text changed, and
:class:`BuildNative` reuses a cached object for every C file whose inputs are unchanged, so an edit
recompiles the C of the modules it changed and relinks the library.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import runpy
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
NATIVE = runpy.run_path(str(ROOT / "data_plane" / "native.py"))
CACHE = "/dev/null"  # no mypy cache: mypyc (mypy 2.4.1) loses bitmap_attrs of classes loaded from it (ValueError)
OBJECTS = ROOT / "build" / "objects"  # the compiled-object cache (BuildNative), removed by make clean
READ_AT = time.time()  # before mypyc reads the sources: an edit after this is not in the build


def native_extensions() -> list:
    if os.environ.get("TOLLGATE_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # building without mypy installed: pure Python
        return []
    if "group_name" not in inspect.signature(mypycify).parameters:  # an older mypyc: a top-level
        return []  # library named by a hash, which native.stale() could not find: pure Python
    extensions = mypycify(
        ["--cache-dir", CACHE, *NATIVE["COMPILED"]],
        opt_level="3",
        debug_level="1",
        # One library (inside the package, so an editable install finds it from any directory),
        # written as one C file per module so that an edit recompiles only the C it changed.
        group_name="data_plane._native",
        multi_file=True,
    )
    for ext in extensions:
        ext.optional = True
        if ext.name == "data_plane._native__mypyc":
            # mypyc 2.4 writes the per-module C files to build/ but the group's headers they include
            # ("__native__native.h") to build/data_plane/, next to the group's own C file.
            ext.include_dirs.append(os.path.join("build", "data_plane"))
    return extensions


class ObjectCache:
    """Compiled objects by everything that decides what the compiler makes of a C file.

    The key is a sha256 of the C file's bytes and path, the compiler's command line (flags, include
    and macro options), the compiler's ``--version``, the environment variables the compiler reads,
    Python's version and include directory, mypy's version, and every header under the source's directory and each
    ``-I`` directory: mypyc's generated ``__native*.h`` (which change with any class layout in the
    group), its runtime headers (lib-rt) and Python's.  Only system headers outside those directories
    are left to the compiler version.  A hit copies the stored object instead of compiling; a miss
    compiles and stores.  Entries are written whole (rename) so a killed build cannot leave half an
    object under a valid key.
    """

    ENVIRONMENT = ("CPATH", "C_INCLUDE_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH", "SOURCE_DATE_EPOCH")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = self.misses = 0
        self._headers: dict[str, bytes] = {}
        self._versions: dict[str, bytes] = {}

    def _headers_under(self, directory: str) -> bytes:
        if directory not in self._headers:
            digest = hashlib.sha256()
            base = Path(directory)
            for header in sorted(base.rglob("*.h")) if base.is_dir() else []:
                digest.update(str(header).encode() + b"\0" + header.read_bytes() + b"\0")
            self._headers[directory] = digest.digest()
        return self._headers[directory]

    def _version(self, compiler: str) -> bytes:
        if compiler not in self._versions:
            run = subprocess.run([compiler, "--version"], capture_output=True, check=False)
            self._versions[compiler] = (shutil.which(compiler) or compiler).encode() + run.stdout
        return self._versions[compiler]

    def key(self, command: list[str], src: str) -> str:
        digest = hashlib.sha256()
        for part in (
            Path(src).read_bytes(),
            os.path.abspath(src).encode(),
            os.getcwd().encode(),  # in the debug info
            "\0".join(command).encode(),
            self._version(command[0]),
            "\0".join(f"{name}={os.environ.get(name, '')}" for name in self.ENVIRONMENT).encode(),
            sys.version.encode(),
            metadata.version("mypy").encode(),  # lib-rt's .c files (only its headers are hashed)
            sysconfig.get_path("include").encode(),
        ):
            digest.update(hashlib.sha256(part).digest())
        dirs = [os.path.dirname(os.path.abspath(src))]
        dirs += [arg[2:] for arg in command if arg.startswith("-I")]
        for directory in dict.fromkeys(os.path.abspath(d) for d in dirs):
            digest.update(directory.encode() + self._headers_under(directory))
        return digest.hexdigest()

    def compile(self, command: list[str], src: str, obj: str, run: Callable[[], None]) -> None:
        entry = self.root / (self.key(command, src) + ".o")
        if entry.exists():
            self.hits += 1
            shutil.copyfile(entry, obj)
            return
        run()
        self.misses += 1
        self.root.mkdir(parents=True, exist_ok=True)
        partial = entry.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(obj, partial)
        os.replace(partial, entry)


class BuildNative(build_ext):
    """build_ext with the object cache, leaving extension times saying which code they hold.

    An extension setuptools skips (its C did not change) keeps the time of an older build, older than
    an edit that changed nothing in its C: each extension built or confirmed current gets the time
    the build ended, or the time mypyc read the sources if one of them changed since (then the next
    ``make install`` builds again and ``native.stale`` reports them until it has).  A failed optional
    extension removes every compiled module (the shims of an old library next to a new one, or the
    reverse, would run mixed code): the request path runs pure Python until a build succeeds.
    """

    def run(self) -> None:
        self._failed: list[str] = []
        self._objects = ObjectCache(OBJECTS)
        super().run()
        if self._objects.hits or self._objects.misses:
            print(f"object cache: {self._objects.hits} reused, {self._objects.misses} compiled")
        if self._failed:  # none in the wheel's build dir, none in place
            build_py = self.get_finalized_command("build_py")
            for ext in self.extensions:
                for path in self._get_inplace_equivalent(build_py, ext) if self.inplace else []:
                    Path(path).unlink(missing_ok=True)
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.warn(f"{', '.join(self._failed)} failed to build: the request path stays pure Python")

    def build_extension(self, ext: Extension) -> None:
        compiler: Any = self.compiler
        compile_one = compiler._compile  # UnixCCompiler: one call per source, after its arguments are set

        def cached(
            obj: str, src: str, suffix: str, cc_args: list[str], extra_postargs: list[str], pp_opts: Any
        ) -> None:
            command = [*compiler.compiler_so, *cc_args, *extra_postargs]
            run = lambda: compile_one(obj, src, suffix, cc_args, extra_postargs, pp_opts)  # noqa: E731
            self._objects.compile(command, src, obj, run)

        compiler._compile = cached
        try:
            super().build_extension(ext)
        except Exception:
            self._failed.append(ext.name)
            raise
        finally:
            del compiler._compile
        edited = any((ROOT / path).stat().st_mtime >= READ_AT for path in NATIVE["COMPILED"])
        built_at = READ_AT if edited else time.time()
        os.utime(self.get_ext_fullpath(ext.name), (built_at, built_at))


setup(ext_modules=native_extensions(), cmdclass={"build_ext": BuildNative})
