"""Authentication on the request path: API keys and JWTs -> customer, compiled once per snapshot.

:func:`compile_auth` turns the snapshot's customers and keys into :class:`AuthTables` (``sha256 hex
-> KeyEntry``, made from the packed key table on a key's first use) and :func:`make_authenticator`
builds one authenticator per API (``None`` for ``auth: none``, so that path does no work at all).
Per request an API key costs one ``hashlib.sha256(value).hexdigest()``, one dict lookup (a key's
first use: a probe of the packed table, ~1 µs), a clock read for the expiry and a frozenset
membership test for the grant; a JWT costs one PyJWT ``decode`` with a key object built here.
Keys from a JWKS (``jwt_jwks``, fetched by the control plane) are built here too, into
``algorithm -> kid -> key`` tables, so a token's key is two dict lookups.

``authenticate(headers, url, q)`` returns either a prebuilt :class:`Denied` (status, message and
extra header bytes for ``errors.error_response``) or a tuple ``(headers, url, inject, customer)``
(:data:`Authenticated`; ``customer`` is the :class:`CustomerEntry`): the request headers and URL
to forward (credential removed when ``strip_credential``) and the header lines to add
(``x-customer-id``, ``x-key-prefix``), built once per key.  Messages never contain the
credential.

Expiry is compiled into the key table (``expires_at``, epoch seconds) and compared with the
injected clock on every request, so a rotated key stops on time without waiting for a snapshot.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from data_plane.limits.periods import Cycle
from data_plane.snapshot import Api, ApiAuth, ApiKey, Customer, Plan, Snapshot
from data_plane.snapshot.keytable import KeyTable
from data_plane.tls.clientcert import TlsPeer, load_cas

log = logging.getLogger("tollgate.auth")

Headers = list[tuple[bytes, bytes]]
Clock = Callable[[], float]
_SAFE_HEADER_VALUE = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII: nothing a header could break on


class Denied:
    __slots__ = ("status", "message", "extra")

    def __init__(self, status: int, message: str, extra: bytes = b"") -> None:
        self.status = status
        self.message = message
        self.extra = extra


KEY_NOT_VALID = Denied(403, "API key is not valid")  # unknown or revoked (revoked keys are not shipped)
KEY_EXPIRED = Denied(403, "API key has expired")
CUSTOMER_SUSPENDED = Denied(403, "customer is suspended")
NOT_GRANTED = Denied(403, "customer is not granted this API")
UNKNOWN_CUSTOMER = Denied(403, "token names no known customer")
# auth: mtls (the certificate the client showed in the TLS handshake)
TLS_REQUIRED = Denied(401, "client certificate required: this API is served over HTTPS only")
CERT_REQUIRED = Denied(401, "client certificate required")
CERT_EXPIRED = Denied(403, "client certificate has expired or is not yet valid")
CERT_NOT_TRUSTED = Denied(403, "client certificate is not issued by a CA this API trusts")
CERT_UNKNOWN = Denied(403, "client certificate names no known customer")


class CustomerEntry:
    """``api_ids``: every API the customer may call — granted directly or through its usage plan.
    ``plan_id`` and the quota adjustment (``extra`` while ``extra_start <= now < extra_end``) are read
    by the limiter step of the request path."""

    __slots__ = (
        "id",
        "id_bytes",
        "active",
        "api_ids",
        "inject",
        "plan_id",
        "extra",
        "extra_start",
        "extra_end",
        "cycle",
    )

    def __init__(
        self,
        id: str,
        active: bool,
        api_ids: frozenset[str],
        plan_id: str | None = None,
        extra: tuple[int, int, int] = (0, 0, 0),
        cycle: Cycle | None = None,
    ) -> None:
        self.id = id
        self.id_bytes = id.encode()  # hash_on: customer, the access log: encoded once, not per request
        self.active = active
        self.api_ids = api_ids
        self.inject = b"x-customer-id: " + id.encode() + b"\r\n"
        self.plan_id = plan_id
        self.extra, self.extra_start, self.extra_end = extra
        self.cycle = cycle  # the billing cycle its quota periods follow (None: the UTC calendar)

    def adjustment(self, now: float) -> int:
        return self.extra if self.extra_start <= now < self.extra_end else 0


# what a successful authenticate returns: headers and URL to forward, header lines to add, the caller
Authenticated = tuple[Headers, bytes, bytes, CustomerEntry]


class KeyEntry:
    """A key as the request path knows it.  Its identity header lines are made on the key's first
    use, not at compile time: at a million keys, bytes per key that most keys never need cost
    ~120 MB and ~1 s per full snapshot."""

    __slots__ = ("id", "customer", "prefix", "expires_at", "_inject")

    def __init__(self, id: str, customer: CustomerEntry, prefix: str, expires_at: int | None) -> None:
        self.id = id
        self.customer = customer
        self.prefix = prefix
        self.expires_at = expires_at
        self._inject = b""

    def inject(self) -> bytes:
        """The header lines forwarded for this key: its customer's plus ``x-key-prefix``."""
        lines = self._inject
        if not lines:
            lines = self._inject = self.customer.inject + b"x-key-prefix: " + self.prefix.encode() + b"\r\n"
        return lines


# Entries made on first use are kept up to this many (then the cache starts again empty): the keys a
# worker's traffic uses stay one dict lookup, the table of a million keys stays packed.
KEY_CACHE_MAX = 1 << 18


class AuthTables:
    """Customers by id and keys by ``sha256(key)`` hex, plus where key last-use is recorded.

    ``source`` is the packed key table (data_plane/snapshot/keytable.py, shared with the worker's
    entity store, so deltas change it in place); ``keys`` holds the entries made from it on first use
    (:meth:`find_key`), dropped by the delta that changes their key or customer
    (data_plane/incremental.py).  ``keys_used`` (key id -> epoch seconds) belongs to the worker and
    outlives config swaps; the heartbeat ships and empties it.
    """

    __slots__ = (
        "customers",
        "source",
        "keys",
        "keys_used",
        "clock",
        "cert_fingerprints",
        "cert_subjects",
        "external_ids",
    )

    def __init__(
        self,
        customers: dict[str, CustomerEntry],
        source: KeyTable,
        keys_used: dict[str, int],
        clock: Clock,
        cert_fingerprints: dict[str, CustomerEntry] | None = None,
        cert_subjects: dict[str, CustomerEntry] | None = None,
        external_ids: dict[str, CustomerEntry] | None = None,
    ) -> None:
        self.customers = customers
        # auth: jwt: customers by their identity provider's id (a customer claim that is not a Tollgate id)
        self.external_ids = external_ids if external_ids is not None else {}
        self.source = source
        self.keys: dict[str, KeyEntry] = {}
        self.keys_used = keys_used
        self.clock = clock
        # auth: mtls: client certificates by sha256 fingerprint (hex) and by subject (RFC 4514)
        self.cert_fingerprints = cert_fingerprints if cert_fingerprints is not None else {}
        self.cert_subjects = cert_subjects if cert_subjects is not None else {}

    def find_key(self, key_hash: str) -> KeyEntry | None:
        """The entry of the key whose sha256 hex is ``key_hash`` (made from the packed table and kept),
        or None: no such key, or its customer is not served."""
        k = self.source.by_hash(key_hash)
        if k is None:
            return None
        customer = self.customers.get(k.customer_id)
        if customer is None:
            return None
        entry = key_entry(k, customer)
        keys = self.keys
        if len(keys) >= KEY_CACHE_MAX:
            keys.clear()
        keys[key_hash] = entry
        return entry

    def entries(self) -> dict[str, KeyEntry]:
        """Every key's entry, by key hash (for tests and tools: makes one per key)."""
        out: dict[str, KeyEntry] = {}
        for k in self.source:
            customer = self.customers.get(k.customer_id)
            if customer is not None:
                out[k.key_hash] = key_entry(k, customer)
        return out


def compile_auth(snapshot: Snapshot, keys_used: dict[str, int] | None = None, clock: Clock = time.time) -> AuthTables:
    customers: dict[str, CustomerEntry] = {}
    plan_apis = plan_grants(snapshot.plans)
    for c in snapshot.customers:
        entry = customer_entry(c, plan_apis)
        if entry is not None:
            customers[c.id] = entry
    tables = AuthTables(customers, KeyTable.of(snapshot.keys), keys_used if keys_used is not None else {}, clock)
    for c in snapshot.customers:
        entry = customers.get(c.id)
        if entry is not None:
            add_identities(tables, c, entry)
    return tables


# The pieces of compile_auth, also used to change the tables in place when a delta names a customer or
# a key (data_plane/incremental.py): the key table is updated by key hash, routes are not recompiled.


def plan_grants(plans: tuple[Plan, ...] | list[Plan]) -> dict[str, frozenset[str]]:
    return {p.id: frozenset(a.api_id for a in p.apis) for p in plans}


def customer_entry(c: Customer, plan_apis: dict[str, frozenset[str]]) -> CustomerEntry | None:
    if not _SAFE_HEADER_VALUE.match(c.id):
        log.error("customer id %r cannot be sent in a header; its keys are disabled", c.id)
        return None
    # Two grant paths: direct (api_ids) and through the plan; the union is checked per request.
    granted = frozenset(c.api_ids) | plan_apis.get(c.plan_id or "", frozenset())
    extra = (c.quota_extra, c.quota_extra_start, c.quota_extra_end)
    cycle = Cycle(c.billing_anchor, c.time_zone, c.cycle_since) if c.billing_anchor else None
    return CustomerEntry(c.id, c.status == "active", granted, c.plan_id, extra, cycle)


def key_entry(k: ApiKey, customer: CustomerEntry) -> KeyEntry:
    prefix = k.prefix if _SAFE_HEADER_VALUE.match(k.prefix) else "-"
    return KeyEntry(k.id, customer, prefix, k.expires_at)


def add_identities(tables: AuthTables, c: Customer, entry: CustomerEntry) -> None:
    if c.external_id:
        tables.external_ids[c.external_id] = entry
    for fp in c.mtls_fingerprints:
        tables.cert_fingerprints[fp] = entry
    for subject in c.mtls_subjects:
        tables.cert_subjects[subject] = entry


def drop_identities(tables: AuthTables, c: Customer) -> None:
    if c.external_id:
        held_by = tables.external_ids.get(c.external_id)
        if held_by is not None and held_by.id == c.id:
            del tables.external_ids[c.external_id]
    for fp in c.mtls_fingerprints:
        held = tables.cert_fingerprints.get(fp)
        if held is not None and held.id == c.id:
            del tables.cert_fingerprints[fp]
    for subject in c.mtls_subjects:
        held = tables.cert_subjects.get(subject)
        if held is not None and held.id == c.id:
            del tables.cert_subjects[subject]


class ApiKeyAuth:
    """``auth: api_key``: the key from a header (or a query parameter), looked up by its SHA-256."""

    __slots__ = ("api_id", "tables", "header", "query", "strip", "missing")

    def __init__(self, api: Api, tables: AuthTables) -> None:
        s = api.auth_settings
        self.api_id = api.id
        self.tables = tables
        self.header = s.key_header.lower().encode("latin-1")
        self.query = s.key_query.encode("latin-1") if s.key_query else None
        self.strip = s.strip_credential
        where = f'query="{s.key_query}"' if s.key_query else f'header="{s.key_header}"'
        self.missing = Denied(401, "API key required", f"www-authenticate: ApiKey {where}\r\n".encode("latin-1"))

    def authenticate(self, headers: Headers, url: bytes, q: int, tls: TlsPeer | None = None) -> Denied | Authenticated:
        value: bytes | None = None
        if self.query is None:
            name = self.header
            for n, v in headers:
                if n == name:
                    value = v
                    break
            if value is not None and self.strip:
                headers = [h for h in headers if h[0] != name]
        elif q >= 0:
            value, url = self._from_query(url, q)
        if not value:
            return self.missing
        tables = self.tables
        key_hash = hashlib.sha256(value).hexdigest()
        entry = tables.keys.get(key_hash)
        if entry is None:
            entry = tables.find_key(key_hash)  # first use since the key (or its customer) changed
            if entry is None:
                return KEY_NOT_VALID
        now = tables.clock()
        if entry.expires_at is not None and now >= entry.expires_at:
            return KEY_EXPIRED
        customer = entry.customer
        if not customer.active:
            return CUSTOMER_SUSPENDED
        if self.api_id not in customer.api_ids:
            return NOT_GRANTED
        tables.keys_used[entry.id] = int(now)
        return headers, url, entry.inject(), customer

    def _from_query(self, url: bytes, q: int) -> tuple[bytes | None, bytes]:
        name = self.query
        value: bytes | None = None
        kept: list[bytes] = []
        for part in url[q + 1 :].split(b"&"):
            k, eq, v = part.partition(b"=")
            if k == name:
                if value is None:
                    value = unquote_to_bytes(v) if b"%" in v or b"+" in v else v
                continue
            kept.append(part)
        if value is None or not self.strip:
            return value, url
        return value, url[:q] + (b"?" + b"&".join(kept) if kept else b"")


class JwtAuth:
    """``auth: jwt``: ``Authorization: Bearer <jwt>``; signature, ``exp`` (required), ``nbf``, and
    ``iss``/``aud`` when configured; the customer claim holds the customer id or its ``external_id``."""

    __slots__ = (
        "api_id",
        "tables",
        "keys",
        "jwks",
        "issuer",
        "audience",
        "claim",
        "strip",
        "missing",
        "_jwt",
        "_errors",
        "_options",
    )

    def __init__(self, api: Api, tables: AuthTables) -> None:
        import jwt  # only workers serving a jwt api pay for the import

        s = api.auth_settings
        self.api_id = api.id
        self.tables = tables
        self.issuer = s.jwt_issuer
        self.audience = s.jwt_audience
        self.claim = s.jwt_customer_claim
        self.strip = s.strip_credential
        self.missing = Denied(401, "bearer token required", b'www-authenticate: Bearer realm="tollgate"\r\n')
        self._jwt = jwt.PyJWT(options={"require": ["exp"], "verify_iat": False})
        # A token's "aud" is ignored unless the API names an audience (PyJWT would refuse it otherwise).
        self._options: Any = {"verify_aud": s.jwt_audience is not None}
        self._errors: tuple[type[Exception], ...] = (jwt.InvalidTokenError,)
        # Key per algorithm, chosen by the token's own "alg" only among the configured ones, so an
        # HMAC token can never be checked against the public key (algorithm confusion).
        self.keys: dict[str, Any] = {}
        # With a JWKS URL the asymmetric algorithms take their key by "kid" from here (HS256 never
        # does: it has no entry, and JWKS keys of kty "oct" are never fetched).
        self.jwks: dict[str, dict[str, Any]] = {}
        for alg in s.jwt_algorithms:
            if alg == "HS256" and s.jwt_secret:
                self.keys[alg] = s.jwt_secret.encode()
            elif alg in ("RS256", "ES256") and s.jwt_jwks_url is not None:
                self.jwks[alg] = _jwks_keys(s, alg)
            elif alg in ("RS256", "ES256") and s.jwt_public_key:
                self.keys[alg] = _load_public_key(s.jwt_public_key)

    def authenticate(self, headers: Headers, url: bytes, q: int, tls: TlsPeer | None = None) -> Denied | Authenticated:
        token = b""
        for n, v in headers:
            if n == b"authorization":
                scheme, _, rest = v.partition(b" ")
                if scheme.lower() == b"bearer":
                    token = rest.strip()
                break
        if not token:
            return self.missing
        try:
            claims = self._decode(token)
        except self._errors as exc:
            return Denied(403, f"invalid token: {_reason(exc)}")
        named = claims.get(self.claim)
        customer = None
        if isinstance(named, str):  # Tollgate's id, else the identity provider's (external_id)
            customer = self.tables.customers.get(named) or self.tables.external_ids.get(named)
        if customer is None:
            return UNKNOWN_CUSTOMER
        if not customer.active:
            return CUSTOMER_SUSPENDED
        if self.api_id not in customer.api_ids:
            return NOT_GRANTED
        if self.strip:
            headers = [h for h in headers if h[0] != b"authorization"]
        return headers, url, customer.inject, customer

    def _decode(self, token: bytes) -> dict[str, Any]:
        import jwt

        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise jwt.InvalidAlgorithmError("algorithm not allowed")
        by_kid = self.jwks.get(alg)
        if by_kid is not None:
            kid = header.get("kid")
            key = by_kid.get(kid) if isinstance(kid, str) else None
            if key is None:  # an unknown kid is a signature no known key made
                raise jwt.InvalidSignatureError("unknown key")
        else:
            key = self.keys.get(alg)
            if key is None:
                raise jwt.InvalidAlgorithmError("algorithm not allowed")
        # iss / aud are checked only when configured (PyJWT skips a check whose expected value is None).
        claims: dict[str, Any] = self._jwt.decode(
            token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer, options=self._options
        )
        return claims


def _load_public_key(pem: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem.encode())


def _jwks_keys(s: ApiAuth, alg: str) -> dict[str, Any]:
    """``kid -> key object`` for the JWKS keys usable with ``alg`` (RS256: RSA; ES256: EC P-256), and
    whose own ``alg``, when given, is ``alg``.  A key PyJWT cannot load is left out (and logged)."""
    import jwt

    out: dict[str, Any] = {}
    for jwk in s.jwt_jwks:
        if jwk.alg is not None and jwk.alg != alg:
            continue
        if not (alg == "RS256" and jwk.kty == "RSA" or alg == "ES256" and jwk.kty == "EC" and jwk.crv == "P-256"):
            continue
        try:
            out[jwk.kid] = jwt.PyJWK(jwk.to_dict(), algorithm=alg).key
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.error("jwks key %r cannot be used for %s: %s", jwk.kid, alg, type(exc).__name__)
    return out


def _reason(exc: Exception) -> str:
    # Fixed phrases by exception type: PyJWT messages could quote parts of the token.
    import jwt

    for typ, text in (
        (jwt.ExpiredSignatureError, "expired"),
        (jwt.ImmatureSignatureError, "not yet valid"),
        (jwt.InvalidAudienceError, "wrong audience"),
        (jwt.InvalidIssuerError, "wrong issuer"),
        (jwt.InvalidSignatureError, "bad signature"),
        (jwt.InvalidAlgorithmError, "algorithm not allowed"),
        (jwt.MissingRequiredClaimError, "missing required claim"),
    ):
        if isinstance(exc, typ):
            return text
    return "malformed"


class MtlsAuth:
    """``auth: mtls``: the client certificate of the TLS connection, issued directly by one of the
    API's CAs and valid now, maps to a customer by its SHA-256 fingerprint, else by its subject.
    The certificate is parsed once per connection (:class:`~data_plane.tls.clientcert.TlsPeer`)
    and its issuer checked once per connection and CA; per request that leaves two dict lookups."""

    __slots__ = ("api_id", "tables", "cas")

    def __init__(self, api: Api, tables: AuthTables) -> None:
        self.api_id = api.id
        self.tables = tables
        self.cas = load_cas(api.auth_settings.mtls_ca_certificates or "")

    def authenticate(self, headers: Headers, url: bytes, q: int, tls: TlsPeer | None = None) -> Denied | Authenticated:
        if tls is None:
            return TLS_REQUIRED
        cert = tls.cert()
        if cert is None:
            return CERT_REQUIRED
        tables = self.tables
        now = tables.clock()
        if now < cert.not_before or now >= cert.not_after:
            return CERT_EXPIRED
        if not cert.issued_by(self.cas):
            return CERT_NOT_TRUSTED
        customer = tables.cert_fingerprints.get(cert.fingerprint)
        if customer is None:
            customer = tables.cert_subjects.get(cert.subject)
            if customer is None:
                return CERT_UNKNOWN
        if not customer.active:
            return CUSTOMER_SUSPENDED
        if self.api_id not in customer.api_ids:
            return NOT_GRANTED
        return headers, url, customer.inject, customer


Authenticator = ApiKeyAuth | JwtAuth | MtlsAuth


def make_authenticator(api: Api, tables: AuthTables) -> Authenticator | None:
    if api.auth == "api_key":
        return ApiKeyAuth(api, tables)
    if api.auth == "jwt":
        return JwtAuth(api, tables)
    if api.auth == "mtls":
        return MtlsAuth(api, tables)
    return None
