"""Snapshot -> lookup tables the request path reads.

Everything a request needs that does not depend on the request itself is computed here, once
per snapshot: the router, each route's upstream and forwarding details, each target's
``host:port`` header bytes, and the balancers.  The result is immutable from the request path's
point of view; a config swap is one reference assignment in :class:`data_plane.server.Worker`,
and requests in flight keep the :class:`CompiledConfig` they started with.
"""

from __future__ import annotations

import ssl
import time

from data_plane.auth import Authenticator, AuthTables, Clock, compile_auth, make_authenticator
from data_plane.balancer import Balancer, make_balancer
from data_plane.health import TargetState
from data_plane.http.upstream import ConnectionPool
from data_plane.limits.plans import PlanTable, compile_plans, route_policies
from data_plane.limits.policy import LimitPolicy
from data_plane.observe.stats import RouteStats, StatsTable
from data_plane.policies import PolicyEnv, compile_route_policies
from data_plane.policies.route import RoutePolicies
from data_plane.router import Router
from data_plane.snapshot import Api, Certificate, Route, Snapshot, Upstream
from data_plane.tls.client import client_context, tls_identity

StateKey = tuple[str, str, int]  # (upstream id, host, port)
# (host, port, TLS identity): "" for plain HTTP; for https the digest of the upstream's TLS settings
# (data_plane/tls/client.py), so a connection is reused only under the TLS setting it was made with.
PoolKey = tuple[str, int, str]

# Hash-on modes as small ints, so the request path compares ints.
HASH_IP, HASH_HEADER, HASH_COOKIE, HASH_CUSTOMER = 0, 1, 2, 3
_HASH_ON = {"ip": HASH_IP, "header": HASH_HEADER, "cookie": HASH_COOKIE, "customer": HASH_CUSTOMER}


class CompiledTarget:
    __slots__ = ("id", "host", "port", "weight", "host_header", "head_end", "label", "pool", "state")

    def __init__(self, id: str, host: str, port: int, weight: int, pool: ConnectionPool, state: TargetState) -> None:
        self.id = id
        self.host = host
        self.port = port
        self.weight = weight
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.host_header = b"host: " + authority.encode("idna") + b"\r\n"
        self.head_end = self.host_header + b"\r\n"  # completes a request head built without its end
        self.label = authority
        self.pool = pool
        self.state = state  # runtime: in-flight count, health (survives config swaps)


class CompiledUpstream:
    __slots__ = (
        "id",
        "name",
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "retries",
        "targets",
        "states",
        "balancer",
        "hash_on",
        "hash_key",
        "health_check",
        "passive",
        "passive_statuses",
        "max_connections",
    )

    def __init__(self, upstream: Upstream, targets: list[CompiledTarget]) -> None:
        self.id = upstream.id
        self.name = upstream.name
        self.connect_timeout = upstream.connect_timeout
        self.read_timeout = upstream.read_timeout
        self.total_timeout = upstream.total_timeout
        self.retries = upstream.retries
        self.targets = targets
        self.states = [t.state for t in targets]
        self.balancer: Balancer = make_balancer(upstream.algorithm, targets, upstream.panic)
        # Only consistent_hash reads a key; -1 tells the request path not to compute one.
        self.hash_on = _HASH_ON[upstream.hash_on] if upstream.algorithm == "consistent_hash" else -1
        self.hash_key = upstream.hash_key.lower().encode("latin-1")
        self.health_check = upstream.health_check
        self.passive = upstream.passive
        self.passive_statuses = frozenset(upstream.passive.statuses) if upstream.passive else frozenset()
        self.max_connections = upstream.max_connections


class CompiledRoute:
    __slots__ = (
        "id",
        "api_id",
        "api_name",
        "upstream",
        "strip_base_path",
        "https_only",
        "base_path",
        "max_body_bytes",
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "auth",
        "stats",
        "policies",
        "method_policies",
        "traffic",
    )

    def __init__(
        self,
        api: Api,
        route: Route,
        upstream: CompiledUpstream,
        auth: Authenticator | None = None,
        stats: RouteStats | None = None,
        plans: PlanTable | None = None,
        traffic: RoutePolicies | None = None,
    ) -> None:
        self.id = route.id
        self.api_id = api.id
        self.api_name = api.name
        self.upstream = upstream
        self.strip_base_path = api.strip_base_path
        self.https_only = api.https_only  # plain-HTTP requests are redirected (GET/HEAD) or refused
        self.base_path = "" if api.base_path == "/" else api.base_path
        self.max_body_bytes = api.max_body_bytes
        # Route overrides resolved here so the request path reads one attribute.
        self.connect_timeout = route.connect_timeout or upstream.connect_timeout
        self.read_timeout = route.read_timeout or upstream.read_timeout
        self.total_timeout = route.total_timeout or upstream.total_timeout
        self.auth = auth  # None: auth "none", the request path skips authentication entirely
        self.stats = stats if stats is not None else StatsTable().route(api, route)  # data_plane/observe/stats.py
        # usage plans (plan_policies.py): plan id -> policy; (plan id, method) -> override policy
        self.policies: dict[str, LimitPolicy] = {}
        self.method_policies: dict[tuple[str, str], LimitPolicy] | None = None
        if plans:
            self.policies, self.method_policies = route_policies(plans, api, route)
        # traffic policies (data_plane/policies): None when the route has none, the request path's one test
        self.traffic = traffic


class CompiledConfig:
    __slots__ = (
        "revision",
        "hash",
        "schema_version",
        "router",
        "upstreams",
        "pools",
        "states",
        "auth",
        "stats",
        "tls_contexts",
        "cors",
    )

    def __init__(
        self,
        snapshot: Snapshot,
        router: Router[CompiledRoute],
        upstreams: dict[str, CompiledUpstream],
        pools: dict[PoolKey, ConnectionPool],
        states: dict[StateKey, TargetState],
        auth: AuthTables | None = None,
        stats: StatsTable | None = None,
        tls_contexts: dict[str, ssl.SSLContext] | None = None,
        cors: bool = False,
    ) -> None:
        self.revision = snapshot.revision
        self.hash = snapshot.hash
        self.schema_version = snapshot.schema_version
        self.router = router
        self.upstreams = upstreams
        self.pools = pools
        self.states = states
        self.auth = auth
        self.stats = stats if stats is not None else StatsTable()
        # TLS identity -> client context for https targets (data_plane/tls/client.py), reused by the next snapshot
        self.tls_contexts = tls_contexts if tls_contexts is not None else {}
        self.cors = cors  # some route has a CORS policy: an OPTIONS request may be a preflight to answer


def _upstream_tls(
    u: Upstream,
    certificates: dict[str, Certificate],
    contexts: dict[str, ssl.SSLContext],
    old_contexts: dict[str, ssl.SSLContext],
    cluster_token: str | None,
) -> tuple[str, ssl.SSLContext | None]:
    """The TLS identity and context of an upstream's https targets (("", None) without any)."""
    if not any(t.scheme == "https" for t in u.targets):
        return "", None
    certificate = certificates[u.client_certificate_id] if u.client_certificate_id is not None else None
    ident = tls_identity(u, certificate)
    ctx = contexts.get(ident) or old_contexts.get(ident) or client_context(u, certificate, cluster_token)
    contexts[ident] = ctx
    return ident, ctx


def compile_snapshot(
    snapshot: Snapshot,
    previous: CompiledConfig | None = None,
    keys_used: dict[str, int] | None = None,
    clock: Clock = time.time,
    cluster_token: str | None = None,
    policy_env: PolicyEnv | None = None,
    auth: AuthTables | None = None,
    keep_apis: frozenset[str] | None = None,
) -> CompiledConfig:
    """Compile a validated snapshot. The previous config's pools (by host, port, TLS identity) and
    target states (by upstream id, host, port) are reused, so a config change drops neither warm
    upstream connections nor in-flight counts and health verdicts (nor request counters, by route
    id); ``keys_used`` (the worker's key last-use record) likewise outlives the swap.  TLS client
    contexts are built here, once per TLS setting, and reused while the setting is unchanged;
    ``cluster_token`` opens the sealed keys of client certificates; ``policy_env`` holds what the
    traffic policies compile against (the worker's response cache, tracer, plugins); ``auth``: key and
    customer tables to keep as they are (a delta that changed routes, not keys: the snapshot then needs
    no customers nor keys); ``keep_apis``: APIs (by id) that did not change since ``previous`` while no
    upstream, certificate nor plan did either: ``previous``'s upstreams and those APIs' compiled routes
    are reused as they are.  Raises ``SnapshotError``
    (``UpstreamTlsError`` included) for what cannot be served."""
    if keep_apis is not None and previous is not None and previous.auth is not None:
        return _recompile_apis(snapshot, previous, keep_apis, policy_env)
    old_pools = previous.pools if previous is not None else {}
    old_states = previous.states if previous is not None else {}
    old_contexts = previous.tls_contexts if previous is not None else {}
    new_pools: dict[PoolKey, ConnectionPool] = {}
    keepalive: dict[PoolKey, float] = {}  # per pool: the smallest keepalive_timeout naming it
    new_states: dict[StateKey, TargetState] = {}
    upstreams: dict[str, CompiledUpstream] = {}
    certificates = {c.id: c for c in snapshot.certificates}
    contexts: dict[str, ssl.SSLContext] = {}
    for u in snapshot.upstreams:
        ident, ctx = _upstream_tls(u, certificates, contexts, old_contexts, cluster_token)
        targets = []
        for t in u.targets:
            if t.scheme == "https":
                key = (t.host, t.port, ident)
                pool = new_pools.get(key) or old_pools.get(key)
                if pool is None:
                    pool = ConnectionPool(t.host, t.port, tls=ctx, server_hostname=u.sni or t.host, owner=u.name)
            else:
                key = (t.host, t.port, "")
                pool = new_pools.get(key) or old_pools.get(key) or ConnectionPool(t.host, t.port)
            new_pools[key] = pool
            keepalive[key] = min(keepalive.get(key, u.keepalive_timeout), u.keepalive_timeout)
            skey = (u.id, t.host, t.port)
            state = new_states[skey] = old_states.get(skey) or TargetState()
            if u.health_check is None and not state.healthy:
                state.reset_active()
            targets.append(CompiledTarget(t.id, t.host, t.port, t.weight, pool, state))
        upstreams[u.id] = CompiledUpstream(u, targets)

    tables = auth if auth is not None else compile_auth(snapshot, keys_used, clock)
    authenticators = {api.id: make_authenticator(api, tables) for api in snapshot.apis}

    # Request counters and latency histograms carry over by route / API id, like the pools.
    stats = StatsTable(previous.stats if previous is not None else None)
    plans = compile_plans(snapshot)

    cors = False

    def value_of(api: Api, route: Route) -> CompiledRoute:
        nonlocal cors
        where = f"api {api.name!r} route {route.path!r}: policies"
        traffic = compile_route_policies(api, route, policy_env, where)
        if traffic is not None and traffic.cors is not None:
            cors = True
        return CompiledRoute(
            api, route, upstreams[route.upstream_id], authenticators[api.id], stats.route(api, route), plans, traffic
        )

    router: Router[CompiledRoute] = Router(snapshot.apis, value_of)
    stats.seal()
    # Last, once nothing can fail: pools outlive configs, so this is the one change to shared state.
    # Upstreams naming the same host:port (and TLS setting) share its pool (one server behind it): the smallest
    # timeout of theirs applies, since one of them was set below that server's own.
    for key, pool in new_pools.items():
        pool.keepalive_timeout = keepalive[key]
    return CompiledConfig(snapshot, router, upstreams, new_pools, new_states, tables, stats, contexts, cors)


def _recompile_apis(
    snapshot: Snapshot, previous: CompiledConfig, keep: frozenset[str], policy_env: PolicyEnv | None
) -> CompiledConfig:
    """Only some APIs changed: their routes are compiled again, on ``previous``'s upstreams, pools, key
    tables and plans; the router reuses every other API's compiled table."""
    tables = previous.auth
    assert tables is not None
    stats = StatsTable(previous.stats)
    plans = compile_plans(snapshot)
    cors = previous.cors
    upstreams = previous.upstreams

    def value_of(api: Api, route: Route) -> CompiledRoute:
        nonlocal cors
        where = f"api {api.name!r} route {route.path!r}: policies"
        traffic = compile_route_policies(api, route, policy_env, where)
        if traffic is not None and traffic.cors is not None:
            cors = True
        if api.id not in authenticators:
            authenticators[api.id] = make_authenticator(api, tables)
        auth = authenticators[api.id]
        return CompiledRoute(api, route, upstreams[route.upstream_id], auth, stats.route(api, route), plans, traffic)

    authenticators: dict[str, Authenticator | None] = {}
    router: Router[CompiledRoute] = Router(snapshot.apis, value_of, previous.router, keep)
    for api in snapshot.apis:  # the kept APIs' counters: the ones their kept routes write to
        if api.id in keep:
            latency = previous.stats.apis.get(api.id)
            if latency is not None:
                stats.apis[api.id] = latency
            for route in api.routes:
                old = previous.stats.routes.get(route.id)
                if old is not None:
                    stats.routes[route.id] = old
    stats.seal()
    return CompiledConfig(
        snapshot, router, upstreams, previous.pools, previous.states, tables, stats, previous.tls_contexts, cors
    )


def retired_pools(old: dict[PoolKey, ConnectionPool], new: dict[PoolKey, ConnectionPool]) -> list[ConnectionPool]:
    """Pools of targets that left the config: their idle connections can be closed."""
    return [pool for key, pool in old.items() if new.get(key) is not pool]
