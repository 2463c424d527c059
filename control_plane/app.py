"""``create_app(settings)``: the control-plane ASGI application.

Start-up (lifespan): migrate the schema (unless ``settings.migrate_on_start`` is false), then start
the snapshot publisher, the JWKS refresher and the webhook sender; shutdown stops them in reverse
order and disposes of the engine.  Creating the app
connects to nothing; the cluster token and the secret key for encryption at rest are resolved here
(read or generated, see :func:`~control_plane.settings.ensure_cluster_token` and ``ensure_secret_key``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from control_plane import migrate
from control_plane.api import (
    admin,
    apis,
    certificates,
    cluster,
    config,
    customers,
    declarative,
    health,
    openapi,
    plans,
    plugins,
    portal_invites,
    upstreams,
    usage,
    webhooks,
)
from control_plane.api.errors import ERROR_RESPONSES, install_error_handlers
from control_plane.api.security import AUTH_RESPONSES, require_admin
from control_plane.db import make_engine, make_session_factory
from control_plane.idempotency import install as install_idempotency
from control_plane.jwks_refresh import JwksRefresher
from control_plane.metrics import install_metrics, remember_route
from control_plane.secretbox import SecretBox
from control_plane.services import admin as admin_svc
from control_plane.settings import Settings, ensure_cluster_token, ensure_secret_key
from control_plane.snapshots.publish import SnapshotPublisher
from control_plane.usage_collector import UsageCollector
from control_plane.web import install as install_web
from control_plane.webhook_sender import WebhookSender

API_VERSION = "0.1.0"
log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    cluster_token = ensure_cluster_token(settings)
    secret_box = SecretBox(ensure_secret_key(settings))
    publisher = SnapshotPublisher(
        sessions, poll_interval=settings.revision_poll_interval, box=secret_box, cluster_token=cluster_token
    )
    jwks = JwksRefresher(
        sessions,
        interval=settings.jwks_refresh_interval,
        timeout=settings.jwks_fetch_timeout,
        on_change=publisher.notify,
    )
    publisher.on_revision.append(jwks.poke)  # an API that got or changed its jwks url is fetched at once
    sender = WebhookSender(sessions, settings.webhooks, secret_box)
    publisher.on_revision.append(sender.poke)  # key events are written by revision-bumping writes
    collector = (
        UsageCollector(
            sessions,
            url=settings.redis_url,
            prefix=settings.redis_prefix,
            tls_files=settings.redis_tls_files,
            interval=settings.usage_collect_interval,
        )
        if settings.redis_url
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(migrate.upgrade, settings.database_url)
        await run_in_threadpool(_bootstrap_admin, sessions, settings)
        await publisher.start()
        await jwks.start()
        await sender.start()
        if collector is not None:
            await collector.start()
        try:
            yield
        finally:
            if collector is not None:
                await collector.stop()
            await sender.stop()
            await jwks.stop()
            await publisher.stop()
            engine.dispose()

    app = FastAPI(
        title="Tollgate control plane",
        version=API_VERSION,
        lifespan=lifespan,
        docs_url=None,  # served by control_plane.web from the vendored Swagger UI (offline)
        redoc_url=None,  # FastAPI's ReDoc page loads its script and web fonts from the internet
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.jwks = jwks
    app.state.webhooks = sender
    app.state.usage_collector = collector
    app.state.cluster_token = cluster_token
    app.state.secret_box = secret_box

    # The route table is the same for every app: built once per process, its routes shared.
    app.router.routes.extend(_shared_routes())
    install_error_handlers(app)
    install_metrics(app, publisher, sessions)
    install_idempotency(app, sessions, secret_box)
    install_web(app)
    return app


@cache
def _shared_routes() -> tuple[BaseRoute, ...]:
    """The admin API (/v1), the worker channel and /healthz, built once per process.

    FastAPI analyses every endpoint's signature (dependencies, pydantic fields) when routes are
    included, ~0.4 s for this API; none of it depends on the app (the endpoints reach the app's
    state through the request), so each :func:`create_app` shares these route objects instead of
    building them again (the test suite creates an app per test).  The one thing routes built
    outside an app lose is ``app.dependency_overrides``, which Tollgate does not use.
    """
    holder = APIRouter()
    v1 = APIRouter(
        prefix="/v1",
        dependencies=[Depends(remember_route("/v1")), Depends(require_admin)],
        responses={**AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    v1.include_router(upstreams.router)
    v1.include_router(openapi.router)  # before apis: /apis/import is not an api id
    v1.include_router(apis.router)
    v1.include_router(customers.router)
    v1.include_router(portal_invites.router)
    v1.include_router(certificates.router)
    v1.include_router(plans.customer_router)
    v1.include_router(plans.router)
    v1.include_router(config.router)
    v1.include_router(admin.router)
    v1.include_router(declarative.router)
    v1.include_router(plugins.router)
    v1.include_router(usage.router)
    v1.include_router(webhooks.router)
    holder.include_router(v1)
    # The worker channel has its own token and is no part of the admin API: kept out of /openapi.json.
    holder.include_router(cluster.router, include_in_schema=False)
    holder.include_router(health.router)
    return tuple(holder.routes)


def _bootstrap_admin(sessions: sessionmaker[Session], settings: Settings) -> None:
    if settings.admin_token:
        # Replicas starting together race to insert the same token: the loser sees the winner's row
        # (unique token hash) on its second try.
        for attempt in range(2):
            with sessions() as session:
                try:
                    admin_svc.ensure_bootstrap_token(session=session, token=settings.admin_token)
                    session.commit()
                    return
                except IntegrityError:
                    session.rollback()
                    if attempt:
                        raise
    with sessions() as session:
        if not admin_svc.has_active_admin(session=session):
            log.warning("no admin token exists: set TOLLGATE_ADMIN_TOKEN to open the admin API (/v1)")
