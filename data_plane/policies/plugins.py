"""The ``plugins`` policy: Python plugins (:mod:`tollgate.plugins`) compiled into a route's chain.

The policy is an array of ``{"name": ..., "config": {...}}``.  At snapshot compile time each entry
is looked up in the worker's registry (:mod:`data_plane.policies.plugin_registry`), its config
checked against the plugin's JSON Schema and handed to the plugin's ``__init__``; the route gets a
:class:`PluginChain` holding the bound hooks of the instances that override them (None when no
instance has any).  An unknown plugin, a config that fails its schema, an ``__init__`` that
raises: a :class:`~data_plane.errors.SnapshotError` naming the entry, and the worker keeps the
config it runs.

On the request path the hooks run in the order of the array: ``on_request`` in admission (after
the request transform; the first :class:`~tollgate.plugins.Refusal` answers and stops the chain),
``on_response`` in the exchange when the upstream's response head arrives.  An exception in a hook
(or a hook returning something that is not a Refusal) is answered 500 ``plugin <name> failed``,
counted and logged by the registry; the exception's text never reaches the client.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

from data_plane.errors import PluginUnavailable, SnapshotError
from data_plane.policies.plugin_registry import PluginRegistry
from tollgate.plugins import Plugin, Refusal, RequestView, ResponseView

RequestHook = Callable[[RequestView], Any]
ResponseHook = Callable[[ResponseView], Any]
_ENTRY_KEYS: Final = frozenset(("name", "config"))


def failure_message(name: str) -> str:
    return f"plugin {name} failed"


class PluginChain:
    """A route's plugin hooks, bound once per snapshot (``request`` / ``response``: (name, hook))."""

    __slots__ = ("request", "response", "registry", "failures")

    def __init__(self, plugins: list[tuple[str, Plugin]], registry: PluginRegistry) -> None:
        self.request: tuple[tuple[str, RequestHook], ...] = tuple(
            (name, p.on_request) for name, p in plugins if type(p).on_request is not Plugin.on_request
        )
        self.response: tuple[tuple[str, ResponseHook], ...] = tuple(
            (name, p.on_response) for name, p in plugins if type(p).on_response is not Plugin.on_response
        )
        self.registry = registry
        # the 500 answered for a failed plugin, built once (its message names the plugin only)
        self.failures = {name: Refusal(500, failure_message(name)) for name, _ in plugins}

    def run_request(self, view: RequestView) -> Refusal | None:
        """Each ``on_request`` in turn: the first refusal, a 500 refusal for a failed hook, or None."""
        for name, hook in self.request:
            try:
                out = hook(view)
            except (Exception, SystemExit) as exc:  # (SystemExit too: a plugin must not stop the worker)
                self.registry.failed(name, "on_request", exc, view._request_id)
                return self.failures[name]
            if out is not None:
                if isinstance(out, Refusal):
                    return out
                wrong = TypeError(f"on_request returned {type(out).__name__}, not a Refusal or None")
                self.registry.failed(name, "on_request", wrong, view._request_id)
                return self.failures[name]
        return None

    def run_response(self, view: ResponseView, request_id: bytes) -> str | None:
        """Each ``on_response`` in turn; the message of the 500 to answer instead when one failed."""
        for name, hook in self.response:
            try:
                hook(view)
            except (Exception, SystemExit) as exc:
                self.registry.failed(name, "on_response", exc, request_id)
                return self.failures[name].message
        return None


def _replace(headers: list[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    names = {n for n, _ in added}
    return [h for h in headers if h[0] not in names] + added


def upstream_fields(view: RequestView, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's fields for the upstream: the client's, with the names the plugins added replaced."""
    added = view._upstream
    return headers if added is None else _replace(headers, added)


def response_fields(view: ResponseView, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response fields with the names the plugins added replaced."""
    added = view._added
    return headers if added is None else _replace(headers, added)


def lines(pairs: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...] | None) -> bytes:
    """Header lines ``name: value\\r\\n`` (b"" for none)."""
    return b"".join(n + b": " + v + b"\r\n" for n, v in pairs) if pairs else b""


def response_lines(view: RequestView) -> bytes:
    """The lines the request hooks asked every answer to carry."""
    return lines(view._response)


def compile_plugins(doc: Any, where: str, registry: PluginRegistry) -> PluginChain | None:
    """The chain of a ``plugins`` policy (None: no instance has a hook); raises SnapshotError."""
    if not isinstance(doc, list):
        raise SnapshotError(f"{where} must be an array")
    plugins: list[tuple[str, Plugin]] = []
    for i, entry in enumerate(doc):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SnapshotError(f"{at} must be an object with a name")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise SnapshotError(f"{at}: unknown member {sorted(unknown)[0]!r} (name and config only)")
        name: str = entry["name"]
        config = entry.get("config")
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise SnapshotError(f"{at}.config must be an object")
        try:
            cls = registry.get(name)
            problems = registry.validate(name, config)
        except PluginUnavailable as exc:
            raise SnapshotError(f"{at}: {exc}") from None
        if problems:
            path, message = problems[0]
            raise SnapshotError(f"{at}.config{path.removeprefix('$')}: {message}")
        try:
            instance = cls(copy.deepcopy(config))  # (an API's entry is compiled for each of its routes)
        except Exception as exc:  # foreign code: whatever it raises refuses the snapshot, not the worker
            raise SnapshotError(f"{at}: plugin {name!r} refused its config: {type(exc).__name__}: {exc}") from None
        plugins.append((name, instance))
    chain = PluginChain(plugins, registry)
    return chain if chain.request or chain.response else None
