"""Worker settings: one object, read from ``TOLLGATE_*`` at the edge (CLI) and passed down."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from data_plane.http.realip import parse_trusted


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    status_host: str = "127.0.0.1"
    status_port: int = 8100
    control_plane_url: str | None = None
    # PEM file of the CA(s) an https control plane's certificate must chain to; None: the system store
    control_plane_ca: Path | None = None
    cluster_token: str | None = None
    snapshot_file: Path | None = None  # standalone mode: serve this file, no control plane
    cache_dir: Path = Path(".tollgate/worker")
    node_id: str = ""
    hostname: str = ""
    long_poll_wait: float = 30.0
    heartbeat_interval: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    reuse_port: bool = True
    # usage plans (data_plane/limits/stores.py): Redis shares counters across workers; None = in-process
    redis_url: str | None = None
    redis_prefix: str = "tg:"  # key prefix: several gateways (or tests) can share one Redis
    limit_fail_mode: str = "open"  # Redis unreachable: "open" (per-worker counters) or "closed" (503)
    # without Redis, the counters file shared by the processes of one worker (data_plane/limits/shared.py),
    # made by `tollgate worker --processes N`; None: this process's own memory
    shared_limits: Path | None = None
    # rediss:// (docs/redis.md): the CA the servers' certificates must chain to (None: the system store),
    # and a client certificate + key; a URL's own ssl_ca_certs / ssl_certfile / ssl_keyfile win
    redis_ca_file: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = None
    usage_flush_interval: float = 1.0  # a crash (SIGKILL) loses at most this much of the counts
    header_timeout: float = 10.0  # a request head must arrive within this (slowloris)
    keepalive_timeout: float = 60.0  # idle client keep-alive connections are closed after this
    body_timeout: float = 60.0  # no request body byte for this long: 408 and close (nginx client_body_timeout)
    shutdown_timeout: float = 30.0  # SIGTERM: in-flight requests get this long to finish
    # SIGTERM: an idle connection stays open this long (a request already on its way is answered)
    shutdown_idle_grace: float = 1.0
    access_log: str = "-"  # JSON access log: "-" stdout, "off", or a file path (data_plane/observe/accesslog.py)
    # proxies whose X-Forwarded-For names the client (data_plane/http/realip.py): CIDRs/addresses, comma-separated
    trusted_proxies: str = ""
    # TLS (data_plane/tls/server.py): the HTTPS listener (0: none); the worker's own certificate, served
    # to clients whose SNI matches no certificate of the snapshot; the port https_only APIs redirect
    # plain-HTTP requests to (0: the TLS port, or 443 without one)
    tls_host: str = ""  # "": the traffic host
    tls_port: int = 0
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    https_redirect_port: int = 0
    # response caching (data_plane/policies/cache.py): the worker's store, in bytes (0: no store, the
    # cache policy is ignored)
    cache_bytes: int = 64 * 1024 * 1024
    # where the tracing policy's spans go (OTLP/HTTP traces URL; data_plane/observe/otlp.py); None: nowhere
    otlp_endpoint: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> WorkerSettings:
        env = os.environ if environ is None else environ
        settings = cls(
            host=env.get("TOLLGATE_WORKER_HOST", "127.0.0.1"),
            port=int(env.get("TOLLGATE_WORKER_PORT", "8000")),
            status_host=env.get("TOLLGATE_STATUS_HOST", "127.0.0.1"),
            status_port=int(env.get("TOLLGATE_STATUS_PORT", "8100")),
            control_plane_url=env.get("TOLLGATE_CONTROL_PLANE_URL") or None,
            control_plane_ca=Path(env["TOLLGATE_CONTROL_PLANE_CA"]) if env.get("TOLLGATE_CONTROL_PLANE_CA") else None,
            cluster_token=env.get("TOLLGATE_CLUSTER_TOKEN") or None,
            snapshot_file=Path(env["TOLLGATE_SNAPSHOT_FILE"]) if env.get("TOLLGATE_SNAPSHOT_FILE") else None,
            cache_dir=Path(env.get("TOLLGATE_WORKER_CACHE_DIR", ".tollgate/worker")),
            node_id=env.get("TOLLGATE_NODE_ID", ""),
            redis_url=env.get("TOLLGATE_REDIS_URL") or None,
            redis_prefix=env.get("TOLLGATE_REDIS_PREFIX", "tg:"),
            limit_fail_mode=env.get("TOLLGATE_LIMIT_FAIL_MODE", "open"),
            shared_limits=Path(env["TOLLGATE_SHARED_LIMITS"]) if env.get("TOLLGATE_SHARED_LIMITS") else None,
            redis_ca_file=env.get("TOLLGATE_REDIS_CA") or None,
            redis_cert_file=env.get("TOLLGATE_REDIS_CERT") or None,
            redis_key_file=env.get("TOLLGATE_REDIS_KEY") or None,
            usage_flush_interval=float(env.get("TOLLGATE_USAGE_FLUSH_INTERVAL", "1")),
            header_timeout=float(env.get("TOLLGATE_HEADER_TIMEOUT", "10")),
            keepalive_timeout=float(env.get("TOLLGATE_KEEPALIVE_TIMEOUT", "60")),
            body_timeout=float(env.get("TOLLGATE_BODY_TIMEOUT", "60")),
            shutdown_timeout=float(env.get("TOLLGATE_SHUTDOWN_TIMEOUT", "30")),
            shutdown_idle_grace=float(env.get("TOLLGATE_SHUTDOWN_IDLE_GRACE", "1")),
            heartbeat_interval=float(env.get("TOLLGATE_HEARTBEAT_INTERVAL", "5")),
            access_log=env.get("TOLLGATE_ACCESS_LOG") or "-",
            trusted_proxies=env.get("TOLLGATE_TRUSTED_PROXIES", ""),
            tls_port=int(env.get("TOLLGATE_TLS_PORT", "0")),
            tls_cert_file=env.get("TOLLGATE_TLS_CERT") or None,
            tls_key_file=env.get("TOLLGATE_TLS_KEY") or None,
            https_redirect_port=int(env.get("TOLLGATE_HTTPS_REDIRECT_PORT", "0")),
            cache_bytes=int(env.get("TOLLGATE_CACHE_BYTES", str(64 * 1024 * 1024))),
            otlp_endpoint=traces_endpoint(env),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
        if settings.limit_fail_mode not in ("open", "closed"):
            raise ValueError(
                f"limit fail_mode (TOLLGATE_LIMIT_FAIL_MODE) must be open or closed, not {settings.limit_fail_mode!r}"
            )
        parse_trusted(settings.trusted_proxies)  # ValueError naming the bad item, at start
        if settings.cache_bytes < 0:
            raise ValueError(f"the response cache size (TOLLGATE_CACHE_BYTES) must be >= 0, not {settings.cache_bytes}")
        if settings.otlp_endpoint and not settings.otlp_endpoint.startswith(("http://", "https://")):
            raise ValueError(f"the OTLP endpoint must be an http(s) URL, not {settings.otlp_endpoint!r}")
        if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
            raise ValueError(
                "the worker's TLS certificate needs both a certificate and a key file (--tls-cert, --tls-key)"
            )
        if not settings.hostname:
            settings = replace(settings, hostname=socket.gethostname())
        if not settings.node_id:
            settings = replace(settings, node_id=str(uuid.uuid4()))
        return settings

    @property
    def redis_tls_files(self) -> dict[str, str | None]:
        return {"ca_file": self.redis_ca_file, "cert_file": self.redis_cert_file, "key_file": self.redis_key_file}

    @property
    def usage_spool_dir(self) -> Path:
        # One spool per process (traffic port + status port): a spool has exactly one owner.
        return self.cache_dir / f"usage-{self.port}-{self.status_port}"

    @property
    def cache_file(self) -> Path:
        # One cache per traffic port: several worker processes on one port share the same config.
        return self.cache_dir / f"snapshot-{self.port}.json"


def traces_endpoint(env: Mapping[str, str]) -> str | None:
    """Where the tracing policy's spans go: ``TOLLGATE_OTLP_ENDPOINT`` (``--otlp-endpoint``), else
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL), else ``OTEL_EXPORTER_OTLP_ENDPOINT`` +
    ``/v1/traces`` (the OTLP convention for a base URL); None: no exporter."""
    for name in ("TOLLGATE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        value = env.get(name, "").strip()
        if value:
            return value
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None
