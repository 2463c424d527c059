"""Make a generated client package run on Python 3.9 and 3.10 (customers run older Pythons than ours).

openapi-python-client writes 3.11 code; what in it needs more than 3.9 is three spellings:

* ``X | Y`` in annotations (3.10): harmless once the module has ``from __future__ import annotations``
  (PEP 563: annotations stay strings), which every module gets;
* ``X | Y`` evaluated at run time (a type alias such as ``FileContent = IO[bytes] | bytes | str``, a
  ``cast`` or ``isinstance`` argument): rewritten to ``Union[X, Y]`` (``(X, Y)`` in ``isinstance``);
* ``typing.Self`` (3.11): imported from ``typing_extensions`` instead (a dependency of the package).

The rewrite works on the syntax tree and splices only the changed expressions into the source, so the
generated formatting and comments stay.  :func:`problems` is the check the tests run on the result.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

FUTURE = "from __future__ import annotations"
MIN_PYTHON = (3, 9)
TYPING_EXTENSIONS = "typing_extensions >= 4.0.0"
_BACKPORTED = {"Self"}  # typing members newer than 3.9 that the generator uses


def backport_package(root: Path) -> None:
    """Rewrite every module under ``root`` in place, and require Python >= 3.9 in its ``setup.py``."""
    for path in sorted(root.rglob("*.py")):
        if path.name == "setup.py":
            path.write_text(_setup(path.read_text()))
        else:
            path.write_text(backport_module(path.read_text()))


def _setup(text: str) -> str:
    text = re.sub(r'python_requires="[^"]*"', f'python_requires=">={MIN_PYTHON[0]}.{MIN_PYTHON[1]}, <4"', text)
    if "typing_extensions" not in text:
        text = re.sub(r"install_requires=\[", f'install_requires=["{TYPING_EXTENSIONS}", ', text, count=1)
    return text


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (never evaluated once the module has the future import)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        roots: list[ast.expr | None] = []
        if isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.arg):
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots.append(node.returns)
        for root in roots:
            if root is not None:
                inside.update(id(n) for n in ast.walk(root))
    return inside


def _runtime_unions(tree: ast.AST) -> Iterator[tuple[ast.BinOp, bool]]:
    """The outermost ``X | Y`` expressions evaluated at run time; True when it is an ``isinstance`` /
    ``issubclass`` class argument."""
    skip = _annotation_nodes(tree)
    classinfo = {
        id(node.args[1])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("isinstance", "issubclass")
        and len(node.args) == 2
    }
    seen: set[int] = set()
    for node in ast.walk(tree):  # breadth first: an outer union comes before the unions inside it
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in skip | seen:
            seen.update(id(n) for n in ast.walk(node))
            yield node, id(node) in classinfo


class _ToUnion(ast.NodeTransformer):
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.op, ast.BitOr):
            return node
        members = _members(node)
        return ast.Subscript(value=ast.Name("Union"), slice=ast.Tuple(members, ast.Load()), ctx=ast.Load())


def _members(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _members(node.left) + _members(node.right)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Union":
        return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    return [node]


def backport_module(source: str) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line.encode()))
    raw = source.encode()

    edits: list[tuple[int, int, str]] = []
    for node, is_classinfo in _runtime_unions(tree):
        assert node.end_lineno is not None and node.end_col_offset is not None
        a = starts[node.lineno - 1] + node.col_offset
        b = starts[node.end_lineno - 1] + node.end_col_offset
        if is_classinfo:
            text = "(" + ", ".join(ast.unparse(m) for m in _members(node)) + ")"
        else:
            segment = "(" + raw[a:b].decode() + "\n)"  # it may span lines (and hold comments)
            text = ast.unparse(_ToUnion().visit(ast.parse(segment, mode="eval").body))
        edits.append((a, b, text))
    for a, b, text in sorted(edits, reverse=True):
        raw = raw[:a] + text.encode() + raw[b:]
    out = raw.decode()

    out = _move_backported_imports(out)
    if edits and not re.search(r"^from typing import .*\bUnion\b", out, re.M):
        existing = re.search(r"^from typing import ([^\n(]+)$", out, re.M)
        if existing:  # one typing import, names sorted, as the generator's ruff would write it
            names = sorted({*(n.strip() for n in existing.group(1).split(",")), "Union"}, key=_isort_key)
            out = out[: existing.start()] + f"from typing import {', '.join(names)}" + out[existing.end() :]
        else:
            out = _add_import(out, "from typing import Union")
    if FUTURE not in out:
        out = _add_future(out)
    return out


def _isort_key(name: str) -> tuple[int, str]:
    """isort's (and ruff's) order-by-type: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def _move_backported_imports(source: str) -> str:
    def fix(match: re.Match[str]) -> str:
        names = [n.strip() for n in match.group(1).split(",") if n.strip()]
        moved = [n for n in names if n in _BACKPORTED]
        if not moved:
            return match.group(0)
        kept = [n for n in names if n not in _BACKPORTED]
        out = f"from typing import {', '.join(kept)}\n" if kept else ""
        return out + f"from typing_extensions import {', '.join(moved)}\n"

    return re.sub(r"^from typing import ([^\n(]+)\n", fix, source, flags=re.M)


def _add_future(source: str) -> str:
    tree = ast.parse(source)
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        assert body[0].end_lineno is not None
        lines = source.splitlines(keepends=True)
        head, tail = "".join(lines[: body[0].end_lineno]), "".join(lines[body[0].end_lineno :])
        return f"{head}\n{FUTURE}\n{tail}"
    return f"{FUTURE}\n\n{source}"


def _add_import(source: str, line: str) -> str:
    match = re.search(r"^(from|import) \S+", source, re.M)
    if match is None:
        return _add_future(source) + f"{line}\n"
    return source[: match.start()] + f"{line}\n" + source[match.start() :]


def problems(source: str, name: str = "<module>") -> list[str]:
    """Why ``source`` would not run on Python 3.9: syntax newer than 3.9, a ``X | Y`` evaluated at run
    time, an annotation union without the future import, a typing member newer than 3.9."""
    try:
        tree = ast.parse(source, feature_version=MIN_PYTHON)
    except SyntaxError as exc:
        return [f"{name}:{exc.lineno}: syntax newer than Python 3.9: {exc.msg}"]
    found = [f"{name}:{node.lineno}: {ast.unparse(node)} evaluated at run time" for node, _ in _runtime_unions(tree)]
    has_future = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    if not has_future:
        skip = _annotation_nodes(tree)
        found += [
            f"{name}:{n.lineno}: {ast.unparse(n)} in an annotation without {FUTURE}"
            for n in ast.walk(tree)
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) and id(n) in skip
        ]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "typing":
            found += [
                f"{name}:{node.lineno}: typing.{a.name} is newer than 3.9" for a in node.names if a.name in _BACKPORTED
            ]
    return found
