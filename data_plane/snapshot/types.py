"""The contract between the control plane and the data plane.

A snapshot is the whole routing configuration at one config revision: upstreams with their targets
and APIs with their routes.  The control plane builds it from the database (``control_plane``
imports this module); a worker validates it, compiles it into lookup tables and serves from it.
This module is a leaf: it imports nothing of ours and no third-party package, so a worker can run
from a snapshot file with no control plane at all.

Wire form: a JSON object (see :meth:`Snapshot.to_dict`).  ``schema_version`` is ``"MAJOR.MINOR"``:
a worker accepts any minor version of the majors it knows (unknown fields are ignored) and refuses a
newer major.  ``hash`` is the SHA-256 of the canonical JSON of the *content* only (everything but
``revision``, ``hash`` and ``generated_at``), so identical content always gives the same hash and a
worker that already runs that hash needs nothing.

Exceptions: :class:`SnapshotError` (invalid document) and its subclass
:class:`UnsupportedSchemaVersion`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from data_plane.errors import PlanError, SnapshotError, UnsupportedSchemaVersion
from data_plane.snapshot.plans import Plan, parse_plan, plan_dict

# 1.1: balancing/health fields; 1.2: auth settings, customers, keys; 1.3: usage plans, customers' plan and
# quota adjustment, apis' rate_limit_headers; 1.4: auth_settings.jwt_jwks_url and jwt_jwks (fetched public keys);
# 1.5: upstreams' keepalive_timeout
SCHEMA_VERSION = "1.5"
SUPPORTED_MAJOR = 1

ALGORITHMS = ("round_robin", "least_request", "consistent_hash", "random")
AUTH_MODES = ("none", "api_key", "jwt")
HASH_ON = ("ip", "header", "cookie", "customer")
PROBE_METHODS = ("GET", "HEAD", "OPTIONS")
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")
JWK_TYPES = ("RSA", "EC")
CUSTOMER_STATUSES = ("active", "suspended")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

# Seconds a pooled upstream connection may stay idle before the worker closes it instead of reusing it.
# Below the idle timeouts of common HTTP servers (Node.js keepAliveTimeout, uvicorn, Apache: 5 s), so
# the gateway closes first and never sends a request on a connection its server is closing at that
# moment (the request would meet a reset, and a POST must not be sent again).  Servers with shorter
# ones (gunicorn's async workers: 2 s) need a lower keepalive_timeout on their upstream.
DEFAULT_KEEPALIVE_TIMEOUT = 4.0

# A path template: literal segments, `{name}` parameters, and an optional last `{name+}` greedy one.
_PARAM_RE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")
_LITERAL_RE = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%]+$")


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    host: str
    port: int
    weight: int = 100


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active probing of every target, by every worker."""

    path: str = "/"
    method: str = "GET"
    interval: float = 5.0
    timeout: float = 2.0
    expected_statuses: tuple[int, ...] = ()  # empty: any 2xx or 3xx
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3


@dataclass(frozen=True, slots=True)
class Passive:
    """Outlier detection from real traffic: consecutive failures eject a target for a while."""

    consecutive_failures: int = 5
    statuses: tuple[int, ...] = (500, 502, 503, 504)
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 50


@dataclass(frozen=True, slots=True)
class Upstream:
    id: str
    name: str
    algorithm: str = "round_robin"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 0
    targets: tuple[Target, ...] = ()
    # 1.1 fields; each is left out of the hashed content while it has its default, so a 1.0
    # snapshot (e.g. a worker's cache file) keeps its hash.
    hash_on: str = "ip"
    hash_key: str = ""
    health_check: HealthCheck | None = None
    passive: Passive | None = None
    panic: bool = False
    total_timeout: float | None = None
    max_connections: int = 0  # per target per worker; 0 = unlimited
    # 1.5, left out of the hashed content while it has its default (older cache files keep their hash)
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    path: str  # template relative to the API base path, e.g. "/items/{id}" or "/{proxy+}"
    upstream_id: str
    methods: tuple[str, ...] = ()  # empty: any method
    connect_timeout: float | None = None  # None: the upstream's
    read_timeout: float | None = None
    total_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Jwk:
    """A public key of an identity provider's JWKS (RFC 7517), as the control plane fetched it.

    Public members only (``n``/``e`` for RSA, ``crv``/``x``/``y`` for EC, base64url): the control plane
    never stores nor ships private key material.  ``alg``, when the JWKS names one, restricts the key
    to that algorithm.
    """

    kid: str
    kty: str  # "RSA" or "EC"
    alg: str | None = None
    n: str = ""
    e: str = ""
    crv: str = ""
    x: str = ""
    y: str = ""

    def to_dict(self) -> dict[str, str]:
        """The JWK object (what ``jwt.PyJWK`` takes); empty members left out."""
        doc = {"kid": self.kid, "kty": self.kty}
        for name in ("alg", "n", "e", "crv", "x", "y"):
            value = getattr(self, name)
            if value:
                doc[name] = value
        return doc


@dataclass(frozen=True, slots=True)
class ApiAuth:
    """How an API authenticates its callers (``Api.auth`` says which mode is on)."""

    key_header: str = "x-api-key"  # api_key: header carrying the key (lower case) ...
    key_query: str | None = None  # ... or, when set, this query parameter instead
    strip_credential: bool = True  # remove the key / Authorization header before forwarding
    jwt_algorithms: tuple[str, ...] = ()
    jwt_secret: str | None = None  # HS256 shared secret (config, so it travels with the snapshot)
    jwt_public_key: str | None = None  # PEM, RS256 / ES256
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_customer_claim: str = "sub"  # the claim holding the customer id
    # 1.4: RS256 / ES256 keys from the identity provider's JWKS (fetched by the control plane; the worker
    # picks the key by the token's "kid").  With a URL set, jwt_public_key is not used; no keys: every
    # RS256 / ES256 token is refused until a fetch succeeds.
    jwt_jwks_url: str | None = None
    jwt_jwks: tuple[Jwk, ...] = ()


@dataclass(frozen=True, slots=True)
class Api:
    id: str
    name: str
    base_path: str = "/"
    hosts: tuple[str, ...] = ()  # empty: any host
    auth: str = "none"
    strip_base_path: bool = True
    max_body_bytes: int | None = None
    routes: tuple[Route, ...] = ()
    auth_settings: ApiAuth = ApiAuth()
    rate_limit_headers: bool = True  # 1.3: RateLimit-* / X-RateLimit-* on responses of plan-limited calls


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    status: str = "active"
    api_ids: tuple[str, ...] = ()  # APIs granted directly (sorted)
    # 1.3: the usage plan (its APIs are granted too) and the extra quota for one period
    # [quota_extra_start, quota_extra_end) in epoch seconds; the worker applies it while now is inside.
    plan_id: str | None = None
    quota_extra: int = 0
    quota_extra_start: int = 0
    quota_extra_end: int = 0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as the worker knows it: never the key itself, only its SHA-256."""

    id: str
    customer_id: str
    key_hash: str  # sha256(key) hex
    prefix: str  # non-secret start of the key, for logs and the X-Key-Prefix header
    expires_at: int | None = None  # epoch seconds; the worker compares it with its clock per request


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    upstreams: tuple[Upstream, ...] = ()
    apis: tuple[Api, ...] = ()
    customers: tuple[Customer, ...] = ()
    keys: tuple[ApiKey, ...] = ()
    plans: tuple[Plan, ...] = ()
    schema_version: str = SCHEMA_VERSION
    generated_at: str = ""
    hash: str = field(default="")

    # ------------------------------------------------------------------ wire form

    def content(self) -> dict[str, Any]:
        """The hashed part of the wire form: everything that changes what a worker does.

        Fields added in 1.1 (auth settings, customers, keys) are left out while they hold their
        defaults, so a 1.0 snapshot (a worker's cache file) keeps the hash it was sealed with.
        """
        doc: dict[str, Any] = {
            "schema_version": self.schema_version,
            "upstreams": [
                {
                    "id": u.id,
                    "name": u.name,
                    "algorithm": u.algorithm,
                    "connect_timeout": u.connect_timeout,
                    "read_timeout": u.read_timeout,
                    "retries": u.retries,
                    "targets": [{"id": t.id, "host": t.host, "port": t.port, "weight": t.weight} for t in u.targets],
                    **_upstream_extras(u),
                }
                for u in self.upstreams
            ],
            "apis": [
                {
                    "id": a.id,
                    "name": a.name,
                    "base_path": a.base_path,
                    "hosts": list(a.hosts),
                    "auth": a.auth,
                    "strip_base_path": a.strip_base_path,
                    "max_body_bytes": a.max_body_bytes,
                    "routes": [
                        {
                            "id": r.id,
                            "path": r.path,
                            "upstream_id": r.upstream_id,
                            "methods": list(r.methods),
                            **_non_default(
                                connect_timeout=r.connect_timeout,
                                read_timeout=r.read_timeout,
                                total_timeout=r.total_timeout,
                            ),
                        }
                        for r in a.routes
                    ],
                    **({} if a.auth_settings == _DEFAULT_AUTH else {"auth_settings": _auth_dict(a.auth_settings)}),
                    **({} if a.rate_limit_headers else {"rate_limit_headers": False}),
                }
                for a in self.apis
            ],
        }
        if self.customers:
            doc["customers"] = [
                {"id": c.id, "name": c.name, "status": c.status, "api_ids": list(c.api_ids), **_customer_extras(c)}
                for c in self.customers
            ]
        if self.keys:
            doc["keys"] = [
                {
                    "id": k.id,
                    "customer_id": k.customer_id,
                    "key_hash": k.key_hash,
                    "prefix": k.prefix,
                    "expires_at": k.expires_at,
                }
                for k in self.keys
            ]
        if self.plans:
            doc["plans"] = [plan_dict(p) for p in self.plans]
        return doc

    def compute_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def sealed(self) -> Snapshot:
        """This snapshot with its content hash filled in (what the control plane publishes)."""
        return Snapshot(
            revision=self.revision,
            upstreams=self.upstreams,
            apis=self.apis,
            customers=self.customers,
            keys=self.keys,
            plans=self.plans,
            schema_version=self.schema_version,
            generated_at=self.generated_at,
            hash=self.compute_hash(),
        )

    def to_dict(self) -> dict[str, Any]:
        doc = self.content()
        doc["revision"] = self.revision
        doc["hash"] = self.hash or self.compute_hash()
        doc["generated_at"] = self.generated_at
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Snapshot:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: arrays/objects nested deeper than the decoder's stack (``[`` x 200,000)
            raise SnapshotError(f"snapshot is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Snapshot:
        """Parse and validate a wire-form snapshot; raises :class:`SnapshotError`."""
        if not isinstance(doc, dict):
            raise SnapshotError("snapshot must be a JSON object")
        version = _get(doc, "schema_version", str, "snapshot")
        check_schema_version(version)
        revision = _get(doc, "revision", int, "snapshot")
        if revision < 0:
            raise SnapshotError("snapshot.revision must be >= 0")
        upstreams = tuple(
            _upstream(u, f"upstreams[{i}]") for i, u in enumerate(_get(doc, "upstreams", list, "snapshot"))
        )
        apis = tuple(_api(a, f"apis[{i}]") for i, a in enumerate(_get(doc, "apis", list, "snapshot")))
        customers = tuple(
            _customer(c, f"customers[{i}]") for i, c in enumerate(_get(doc, "customers", list, "snapshot", []))
        )
        keys = tuple(_key(k, f"keys[{i}]") for i, k in enumerate(_get(doc, "keys", list, "snapshot", [])))
        try:
            plans = tuple(
                parse_plan(p, f"plans[{i}]", HTTP_METHODS)
                for i, p in enumerate(_get(doc, "plans", list, "snapshot", []))
            )
        except PlanError as exc:
            raise SnapshotError(str(exc)) from None
        snap = cls(
            revision=revision,
            upstreams=upstreams,
            apis=apis,
            customers=customers,
            keys=keys,
            plans=plans,
            schema_version=version,
            generated_at=str(doc.get("generated_at", "")),
            hash=str(doc.get("hash", "")),
        )
        snap.validate()
        if snap.hash and snap.hash != snap.compute_hash():
            raise SnapshotError("snapshot.hash does not match its content (corrupt or tampered)")
        return snap.sealed() if not snap.hash else snap

    def validate(self) -> None:
        """Cross-reference checks: unique ids, routes point at known upstreams."""
        upstream_ids = set()
        for i, u in enumerate(self.upstreams):
            if u.id in upstream_ids:
                raise SnapshotError(f"upstreams[{i}].id {u.id!r} is duplicated")
            upstream_ids.add(u.id)
        for i, a in enumerate(self.apis):
            for j, r in enumerate(a.routes):
                if r.upstream_id not in upstream_ids:
                    raise SnapshotError(f"apis[{i}].routes[{j}].upstream_id {r.upstream_id!r} names no upstream")
        api_ids = {a.id for a in self.apis}
        plan_ids = set()
        for i, p in enumerate(self.plans):
            if p.id in plan_ids:
                raise SnapshotError(f"plans[{i}].id {p.id!r} is duplicated")
            plan_ids.add(p.id)
            for j, pa in enumerate(p.apis):
                if pa.api_id not in api_ids:
                    raise SnapshotError(f"plans[{i}].apis[{j}].api_id {pa.api_id!r} names no api")
        customer_ids = set()
        for i, c in enumerate(self.customers):
            if c.id in customer_ids:
                raise SnapshotError(f"customers[{i}].id {c.id!r} is duplicated")
            customer_ids.add(c.id)
            if c.plan_id is not None and c.plan_id not in plan_ids:
                raise SnapshotError(f"customers[{i}].plan_id {c.plan_id!r} names no plan")
        hashes = set()
        for i, k in enumerate(self.keys):
            if k.customer_id not in customer_ids:
                raise SnapshotError(f"keys[{i}].customer_id {k.customer_id!r} names no customer")
            if k.key_hash in hashes:
                raise SnapshotError(f"keys[{i}].key_hash is duplicated")
            hashes.add(k.key_hash)


def check_schema_version(version: str) -> None:
    m = re.fullmatch(r"(\d+)\.(\d+)", version)
    if not m:
        raise SnapshotError(f"snapshot.schema_version {version!r} is not MAJOR.MINOR")
    major = int(m.group(1))
    if major > SUPPORTED_MAJOR:
        raise UnsupportedSchemaVersion(
            f"snapshot schema version {version} is newer than this worker understands ({SUPPORTED_MAJOR}.x); "
            "upgrade the worker"
        )
    if major < 1:
        raise SnapshotError(f"snapshot schema version {version} is not supported")


def split_template(path: str) -> list[str]:
    """Validate a route path template and return its segments (no leading empty segment)."""
    if not path.startswith("/"):
        raise SnapshotError(f"path template {path!r} must start with '/'")
    if path == "/":
        return []
    segments = path[1:].split("/")
    for i, seg in enumerate(segments):
        m = _PARAM_RE.match(seg)
        if m:
            if m.group(2) and i != len(segments) - 1:
                raise SnapshotError(f"path template {path!r}: greedy parameter must be the last segment")
            continue
        if seg == "" and i == len(segments) - 1:
            continue  # trailing slash is significant and allowed
        if not _LITERAL_RE.match(seg) or "{" in seg or "}" in seg:
            raise SnapshotError(f"path template {path!r}: invalid segment {seg!r}")
    names = [m.group(1) for s in segments if (m := _PARAM_RE.match(s))]
    if len(names) != len(set(names)):
        raise SnapshotError(f"path template {path!r}: duplicate parameter name")
    return segments


def normalize_base_path(path: str) -> str:
    """'/orders/' -> '/orders'; '' or '/' -> '/'."""
    if not path.startswith("/"):
        raise SnapshotError(f"base path {path!r} must start with '/'")
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    for seg in stripped[1:].split("/"):
        if not seg or not _LITERAL_RE.match(seg) or "{" in seg:
            raise SnapshotError(f"base path {path!r}: invalid segment {seg!r}")
    return stripped


# ---------------------------------------------------------------------- wire helpers


def _non_default(**fields: Any) -> dict[str, Any]:
    """Optional fields whose value is None/False are left out (they hash as in schema 1.0)."""
    return {k: v for k, v in fields.items() if v is not None and v is not False}


def _upstream_extras(u: Upstream) -> dict[str, Any]:
    out = _non_default(
        panic=u.panic,
        total_timeout=u.total_timeout,
        health_check=_health_dict(u.health_check) if u.health_check else None,
        passive=_passive_dict(u.passive) if u.passive else None,
    )
    if u.hash_on != "ip" or u.hash_key:
        out["hash_on"] = u.hash_on
        out["hash_key"] = u.hash_key
    if u.max_connections:
        out["max_connections"] = u.max_connections
    if u.keepalive_timeout != DEFAULT_KEEPALIVE_TIMEOUT:
        out["keepalive_timeout"] = u.keepalive_timeout
    return out


def _health_dict(h: HealthCheck) -> dict[str, Any]:
    return {
        "path": h.path,
        "method": h.method,
        "interval": h.interval,
        "timeout": h.timeout,
        "expected_statuses": list(h.expected_statuses),
        "healthy_threshold": h.healthy_threshold,
        "unhealthy_threshold": h.unhealthy_threshold,
    }


def _passive_dict(p: Passive) -> dict[str, Any]:
    return {
        "consecutive_failures": p.consecutive_failures,
        "statuses": list(p.statuses),
        "base_ejection_time": p.base_ejection_time,
        "max_ejection_time": p.max_ejection_time,
        "max_ejection_percent": p.max_ejection_percent,
    }


# ---------------------------------------------------------------------- parsing helpers


def _get(obj: dict[str, Any], key: str, typ: type, where: str, default: Any = ...) -> Any:
    if key not in obj:
        if default is ...:
            raise SnapshotError(f"{where}.{key} is missing")
        return default
    value = obj[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        if value is None and default is None:
            return None
        raise SnapshotError(f"{where}.{key} must be {typ.__name__}, got {type(value).__name__}")
    return value


def _target(doc: Any, where: str) -> Target:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    port = _get(doc, "port", int, where)
    if not 0 < port < 65536:
        raise SnapshotError(f"{where}.port {port} is out of range")
    weight = _get(doc, "weight", int, where, 100)
    if weight < 0:
        raise SnapshotError(f"{where}.weight must be >= 0")
    host = _get(doc, "host", str, where)
    if not host:
        raise SnapshotError(f"{where}.host is empty")
    return Target(id=_get(doc, "id", str, where), host=host, port=port, weight=weight)


def _upstream(doc: Any, where: str) -> Upstream:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    algorithm = _get(doc, "algorithm", str, where, "round_robin")
    if algorithm not in ALGORITHMS:
        raise SnapshotError(f"{where}.algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    connect_timeout = _get(doc, "connect_timeout", float, where, 5.0)
    read_timeout = _get(doc, "read_timeout", float, where, 60.0)
    if connect_timeout <= 0 or read_timeout <= 0:
        raise SnapshotError(f"{where}: timeouts must be > 0")
    retries = _get(doc, "retries", int, where, 0)
    if retries < 0:
        raise SnapshotError(f"{where}.retries must be >= 0")
    targets = tuple(_target(t, f"{where}.targets[{i}]") for i, t in enumerate(_get(doc, "targets", list, where, [])))
    hash_on = _get(doc, "hash_on", str, where, "ip")
    if hash_on not in HASH_ON:
        raise SnapshotError(f"{where}.hash_on {hash_on!r} is not one of {', '.join(HASH_ON)}")
    hash_key = _get(doc, "hash_key", str, where, "")
    if hash_on in ("header", "cookie") and not hash_key:
        raise SnapshotError(f"{where}.hash_key is required when hash_on is {hash_on!r}")
    max_connections = _get(doc, "max_connections", int, where, 0)
    if max_connections < 0:
        raise SnapshotError(f"{where}.max_connections must be >= 0")
    keepalive_timeout = _get(doc, "keepalive_timeout", float, where, DEFAULT_KEEPALIVE_TIMEOUT)
    if not keepalive_timeout > 0:  # (also refuses NaN)
        raise SnapshotError(f"{where}.keepalive_timeout must be > 0")
    hc = _get(doc, "health_check", dict, where, None)
    passive = _get(doc, "passive", dict, where, None)
    return Upstream(
        id=_get(doc, "id", str, where),
        name=_get(doc, "name", str, where),
        algorithm=algorithm,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries=retries,
        targets=targets,
        hash_on=hash_on,
        hash_key=hash_key,
        health_check=_health_check(hc, f"{where}.health_check") if hc is not None else None,
        passive=_passive(passive, f"{where}.passive") if passive is not None else None,
        panic=_get(doc, "panic", bool, where, False),
        total_timeout=_positive(doc, "total_timeout", where),
        max_connections=max_connections,
        keepalive_timeout=keepalive_timeout,
    )


def _positive(doc: dict[str, Any], key: str, where: str) -> float | None:
    value: float | None = _get(doc, key, float, where, None)
    if value is not None and value <= 0:
        raise SnapshotError(f"{where}.{key} must be > 0")
    return value


def _statuses(doc: dict[str, Any], key: str, where: str, default: tuple[int, ...]) -> tuple[int, ...]:
    values = _get(doc, key, list, where, list(default))
    if not all(isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in values):
        raise SnapshotError(f"{where}.{key} must be HTTP status codes (100-599)")
    return tuple(values)


def _health_check(doc: dict[str, Any], where: str) -> HealthCheck:
    path = _get(doc, "path", str, where, "/")
    if not path.startswith("/") or any(c in path for c in " \r\n\x00"):
        raise SnapshotError(f"{where}.path must be an absolute path without spaces")
    method = _get(doc, "method", str, where, "GET")
    if method not in PROBE_METHODS:
        raise SnapshotError(f"{where}.method must be one of {', '.join(PROBE_METHODS)}")
    interval = _positive(doc, "interval", where) or 5.0
    timeout = _positive(doc, "timeout", where) or 2.0
    healthy = _get(doc, "healthy_threshold", int, where, 2)
    unhealthy = _get(doc, "unhealthy_threshold", int, where, 3)
    if healthy < 1 or unhealthy < 1:
        raise SnapshotError(f"{where}: thresholds must be >= 1")
    return HealthCheck(
        path=path,
        method=method,
        interval=interval,
        timeout=timeout,
        expected_statuses=_statuses(doc, "expected_statuses", where, ()),
        healthy_threshold=healthy,
        unhealthy_threshold=unhealthy,
    )


def _passive(doc: dict[str, Any], where: str) -> Passive:
    failures = _get(doc, "consecutive_failures", int, where, 5)
    if failures < 1:
        raise SnapshotError(f"{where}.consecutive_failures must be >= 1")
    percent = _get(doc, "max_ejection_percent", int, where, 50)
    if not 0 <= percent <= 100:
        raise SnapshotError(f"{where}.max_ejection_percent must be 0-100")
    base = _positive(doc, "base_ejection_time", where) or 30.0
    cap = _positive(doc, "max_ejection_time", where) or max(300.0, base)
    return Passive(
        consecutive_failures=failures,
        statuses=_statuses(doc, "statuses", where, (500, 502, 503, 504)),
        base_ejection_time=base,
        max_ejection_time=max(cap, base),
        max_ejection_percent=percent,
    )


def _route(doc: Any, where: str) -> Route:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    path = _get(doc, "path", str, where)
    try:
        split_template(path)
    except SnapshotError as exc:
        raise SnapshotError(f"{where}.path: {exc}") from None
    methods = _get(doc, "methods", list, where, [])
    for m in methods:
        if m not in HTTP_METHODS:
            raise SnapshotError(f"{where}.methods: {m!r} is not an HTTP method")
    return Route(
        id=_get(doc, "id", str, where),
        path=path,
        upstream_id=_get(doc, "upstream_id", str, where),
        methods=tuple(methods),
        connect_timeout=_positive(doc, "connect_timeout", where),
        read_timeout=_positive(doc, "read_timeout", where),
        total_timeout=_positive(doc, "total_timeout", where),
    )


def _api(doc: Any, where: str) -> Api:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    auth = _get(doc, "auth", str, where, "none")
    if auth not in AUTH_MODES:
        raise SnapshotError(f"{where}.auth {auth!r} is not one of {', '.join(AUTH_MODES)}")
    try:
        base_path = normalize_base_path(_get(doc, "base_path", str, where, "/"))
    except SnapshotError as exc:
        raise SnapshotError(f"{where}.base_path: {exc}") from None
    hosts = _get(doc, "hosts", list, where, [])
    if not all(isinstance(h, str) and h for h in hosts):
        raise SnapshotError(f"{where}.hosts must be non-empty strings")
    max_body = _get(doc, "max_body_bytes", int, where, None)
    auth_doc = _get(doc, "auth_settings", dict, where, None)
    auth_settings = _DEFAULT_AUTH if auth_doc is None else _api_auth(auth_doc, f"{where}.auth_settings")
    if auth == "jwt" and not auth_settings.jwt_algorithms:
        raise SnapshotError(f"{where}.auth_settings.jwt_algorithms is empty for a jwt api")
    routes = tuple(_route(r, f"{where}.routes[{i}]") for i, r in enumerate(_get(doc, "routes", list, where, [])))
    return Api(
        id=_get(doc, "id", str, where),
        name=_get(doc, "name", str, where),
        base_path=base_path,
        hosts=tuple(h.lower() for h in hosts),
        auth=auth,
        strip_base_path=_get(doc, "strip_base_path", bool, where, True),
        max_body_bytes=max_body,
        routes=routes,
        auth_settings=auth_settings,
        rate_limit_headers=_get(doc, "rate_limit_headers", bool, where, True),
    )


_DEFAULT_AUTH = ApiAuth()
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def _auth_dict(a: ApiAuth) -> dict[str, Any]:
    return {
        "key_header": a.key_header,
        "key_query": a.key_query,
        "strip_credential": a.strip_credential,
        "jwt_algorithms": list(a.jwt_algorithms),
        "jwt_secret": a.jwt_secret,
        "jwt_public_key": a.jwt_public_key,
        "jwt_issuer": a.jwt_issuer,
        "jwt_audience": a.jwt_audience,
        "jwt_customer_claim": a.jwt_customer_claim,
        # 1.4 fields only when set, so a 1.2 / 1.3 snapshot keeps its hash
        **({"jwt_jwks_url": a.jwt_jwks_url} if a.jwt_jwks_url is not None else {}),
        **({"jwt_jwks": [k.to_dict() for k in a.jwt_jwks]} if a.jwt_jwks else {}),
    }


def _api_auth(doc: dict[str, Any], where: str) -> ApiAuth:
    algorithms = _get(doc, "jwt_algorithms", list, where, [])
    for alg in algorithms:
        if alg not in JWT_ALGORITHMS:
            raise SnapshotError(f"{where}.jwt_algorithms: {alg!r} is not one of {', '.join(JWT_ALGORITHMS)}")
    header = _get(doc, "key_header", str, where, "x-api-key")
    if not header:
        raise SnapshotError(f"{where}.key_header is empty")
    return ApiAuth(
        key_header=header.lower(),
        key_query=_get(doc, "key_query", str, where, None) or None,
        strip_credential=_get(doc, "strip_credential", bool, where, True),
        jwt_algorithms=tuple(algorithms),
        jwt_secret=_get(doc, "jwt_secret", str, where, None),
        jwt_public_key=_get(doc, "jwt_public_key", str, where, None),
        jwt_issuer=_get(doc, "jwt_issuer", str, where, None),
        jwt_audience=_get(doc, "jwt_audience", str, where, None),
        jwt_customer_claim=_get(doc, "jwt_customer_claim", str, where, "sub") or "sub",
        jwt_jwks_url=_get(doc, "jwt_jwks_url", str, where, None) or None,
        jwt_jwks=tuple(_jwk(k, f"{where}.jwt_jwks[{i}]") for i, k in enumerate(_get(doc, "jwt_jwks", list, where, []))),
    )


def _jwk(doc: Any, where: str) -> Jwk:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    kty = _get(doc, "kty", str, where)
    if kty not in JWK_TYPES:
        raise SnapshotError(f"{where}.kty {kty!r} is not one of {', '.join(JWK_TYPES)}")
    alg = _get(doc, "alg", str, where, None)
    if alg is not None and alg not in JWT_ALGORITHMS[1:]:
        raise SnapshotError(f"{where}.alg {alg!r} is not an asymmetric algorithm this gateway knows")
    members = ("n", "e") if kty == "RSA" else ("crv", "x", "y")
    values = {m: _get(doc, m, str, where) for m in members}
    if not all(values.values()):
        raise SnapshotError(f"{where}: {', '.join(members)} must be non-empty for a {kty} key")
    return Jwk(kid=_get(doc, "kid", str, where), kty=kty, alg=alg, **values)


def _customer(doc: Any, where: str) -> Customer:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    status = _get(doc, "status", str, where, "active")
    if status not in CUSTOMER_STATUSES:
        raise SnapshotError(f"{where}.status {status!r} is not one of {', '.join(CUSTOMER_STATUSES)}")
    api_ids = _get(doc, "api_ids", list, where, [])
    if not all(isinstance(a, str) for a in api_ids):
        raise SnapshotError(f"{where}.api_ids must be strings")
    return Customer(
        id=_get(doc, "id", str, where),
        name=_get(doc, "name", str, where),
        status=status,
        api_ids=tuple(api_ids),
        plan_id=_get(doc, "plan_id", str, where, None),
        quota_extra=_get(doc, "quota_extra", int, where, 0),
        quota_extra_start=_get(doc, "quota_extra_start", int, where, 0),
        quota_extra_end=_get(doc, "quota_extra_end", int, where, 0),
    )


def _customer_extras(c: Customer) -> dict[str, Any]:
    """1.3 fields, left out of the hashed content while they hold their defaults."""
    out: dict[str, Any] = {}
    if c.plan_id is not None:
        out["plan_id"] = c.plan_id
    if c.quota_extra:
        out.update(quota_extra=c.quota_extra, quota_extra_start=c.quota_extra_start, quota_extra_end=c.quota_extra_end)
    return out


def _key(doc: Any, where: str) -> ApiKey:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    key_hash = _get(doc, "key_hash", str, where)
    if not _HASH_RE.match(key_hash):
        raise SnapshotError(f"{where}.key_hash must be 64 lower-case hex digits (sha256)")
    return ApiKey(
        id=_get(doc, "id", str, where),
        customer_id=_get(doc, "customer_id", str, where),
        key_hash=key_hash,
        prefix=_get(doc, "prefix", str, where),
        expires_at=_get(doc, "expires_at", int, where, None),
    )
