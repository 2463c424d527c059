"""A YAML file loaded together with its node tree, so an error location (``["apis", 1, "routes", 0,
"upstream"]``, as the admin API reports it) can be turned back into ``file:line:col``.

PyYAML's ``compose`` gives every node a ``start_mark``; the data itself comes from ``safe_load`` of the
same text.  Duplicate keys (which ``safe_load`` silently resolves to the last one) are refused here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


class SourceError(Exception):
    """The file cannot be read or is not a YAML mapping; ``str`` is ``file:line:col: message``."""


@dataclass(frozen=True)
class Source:
    name: str
    data: dict[str, Any]
    root: Node

    def position(self, loc: Sequence[str | int]) -> tuple[int, int]:
        """1-based line and column of the deepest node ``loc`` reaches (a scalar's value, else its key)."""
        node, mark = self.root, self.root.start_mark
        for part in loc:
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    if isinstance(key, ScalarNode) and key.value == str(part):
                        mark = value.start_mark if isinstance(value, ScalarNode) else key.start_mark
                        node = value
                        break
                else:
                    break
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        return mark.line + 1, mark.column + 1

    def where(self, loc: Sequence[str | int]) -> str:
        line, col = self.position(loc)
        return f"{self.name}:{line}:{col}"


def _at(name: str, mark: yaml.Mark | None, message: str) -> SourceError:
    if mark is None:
        return SourceError(f"{name}: {message}")
    return SourceError(f"{name}:{mark.line + 1}:{mark.column + 1}: {message}")


def _check_duplicate_keys(name: str, node: Node) -> None:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, MappingNode):
            seen: set[str] = set()
            for key, value in current.value:
                if isinstance(key, ScalarNode):
                    if key.value in seen:
                        raise _at(name, key.start_mark, f"duplicate key {key.value!r}")
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)


def parse(text: str, name: str = "<input>") -> Source:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise _at(name, exc.problem_mark, str(exc.problem or exc.context)) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"{name}: {exc}") from None
    if root is None:
        raise SourceError(f"{name}: the document is empty (write `upstreams: []` to mean an empty gateway)")
    if not isinstance(data, dict):
        raise _at(name, root.start_mark, "the document must be a mapping (upstreams:, apis:, ...)")
    _check_duplicate_keys(name, root)
    # Round-trip through JSON: YAML may have produced dates and the like; the API speaks JSON.
    return Source(name, json.loads(json.dumps(data, default=str)), root)


def load(path: Path) -> Source:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    return parse(text, str(path))
