"""The response store and the cache rule with plain values and an injected clock."""

from __future__ import annotations

import dataclasses

import pytest

from data_plane import snapshot as snap
from data_plane.compiler import compile_snapshot
from data_plane.errors import SnapshotError
from data_plane.http.headers import request_head
from data_plane.policies import PolicyEnv
from data_plane.policies.cache import (
    ENTRY_OVERHEAD,
    CacheEntry,
    CacheRule,
    ResponseCache,
    compile_cache,
    directives,
    vary_values,
)

Headers = list[tuple[bytes, bytes]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(
    body: bytes = b"x",
    *,
    ttl: float = 60,
    api: str = "a",
    vary: tuple[bytes, ...] = (),
    values: tuple[bytes | None, ...] = (),
) -> CacheEntry:
    return CacheEntry(200, [], body, 1000.0, 1000.0 + ttl, 0, vary, values, api)


def rule(store: ResponseCache | None = None, **doc: object) -> CacheRule:
    return compile_cache({"ttl": 60, **doc}, "cache", PolicyEnv(cache=store), api_id="a", route_id="r", epoch=0)


def head(path: bytes, method: str = "GET") -> bytes:
    return request_head(
        method, path, [], peer_ip=b"1.2.3.4", host=b"h", request_id=b"rid", inject=b"", upgrade=False, chunked=False
    )


def fill_and_put(r: CacheRule, key: bytes, response: Headers, body: bytes, request: Headers | None = None) -> bool:
    fill = r.fill(200, response)
    if fill is None:
        return False
    r.add(fill, body)
    r.put(key, fill, request or [])
    return True


# ---------------------------------------------------------------------------- the store


def test_lru_by_bytes_evicts_least_recently_used_first() -> None:
    size = entry(b"x" * 100).size
    assert size == ENTRY_OVERHEAD + 100
    store = ResponseCache(max_bytes=3 * size, clock=Clock())
    for k in (b"a", b"b", b"c"):
        assert store.put(k, entry(b"x" * 100))
    assert store.bytes == 3 * size
    assert store.get(b"a", []) is not None  # a is now the most recently used: b goes first
    store.put(b"d", entry(b"x" * 100))
    assert list(store.entries) == [b"c", b"a", b"d"]
    assert store.bytes == 3 * size <= store.max_bytes
    assert store.evictions == 1
    store.put(b"e", entry(b"x" * 100))
    assert list(store.entries) == [b"a", b"d", b"e"]


def test_an_entry_larger_than_the_store_is_not_stored_and_evicts_nothing() -> None:
    store = ResponseCache(max_bytes=1000, clock=Clock())
    store.put(b"a", entry(b"x"))
    assert not store.put(b"big", entry(b"x" * 1000))
    assert list(store.entries) == [b"a"]


def test_ttl_expiry_with_the_clock_and_the_entry_is_dropped() -> None:
    clock = Clock()
    store = ResponseCache(clock=clock)
    store.put(b"k", entry(ttl=10))
    clock.now += 9.5
    got = store.get(b"k", [])
    assert got is not None and got.age_at(clock.now) == 9
    clock.now += 0.5
    assert store.get(b"k", []) is None
    assert store.entries == {} and store.bytes == 0
    assert (store.hits, store.misses) == (1, 1)


def test_request_max_age_refuses_an_older_entry_but_keeps_it() -> None:
    clock = Clock()
    store = ResponseCache(clock=clock)
    store.put(b"k", entry())
    clock.now += 5
    assert store.get(b"k", [], max_age=4) is None
    assert store.get(b"k", [], max_age=5) is not None


def test_vary_variants_match_the_request_values() -> None:
    store = ResponseCache(clock=Clock())
    names = (b"accept-language",)
    store.put(b"k", entry(b"en", vary=names, values=(b"en",)))
    store.put(b"k", entry(b"fr", vary=names, values=(b"fr",)))
    store.put(b"k", entry(b"none", vary=names, values=(None,)))
    assert len(store.entries[b"k"]) == 3
    assert store.get(b"k", [(b"accept-language", b"fr")]).body == b"fr"  # type: ignore[union-attr]
    assert store.get(b"k", [(b"accept-language", b"en")]).body == b"en"  # type: ignore[union-attr]
    assert store.get(b"k", []).body == b"none"  # type: ignore[union-attr]
    assert store.get(b"k", [(b"accept-language", b"de")]) is None
    # the same values again replace that variant
    store.put(b"k", entry(b"fr2", vary=names, values=(b"fr",)))
    assert len(store.entries[b"k"]) == 3
    assert store.get(b"k", [(b"accept-language", b"fr")]).body == b"fr2"  # type: ignore[union-attr]
    assert store.bytes == sum(e.size for e in store.entries[b"k"])


def test_vary_values_join_lines_and_mark_absent_fields() -> None:
    headers = [(b"accept", b"a"), (b"x-v", b" 1 "), (b"accept", b"b")]
    assert vary_values(headers, (b"accept", b"missing", b"x-v")) == (b"a, b", None, b"1")


def test_purge_and_retain_drop_by_api_and_epoch() -> None:
    store = ResponseCache(clock=Clock())
    store.retain({"a": 0, "b": 0})
    store.put(b"a1", entry(api="a"))
    store.put(b"b1", entry(api="b"))
    assert store.retain({"a": 0, "b": 0}) == 0  # nothing changed
    assert store.retain({"a": 1, "b": 0}) == 1  # a was purged
    assert list(store.entries) == [b"b1"]
    assert store.retain({"a": 1}) == 1  # b is gone from the config
    assert store.entries == {} and store.bytes == 0


# ---------------------------------------------------------------------------- Cache-Control and the rule


def test_directives_parse_names_and_arguments() -> None:
    assert directives(b'Public, MAX-AGE=60, s-maxage="30", no-cache="set-cookie"') == {
        b"public": b"",
        b"max-age": b"60",
        b"s-maxage": b"30",
        b"no-cache": b"set-cookie",
    }


@pytest.mark.parametrize(
    ("fields", "lifetime"),
    [
        ([], 60),
        ([(b"cache-control", b"max-age=10")], 10),
        ([(b"cache-control", b"max-age=600")], 60),  # never longer than the rule's ttl
        ([(b"cache-control", b"max-age=10, s-maxage=20")], 20),  # a shared cache's own first
        ([(b"cache-control", b"max-age=30"), (b"age", b"12")], 18),
        ([(b"cache-control", b"public")], 60),
    ],
)
def test_lifetime_from_the_rule_and_the_response(fields: Headers, lifetime: int) -> None:
    fill = rule().fill(200, fields)
    assert fill is not None and fill.lifetime == lifetime


@pytest.mark.parametrize(
    "fields",
    [
        [(b"cache-control", b"no-store")],
        [(b"cache-control", b"private")],
        [(b"cache-control", b'private="x-user"')],
        [(b"cache-control", b"No-Cache")],
        [(b"cache-control", b"max-age=0")],
        [(b"cache-control", b"max-age=abc")],
        [(b"cache-control", b"max-age=5"), (b"age", b"5")],
        [(b"set-cookie", b"session=1")],
        [(b"vary", b"accept, *")],
        [(b"content-length", b"2000")],
    ],
)
def test_responses_that_are_not_stored(fields: Headers) -> None:
    assert rule(max_object_bytes=1000).fill(200, fields) is None


def test_only_the_rule_statuses_are_stored() -> None:
    assert rule().fill(404, []) is None
    assert rule(statuses=[200, 404]).fill(404, []) is not None


def test_a_body_that_grows_over_the_object_limit_is_dropped() -> None:
    store = ResponseCache(clock=Clock())
    r = rule(store, max_object_bytes=10)
    fill = r.fill(200, [])
    assert fill is not None
    r.add(fill, b"x" * 6)
    r.add(fill, b"x" * 6)
    r.put(b"k", fill, [])
    assert store.entries == {}


def test_stored_fields_lose_age_and_framing_and_get_the_body_length() -> None:
    store = ResponseCache(clock=Clock())
    r = rule(store)
    response = [(b"content-type", b"text/plain"), (b"age", b"3"), (b"transfer-encoding", b"chunked")]
    assert fill_and_put(r, b"k", response, b"hello")
    e = store.get(b"k", [])
    assert e is not None and e.body == b"hello" and e.age == 3
    assert (b"age", b"3") not in e.headers
    assert e.headers[-1] == (b"content-length", b"5")


def test_a_204_is_stored_without_a_length() -> None:
    store = ResponseCache(clock=Clock())
    r = rule(store, statuses=[204])
    fill = r.fill(204, [(b"x-a", b"1")])
    assert fill is not None
    r.put(b"k", fill, [])
    e = store.get(b"k", [])
    assert e is not None and e.status == 204 and e.headers == [(b"x-a", b"1")] and e.body == b""


def test_vary_names_are_kept_with_the_entry() -> None:
    store = ResponseCache(clock=Clock())
    r = rule(store)
    assert fill_and_put(r, b"k", [(b"vary", b"Accept-Language, accept")], b"en", [(b"accept-language", b"en")])
    assert store.get(b"k", [(b"accept-language", b"en")]) is not None
    assert store.get(b"k", [(b"accept-language", b"fr")]) is None
    [e] = store.entries[b"k"]
    assert e.vary == (b"accept", b"accept-language")


def test_key_parts_customer_headers_and_method() -> None:
    r = rule(key_headers=["Accept"])
    k = r.key("GET", head(b"/items?a=1"), [(b"accept", b"json")], b"c1", True)
    assert k == r.prefix + b"\x00/items?a=1\x00json\x00c1" and r.prefix.startswith(b"r\x000.")
    assert r.key("HEAD", head(b"/items?a=1", "HEAD"), [(b"accept", b"json")], b"c1", True) == k  # HEAD reads GET's
    assert r.key("GET", head(b"/items?a=1"), [(b"accept", b"xml")], b"c1", True) != k
    assert r.key("GET", head(b"/items?a=1"), [(b"accept", b"json")], b"c2", True) != k
    assert r.key("GET", head(b"/items?a=2"), [(b"accept", b"json")], b"c1", True) != k
    shared = rule(shared=True)
    assert shared.key("GET", head(b"/x"), [], b"c1", True) == shared.key("GET", head(b"/x"), [], b"c2", True)
    assert r.key("POST", head(b"/items", "POST"), [], b"c1", True) is None


def test_epoch_route_and_rule_are_in_the_key() -> None:
    doc = {"ttl": 5}
    one = compile_cache(doc, "c", None, route_id="r", epoch=1).key("GET", head(b"/x"), [], b"", False)
    two = compile_cache(doc, "c", None, route_id="r", epoch=2).key("GET", head(b"/x"), [], b"", False)
    other = compile_cache(doc, "c", None, route_id="s", epoch=1).key("GET", head(b"/x"), [], b"", False)
    changed = compile_cache({"ttl": 6}, "c", None, route_id="r", epoch=1).key("GET", head(b"/x"), [], b"", False)
    same = compile_cache({"ttl": 5}, "c", None, route_id="r", epoch=1).key("GET", head(b"/x"), [], b"", False)
    assert len({one, two, other, changed}) == 4 and same == one  # a changed rule starts afresh


@pytest.mark.parametrize(
    ("fields", "authenticated"),
    [
        ([(b"cache-control", b"no-store")], True),
        ([(b"authorization", b"Bearer x")], False),  # RFC 9111 3.5: not for a cache the API does not guard
        ([(b"range", b"bytes=0-1")], True),
        ([(b"content-length", b"3")], True),
        ([(b"transfer-encoding", b"chunked")], True),
    ],
)
def test_requests_that_bypass_the_cache(fields: Headers, authenticated: bool) -> None:
    assert rule().key("GET", head(b"/x"), fields, b"c", authenticated) is None


def test_authorization_is_cacheable_when_authenticated_or_keyed() -> None:
    auth = [(b"authorization", b"Bearer x")]
    assert rule().key("GET", head(b"/x"), auth, b"c", True) is not None
    keyed = rule(key_headers=["authorization"])
    assert keyed.key("GET", head(b"/x"), auth, b"", False) != keyed.key(
        "GET", head(b"/x"), [(b"authorization", b"Bearer y")], b"", False
    )


def test_request_no_cache_skips_the_lookup_max_age_limits_it() -> None:
    clock = Clock()
    store = ResponseCache(clock=clock)
    r = rule(store)
    key = r.key("GET", head(b"/x"), [], b"", False)
    assert key is not None and fill_and_put(r, key, [], b"body")
    clock.now += 3
    assert r.lookup(key, []) is not None
    assert r.lookup(key, [(b"cache-control", b"no-cache")]) is None
    assert r.lookup(key, [(b"cache-control", b"max-age=2")]) is None
    hit = r.lookup(key, [(b"cache-control", b"max-age=3")])
    assert hit is not None and r.age(hit) == 3


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "ttl must be"),
        ({"ttl": 0}, "ttl must be"),
        ({"ttl": True}, "wrong type"),
        ({"ttl": 5, "statuses": [206]}, "statuses[0]: 206"),
        ({"ttl": 5, "key_headers": ["a b"]}, "key_headers[0]"),
        ({"ttl": 5, "max_object_bytes": 0}, "max_object_bytes"),
        ({"ttl": 5, "shared": "yes"}, "wrong type"),
    ],
)
def test_bad_rules_name_the_place(doc: dict[str, object], message: str) -> None:
    with pytest.raises(SnapshotError, match="^cache") as info:
        compile_cache(doc, "cache", None)
    assert message in str(info.value)


def test_compiled_routes_share_the_worker_store_and_none_without_one() -> None:
    up = snap.Upstream(id="u", name="u", targets=(snap.Target(id="t", host="127.0.0.1", port=9),))
    route = snap.Route(id="r1", path="/{p+}", upstream_id="u")
    api = snap.Api(id="a", name="a", routes=(route,), policies={"cache": {"ttl": 5}}, cache_epoch=3)
    s = snap.Snapshot(revision=1, upstreams=(up,), apis=(api,)).sealed()
    store = ResponseCache()
    cfg = compile_snapshot(s, policy_env=PolicyEnv(cache=store))
    found = cfg.router.match("h", "GET", "/x")
    assert isinstance(found, tuple)
    traffic = found[0].traffic
    assert traffic is not None and traffic.cache is not None
    assert traffic.cache.store is store and traffic.cache.prefix.startswith(b"r1\x003.")
    bare = compile_snapshot(s, policy_env=PolicyEnv())
    found = bare.router.match("h", "GET", "/x")
    assert isinstance(found, tuple) and found[0].traffic is not None and found[0].traffic.cache is None
    bad = dataclasses.replace(api, policies={"cache": {"ttl": -1}})
    with pytest.raises(SnapshotError, match="policies.cache.ttl"):
        compile_snapshot(dataclasses.replace(s, apis=(bad,), hash="").sealed(), policy_env=PolicyEnv(cache=store))
