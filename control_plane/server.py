"""``serve(settings)``: run the control plane under uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator
from types import FrameType

import uvicorn

from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.snapshots.publish import SnapshotPublisher

log = logging.getLogger(__name__)

# Long-polls are answered at once on shutdown; this only bounds a stuck admin request.
GRACEFUL_SHUTDOWN_SECONDS = 5


class _Server(uvicorn.Server):
    """uvicorn waits for open requests before the lifespan shutdown runs, so held long-polls
    (up to 60 s) would stall a Ctrl-C: release them as soon as the signal arrives."""

    def __init__(self, config: uvicorn.Config, publisher: SnapshotPublisher) -> None:
        super().__init__(config)
        self._publisher = publisher

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._publisher.release_waiters()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the captured SIGINT/SIGTERM after its graceful shutdown (killing the
        # process or raising KeyboardInterrupt in the caller); serve() promises to *return* instead.
        with super().capture_signals():
            try:
                yield
            finally:
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()


def serve(settings: Settings) -> None:
    """Blocking: serve the admin API and the cluster channel on ``settings.admin_host:admin_port``.

    Returns after SIGINT/SIGTERM once shut down (signal handlers are only installed when called
    from the main thread; elsewhere, stop it by ending the process).
    """
    tls = settings.admin_tls_cert is not None
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.admin_host,
        port=settings.admin_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
        # HTTPS (TOLLGATE_ADMIN_TLS_CERT / _KEY): uvicorn builds the server context from the files
        ssl_certfile=str(settings.admin_tls_cert) if tls else None,
        ssl_keyfile=str(settings.admin_tls_key) if tls else None,
    )
    if tls:
        # uvicorn has no option for the protocol floor: load the config now (uvicorn skips loading a
        # loaded one) and raise it on the context it made.  TLS 1.0/1.1 are deprecated (RFC 8996).
        config.load()
        assert config.ssl is not None
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    scheme = "https" if tls else "http"
    log.info("control plane listening on %s://%s:%d", scheme, settings.admin_host, settings.admin_port)
    _Server(config, app.state.publisher).run()
