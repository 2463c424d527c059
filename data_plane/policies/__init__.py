"""Traffic policies: what an API or a route asks of the request path beyond routing, auth and limits.

A policies object (snapshot 1.7, ``Api.policies`` / ``Route.policies``) has one member per kind
(:data:`~data_plane.snapshot.POLICY_KINDS`); a route's member replaces its API's member of the same
kind.  Each member is compiled here, once per snapshot, into an object the request path calls
(:class:`RoutePolicies`); a route with no policy at all gets ``None``, so the request path pays one
attribute test for the feature.  Order on one request (docs/architecture.md, "Traffic policies"):

    routing -> ip_rules (403) -> CORS preflight (204, before auth and limits) -> auth -> body limit
    -> request_transform -> plugins.on_request -> plan limits -> cache lookup -> upstream
    -> response_transform -> CORS headers -> plugins.on_response -> cache store -> client

A member that cannot be compiled raises :class:`~data_plane.errors.SnapshotError` naming it
(``apis[0].policies.cors.allow_origins[1]: ...``): the worker keeps the config it runs.
"""

from __future__ import annotations

from typing import Any

from data_plane.errors import SnapshotError
from data_plane.policies.route import RoutePolicies
from data_plane.snapshot import Api, Route


class PolicyEnv:
    """What outlives a snapshot and the policies compile against: the response cache, the tracer,
    the plugin registry (each None when the worker has none)."""

    __slots__ = ("cache", "tracer", "plugins")

    def __init__(self, cache: Any = None, tracer: Any = None, plugins: Any = None) -> None:
        self.cache = cache
        self.tracer = tracer
        self.plugins = plugins


def effective(api: Api, route: Route) -> dict[str, Any]:
    """The route's policies: its API's members, each replaced by the route's member of that kind."""
    merged: dict[str, Any] = dict(api.policies or {})
    if route.policies:
        merged.update(route.policies)
    return merged


def compile_route_policies(api: Api, route: Route, env: PolicyEnv | None, where: str) -> RoutePolicies | None:
    """Compile one route's effective policies (None: it has none)."""
    doc = effective(api, route)
    if not doc:
        return None
    from data_plane.policies import cache, cors, iprules, plugins, transform
    from data_plane.policies.plugin_registry import default_registry

    env = env if env is not None else PolicyEnv()
    out = RoutePolicies()
    try:
        if "ip_rules" in doc:
            out.ip_rules = iprules.compile_rules(doc["ip_rules"], f"{where}.ip_rules")
        if "cors" in doc:
            out.cors = cors.compile_cors(doc["cors"], f"{where}.cors")
        if "request_transform" in doc:
            out.request = transform.compile_request(doc["request_transform"], f"{where}.request_transform")
        if "response_transform" in doc:
            out.response = transform.compile_response(doc["response_transform"], f"{where}.response_transform")
        if "plugins" in doc:
            out.plugins = plugins.compile_plugins(doc["plugins"], f"{where}.plugins", env.plugins or default_registry())
        if "cache" in doc:
            rule = cache.compile_cache(
                doc["cache"], f"{where}.cache", env, api_id=api.id, route_id=route.id, epoch=api.cache_epoch
            )
            out.cache = rule if rule.store is not None else None  # a worker without a store caches nothing
        if "tracing" in doc:
            from data_plane.policies.tracing import compile_tracing

            out.tracing = compile_tracing(doc["tracing"], f"{where}.tracing", env.tracer, api, route)
    except SnapshotError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # a shape the control plane would have refused (a hand-written snapshot file)
        raise SnapshotError(f"{where}: {type(exc).__name__}: {exc}") from None
    return out


def get(doc: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    """``doc[key]`` checked against ``typ`` (``default`` when absent or null)."""
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, typ) or (isinstance(value, bool) and typ in (int, float, (int, float))):
        raise SnapshotError(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value
