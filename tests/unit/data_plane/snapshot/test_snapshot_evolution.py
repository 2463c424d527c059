"""The contract can evolve (issue 21, item 3): a snapshot of a newer minor version, hashed by its
sender over every member it holds, is accepted by this worker, which ignores what it does not know.

The newer sender is simulated the way a real one works: it encodes its (bigger) document and hashes
the canonical JSON of all of it (``wire.content_hash``), fields this worker has never heard of included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from data_plane.snapshot import Snapshot, SnapshotError, wire
from data_plane.sync import read_cache, write_cache

KEY_HASH = "ab" * 32


def _newer(**extra_top: Any) -> dict[str, Any]:
    """A 1.(x+1) document: one unknown field on nearly every object, and an unknown top-level kind."""
    major, minor = (int(p) for p in Snapshot(revision=0).schema_version.split("."))
    doc: dict[str, Any] = {
        "schema_version": f"{major}.{minor + 1}",
        "upstreams": [
            {
                "id": "u1",
                "name": "orders",
                "algorithm": "round_robin",
                "connect_timeout": 5.0,
                "read_timeout": 60.0,
                "retries": 0,
                "targets": [{"id": "t1", "host": "127.0.0.1", "port": 9000, "weight": 100, "zone": "eu-1"}],
                "slow_start": {"window": 30.0},
            }
        ],
        "apis": [
            {
                "id": "a1",
                "name": "orders",
                "base_path": "/orders",
                "hosts": [],
                "auth": "api_key",
                "strip_base_path": True,
                "max_body_bytes": None,
                "routes": [{"id": "r1", "path": "/{id}", "upstream_id": "u1", "methods": [], "mirror_to": "u1"}],
                "deprecation": {"sunset": "2030-01-01"},
            }
        ],
        "customers": [{"id": "c1", "name": "acme", "status": "active", "api_ids": ["a1"], "tier": "gold"}],
        "keys": [
            {"id": "k1", "customer_id": "c1", "key_hash": KEY_HASH, "prefix": "tg_ab", "expires_at": None, "scopes": []}
        ],
        "waf_rules": [{"id": "w1", "pattern": "union select"}],
        **extra_top,
    }
    doc["hash"] = wire.content_hash(doc)  # what the newer sender computes: over everything it sent
    doc["revision"] = 41
    doc["generated_at"] = "2030-01-01T00:00:00.000Z"
    return doc


def test_a_newer_minor_version_with_unknown_fields_is_accepted_and_keeps_its_senders_hash() -> None:
    doc = _newer()
    snap = Snapshot.from_json(json.dumps(doc))
    assert snap.hash == doc["hash"]  # reported back as the sender's hash: the node shows in sync
    assert snap.revision == 41
    assert [k.key_hash for k in snap.keys] == [KEY_HASH]
    assert snap.apis[0].routes[0].path == "/{id}"
    # the fields this worker knows re-encode to a different content: the old rule would have refused it
    assert snap.compute_hash() != doc["hash"]


def test_the_hash_still_covers_the_unknown_fields() -> None:
    doc = _newer()
    doc["upstreams"][0]["slow_start"]["window"] = 31.0  # changed after hashing: tampered or corrupt
    with pytest.raises(SnapshotError, match="hash does not match"):
        Snapshot.from_dict(doc)
    doc = _newer()
    doc["waf_rules"][0]["pattern"] = "x"
    with pytest.raises(SnapshotError, match="hash does not match"):
        Snapshot.from_dict(doc)


def test_the_known_fields_are_still_validated() -> None:
    doc = _newer()
    doc["upstreams"][0]["targets"][0]["port"] = 0
    doc["hash"] = wire.content_hash(doc)
    with pytest.raises(SnapshotError, match="port 0 is out of range"):
        Snapshot.from_dict(doc)


def test_a_newer_major_version_is_still_refused() -> None:
    doc = _newer()
    doc["schema_version"] = "2.0"
    doc["hash"] = wire.content_hash(doc)
    with pytest.raises(SnapshotError, match="newer than this worker understands"):
        Snapshot.from_dict(doc)


def test_the_cache_keeps_the_bytes_received_so_it_reads_back_with_the_same_hash(tmp_path: Path) -> None:
    body = json.dumps(_newer()).encode()
    snap = Snapshot.from_json(body)
    path = tmp_path / "snapshot-8000.json"
    write_cache(path, body)
    again = read_cache(path)
    assert again is not None and again.hash == snap.hash
    assert json.loads(path.read_bytes())["waf_rules"]  # unknown members kept, for the day the worker knows them


def test_a_snapshot_of_this_version_hashes_the_same_by_both_rules() -> None:
    doc = _newer() | {"schema_version": Snapshot(revision=0).schema_version}
    del doc["hash"]
    snap = Snapshot.from_dict(doc)  # sealed from the fields this worker knows
    doc = json.loads(snap.to_json())
    assert wire.content_hash(doc) == snap.hash == Snapshot.from_dict(doc).hash
