"""Request routing: (host, method, path) -> route, compiled once per snapshot.

Matching rules (documented in docs/architecture.md):

1. **Host.** APIs that list the request's host exactly are tried first, then APIs with a
   wildcard host (``*.example.com``, longest suffix first), then APIs without hosts (any host).
   The first group that has an API whose base path matches claims the request.
2. **Base path.** Within a group the longest base path that is a prefix of the path on a segment
   boundary wins (``/orders`` matches ``/orders`` and ``/orders/1``, never ``/ordersx``). That
   API owns the request: no fall-through to shorter base paths.
3. **Route.** Within the API, path templates are matched segment by segment; at each segment a
   literal beats a ``{param}`` which beats a greedy ``{name+}`` (one or more remaining segments,
   as AWS API Gateway's ``{proxy+}``), with backtracking, so the most specific template that also
   accepts the method wins. ``GET`` routes also answer ``HEAD``.
4. **Result.** A route -> forward.  Some template matches the path but none accepts the method
   -> 405 with ``Allow``.  Nothing matches -> 404.

The hot path does one dict lookup for literal-only templates and walks a small trie otherwise.
Template syntax is :mod:`data_plane.snapshot.paths`'s (``parse_template``, at compile time); this
module only builds the tables and walks them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from data_plane.http.canonical import canonical_template
from data_plane.snapshot.paths import GREEDY, PARAM, parse_template

R = TypeVar("R")

ANY = "*"


class _Node(Generic[R]):
    __slots__ = ("literals", "param", "greedy", "methods")

    def __init__(self) -> None:
        self.literals: dict[str, _Node[R]] = {}
        self.param: _Node[R] | None = None
        self.greedy: dict[str, R] | None = None
        self.methods: dict[str, R] | None = None


def _add_methods(table: dict[str, R], methods: Iterable[str], value: R, where: str) -> None:
    names = list(methods) or [ANY]
    if "GET" in names and "HEAD" not in names:
        names.append("HEAD")
    for m in names:
        if m in table and table[m] is not value:
            # The control plane refuses duplicates; a hand-written snapshot file may still have them.
            raise ValueError(f"two routes for {m} {where}")
        table.setdefault(m, value)


def _lookup(table: dict[str, R], method: str) -> R | None:
    hit = table.get(method)
    if hit is None:
        hit = table.get(ANY)
    return hit


class PathTable(Generic[R]):
    """The routes of one API, relative to its base path."""

    __slots__ = ("_root", "_exact")

    def __init__(self) -> None:
        self._root: _Node[R] = _Node()
        # Fast path: templates without parameters, keyed by the whole relative path.
        self._exact: dict[str, dict[str, R]] = {}

    def add(self, template: str, methods: Iterable[str], value: R) -> None:
        """Add a route (at snapshot compile time); the template's grammar is :mod:`data_plane.snapshot.paths`'s."""
        segments = parse_template(template)
        node = self._root
        literal_only = True
        for i, seg in enumerate(segments):
            if seg.kind == GREEDY:
                if node.greedy is None:
                    node.greedy = {}
                _add_methods(node.greedy, methods, value, template)
                return
            if seg.kind == PARAM:
                literal_only = False
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.literals.setdefault(seg.text, _Node())
            if i == len(segments) - 1:
                if node.methods is None:
                    node.methods = {}
                _add_methods(node.methods, methods, value, template)
        if literal_only:
            _add_methods(self._exact.setdefault(template, {}), methods, value, template)

    def match(self, method: str, path: str, allowed: set[str] | None = None) -> R | None:
        """The most specific route for ``method``; fills ``allowed`` (when given) when only the method differs."""
        table = self._exact.get(path)
        if table is not None:
            hit = _lookup(table, method)
            if hit is not None:
                return hit
        segments = path[1:].split("/")
        return _walk(self._root, segments, 0, method, allowed)


def _walk(node: _Node[R], segments: list[str], i: int, method: str, allowed: set[str] | None) -> R | None:
    if i == len(segments):
        if node.methods is not None:
            hit = _lookup(node.methods, method)
            if hit is not None:
                return hit
            if allowed is not None:
                allowed.update(node.methods)
        return None
    seg = segments[i]
    child = node.literals.get(seg)
    if child is not None:
        hit = _walk(child, segments, i + 1, method, allowed)
        if hit is not None:
            return hit
    if node.param is not None and seg:
        hit = _walk(node.param, segments, i + 1, method, allowed)
        if hit is not None:
            return hit
    if node.greedy is not None and any(segments[i:]):
        hit = _lookup(node.greedy, method)
        if hit is not None:
            return hit
        if allowed is not None:
            allowed.update(node.greedy)
    return None


class _ApiEntry(Generic[R]):
    __slots__ = ("base_path", "prefix", "table")

    def __init__(self, base_path: str, table: PathTable[R]) -> None:
        self.base_path = base_path
        self.prefix = "/" if base_path == "/" else base_path + "/"
        self.table = table


class NotFound:
    """Routing failed: ``allow`` is empty for 404, else the methods for a 405."""

    __slots__ = ("allow",)

    def __init__(self, allow: tuple[str, ...] = ()) -> None:
        self.allow = allow


NO_ROUTE = NotFound()


class Router(Generic[R]):
    """Compiled routing table. ``value_of(api, route)`` makes what a match returns."""

    def __init__(
        self,
        apis: Iterable[Any],
        value_of: Callable[[Any, Any], R],
        previous: Router[R] | None = None,
        keep: frozenset[str] = frozenset(),
    ) -> None:
        """``previous`` and ``keep``: the APIs (by id) whose compiled table ``previous`` holds and that
        did not change; theirs are reused as they are (a delta changing one API rebuilds that one)."""
        exact: dict[str, list[_ApiEntry[R]]] = {}
        wildcard: dict[str, list[_ApiEntry[R]]] = {}
        anyhost: list[_ApiEntry[R]] = []
        entries: dict[str, _ApiEntry[R]] = {}
        old: dict[str, _ApiEntry[R]] = previous._entries if previous is not None else {}
        for api in apis:
            entry = old.get(api.id) if api.id in keep else None
            if entry is None:
                table: PathTable[R] = PathTable()
                for route in api.routes:
                    table.add(canonical_template(route.path), route.methods, value_of(api, route))
                entry = _ApiEntry(canonical_template(api.base_path), table)
            entries[api.id] = entry
            if not api.hosts:
                anyhost.append(entry)
            for host in api.hosts:
                if host.startswith("*."):
                    wildcard.setdefault(host[1:], []).append(entry)  # key ".example.com"
                else:
                    exact.setdefault(host, []).append(entry)

        def by_length(entries: list[_ApiEntry[R]]) -> list[_ApiEntry[R]]:
            return sorted(entries, key=lambda e: len(e.base_path), reverse=True)

        self._exact = {h: by_length(v) for h, v in exact.items()}
        self._wildcard = [(suffix, by_length(v)) for suffix, v in sorted(wildcard.items(), key=lambda kv: -len(kv[0]))]
        self._any = by_length(anyhost)
        self._entries: dict[str, _ApiEntry[R]] = entries  # by API id, for the next compile to reuse

    def match(self, host: str, method: str, path: str) -> tuple[R, str] | NotFound:
        """Return ``(value, path relative to the API base path)`` or a :class:`NotFound`.

        ``host`` and ``path`` are in canonical form (``data_plane/http/canonical.py``: lower-case host
        without port; canonical path), as the templates and base paths were made at compile time."""
        if self._exact or self._wildcard:
            entries = self._exact.get(host)
            if entries is not None:
                found = _match_group(entries, method, path)
                if found is not None:
                    return found
            for suffix, entries in self._wildcard:
                if host.endswith(suffix):
                    found = _match_group(entries, method, path)
                    if found is not None:
                        return found
        found = _match_group(self._any, method, path)
        return NO_ROUTE if found is None else found


def _match_group(entries: list[_ApiEntry[R]], method: str, path: str) -> tuple[R, str] | NotFound | None:
    for entry in entries:
        if entry.prefix == "/":
            rel = path
        elif path.startswith(entry.prefix):
            rel = path[len(entry.base_path) :]
        elif path == entry.base_path:
            rel = "/"
        else:
            continue
        hit = entry.table.match(method, rel)
        if hit is not None:
            return hit, rel
        # Miss (rare on a busy gateway): walk again collecting the methods for a 405's Allow, so
        # the hit path allocates no set.
        allowed: set[str] = set()
        entry.table.match(method, rel, allowed)
        if allowed and ANY not in allowed:
            return NotFound(tuple(sorted(allowed)))
        return NO_ROUTE
    return None
