"""The plugins installed in this process: the entry point group ``tollgate.plugins``, read once.

:meth:`PluginRegistry.discover` lists the group's entry points (``importlib.metadata``) when a
worker or the control plane starts; a plugin's module is imported the first time a snapshot (or an
admin write) names it, and what that found is kept for the life of the process: the class, or why
it cannot be used (an import error, another :data:`~tollgate.plugins.API_VERSION`, a config schema
that is no JSON Schema, two distributions claiming one name).  A snapshot naming a plugin that is
not usable fails to compile with that reason (the worker keeps its config); the control plane
refuses the write with it (422).

The registry also keeps the worker's account of plugin failures on the request path
(:meth:`PluginRegistry.failed`): a count per plugin (``tollgate_plugin_errors_total{plugin}`` on
the status port) and a traceback in the log at most once per :data:`LOG_INTERVAL` per (plugin,
exception type), with the number of like failures since the last one, so a plugin failing on every
request neither floods the log nor goes unseen.

Not on the request path of a healthy plugin (the chain calls ``failed`` only after an exception).
``jsonschema`` is imported the first time a plugin is loaded, never by a worker without plugins.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final

from data_plane.errors import PluginUnavailable
from tollgate.plugins import API_VERSION, Plugin

GROUP: Final = "tollgate.plugins"
LOG_INTERVAL: Final = 60.0  # seconds between two tracebacks of one (plugin, exception type)

log = logging.getLogger("tollgate.plugins")


class Installed:
    """One plugin of the group: where it comes from, loaded on first use (its class or its problem)."""

    __slots__ = ("name", "source", "distribution", "version", "_load", "_cls", "_problem", "_validator", "_loaded")

    def __init__(
        self, name: str, source: str, load: Callable[[], Any], distribution: str | None, version: str | None
    ) -> None:
        self.name = name
        self.source = source  # "module:attribute"
        self.distribution = distribution
        self.version = version
        self._load = load
        self._cls: type[Plugin] | None = None
        self._problem: str | None = None
        self._validator: Any = None
        self._loaded = False

    def broken(self, problem: str) -> None:
        self._loaded = True
        self._problem = problem

    def load(self) -> type[Plugin]:
        if not self._loaded:
            self._loaded = True
            try:
                obj = self._load()
            except Exception as exc:  # whatever importing foreign code raises is the plugin's problem
                self._problem = f"cannot be loaded from {self.source}: {type(exc).__name__}: {exc}"
                log.error("plugin %r %s", self.name, self._problem, exc_info=exc)
            else:
                try:
                    self._cls, self._validator = self._check(obj)
                except PluginUnavailable as exc:
                    self._problem = str(exc)
                    log.error("plugin %r %s", self.name, self._problem)
        if self._cls is None:
            raise PluginUnavailable(f"plugin {self.name!r} {self._problem}")
        return self._cls

    def _check(self, obj: Any) -> tuple[type[Plugin], Any]:
        if not (isinstance(obj, type) and issubclass(obj, Plugin)):
            raise PluginUnavailable(f"is not a tollgate.plugins.Plugin subclass ({obj!r})")
        declared = getattr(obj, "name", None)
        if declared != self.name:
            raise PluginUnavailable(f"declares the name {declared!r}, its entry point {self.name!r}")
        version = getattr(obj, "api_version", None)
        if version != API_VERSION:
            said = "does not declare api_version" if version is None else f"is written for plugin API version {version}"
            raise PluginUnavailable(f"{said}; this gateway implements version {API_VERSION}")
        schema = obj.config_schema
        if not isinstance(schema, dict):
            raise PluginUnavailable("has a config_schema that is not a JSON Schema object")
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        cls = validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise PluginUnavailable(f"has a config_schema that is not a valid JSON Schema: {exc.message}") from None
        return obj, cls(schema)

    def problem(self) -> str | None:
        try:
            self.load()
        except PluginUnavailable:
            return self._problem
        return None

    def validate(self, config: Any) -> list[tuple[str, str]]:
        """``(JSON path, message)`` for each way ``config`` fails the plugin's schema (empty: it matches)."""
        self.load()
        errors = sorted(self._validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
        return [(e.json_path, e.message) for e in errors]


class PluginRegistry:
    """The installed plugins by name, and the failures of their hooks."""

    def __init__(self, installed: Iterable[Installed] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.plugins: dict[str, Installed] = {}
        for item in installed:
            seen = self.plugins.get(item.name)
            if seen is None:
                self.plugins[item.name] = item
            elif seen.source != item.source:  # (the same one twice: a distribution on the path twice)
                seen.broken(f"is provided twice ({seen.source} and {item.source}): uninstall one")
        self.clock = clock
        self.errors: dict[str, int] = {}  # plugin name -> hook exceptions (tollgate_plugin_errors_total)
        self._logged: dict[tuple[str, str], float] = {}  # (plugin, exception type) -> when last logged
        self._unlogged: dict[tuple[str, str], int] = {}  # ... and how many since

    @classmethod
    def discover(cls, group: str = GROUP) -> PluginRegistry:
        """The entry points of ``group`` in this process's environment (``sys.path``)."""
        return cls(_entry(ep) for ep in entry_points(group=group))

    @classmethod
    def of(cls, *plugins: type[Plugin], clock: Callable[[], float] = time.monotonic) -> PluginRegistry:
        """A registry of the given classes, as if installed (tests, embedding)."""
        items = [Installed(p.name, f"{p.__module__}:{p.__qualname__}", _const(p), None, None) for p in plugins]
        return cls(items, clock)

    def get(self, name: str) -> type[Plugin]:
        """The plugin class of ``name``; raises PluginUnavailable (unknown, or why it cannot be used)."""
        item = self.plugins.get(name)
        if item is None:
            known = ", ".join(sorted(self.plugins)) or "none"
            raise PluginUnavailable(f"no plugin named {name!r} is installed (installed: {known})")
        return item.load()

    def validate(self, name: str, config: Any) -> list[tuple[str, str]]:
        """Problems of ``config`` for plugin ``name`` (``(JSON path, message)``); raises PluginUnavailable."""
        self.get(name)
        return self.plugins[name].validate(config)

    def describe(self) -> list[dict[str, Any]]:
        """Each installed plugin as ``GET /v1/plugins`` lists it (loading each one)."""
        out = []
        for name in sorted(self.plugins):
            item = self.plugins[name]
            problem = item.problem()
            cls = item._cls
            out.append(
                {
                    "name": name,
                    "version": item.version,
                    "distribution": item.distribution,
                    "source": item.source,
                    "api_version": getattr(cls, "api_version", None),
                    "description": _description(cls) if cls is not None else "",
                    "config_schema": cls.config_schema if cls is not None else None,
                    "problem": problem,
                }
            )
        return out

    def failed(self, name: str, hook: str, exc: BaseException, request_id: bytes) -> None:
        """A hook of plugin ``name`` raised ``exc`` on request ``request_id``: count it; log its
        traceback unless one of its kind was logged in the last :data:`LOG_INTERVAL`."""
        self.errors[name] = self.errors.get(name, 0) + 1
        key = (name, type(exc).__name__)
        now = self.clock()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            return
        self._logged[key] = now
        since = self._unlogged.pop(key, 0)
        log.error(
            "plugin %r failed in %s on request %s (answered 500)%s",
            name,
            hook,
            request_id.decode("latin-1"),
            f"; {since} more {key[1]} since the last report" if since else "",
            exc_info=exc,
        )


def _const(value: Any) -> Callable[[], Any]:
    return lambda: value


def _entry(ep: EntryPoint) -> Installed:
    dist = getattr(ep, "dist", None)
    return Installed(ep.name, ep.value, ep.load, dist.name if dist else None, dist.version if dist else None)


def _description(cls: type[Plugin]) -> str:
    if cls.description:
        return cls.description
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


@functools.cache
def default_registry() -> PluginRegistry:
    """This process's registry, discovered once (the control plane's; a compile without a
    :class:`~data_plane.policies.PolicyEnv` registry uses it too)."""
    return PluginRegistry.discover()
