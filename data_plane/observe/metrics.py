"""The worker's ``/metrics`` (Prometheus text format), built at scrape time.

Nothing here runs on the request path: :class:`WorkerCollector` reads the plain counters the
request path keeps (:mod:`data_plane.observe.stats`, :class:`data_plane.observe.observer.Observer`) and the state
other parts keep anyway (target health, config revision, the limiter store's outage counters) and
turns them into metric families when Prometheus asks.  Each worker gets its own registry.

Series (``tollgate_`` prefix):

* ``requests_total{api,route,status_class}``: requests answered; ``api="" route=""`` for requests
  that matched no route (404/405, malformed, no config).  Only classes seen so far are exported.
* ``request_duration_seconds{api}``: histogram, from the head parsed to the response's last byte
  handed to the socket.
* ``upstream_target_healthy{upstream,target}`` (1/0: active checks and passive ejection),
  ``upstream_target_in_flight{upstream,target}``.
* ``rate_limited_total{reason}``: throttle | quota | unavailable.
* ``config_revision``, ``config_applied_timestamp_seconds``, ``client_connections``.
* With a Redis limit store: ``limiter_available``, ``limiter_outages_total``,
  ``limiter_fallback_checks_total``, ``limiter_unavailable_checks_total``.
* ``plugin_errors_total{plugin}``: exceptions in the hooks of Python plugins (each answered 500;
  data_plane/policies/plugin_registry.py).
* Usage metering: ``usage_pending_batches`` (spooled, not yet acknowledged by the control plane),
  ``usage_unbatched_requests`` (counted in memory, not yet cut into a batch),
  ``usage_delivered_batches_total``, ``usage_failed_sends_total``, ``usage_rejected_batches_total``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from data_plane.observe.stats import LATENCY_BUCKETS, ApiStats, RouteStats

if TYPE_CHECKING:
    from data_plane.metering.meter import Metering
    from data_plane.policies.plugin_registry import PluginRegistry
    from data_plane.server import Worker

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_BOUNDS = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]


class WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; collect() runs per scrape only

    def collect(self) -> Iterator[Metric]:
        worker = self.worker
        cfg = worker.config
        observer = worker.observer
        routes: list[RouteStats] = [observer.unrouted]
        apis: list[ApiStats] = [observer.unrouted.latency]
        if cfg is not None:
            routes += cfg.stats.routes.values()
            apis += cfg.stats.apis.values()
        yield _requests(routes)
        yield _latency(apis)

        healthy = GaugeMetricFamily(
            "tollgate_upstream_target_healthy",
            "1 if the target receives traffic (active checks pass and not ejected), else 0.",
            labels=("upstream", "target"),
        )
        in_flight = GaugeMetricFamily(
            "tollgate_upstream_target_in_flight", "Requests in flight on the target.", labels=("upstream", "target")
        )
        if cfg is not None:
            for upstream in cfg.upstreams.values():
                for target in upstream.targets:
                    state = target.state
                    ejected = state.ejected and state.clock() < state.ejected_until
                    labels = (upstream.name, target.label)
                    healthy.add_metric(labels, 1 if state.healthy and not ejected else 0)
                    in_flight.add_metric(labels, state.in_flight)
        yield healthy
        yield in_flight

        limited = CounterMetricFamily(
            "tollgate_rate_limited", "Requests refused by the usage-plan limiter, by reason.", labels=("reason",)
        )
        for reason, count in observer.limits.items():
            limited.add_metric((reason,), count)
        yield limited

        yield GaugeMetricFamily(
            "tollgate_config_revision",
            "Config revision this worker serves (-1: none yet).",
            value=cfg.revision if cfg is not None else -1,
        )
        yield GaugeMetricFamily(
            "tollgate_config_applied_timestamp_seconds",
            "When the current config was applied (Unix time; 0: never).",
            value=worker.applied_at or 0,
        )
        connections = len(worker.connections)
        yield GaugeMetricFamily("tollgate_client_connections", "Open client connections.", value=connections)
        yield from _limiter(getattr(worker, "limiter", None))
        yield _plugin_errors(worker.policy_env.plugins)
        yield from _usage(worker.metering)


def _requests(routes: list[RouteStats]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "tollgate_requests",
        "Requests answered, by API, route and status class.",
        labels=("api", "route", "status_class"),
    )
    for stats in routes:
        for cls, count in enumerate(stats.counts):
            if count:
                family.add_metric((stats.api, stats.route, f"{cls}xx"), count)
    return family


def _latency(apis: list[ApiStats]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "tollgate_request_duration_seconds", "Time from request head to response end, by API.", labels=("api",)
    )
    for stats in apis:
        total = 0
        buckets = []
        for bound, count in zip(_BOUNDS, stats.buckets, strict=True):
            total += count
            buckets.append((bound, total))
        if total:
            family.add_metric((stats.api,), buckets, stats.sum)
    return family


def _plugin_errors(registry: PluginRegistry | None) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "tollgate_plugin_errors",
        "Exceptions raised by the hooks of Python plugins (each answered 500), by plugin.",
        labels=("plugin",),
    )
    if registry is not None:
        for name, count in registry.errors.items():
            family.add_metric((name,), count)
    return family


@runtime_checkable
class OutageCounters(Protocol):
    """What ``limits_redis.RedisStore`` counts about its own reachability (read, never reset)."""

    available: bool
    outages: int
    fallback_checks: int
    unavailable_checks: int


def _limiter(store: object) -> Iterator[Metric]:
    """The shared store's outage counters, when the worker has such a store (the memory store has none)."""
    if not isinstance(store, OutageCounters):
        return
    yield GaugeMetricFamily(
        "tollgate_limiter_available", "1 while the shared limit store (Redis) answers.", value=int(store.available)
    )
    yield CounterMetricFamily(
        "tollgate_limiter_outages",
        "Times the shared limit store became unreachable.",
        value=store.outages,
    )
    yield CounterMetricFamily(
        "tollgate_limiter_fallback_checks",
        "Limit checks decided by the per-worker fallback while the store was unreachable.",
        value=store.fallback_checks,
    )
    yield CounterMetricFamily(
        "tollgate_limiter_unavailable_checks",
        "Limit checks refused (503) because the store was unreachable and the fail mode is closed.",
        value=store.unavailable_checks,
    )


def _usage(metering: Metering | None) -> Iterator[Metric]:
    """The usage meter's delivery state: a growing spool means the control plane is not taking usage."""
    if metering is None:
        return
    yield GaugeMetricFamily(
        "tollgate_usage_pending_batches",
        "Usage batches spooled on disk and not yet acknowledged by the control plane.",
        value=len(metering.spool.pending()),
    )
    yield GaugeMetricFamily(
        "tollgate_usage_unbatched_requests",
        "Metered requests counted in memory and not yet cut into a spooled batch.",
        value=sum(metering.counts.values()),
    )
    yield CounterMetricFamily(
        "tollgate_usage_delivered_batches",
        "Usage batches the control plane acknowledged.",
        value=metering.delivered_batches,
    )
    yield CounterMetricFamily(
        "tollgate_usage_failed_sends",
        "Attempts to send a usage batch that failed (the batch stays spooled and is retried).",
        value=metering.failed_sends,
    )
    yield CounterMetricFamily(
        "tollgate_usage_rejected_batches",
        "Usage batches refused as malformed or unreadable, moved to the spool's rejected/ (not counted).",
        value=metering.rejected_batches,
    )


def make_registry(worker: Worker) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
