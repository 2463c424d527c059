"""Response caching (the ``cache`` policy): GET and HEAD answered from a worker-local store.

Two parts.  :class:`ResponseCache` is the store: one per worker (``PolicyEnv.cache``, made by
:class:`data_plane.server.Worker`), it outlives config swaps and is bounded in bytes
(``TOLLGATE_CACHE_BYTES``, default 64 MiB), least recently used first out.  :class:`CacheRule` is
one route's compiled policy: it builds the key of a request, looks it up, and decides whether a
response may be stored.  The exchange (:mod:`data_plane.http.exchange`) calls it after the plan
limits (so a hit still passes IP rules, auth and limits, and counts for quotas, as Kong's
proxy-cache does) and before a target is picked.

The key: the route id, the API's ``cache_epoch`` (a purge bumps it) and a digest of the rule, the request target as the
upstream would get it (canonical path after the base path is stripped and ``request_transform``
ran, with the query a query-string credential was taken from), the values of the rule's
``key_headers``, and the customer id unless the rule is ``shared``.  HEAD is answered from the GET
entry (only GET responses are stored).  A response's ``Vary`` names are kept with it and the
request's values of those fields must equal the stored ones (one key holds up to
:data:`MAX_VARIANTS` variants).

Not looked up and not stored: a request with a body, a ``Range`` request, a request with
``Cache-Control: no-store``, a request carrying ``Authorization`` on a route whose API does not
authenticate (RFC 9111 3.5; unless ``authorization`` is one of the ``key_headers``: then the key
is per credential anyway).  Looked up no, stored yes: ``Cache-Control: no-cache`` or a request
``max-age`` older than the entry.  Never stored: a status outside ``statuses`` (default 200),
``Cache-Control`` ``no-store`` / ``private`` / ``no-cache`` (with or without field names), a
``Set-Cookie``, ``Vary: *``, a body over ``max_object_bytes``, a response that did not complete.

Freshness: ``ttl`` of the rule, lowered to ``s-maxage`` (or else ``max-age``) of the response when
it gives one, minus the ``Age`` the upstream reported; an expired entry is dropped when it is next
asked for (and by LRU pressure before that).  No revalidation: an entry is fresh or gone.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from data_plane.errors import SnapshotError

DEFAULT_BYTES: Final = 64 * 1024 * 1024  # TOLLGATE_CACHE_BYTES
DEFAULT_MAX_OBJECT: Final = 1024 * 1024
MAX_VARIANTS: Final = 16  # Vary variants kept per key, the oldest replaced first
# Bookkeeping a stored entry costs beyond its bytes (objects, dict slot, list): counted in the bound
# so a million tiny entries cannot outgrow it.
ENTRY_OVERHEAD: Final = 256
# Statuses a cache may store without explicit freshness (RFC 9110 15.1 "heuristically cacheable"),
# the ones a rule may list; 206 is never one (a part is not the answer to a whole GET).
CACHEABLE_STATUSES: Final = frozenset((200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501))
MAX_KEY_HEADERS: Final = 20
_HTTP11_SUFFIX: Final = 9  # len(b" HTTP/1.1"): the end of the request line request_head builds


class CacheEntry:
    """One stored response: the upstream's status and fields (``content-length`` set to the body's,
    no ``Age``), the body, when it was stored (store clock) and until when it is fresh, the ``Age``
    the upstream gave, the request values of its ``Vary`` fields, and what it costs the bound."""

    __slots__ = ("status", "headers", "body", "stored_at", "expires", "age", "vary", "vary_values", "size", "api_id")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        stored_at: float,
        expires: float,
        age: int,
        vary: tuple[bytes, ...],
        vary_values: tuple[bytes | None, ...],
        api_id: str,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stored_at = stored_at
        self.expires = expires
        self.age = age
        self.vary = vary
        self.vary_values = vary_values
        self.api_id = api_id
        size = ENTRY_OVERHEAD + len(body)
        for name, value in headers:
            size += len(name) + len(value) + 4
        self.size = size

    def age_at(self, now: float) -> int:
        """The ``Age`` to send: seconds since stored, plus what the upstream said it had."""
        return self.age + int(now - self.stored_at)


class ResponseCache:
    """A worker's response store: key -> variants (Vary), at most ``max_bytes`` in all (entries'
    bodies, fields and :data:`ENTRY_OVERHEAD`), the least recently used key evicted first (with its
    variants).  ``clock``: monotonic seconds (tests pass their own)."""

    __slots__ = ("max_bytes", "clock", "entries", "bytes", "epochs", "hits", "misses", "stores", "evictions")

    def __init__(self, max_bytes: int = DEFAULT_BYTES, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self.entries: OrderedDict[bytes, list[CacheEntry]] = OrderedDict()
        self.bytes = 0
        self.epochs: dict[str, int] = {}  # api id -> cache_epoch of the last snapshot applied
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.evictions = 0

    def get(self, key: bytes, headers: list[tuple[bytes, bytes]], max_age: int = -1) -> CacheEntry | None:
        """The fresh variant of ``key`` the request ``headers`` match (``max_age`` >= 0: the
        request's own limit on the entry's age), or None."""
        variants = self.entries.get(key)
        if variants is not None:
            now = self.clock()
            for e in variants:
                if e.vary and vary_values(headers, e.vary) != e.vary_values:
                    continue
                if now >= e.expires:
                    self._drop_variant(key, variants, e)
                    break
                if max_age >= 0 and e.age_at(now) > max_age:
                    break
                self.entries.move_to_end(key)
                self.hits += 1
                return e
        self.misses += 1
        return None

    def put(self, key: bytes, entry: CacheEntry) -> bool:
        """Store ``entry`` under ``key`` (replacing the variant with the same Vary values); False
        when it is larger than the whole store."""
        if entry.size > self.max_bytes:
            return False
        variants = self.entries.get(key)
        if variants is None:
            self.entries[key] = [entry]
        else:
            for i, e in enumerate(variants):
                if e.vary == entry.vary and e.vary_values == entry.vary_values:
                    self.bytes -= e.size
                    del variants[i]
                    break
            else:
                if len(variants) >= MAX_VARIANTS:
                    self.bytes -= variants.pop(0).size
            variants.append(entry)
            self.entries.move_to_end(key)
        self.bytes += entry.size
        self.stores += 1
        entries = self.entries
        while self.bytes > self.max_bytes:
            _, gone = entries.popitem(last=False)
            for e in gone:
                self.bytes -= e.size
            self.evictions += len(gone)
        return True

    def _drop_variant(self, key: bytes, variants: list[CacheEntry], entry: CacheEntry) -> None:
        variants.remove(entry)
        self.bytes -= entry.size
        if not variants:
            del self.entries[key]

    def purge(self, api_ids: set[str]) -> int:
        """Drop every entry of these APIs; the number dropped."""
        dropped = 0
        for key in [k for k, v in self.entries.items() if v[0].api_id in api_ids]:
            for e in self.entries.pop(key):
                self.bytes -= e.size
                dropped += 1
        return dropped

    def retain(self, epochs: dict[str, int]) -> int:
        """After a snapshot was applied (``epochs``: its APIs' ``cache_epoch``): drop the entries of
        APIs that are gone or were purged (their epoch changed).  Keys carry the epoch too, so an
        exchange of the old config that stores after this cannot bring purged content back."""
        old = self.epochs
        self.epochs = dict(epochs)
        gone = {api_id for api_id, epoch in old.items() if epochs.get(api_id) != epoch}
        return self.purge(gone) if gone and self.entries else 0

    def status(self) -> dict[str, int]:
        return {
            "max_bytes": self.max_bytes,
            "bytes": self.bytes,
            "keys": len(self.entries),
            "hits": self.hits,
            "misses": self.misses,
            "stores": self.stores,
            "evictions": self.evictions,
        }


class CacheFill:
    """A response on its way to the store: what :meth:`CacheRule.fill` kept of its head, and the
    body as it streams (None once it grew over the rule's ``max_object_bytes``)."""

    __slots__ = ("status", "headers", "chunks", "size", "vary", "lifetime", "age")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], vary: tuple[bytes, ...], lifetime: int, age: int
    ) -> None:
        self.status = status
        self.headers = headers
        self.chunks: list[bytes] | None = []
        self.size = 0
        self.vary = vary
        self.lifetime = lifetime
        self.age = age


class CacheRule:
    """One route's compiled ``cache`` policy, bound to the worker's store."""

    __slots__ = (
        "store",
        "api_id",
        "prefix",
        "ttl",
        "key_headers",
        "key_index",
        "shared",
        "statuses",
        "max_object_bytes",
        "keys_authorization",
    )

    def __init__(
        self,
        store: ResponseCache | None,
        api_id: str,
        prefix: bytes,
        ttl: int,
        key_headers: tuple[bytes, ...],
        shared: bool,
        statuses: frozenset[int],
        max_object_bytes: int,
    ) -> None:
        self.store = store
        self.api_id = api_id
        self.prefix = prefix  # route id and cache epoch
        self.ttl = ttl
        self.key_headers = key_headers
        self.key_index = {name: i for i, name in enumerate(key_headers)}
        self.shared = shared
        self.statuses = statuses
        self.max_object_bytes = max_object_bytes
        self.keys_authorization = b"authorization" in self.key_index

    # -------------------------------------------------------------- request side

    def key(
        self, method: str, head: bytes, headers: list[tuple[bytes, bytes]], customer_id: bytes, authenticated: bool
    ) -> bytes | None:
        """The request's key, or None when the request neither uses nor fills the cache.

        ``head``: the upstream request head (its request line names the target the upstream gets,
        :func:`data_plane.http.headers.request_head`); ``headers``: the fields as forwarded;
        ``authenticated``: the route's API authenticates callers."""
        if method != "GET" and method != "HEAD":
            return None
        key_index = self.key_index
        values: list[bytes] | None = [b""] * len(self.key_headers) if key_index else None
        for name, value in headers:
            if name == b"cache-control":
                if b"no-store" in value.lower():
                    return None
            elif name == b"authorization":
                if not authenticated and not self.keys_authorization:
                    return None  # a shared cache must not answer it (RFC 9111 3.5)
            elif name == b"range" or name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return None  # a part, or a request with a body: straight upstream
            if values is not None:
                i = key_index.get(name)
                if i is not None:
                    values[i] = values[i] + b", " + value if values[i] else value
        end = head.find(b"\r\n") - _HTTP11_SUFFIX
        parts = [self.prefix, head[len(method) + 1 : end]]
        if values is not None:
            parts += values
        if not self.shared:
            parts.append(customer_id)
        return b"\0".join(parts)

    def lookup(self, key: bytes, headers: list[tuple[bytes, bytes]]) -> CacheEntry | None:
        """The stored answer for ``key``, unless the request's Cache-Control asks for a fresh one."""
        store = self.store
        if store is None:
            return None
        max_age = -1
        for name, value in headers:
            if name == b"cache-control":
                d = directives(value)
                if b"no-cache" in d:
                    return None
                arg = d.get(b"max-age")
                if arg is not None:
                    max_age = seconds(arg)
        return store.get(key, headers, max_age)

    def age(self, entry: CacheEntry) -> int:
        store = self.store
        return entry.age_at(store.clock()) if store is not None else entry.age

    # -------------------------------------------------------------- response side

    def fill(self, status: int, headers: list[tuple[bytes, bytes]]) -> CacheFill | None:
        """Whether a GET response may be stored (None: not); ``headers``: the upstream's fields, before
        the route's response transform (that runs again on every hit)."""
        if status not in self.statuses:
            return None
        ttl = self.ttl
        age = 0
        vary: list[bytes] = []
        kept: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            if name == b"cache-control":
                d = directives(value)
                if b"no-store" in d or b"private" in d or b"no-cache" in d:
                    return None
                arg = d.get(b"s-maxage")  # a shared cache's own lifetime first (RFC 9111 5.2.2.10)
                if arg is None:
                    arg = d.get(b"max-age")
                if arg is not None:
                    ttl = min(ttl, seconds(arg))
            elif name == b"set-cookie":
                return None  # one client's cookie must never reach another
            elif name == b"vary":
                for part in value.split(b","):
                    field = part.strip().lower()
                    if field == b"*":
                        return None
                    if field and field not in vary:
                        vary.append(field)
            elif name == b"age":
                age = max(seconds(value), 0)
                continue
            elif name == b"content-length":
                if seconds(value) > self.max_object_bytes:
                    return None
                continue  # set again from the body when stored
            kept.append((name, value))
        lifetime = ttl - age
        if lifetime <= 0:
            return None
        vary.sort()
        return CacheFill(status, kept, tuple(vary), lifetime, age)

    def add(self, fill: CacheFill, chunk: bytes) -> None:
        chunks = fill.chunks
        if chunks is not None:
            fill.size += len(chunk)
            if fill.size > self.max_object_bytes:
                fill.chunks = None
            else:
                chunks.append(chunk)

    def put(self, key: bytes, fill: CacheFill, headers: list[tuple[bytes, bytes]]) -> None:
        """A complete response: stored (``headers``: the request's, for its Vary values)."""
        store = self.store
        chunks = fill.chunks
        if store is None or chunks is None:
            return
        body = b"".join(chunks)
        fields = fill.headers
        if fill.status != 204:  # (a 204 never carries a Content-Length: RFC 9110 8.6)
            fields.append((b"content-length", b"%d" % len(body)))
        now = store.clock()
        entry = CacheEntry(
            fill.status,
            fields,
            body,
            now,
            now + fill.lifetime,
            fill.age,
            fill.vary,
            vary_values(headers, fill.vary) if fill.vary else (),
            self.api_id,
        )
        store.put(key, entry)


def vary_values(headers: list[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> tuple[bytes | None, ...]:
    """The request's values of the ``Vary`` fields (several lines joined; None: absent)."""
    out: list[bytes | None] = [None] * len(names)
    for name, value in headers:
        if name in names:
            i = names.index(name)
            prev = out[i]
            out[i] = value.strip() if prev is None else prev + b", " + value.strip()
    return tuple(out)


def directives(value: bytes) -> dict[bytes, bytes]:
    """Cache-Control directives, names lower-cased, arguments unquoted (b"" without one).  A quoted
    argument with a comma (``no-cache="a, b"``) splits into junk names no rule reads."""
    out: dict[bytes, bytes] = {}
    for part in value.split(b","):
        name, _, arg = part.partition(b"=")
        name = name.strip().lower()
        if name:
            out[name] = arg.strip().strip(b'"')
    return out


def seconds(arg: bytes) -> int:
    """delta-seconds (RFC 9111 1.2.2); what does not parse counts as 0 (stale: RFC 9111 4.2.1)."""
    arg = arg.strip()
    return int(arg) if arg.isdigit() else 0


def compile_cache(
    doc: dict[str, Any], where: str, env: Any = None, *, api_id: str = "", route_id: str = "", epoch: int = 0
) -> CacheRule:
    """The rule of one route (``env.cache``: the worker's store; without one the rule stores nothing)."""
    from data_plane.policies import get

    if not isinstance(doc, dict):
        raise SnapshotError(f"{where} must be an object")
    ttl = get(doc, "ttl", int, where)
    if ttl is None or not 1 <= ttl <= 86400:
        raise SnapshotError(f"{where}.ttl must be an integer from 1 to 86400 (seconds)")
    raw_headers = get(doc, "key_headers", list, where, [])
    if len(raw_headers) > MAX_KEY_HEADERS:
        raise SnapshotError(f"{where}.key_headers: at most {MAX_KEY_HEADERS}")
    names: list[bytes] = []
    for i, name in enumerate(raw_headers):
        if not isinstance(name, str) or not name or not name.isascii() or any(c in name for c in " \t:\r\n"):
            raise SnapshotError(f"{where}.key_headers[{i}] is not a header name")
        b = name.lower().encode("ascii")
        if b not in names:
            names.append(b)
    statuses = get(doc, "statuses", list, where, [200])
    for i, status in enumerate(statuses):
        if not isinstance(status, int) or isinstance(status, bool) or status not in CACHEABLE_STATUSES:
            allowed = ", ".join(str(s) for s in sorted(CACHEABLE_STATUSES))
            raise SnapshotError(f"{where}.statuses[{i}]: {status!r} is not one of {allowed}")
    max_object = get(doc, "max_object_bytes", int, where, DEFAULT_MAX_OBJECT)
    if max_object < 1:
        raise SnapshotError(f"{where}.max_object_bytes must be at least 1")
    shared = get(doc, "shared", bool, where, False)
    store = getattr(env, "cache", None) if env is not None else None
    # The rule itself is in the key too: a changed policy (a shorter ttl, other key headers) starts
    # from an empty cache instead of serving what the old one stored; those entries age out (LRU).
    digest = zlib.crc32(json.dumps(doc, sort_keys=True).encode())
    prefix = route_id.encode() + b"\0" + b"%d.%08x" % (epoch, digest)
    return CacheRule(store, api_id, prefix, ttl, tuple(names), shared, frozenset(statuses), max_object)
