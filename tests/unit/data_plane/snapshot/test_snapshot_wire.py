"""The wire form and its hash (data_plane/snapshot/wire.py, parse.py): round trips and what the hash covers.

Field-by-field round trips of the 1.1, 1.2 and 1.4 additions live in test_snapshot_lb_fields.py,
test_auth_tables.py and test_auth_jwks.py; these cases take a document with every object kind.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from data_plane.snapshot import Plan, Snapshot, SnapshotError, parse, wire

# Every object kind, every optional field away from its default.
FULL: dict[str, Any] = {
    "schema_version": "1.5",
    "revision": 12,
    "generated_at": "2024-05-01T00:00:00Z",
    "upstreams": [
        {
            "id": "u1",
            "name": "orders",
            "algorithm": "consistent_hash",
            "connect_timeout": 1.5,
            "read_timeout": 9,
            "retries": 2,
            "targets": [
                {"id": "t1", "host": "10.0.0.1", "port": 8080, "weight": 3},
                {"id": "t2", "host": "b", "port": 1},
            ],
            "hash_on": "header",
            "hash_key": "x-user",
            "health_check": {"path": "/health", "method": "HEAD", "interval": 2, "expected_statuses": [200, 204]},
            "passive": {"consecutive_failures": 3, "statuses": [502], "base_ejection_time": 10},
            "panic": True,
            "total_timeout": 20,
            "max_connections": 8,
            "keepalive_timeout": 2.5,
        },
        {"id": "u2", "name": "files", "targets": []},
    ],
    "apis": [
        {
            "id": "a1",
            "name": "orders",
            "base_path": "/v1/orders/",
            "hosts": ["API.example.com", "*.example.org"],
            "auth": "jwt",
            "strip_base_path": False,
            "max_body_bytes": 1024,
            "rate_limit_headers": False,
            "auth_settings": {
                "key_header": "X-Key",
                "jwt_algorithms": ["HS256", "RS256"],
                "jwt_secret": "s3cret",
                "jwt_issuer": "https://issuer",
                "jwt_audience": "orders",
                "jwt_customer_claim": "cid",
                "jwt_jwks_url": "https://issuer/jwks",
                "jwt_jwks": [{"kid": "k1", "kty": "EC", "alg": "ES256", "crv": "P-256", "x": "xx", "y": "yy"}],
            },
            "routes": [
                {"id": "r1", "path": "/", "upstream_id": "u1"},
                {"id": "r2", "path": "/{id}", "upstream_id": "u1", "methods": ["GET", "DELETE"], "read_timeout": 3},
                {
                    "id": "r3",
                    "path": "/{id}/files/{rest+}",
                    "upstream_id": "u2",
                    "connect_timeout": 1,
                    "total_timeout": 4,
                },
            ],
        },
        {
            "id": "a2",
            "name": "open",
            "auth": "api_key",
            "auth_settings": {"key_query": "key", "strip_credential": False},
        },
    ],
    "customers": [
        {
            "id": "c1",
            "name": "acme",
            "api_ids": ["a2"],
            "plan_id": "p1",
            "quota_extra": 100,
            "quota_extra_start": 1000,
            "quota_extra_end": 2000,
        },
        {"id": "c2", "name": "idle", "status": "suspended"},
    ],
    "keys": [
        {"id": "k1", "customer_id": "c1", "key_hash": "ab" * 32, "prefix": "tg_ab", "expires_at": 1_900_000_000},
        {"id": "k2", "customer_id": "c2", "key_hash": "cd" * 32, "prefix": "tg_cd"},
    ],
    "plans": [
        {
            "id": "p1",
            "name": "gold",
            "throttle": {"rate": 2.5, "burst": 5},
            "quota": {"limit": 1000, "period": "MONTH"},
            "apis": [{"api_id": "a1", "overrides": [{"method": "GET", "path": "/{id}", "rate": 1, "burst": 2}]}],
        },
        {"id": "p2", "name": "free", "apis": [{"api_id": "a2"}]},
    ],
}
# Computed by the single-module data_plane/snapshot.py before the package split: the hashing rules are
# part of the contract (a worker's cache file and every running worker compare it).
FULL_HASH = "afc09cd52ae2c5343616f599a5103856d5f15dc5132429859de2c626cd89f062"


def test_a_full_document_round_trips_to_the_same_snapshot_and_bytes() -> None:
    snap = Snapshot.from_dict(FULL)
    assert snap.hash == FULL_HASH == snap.compute_hash()
    wire_json = snap.to_json()
    again = Snapshot.from_json(wire_json)
    assert again == snap and again.to_json() == wire_json
    assert isinstance(again.plans[0], Plan) and again.plans[0].apis[0].overrides[0].rate == 1.0
    # the methods are the functions of wire / parse
    assert wire.to_json(snap) == wire_json and parse.from_json(wire_json) == snap


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@pytest.mark.parametrize("seed", range(5))
def test_the_hash_does_not_depend_on_key_order(seed: int) -> None:
    doc = _shuffled(FULL, random.Random(seed))
    assert Snapshot.from_dict(doc).hash == FULL_HASH
    assert Snapshot.from_json(json.dumps(doc)).hash == FULL_HASH


def test_the_hash_covers_content_only() -> None:
    doc = {**FULL, "revision": 99, "generated_at": "later"}
    assert Snapshot.from_dict(doc).hash == FULL_HASH
    changed = copy.deepcopy(FULL)
    changed["upstreams"][0]["targets"][0]["weight"] = 4
    assert Snapshot.from_dict(changed).hash != FULL_HASH


MINIMAL: dict[str, Any] = {
    "schema_version": "1.5",
    "revision": 1,
    "upstreams": [{"id": "u", "name": "u", "targets": [{"id": "t", "host": "h", "port": 80}]}],
    "apis": [{"id": "a", "name": "a", "routes": [{"id": "r", "path": "/x", "upstream_id": "u"}]}],
}


def test_default_valued_fields_hash_as_if_absent() -> None:
    explicit = copy.deepcopy(MINIMAL)
    explicit["upstreams"][0].update(
        algorithm="round_robin",
        connect_timeout=5,
        read_timeout=60.0,
        retries=0,
        hash_on="ip",
        hash_key="",
        health_check=None,
        passive=None,
        panic=False,
        total_timeout=None,
        max_connections=0,
        keepalive_timeout=4,
    )
    explicit["upstreams"][0]["targets"][0]["weight"] = 100
    explicit["apis"][0].update(
        base_path="/",
        hosts=[],
        auth="none",
        strip_base_path=True,
        max_body_bytes=None,
        rate_limit_headers=True,
        auth_settings={"key_header": "X-API-Key", "strip_credential": True, "jwt_customer_claim": "sub"},
    )
    explicit["apis"][0]["routes"][0].update(methods=[], connect_timeout=None, read_timeout=None, total_timeout=None)
    explicit.update(customers=[], keys=[], plans=[])
    minimal = Snapshot.from_dict(MINIMAL)
    assert Snapshot.from_dict(explicit) == minimal
    assert Snapshot.from_dict(explicit).hash == minimal.hash
    # ... and the content leaves them out (so a document of an older minor version keeps its hash)
    content = minimal.content()
    assert set(content) == {"schema_version", "upstreams", "apis"}
    assert set(content["upstreams"][0]) == {
        "id",
        "name",
        "algorithm",
        "connect_timeout",
        "read_timeout",
        "retries",
        "targets",
    }
    assert "auth_settings" not in content["apis"][0] and "rate_limit_headers" not in content["apis"][0]


def test_a_hash_that_does_not_match_the_content_is_refused_and_a_missing_one_is_sealed() -> None:
    doc = Snapshot.from_dict(FULL).to_dict()
    doc["apis"][0]["name"] = "renamed"
    with pytest.raises(SnapshotError, match="does not match its content"):
        Snapshot.from_dict(doc)
    del doc["hash"]
    sealed = Snapshot.from_dict(doc)
    assert sealed.hash == sealed.compute_hash() != FULL_HASH


def test_an_invalid_plan_is_a_snapshot_error_naming_its_place() -> None:
    doc = copy.deepcopy(FULL)
    doc["plans"][0]["apis"][0]["overrides"][0]["rate"] = 0
    with pytest.raises(SnapshotError, match=r"^plans\[0\]\.apis\[0\]\.overrides\[0\]\.rate must be > 0$") as caught:
        Snapshot.from_dict(doc)
    assert type(caught.value) is SnapshotError  # PlanError is re-raised as the family's SnapshotError
