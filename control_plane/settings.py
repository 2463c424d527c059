"""Control-plane settings: one frozen object, read from ``TOLLGATE_*`` at the edge and passed down.

Nothing here connects to anything; :func:`ensure_cluster_token` and :func:`ensure_secret_key` are the
only functions that touch the filesystem, and only when called.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "./.tollgate"
DEFAULT_ADMIN_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 8001
DEFAULT_POLL_INTERVAL = 0.25
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
CLUSTER_TOKEN_FILE = "cluster-token"
SECRET_KEY_FILE = "secret-key"
ADMIN_TOKEN_FILE = "admin-token"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A ``TOLLGATE_*`` variable has an unusable value; the message names it."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The webhook sender (control_plane/webhook_sender.py), ``TOLLGATE_WEBHOOK_*``.  Times in seconds."""

    deliver: bool = True  # false: this replica writes events but sends none (another replica sends them)
    poll_interval: float = 1.0  # how often due deliveries are looked for (a local write also wakes the sender)
    timeout: float = 5.0  # one attempt, connect to last byte; a timeout is a failed attempt
    max_age: float = 86400.0  # retried for this long after the event, then failed
    backoff_base: float = 10.0  # wait after the first failure; doubled after each one...
    backoff_cap: float = 3600.0  # ...up to this (then jittered: between half and all of it)
    concurrency: int = 16  # attempts in flight per replica
    key_expiring_days: float = 7.0  # tollgate.key.expiring: keys that expire within this many days
    scan_interval: float = 300.0  # expiring keys are looked for, and old events purged, this often
    retention: float = 40 * 86400.0  # events (and their deliveries) are kept this long: > a MONTH period
    source: str = "tollgate"  # the CloudEvent ``source`` attribute

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WebhookSettings:
        d = cls()
        out = cls(
            deliver=_bool(environ, "TOLLGATE_WEBHOOK_DELIVER", d.deliver),
            poll_interval=_positive_float(environ, "TOLLGATE_WEBHOOK_POLL_INTERVAL", d.poll_interval),
            timeout=_positive_float(environ, "TOLLGATE_WEBHOOK_TIMEOUT", d.timeout),
            max_age=_positive_float(environ, "TOLLGATE_WEBHOOK_MAX_AGE", d.max_age),
            backoff_base=_positive_float(environ, "TOLLGATE_WEBHOOK_BACKOFF_BASE", d.backoff_base),
            backoff_cap=_positive_float(environ, "TOLLGATE_WEBHOOK_BACKOFF_CAP", d.backoff_cap),
            concurrency=_int(environ, "TOLLGATE_WEBHOOK_CONCURRENCY", d.concurrency, 1, 256),
            key_expiring_days=_positive_float(environ, "TOLLGATE_WEBHOOK_KEY_EXPIRING_DAYS", d.key_expiring_days),
            scan_interval=_positive_float(environ, "TOLLGATE_WEBHOOK_SCAN_INTERVAL", d.scan_interval),
            retention=_positive_float(environ, "TOLLGATE_WEBHOOK_RETENTION", d.retention),
            source=(environ.get("TOLLGATE_WEBHOOK_SOURCE") or "").strip() or d.source,
        )
        if out.retention < out.max_age:
            raise SettingsError("TOLLGATE_WEBHOOK_RETENTION must be at least TOLLGATE_WEBHOOK_MAX_AGE")
        return out


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    admin_host: str = DEFAULT_ADMIN_HOST
    admin_port: int = DEFAULT_ADMIN_PORT
    cluster_token: str | None = None
    # encrypts secrets at rest (certificates' private keys); None: generated into <data_dir>/secret-key
    secret_key: str | None = None
    admin_token: str | None = None  # bootstrap: ensured to exist as an admin token at start-up
    revision_poll_interval: float = DEFAULT_POLL_INTERVAL
    migrate_on_start: bool = True
    node_purge_after: float = 3600.0  # seconds without a heartbeat before a node record is deleted
    # Where customers reach the workers: the server URL of exported OpenAPI documents and generated SDKs.
    public_url: str = DEFAULT_PUBLIC_URL
    # jwt APIs with a jwt_jwks_url: how often the control plane fetches each key set, how long one fetch may take
    jwks_refresh_interval: float = 300.0
    jwks_fetch_timeout: float = 5.0
    # HTTPS for the admin API and the worker channel: PEM certificate chain and private key files
    # (both or neither; control_plane/server.py)
    admin_tls_cert: Path | None = None
    admin_tls_key: Path | None = None
    webhooks: WebhookSettings = WebhookSettings()
    # Redis the workers count limits and usage in: the control plane collects the usage from there
    # (control_plane/usage_collector.py).  The same variables as the worker's (docs/redis.md).
    redis_url: str | None = None
    redis_prefix: str = "tg:"
    redis_tls_files: dict[str, str | None] | None = None
    usage_collect_interval: float = 1.0
    # the web console and portal (control_plane/web): how long a sign-in lasts, sign-in attempts per
    # client address per minute
    web_session_ttl: float = 8 * 3600.0
    web_signin_per_minute: int = 10

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        data_dir = Path(environ.get("TOLLGATE_DATA_DIR") or DEFAULT_DATA_DIR)
        url = environ.get("TOLLGATE_DATABASE_URL") or default_database_url(data_dir)
        return cls(
            database_url=normalize_database_url(url),
            data_dir=data_dir,
            admin_host=environ.get("TOLLGATE_ADMIN_HOST") or DEFAULT_ADMIN_HOST,
            admin_port=_int(environ, "TOLLGATE_ADMIN_PORT", DEFAULT_ADMIN_PORT, 1, 65535),
            cluster_token=environ.get("TOLLGATE_CLUSTER_TOKEN") or None,
            secret_key=environ.get("TOLLGATE_SECRET_KEY") or None,
            admin_token=environ.get("TOLLGATE_ADMIN_TOKEN") or None,
            revision_poll_interval=_positive_float(environ, "TOLLGATE_REVISION_POLL_INTERVAL", DEFAULT_POLL_INTERVAL),
            migrate_on_start=_bool(environ, "TOLLGATE_MIGRATE_ON_START", True),
            node_purge_after=_positive_float(environ, "TOLLGATE_NODE_PURGE_AFTER", 3600.0),
            public_url=_url(environ, "TOLLGATE_PUBLIC_URL", DEFAULT_PUBLIC_URL),
            jwks_refresh_interval=_positive_float(environ, "TOLLGATE_JWKS_REFRESH_INTERVAL", 300.0),
            jwks_fetch_timeout=_positive_float(environ, "TOLLGATE_JWKS_FETCH_TIMEOUT", 5.0),
            webhooks=WebhookSettings.from_env(environ),
            redis_url=environ.get("TOLLGATE_REDIS_URL") or None,
            redis_prefix=environ.get("TOLLGATE_REDIS_PREFIX", "tg:"),
            redis_tls_files={
                "ca_file": environ.get("TOLLGATE_REDIS_CA") or None,
                "cert_file": environ.get("TOLLGATE_REDIS_CERT") or None,
                "key_file": environ.get("TOLLGATE_REDIS_KEY") or None,
            },
            usage_collect_interval=_positive_float(environ, "TOLLGATE_USAGE_COLLECT_INTERVAL", 1.0),
            web_session_ttl=_positive_float(environ, "TOLLGATE_WEB_SESSION_TTL", 8 * 3600.0),
            web_signin_per_minute=_int(environ, "TOLLGATE_WEB_SIGNIN_PER_MINUTE", 10, 1, 10000),
            **_admin_tls(environ),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _admin_tls(environ: Mapping[str, str]) -> dict[str, Path | None]:
    cert, key = environ.get("TOLLGATE_ADMIN_TLS_CERT") or None, environ.get("TOLLGATE_ADMIN_TLS_KEY") or None
    if (cert is None) != (key is None):
        raise SettingsError("TOLLGATE_ADMIN_TLS_CERT and TOLLGATE_ADMIN_TLS_KEY must be set together")
    return {"admin_tls_cert": Path(cert) if cert else None, "admin_tls_key": Path(key) if key else None}


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'tollgate.db'}"


def normalize_database_url(url: str) -> str:
    """Route plain ``postgresql://`` (and ``postgres://``) URLs to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def ensure_cluster_token(settings: Settings) -> str:
    """The cluster token: the configured one, else the one kept in ``<data_dir>/cluster-token``.

    The file is created once (mode 0600, ``O_EXCL`` so two processes starting together agree on one
    token) and reused on later starts, so workers configured with it keep working across restarts.
    """
    if settings.cluster_token:
        return settings.cluster_token
    return ensure_secret_file(settings.data_dir / CLUSTER_TOKEN_FILE, "cluster token")[0]


def ensure_secret_key(settings: Settings) -> str:
    """The secret the data key for encryption at rest is derived from: ``TOLLGATE_SECRET_KEY``, else the
    one kept in ``<data_dir>/secret-key`` (generated once, mode 0600, like the cluster token).

    Replicas sharing one database must share it (set ``TOLLGATE_SECRET_KEY``): a replica with another
    one cannot open the private keys the others stored.
    """
    if settings.secret_key:
        return settings.secret_key
    return ensure_secret_file(settings.data_dir / SECRET_KEY_FILE, "secret key for encryption at rest")[0]


def ensure_secret_file(path: Path, what: str, prefix: str = "") -> tuple[str, bool]:
    """The secret kept in ``path``, generated (mode 0600, ``O_EXCL``) when missing; and whether it was new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise SettingsError(f"{path} is empty; delete it to generate a new {what}") from None
        return token, False
    token = prefix + secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.info("generated a new %s in %s", what, path)
    return token, True


def _int(environ: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be > 0, got {value}")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    if not raw.startswith(("http://", "https://")) or "?" in raw or "#" in raw:
        raise SettingsError(f"{name} must be an http(s) URL without query or fragment, got {raw!r}")
    return raw.rstrip("/")
