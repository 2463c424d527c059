"""Snapshot -> lookup tables the request path reads.

Everything a request needs that does not depend on the request itself is computed here, once
per snapshot: the router, each route's upstream and forwarding details, each target's
``host:port`` header bytes, and the balancers.  The result is immutable from the request path's
point of view; a config swap is one reference assignment in :class:`data_plane.server.Worker`,
and requests in flight keep the :class:`CompiledConfig` they started with.
"""

from __future__ import annotations

from data_plane.balancer import SmoothWeightedRoundRobin, make_balancer
from data_plane.router import Router
from data_plane.snapshot import Api, Route, Snapshot, Upstream
from data_plane.upstream import ConnectionPool


class CompiledTarget:
    __slots__ = ("id", "host", "port", "weight", "host_header", "head_end", "label", "pool")

    def __init__(self, id: str, host: str, port: int, weight: int, pool: ConnectionPool) -> None:
        self.id = id
        self.host = host
        self.port = port
        self.weight = weight
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.host_header = b"host: " + authority.encode("idna") + b"\r\n"
        self.head_end = self.host_header + b"\r\n"  # appended to a request head built without its end
        self.label = authority
        self.pool = pool


class CompiledUpstream:
    __slots__ = ("id", "name", "connect_timeout", "read_timeout", "retries", "targets", "balancer")

    def __init__(self, upstream: Upstream, targets: list[CompiledTarget]) -> None:
        self.id = upstream.id
        self.name = upstream.name
        self.connect_timeout = upstream.connect_timeout
        self.read_timeout = upstream.read_timeout
        self.retries = upstream.retries
        self.targets = targets
        self.balancer: SmoothWeightedRoundRobin = make_balancer(upstream.algorithm, targets)


class CompiledRoute:
    __slots__ = ("id", "api_id", "api_name", "upstream", "strip_base_path", "base_path", "max_body_bytes")

    def __init__(self, api: Api, route: Route, upstream: CompiledUpstream) -> None:
        self.id = route.id
        self.api_id = api.id
        self.api_name = api.name
        self.upstream = upstream
        self.strip_base_path = api.strip_base_path
        self.base_path = "" if api.base_path == "/" else api.base_path
        self.max_body_bytes = api.max_body_bytes


class CompiledConfig:
    __slots__ = ("revision", "hash", "schema_version", "router", "upstreams", "pools")

    def __init__(
        self,
        snapshot: Snapshot,
        router: Router[CompiledRoute],
        upstreams: dict[str, CompiledUpstream],
        pools: dict[tuple[str, int], ConnectionPool],
    ) -> None:
        self.revision = snapshot.revision
        self.hash = snapshot.hash
        self.schema_version = snapshot.schema_version
        self.router = router
        self.upstreams = upstreams
        self.pools = pools


def compile_snapshot(snapshot: Snapshot, pools: dict[tuple[str, int], ConnectionPool] | None = None) -> CompiledConfig:
    """Compile a validated snapshot. ``pools`` (the previous config's) are reused by (host, port),
    so a config change does not drop warm upstream connections."""
    old_pools = pools or {}
    new_pools: dict[tuple[str, int], ConnectionPool] = {}
    upstreams: dict[str, CompiledUpstream] = {}
    for u in snapshot.upstreams:
        targets = []
        for t in u.targets:
            key = (t.host, t.port)
            pool = new_pools.get(key) or old_pools.get(key) or ConnectionPool(t.host, t.port)
            new_pools[key] = pool
            targets.append(CompiledTarget(t.id, t.host, t.port, t.weight, pool))
        upstreams[u.id] = CompiledUpstream(u, targets)

    def value_of(api: Api, route: Route) -> CompiledRoute:
        return CompiledRoute(api, route, upstreams[route.upstream_id])

    router: Router[CompiledRoute] = Router(snapshot.apis, value_of)
    return CompiledConfig(snapshot, router, upstreams, new_pools)


def retired_pools(
    old: dict[tuple[str, int], ConnectionPool], new: dict[tuple[str, int], ConnectionPool]
) -> list[ConnectionPool]:
    """Pools of targets that left the config: their idle connections can be closed."""
    return [pool for key, pool in old.items() if new.get(key) is not pool]
