"""The control plane's model packages stay one-way: ``models/`` and ``schemas/`` have a leaf
(``base`` / ``common``) and an acyclic import graph, and no module imports another's private name."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]  # tests/unit/control_plane/ -> the repository


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``from ... import`` in the file (names empty for ``import x``)."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_no_module_imports_a_private_name_of_ours() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: from {module} import {name}"
        for package in ("control_plane", "tollgate")
        for path in sorted((ROOT / package).rglob("*.py"))
        for module, names in _imports(path)
        if module.split(".")[0] in ("control_plane", "data_plane", "tollgate")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not offenders, offenders


@pytest.mark.parametrize(("package", "leaf"), [("models", "base"), ("schemas", "common")])
def test_model_packages_have_a_leaf_and_no_cycle(package: str, leaf: str) -> None:
    prefix = f"control_plane.{package}"
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "control_plane" / package).glob("*.py")):
        if path.name == "__init__.py":
            continue
        deps = {m for m, _ in _imports(path) if m.startswith(prefix + ".") or m == prefix}
        assert prefix not in deps, f"{path.name} imports the package itself (goes through __init__)"
        graph[path.stem] = {m.removeprefix(prefix + ".") for m in deps}
    assert graph[leaf] == set(), f"{leaf}.py must import nothing of {prefix}"
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle in {prefix}: {exc.args[1]}")
