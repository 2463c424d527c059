"""Decoding and validation: wire-form JSON -> :class:`~data_plane.snapshot.types.Snapshot`, or :class:`SnapshotError`.

Everything a worker is handed goes through :func:`from_json` / :func:`from_dict`: field types
(an ``int`` is accepted where a ``float`` is expected, a ``bool`` never where a number is), ranges and
enumerations, path templates (:mod:`.paths`), then :func:`validate` (cross references), then the
hash: a document whose ``hash`` does not match its content is refused as corrupt or tampered, and
one without a hash is sealed here.  ``schema_version`` is ``"MAJOR.MINOR"``: any minor version of a
known major is accepted (unknown fields are ignored), a newer major raises
:class:`UnsupportedSchemaVersion`.  Error messages name the field (``apis[2].routes[0].path: ...``).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from data_plane.errors import PlanError, SnapshotError, UnsupportedSchemaVersion
from data_plane.snapshot import wire
from data_plane.snapshot.keytable import KeyPacker, KeyTable, copy_str
from data_plane.snapshot.paths import normalize_base_path, split_template
from data_plane.snapshot.types import (
    ALGORITHMS,
    AUTH_MODES,
    CUSTOMER_STATUSES,
    DEFAULT_AUTH,
    DEFAULT_KEEPALIVE_TIMEOUT,
    HASH_ON,
    HTTP_METHODS,
    JWK_TYPES,
    JWT_ALGORITHMS,
    POLICY_KINDS,
    PROBE_METHODS,
    QUOTA_PERIODS,
    SUPPORTED_MAJOR,
    TARGET_SCHEMES,
    Api,
    ApiAuth,
    ApiKey,
    Certificate,
    Customer,
    HealthCheck,
    Jwk,
    Passive,
    Plan,
    PlanApi,
    PlanOverride,
    PlanQuota,
    PlanThrottle,
    Route,
    Snapshot,
    Target,
    Upstream,
)


def from_json(data: bytes | str) -> Snapshot:
    """Parse and validate a wire-form snapshot; raises :class:`SnapshotError`."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: arrays/objects nested deeper than the decoder's stack (``[`` x 200,000)
        raise SnapshotError(f"snapshot is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    return from_dict(doc, data.encode() if isinstance(data, str) else data)


def from_dict(doc: Any, received: bytes | None = None) -> Snapshot:
    """Parse and validate a wire-form snapshot (``received``: the bytes ``doc`` was parsed from, if
    any); raises :class:`SnapshotError`."""
    if not isinstance(doc, dict):
        raise SnapshotError("snapshot must be a JSON object")
    version = _get(doc, "schema_version", str, "snapshot")
    check_schema_version(version)
    revision = _get(doc, "revision", int, "snapshot")
    if revision < 0:
        raise SnapshotError("snapshot.revision must be >= 0")
    upstreams = tuple(_upstream(u, f"upstreams[{i}]") for i, u in enumerate(_get(doc, "upstreams", list, "snapshot")))
    apis = tuple(_api(a, f"apis[{i}]") for i, a in enumerate(_get(doc, "apis", list, "snapshot")))
    customers = tuple(
        _customer(c, f"customers[{i}]") for i, c in enumerate(_get(doc, "customers", list, "snapshot", []))
    )
    keys = _keys(_get(doc, "keys", list, "snapshot", []), {c.id: c.id for c in customers})
    try:
        plans = tuple(_plan(p, f"plans[{i}]") for i, p in enumerate(_get(doc, "plans", list, "snapshot", [])))
    except PlanError as exc:
        raise SnapshotError(str(exc)) from None
    certificates = tuple(
        _certificate(c, f"certificates[{i}]") for i, c in enumerate(_get(doc, "certificates", list, "snapshot", []))
    )
    snap = Snapshot(
        revision=revision,
        upstreams=upstreams,
        apis=apis,
        customers=customers,
        keys=keys,
        plans=plans,
        certificates=certificates,
        schema_version=version,
        generated_at=str(doc.get("generated_at", "")),
        hash=str(doc.get("hash", "")),
    )
    validate(snap)
    # The hash covers the document as received, unknown members of a newer minor version included
    # (the types above ignore them): re-encoding only the fields this worker knows would refuse every
    # snapshot of a newer control plane that added one.
    # A document without a hash (hand-written) is sealed from the fields this worker knows, as before;
    # one that matches only that older rule (sealed by a tool hashing the parsed form) is accepted too.
    if not snap.hash:
        return wire.sealed(snap)
    # ``received`` (the bytes parsed): canonical from a control plane, hashed as they are (spliced_hash)
    if (
        (received is None or snap.hash != wire.spliced_hash(received, doc))
        and snap.hash != wire.content_hash(doc)
        and snap.hash != wire.compute_hash(snap)
    ):
        raise SnapshotError("snapshot.hash does not match its content (corrupt or tampered)")
    return snap


def validate(snap: Snapshot) -> None:
    """Cross-reference checks: unique ids, routes point at known upstreams."""
    certificate_ids = set()
    defaults = 0
    for i, cert in enumerate(snap.certificates):
        if cert.id in certificate_ids:
            raise SnapshotError(f"certificates[{i}].id {cert.id!r} is duplicated")
        certificate_ids.add(cert.id)
        defaults += cert.default
    if defaults > 1:
        raise SnapshotError("certificates: more than one is the default")
    for i, u in enumerate(snap.upstreams):
        if u.client_certificate_id is not None and u.client_certificate_id not in certificate_ids:
            raise SnapshotError(
                f"upstreams[{i}].client_certificate_id {u.client_certificate_id!r} names no certificate"
            )
    upstream_ids = set()
    for i, u in enumerate(snap.upstreams):
        if u.id in upstream_ids:
            raise SnapshotError(f"upstreams[{i}].id {u.id!r} is duplicated")
        upstream_ids.add(u.id)
    for i, a in enumerate(snap.apis):
        for j, r in enumerate(a.routes):
            if r.upstream_id not in upstream_ids:
                raise SnapshotError(f"apis[{i}].routes[{j}].upstream_id {r.upstream_id!r} names no upstream")
    api_ids = {a.id for a in snap.apis}
    plan_ids = set()
    for i, p in enumerate(snap.plans):
        if p.id in plan_ids:
            raise SnapshotError(f"plans[{i}].id {p.id!r} is duplicated")
        plan_ids.add(p.id)
        for j, pa in enumerate(p.apis):
            if pa.api_id not in api_ids:
                raise SnapshotError(f"plans[{i}].apis[{j}].api_id {pa.api_id!r} names no api")
    customer_ids = set()
    identities: set[str] = set()
    external_ids: set[str] = set()
    for i, c in enumerate(snap.customers):
        if c.id in customer_ids:
            raise SnapshotError(f"customers[{i}].id {c.id!r} is duplicated")
        customer_ids.add(c.id)
        if c.plan_id is not None and c.plan_id not in plan_ids:
            raise SnapshotError(f"customers[{i}].plan_id {c.plan_id!r} names no plan")
        if c.external_id:
            if c.external_id in external_ids:
                raise SnapshotError(f"customers[{i}].external_id {c.external_id!r} is duplicated")
            external_ids.add(c.external_id)
        for identity in (*c.mtls_fingerprints, *c.mtls_subjects):
            if identity in identities:
                raise SnapshotError(f"customers[{i}]: client certificate identity {identity!r} is another customer's")
            identities.add(identity)
    if isinstance(snap.keys, KeyTable):
        # packed: hashes and ids checked unique when packed (and by the store for what deltas put)
        for customer in sorted(snap.keys.customer_ids() - customer_ids):
            raise SnapshotError(f"keys: customer_id {customer!r} names no customer")
        return
    hashes = set()
    for i, k in enumerate(snap.keys):
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


# ---------------------------------------------------------------------- fields


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
    scheme = _get(doc, "scheme", str, where, "http")
    if scheme not in TARGET_SCHEMES:
        raise SnapshotError(f"{where}.scheme {scheme!r} is not one of {', '.join(TARGET_SCHEMES)}")
    return Target(id=_get(doc, "id", str, where), host=host, port=port, weight=weight, scheme=scheme)


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
        tls_verify=_get(doc, "tls_verify", bool, where, True),
        ca_certificates=_pem(doc, "ca_certificates", where, "CERTIFICATE"),
        sni=_get(doc, "sni", str, where, None) or None,
        client_certificate_id=_get(doc, "client_certificate_id", str, where, None),
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
        policies=_policies(doc, where),
    )


def _policies(doc: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The policies object's shape; what each member holds is checked when it is compiled
    (data_plane/policies), where a bad one fails the snapshot like any other field."""
    policies = _get(doc, "policies", dict, where, None)
    if policies is None:
        return None
    for kind, value in policies.items():
        if kind not in POLICY_KINDS:
            raise SnapshotError(f"{where}.policies.{kind} is not one of {', '.join(POLICY_KINDS)}")
        if not isinstance(value, list if kind == "plugins" else dict):
            raise SnapshotError(f"{where}.policies.{kind} must be {'an array' if kind == 'plugins' else 'an object'}")
    return policies


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
    auth_settings = DEFAULT_AUTH if auth_doc is None else _api_auth(auth_doc, f"{where}.auth_settings")
    if auth == "jwt" and not auth_settings.jwt_algorithms:
        raise SnapshotError(f"{where}.auth_settings.jwt_algorithms is empty for a jwt api")
    if auth == "mtls" and not auth_settings.mtls_ca_certificates:
        raise SnapshotError(f"{where}.auth_settings.mtls_ca_certificates is empty for an mtls api")
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
        https_only=_get(doc, "https_only", bool, where, False),
        policies=_policies(doc, where),
        cache_epoch=_get(doc, "cache_epoch", int, where, 0),
    )


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
        mtls_ca_certificates=_pem(doc, "mtls_ca_certificates", where, "CERTIFICATE"),
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
    plan_id = _get(doc, "plan_id", str, where, None)
    # Copies and shared strings, not the decoder's (see keytable.copy_str: they would pin the arenas of
    # the document's dicts); the ids of APIs and plans, repeated by many customers, interned.
    return Customer(
        id=copy_str(_get(doc, "id", str, where)),
        name=copy_str(_get(doc, "name", str, where)),
        status=sys.intern(status),
        api_ids=tuple(sys.intern(a) for a in api_ids),
        plan_id=None if plan_id is None else sys.intern(plan_id),
        quota_extra=_get(doc, "quota_extra", int, where, 0),
        quota_extra_start=_get(doc, "quota_extra_start", int, where, 0),
        quota_extra_end=_get(doc, "quota_extra_end", int, where, 0),
        mtls_fingerprints=tuple(_strings(doc, "mtls_fingerprints", where, _HASH_RE, _HASH_WHAT)),
        mtls_subjects=tuple(_strings(doc, "mtls_subjects", where)),
        billing_anchor=_get(doc, "billing_anchor", int, where, 0),
        time_zone=_time_zone(doc, where),
        cycle_since=_get(doc, "cycle_since", int, where, 0),
        external_id=_get(doc, "external_id", str, where, ""),
    )


def _time_zone(doc: dict[str, Any], where: str) -> str:
    zone = _get(doc, "time_zone", str, where, "")
    if zone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # (only when used: it reads sysconfig)

        try:
            ZoneInfo(zone)
        except (ValueError, ZoneInfoNotFoundError):
            raise SnapshotError(f"{where}.time_zone {zone!r} is not an IANA time zone this worker knows") from None
    return zone


_HASH_RE = re.compile(r"\A[0-9a-f]{64}\Z")  # \Z: no trailing newline either
_SNI_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


_HASH_WHAT = "64 lower-case hex digits (sha256)"


def _strings(
    doc: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None, what: str = ""
) -> list[str]:
    values = _get(doc, key, list, where, [])
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise SnapshotError(f"{where}.{key}[{i}] must be a non-empty string")
        if pattern is not None and not pattern.match(v):
            raise SnapshotError(f"{where}.{key}[{i}] must be {what}")
    return values


def _pem(doc: dict[str, Any], key: str, where: str, label: str) -> str | None:
    """A PEM text holding at least one ``label`` block, or None (checked for shape only: the worker
    loads it when it compiles the snapshot, and refuses the snapshot if it does not load)."""
    value: str | None = _get(doc, key, str, where, None)
    if value is not None and f"-----BEGIN {label}-----" not in value:
        raise SnapshotError(f"{where}.{key} must be PEM text with a {label} block")
    return value


def _required_pem(doc: dict[str, Any], key: str, where: str, label: str) -> str:
    _get(doc, key, str, where)  # present, a string
    return _pem(doc, key, where, label) or ""


def _certificate(doc: Any, where: str) -> Certificate:
    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    snis = [s.lower() for s in _strings(doc, "snis", where)]
    for i, name in enumerate(snis):
        if not _SNI_RE.match(name):
            raise SnapshotError(f"{where}.snis[{i}] {name!r} is not a host name or a *.wildcard")
    key = _get(doc, "key", str, where)
    if not key:
        raise SnapshotError(f"{where}.key is empty")
    return Certificate(
        id=_get(doc, "id", str, where),
        cert=_required_pem(doc, "cert", where, "CERTIFICATE"),
        key=key,
        snis=tuple(snis),
        default=_get(doc, "default", bool, where, False),
    )


def _keys(docs: list[Any], customer_ids: dict[str, str]) -> KeyTable:
    """The keys of a snapshot, packed (data_plane/snapshot/keytable.py), checked as they are packed:
    each names a customer of the snapshot, no key hash or id twice.  The common shape goes through the
    compiled loop (``KeyPacker.take``), anything else through :func:`_key`, which says what is wrong."""
    packer = KeyPacker(customer_ids)
    i = packer.take(docs, 0)
    while i < len(docs):
        k = _key(docs[i], f"keys[{i}]")
        packer.add(k.id, k.customer_id, k.key_hash, k.prefix, k.expires_at)
        i = packer.take(docs, i + 1)
    return KeyTable(packer.finish())


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


# ---------------------------------------------------------------------- usage plans (1.3)
# Their own field reader (PlanError, re-raised by from_dict as SnapshotError): unlike _get it refuses a
# bool for every type and has no defaults.


def _plan_field(doc: dict[str, Any], key: str, typ: type, where: str) -> Any:
    if key not in doc:
        raise PlanError(f"{where}.{key} is missing")
    value = doc[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise PlanError(f"{where}.{key} must be {typ.__name__}")
    return value


def _rate_burst(doc: dict[str, Any], where: str) -> tuple[float, int]:
    rate = _plan_field(doc, "rate", float, where)
    burst = _plan_field(doc, "burst", int, where)
    if not (rate > 0 and math.isfinite(rate)):
        raise PlanError(f"{where}.rate must be > 0")
    if burst < 1:
        raise PlanError(f"{where}.burst must be >= 1")
    return rate, burst


def _plan(doc: Any, where: str) -> Plan:
    if not isinstance(doc, dict):
        raise PlanError(f"{where} must be an object")
    throttle = quota = None
    if doc.get("throttle") is not None:
        t = doc["throttle"]
        if not isinstance(t, dict):
            raise PlanError(f"{where}.throttle must be an object")
        throttle = PlanThrottle(*_rate_burst(t, f"{where}.throttle"))
    if doc.get("quota") is not None:
        q = doc["quota"]
        if not isinstance(q, dict):
            raise PlanError(f"{where}.quota must be an object")
        limit = _plan_field(q, "limit", int, f"{where}.quota")
        period = _plan_field(q, "period", str, f"{where}.quota")
        if limit < 0:
            raise PlanError(f"{where}.quota.limit must be >= 0")
        if period not in QUOTA_PERIODS:
            raise PlanError(f"{where}.quota.period must be one of {', '.join(QUOTA_PERIODS)}")
        overage = _plan_field(q, "overage", str, f"{where}.quota") if "overage" in q else "deny"
        if overage not in ("deny", "allow"):
            raise PlanError(f"{where}.quota.overage must be deny or allow")
        cap = _plan_field(q, "hard_cap", int, f"{where}.quota") if q.get("hard_cap") is not None else None
        if cap is not None and (overage != "allow" or cap < limit):
            raise PlanError(f"{where}.quota.hard_cap needs overage allow and must be >= the limit")
        quota = PlanQuota(limit, period, overage == "allow", cap)
    apis = []
    raw_apis = doc.get("apis", [])
    if not isinstance(raw_apis, list):
        raise PlanError(f"{where}.apis must be a list")
    for i, a in enumerate(raw_apis):
        aw = f"{where}.apis[{i}]"
        if not isinstance(a, dict):
            raise PlanError(f"{aw} must be an object")
        overrides = []
        for j, o in enumerate(a.get("overrides", [])):
            ow = f"{aw}.overrides[{j}]"
            if not isinstance(o, dict):
                raise PlanError(f"{ow} must be an object")
            method = _plan_field(o, "method", str, ow)
            if method not in HTTP_METHODS:
                raise PlanError(f"{ow}.method {method!r} is not an HTTP method")
            rate, burst = _rate_burst(o, ow)
            overrides.append(PlanOverride(method, _plan_field(o, "path", str, ow), rate, burst))
        apis.append(PlanApi(_plan_field(a, "api_id", str, aw), tuple(overrides)))
    return Plan(
        id=_plan_field(doc, "id", str, where),
        name=_plan_field(doc, "name", str, where),
        throttle=throttle,
        quota=quota,
        apis=tuple(apis),
    )
