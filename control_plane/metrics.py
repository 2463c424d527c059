"""Control-plane Prometheus metrics (``GET /metrics``): admin requests, attached workers, revision, and
the seconds left before each TLS certificate expires.

Each app gets its own registry (tests and replicas in one process never share counters).  Request
counts are labelled by the matched route *template* (``/v1/apis/{api_id}``), never the raw path,
so label cardinality stays bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from control_plane.models import Certificate
from control_plane.snapshots.publish import SnapshotPublisher


class _PublisherCollector(Collector):
    def __init__(self, publisher: SnapshotPublisher) -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "tollgate_config_revision", "Config revision this replica distributes.", value=self._publisher.revision
        )
        yield GaugeMetricFamily(
            "tollgate_connected_nodes",
            "Workers holding a snapshot long-poll on this replica right now.",
            value=self._publisher.waiting,
        )


class _CertificateCollector(Collector):
    """``tollgate_certificate_expiry_seconds{id,name}``: read from the database at each scrape, so every
    replica reports every certificate, whichever replica stored it (one small query per scrape)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "tollgate_certificate_expiry_seconds",
            "Seconds until the certificate's not_after (negative once expired).",
            labels=("id", "name"),
        )
        try:
            with self._sessions() as session:
                rows = session.execute(
                    select(Certificate.id, Certificate.name, Certificate.not_after).order_by(Certificate.name)
                ).all()
        except SQLAlchemyError:
            rows = []  # database unreachable: /healthz says so; the other metrics still answer
        now = datetime.now(UTC)
        for row in rows:
            gauge.add_metric([row.id, row.name], (row.not_after - now).total_seconds())
        yield gauge


def remember_route(prefix: str) -> Callable[[Request], None]:
    """A router-level dependency noting the matched route template (``prefix`` + the route's path,
    which FastAPI gives relative to the included router) for the metrics middleware."""

    def remember(request: Request) -> None:
        route = request.scope.get("route")
        request.state.route_template = prefix + getattr(route, "path", "/other")

    return remember


def install_metrics(app: FastAPI, publisher: SnapshotPublisher, sessions: sessionmaker[Session]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_PublisherCollector(publisher))
    registry.register(_CertificateCollector(sessions))
    admin_requests = Counter(
        "tollgate_admin_requests",
        "Admin API requests by method, route template and status.",
        ("method", "route", "status"),
        registry=registry,
    )

    @app.middleware("http")
    async def count_admin_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/v1"):
            template = getattr(request.state, "route_template", "unmatched")
            admin_requests.labels(request.method, template, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
