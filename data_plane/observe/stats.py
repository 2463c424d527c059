"""Request counters per route and latency histograms per API: plain ints on the request path.

prometheus-client's ``Counter.labels(...).inc()`` takes a lock and hashes the label values on
every call; at tens of thousands of requests per second on one core that is a measurable share of
the request path.  Instead each :class:`~data_plane.compiler.CompiledRoute` gets a
:class:`RouteStats` when the snapshot is compiled, and recording a request is two list
increments, one ``bisect`` (C) and one float addition, with no lock: a worker process runs its
request path on one thread.  :mod:`data_plane.observe.metrics` reads these numbers at scrape time.

Counters survive config swaps for routes (by route id) and APIs (by API id) that still exist with
the same labels, as the connection pools do (:class:`StatsTable` takes the previous table); a
removed route's series disappear with it.  Stdlib only: the compiler imports this module.
"""

from __future__ import annotations

from bisect import bisect_left
from json.encoder import encode_basestring_ascii as json_string

from data_plane.snapshot import Api, Route

# Upper bounds (seconds) of the latency buckets: few, so a scrape stays small per API.
LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.5, 2.5, 10.0)


class ApiStats:
    """The latency histogram of one API: non-cumulative bucket counts (last one is +Inf) and the sum."""

    __slots__ = ("api", "buckets", "sum")

    def __init__(self, api: str) -> None:
        self.api = api
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0


class RouteStats:
    """Requests answered on one route, by status class; feeds its API's histogram."""

    __slots__ = ("api", "route", "counts", "latency", "log_labels")

    def __init__(self, api: str, route: str, latency: ApiStats) -> None:
        self.api = api
        self.route = route
        # Indexed by status // 100 (0..9: httptools accepts any three-digit status), so recording
        # needs neither a subtraction nor a range check.
        self.counts = [0] * 10
        self.latency = latency
        # The access log's api/route fields, JSON-escaped once here instead of once per line.
        self.log_labels = f'"api":{json_string(api)},"route":{json_string(route)}'

    def record(self, status: int, elapsed: float) -> None:
        self.counts[status // 100] += 1
        h = self.latency
        h.buckets[bisect_left(LATENCY_BUCKETS, elapsed)] += 1  # bisect_left: a bucket is "<= le"
        h.sum += elapsed


def route_label(api: Api, route: Route) -> str:
    """``GET,PUT /orders/items/{id}``: methods (``*`` = any) and the full path template."""
    base = "" if api.base_path == "/" else api.base_path
    return f"{','.join(route.methods) or '*'} {base}{route.path}"


class StatsTable:
    """The stats of one compiled config, reusing the previous config's objects where labels match."""

    __slots__ = ("routes", "apis", "_old_routes", "_old_apis")

    def __init__(self, previous: StatsTable | None = None) -> None:
        self.routes: dict[str, RouteStats] = {}
        self.apis: dict[str, ApiStats] = {}
        self._old_routes = previous.routes if previous is not None else {}
        self._old_apis = previous.apis if previous is not None else {}

    def route(self, api: Api, route: Route) -> RouteStats:
        latency = self.apis.get(api.id)
        if latency is None:
            old_api = self._old_apis.get(api.id)
            latency = old_api if old_api is not None and old_api.api == api.name else ApiStats(api.name)
            self.apis[api.id] = latency
        label = route_label(api, route)
        old = self._old_routes.get(route.id)
        if old is not None and old.route == label and old.latency is latency:
            stats = old
        else:
            stats = RouteStats(api.name, label, latency)
        self.routes[route.id] = stats
        return stats

    def seal(self) -> None:
        """Compilation is over: let the previous table's objects go."""
        self._old_routes = {}
        self._old_apis = {}


def unrouted_stats() -> RouteStats:
    """Requests that matched no route (404/405, malformed, no config yet): ``api="" route=""``."""
    return RouteStats("", "", ApiStats(""))
