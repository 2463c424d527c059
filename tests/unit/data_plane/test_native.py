"""data_plane/native.py: which compiled modules would run older code than their source."""

from __future__ import annotations

import ast
import importlib.machinery
import os
from pathlib import Path

import pytest

from data_plane import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, checkout: bool) -> tuple[Path, Path]:
    """A checkout holding exchange.py, its shim extension and the one library with every module's code."""
    pkg = tmp_path / "data_plane" / "http"
    pkg.mkdir(parents=True)
    if checkout:
        (tmp_path / "setup.py").write_text("")
    lib = tmp_path / "data_plane" / f"_native__mypyc{SUFFIX}"
    for path in (pkg / "exchange.py", pkg / f"exchange{SUFFIX}", lib):
        path.write_text("")
    monkeypatch.setattr(native, "_HERE", pkg.parent)
    monkeypatch.setattr(native, "_ROOT", pkg.parent.parent)
    monkeypatch.setattr(native, "COMPILED", ("data_plane/http/exchange.py",))
    return pkg, lib


def _age(path: Path, seconds: float) -> None:
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def test_an_extension_older_than_its_source_is_stale_in_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg, lib = _tree(tmp_path, monkeypatch, checkout=True)
    source, shim = pkg / "exchange.py", pkg / f"exchange{SUFFIX}"
    _age(source, 10)
    assert native.stale() == []  # built after the last edit
    source.touch()
    assert native.stale() == ["data_plane.http.exchange"]
    # the module's shim is new but the group library holding its code is not: still stale
    shim.touch()
    _age(source, 1)
    _age(lib, 10)
    assert native.stale() == ["data_plane.http.exchange"]
    # a shim whose library is gone (a partly cleaned tree) cannot run current code either
    lib.unlink()
    assert native.stale() == ["data_plane.http.exchange"]


def test_an_installed_wheel_is_never_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pip writes a wheel's files in no useful time order; nothing there gets edited
    pkg, lib = _tree(tmp_path, monkeypatch, checkout=False)
    for path in (pkg / f"exchange{SUFFIX}", lib):
        _age(path, 10)
    assert native.stale() == []


def _except_names_reused_with_other_types(source: str) -> list[str]:
    """``except A as e`` and ``except B as e`` in one function: mypyc gives both one variable of the
    first type, and the second handler fails with "A object expected; got B" (seen in metering)."""
    found = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        types: dict[str, str] = {}
        for node in ast.walk(func):
            if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                kind = ast.unparse(node.type)
                if types.setdefault(node.name, kind) != kind:
                    found.append(f"{func.name}: {node.name} ({types[node.name]} / {kind})")
    return found


def test_the_check_finds_a_reused_except_name() -> None:
    src = "def f():\n    try: pass\n    except KeyError as e: pass\n    except ValueError as e: pass\n"
    assert _except_names_reused_with_other_types(src) == ["f: e (KeyError / ValueError)"]


def test_compiled_modules_give_each_exception_type_its_own_name() -> None:
    root = Path(native.__file__).resolve().parents[1]
    problems = [
        f"{path}: {found}"
        for path in native.COMPILED
        for found in _except_names_reused_with_other_types((root / path).read_text())
    ]
    assert problems == []
