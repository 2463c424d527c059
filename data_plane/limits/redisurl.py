"""Where the limit store's Redis is and how to talk to it: ``TOLLGATE_REDIS_URL`` parsed once, at start.

::

    redis://[[user]:password@]host[:port][/db][?options]                  one server (port 6379)
    rediss://...                                                          the same over TLS
    redis+sentinel://[[user]:password@]h1[:p1],h2[:p2]/master[/db][?...]  Sentinel (port 26379)
    redis+cluster://[[user]:password@]h1[:p1],h2[:p2][?...]               Redis Cluster seed nodes
    rediss+sentinel://... and rediss+cluster://...                        those over TLS

The user and password authenticate to the data nodes (``AUTH user password``, or ``AUTH password``
without a user: the ``default`` user / ``requirepass``).  Options follow redis-py's URL names where it
has one: ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (``required``, the
default, or ``none``), ``ssl_check_hostname`` (default true), ``socket_timeout`` (seconds, default
0.5); ours: ``sentinel_username`` / ``sentinel_password`` (the sentinels' own AUTH, none by default),
``wait_replicas`` / ``wait_timeout`` (ms: after each batch, ``WAIT`` for that many replicas, so a
failover cannot lose counts a decision was based on).  An unknown option is an error, never ignored.

Secrets never reach a log line or ``/status``: :func:`mask_url` hides them in a URL and
:meth:`RedisTarget.redact` in any text (an error message that might quote them).  Errors raised here
quote the masked URL.  Nothing here is on the request path.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

SINGLE = "single"
SENTINEL = "sentinel"
CLUSTER = "cluster"

_SCHEMES: dict[str, tuple[str, bool]] = {
    "redis": (SINGLE, False),
    "rediss": (SINGLE, True),
    "redis+sentinel": (SENTINEL, False),
    "rediss+sentinel": (SENTINEL, True),
    "redis+cluster": (CLUSTER, False),
    "rediss+cluster": (CLUSTER, True),
}
_DEFAULT_PORT = {SINGLE: 6379, SENTINEL: 26379, CLUSTER: 6379}
_OPTIONS = frozenset(
    {
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "socket_timeout",
        "sentinel_username",
        "sentinel_password",
        "wait_replicas",
        "wait_timeout",
    }
)
MASK = "***"
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^@/?#]*)@")
_SECRET_QUERY = re.compile(r"([?&][^=&#]*password[^=&#]*=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its password(s) replaced by ``***`` (also for a URL this module would refuse)."""

    def userinfo(m: re.Match[str]) -> str:
        user, sep, _ = m.group(2).partition(":")
        # no colon: the whole userinfo may be a password written as ``redis://secret@host``
        return f"{m.group(1)}{user}:{MASK}@" if sep else f"{m.group(1)}{MASK}@"

    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(userinfo, url, count=1))


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """TLS settings from the URL, else from the worker's settings (``TOLLGATE_REDIS_CA`` / ``_CERT`` / ``_KEY``)."""

    ca_file: str | None = None  # None: the system's trust store
    cert_file: str | None = None  # client certificate (``--tls-auth-clients yes`` servers)
    key_file: str | None = None
    verify: bool = True  # ssl_cert_reqs=none: no verification at all (a test bed, never production)
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif not self.check_hostname:
            ctx.check_hostname = False
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def redis_py(self) -> dict[str, Any]:
        """The same settings as redis-py connection arguments (discovery clients)."""
        return {
            "ssl": True,
            "ssl_ca_certs": self.ca_file,
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
            "ssl_cert_reqs": "required" if self.verify else "none",
            "ssl_check_hostname": self.verify and self.check_hostname,
        }


@dataclass(frozen=True, slots=True)
class RedisTarget:
    mode: str  # SINGLE | SENTINEL | CLUSTER
    nodes: tuple[tuple[str, int], ...]  # the server, the sentinels, or the cluster's seed nodes
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsFiles | None = None
    master_name: str = ""  # Sentinel: the monitored master's name
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    timeout: float = 0.5
    wait_replicas: int = 0
    wait_timeout_ms: int = 100
    masked: str = ""  # the URL as it may be shown

    def redis_py(self) -> dict[str, Any]:
        """redis-py connection arguments for the data nodes (auth, TLS, timeouts; no retries)."""
        kwargs: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
        }
        if self.tls is not None:
            kwargs.update(self.tls.redis_py())
        return kwargs

    def sentinel_redis_py(self) -> dict[str, Any]:
        kwargs = self.redis_py()
        kwargs["username"] = self.sentinel_username
        kwargs["password"] = self.sentinel_password
        return kwargs

    def redact(self, text: str) -> str:
        """``text`` with every secret of this target replaced by ``***``."""
        for secret in (self.password, self.sentinel_password):
            if secret:
                text = text.replace(secret, MASK)
        return text


def _hosts(netloc: str, default_port: int, masked: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in netloc.split(","):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: a host is missing")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: bad port {port_text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: bad port {port}")
        out.append((host, port))
    return tuple(out)


def _flag(name: str, value: str, masked: str) -> bool:
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"TOLLGATE_REDIS_URL {masked}: {name} must be true or false, not {value!r}")


def _number(name: str, value: str, masked: str, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: {name} must be a number, not {value!r}") from None
    if number < 0:
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: {name} must be >= 0")
    return number


def parse_redis_url(url: str, settings_tls: Mapping[str, str | None] | None = None) -> RedisTarget:
    """``TOLLGATE_REDIS_URL`` -> :class:`RedisTarget`; ``ValueError`` (quoting the masked URL) if it is not one.

    ``settings_tls`` holds ``ca_file`` / ``cert_file`` / ``key_file`` from the worker's settings: used
    where the URL's own ``ssl_*`` options are absent.
    """
    masked = mask_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(
            f"TOLLGATE_REDIS_URL {masked}: the scheme must be one of {', '.join(s + '://' for s in _SCHEMES)}"
        )
    mode, tls_on = _SCHEMES[scheme.lower()]
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hostpart = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
        if not colon and username is not None:  # redis-py would read a user and send no AUTH at all
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: a user needs a password (user:password@ or :password@)")
    nodes = _hosts(hostpart, _DEFAULT_PORT[mode], masked)
    segments = [unquote(s) for s in path.split("/") if s]
    master_name = ""
    if mode == SENTINEL:
        if not segments:
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: name the master: redis+sentinel://host:port/mastername")
        master_name = segments.pop(0)
    elif len(nodes) > 1 and mode == SINGLE:
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: several hosts need redis+sentinel:// or redis+cluster://")
    if len(segments) > 1:
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: unexpected path {path!r}")
    db = 0
    if segments:
        try:
            db = int(segments[0])
        except ValueError:
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: the database must be a number, not {path!r}") from None
    if db and mode == CLUSTER:
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: Redis Cluster has database 0 only")

    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise ValueError(
                f"TOLLGATE_REDIS_URL {masked}: unknown option {key!r} (known: {', '.join(sorted(_OPTIONS))})"
            )
        options[key] = value
    ssl_keys = {k for k in options if k.startswith("ssl_")}
    if ssl_keys and not tls_on:
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: {', '.join(sorted(ssl_keys))} need a rediss:// scheme")
    tls: TlsFiles | None = None
    if tls_on:
        fallback = settings_tls or {}
        reqs = options.get("ssl_cert_reqs", "required").lower()
        if reqs not in ("required", "none"):
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: ssl_cert_reqs must be required or none, not {reqs!r}")
        tls = TlsFiles(
            ca_file=options.get("ssl_ca_certs") or fallback.get("ca_file") or None,
            cert_file=options.get("ssl_certfile") or fallback.get("cert_file") or None,
            key_file=options.get("ssl_keyfile") or fallback.get("key_file") or None,
            verify=reqs == "required",
            check_hostname=_flag("ssl_check_hostname", options.get("ssl_check_hostname", "true"), masked),
        )
        if tls.key_file and not tls.cert_file:
            raise ValueError(f"TOLLGATE_REDIS_URL {masked}: ssl_keyfile needs ssl_certfile")
    timeout = _number("socket_timeout", options.get("socket_timeout", "0.5"), masked, float)
    if timeout <= 0:
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: socket_timeout must be > 0")
    if mode != SENTINEL and ("sentinel_username" in options or "sentinel_password" in options):
        raise ValueError(f"TOLLGATE_REDIS_URL {masked}: sentinel_username/sentinel_password need redis+sentinel://")
    return RedisTarget(
        mode=mode,
        nodes=nodes,
        db=db,
        username=username,
        password=password,
        tls=tls,
        master_name=master_name,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        timeout=timeout,
        wait_replicas=_number("wait_replicas", options.get("wait_replicas", "0"), masked, int),
        wait_timeout_ms=_number("wait_timeout", options.get("wait_timeout", "100"), masked, int),
        masked=masked,
    )
