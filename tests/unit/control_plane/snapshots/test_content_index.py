"""control_plane/snapshots/content.py: per-entity bytes give the full build's hash and body exactly."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import zlib
from typing import Any

from control_plane.snapshots import content
from control_plane.snapshots.content import ContentIndex
from data_plane.snapshot import ApiKey, Snapshot, parse
from data_plane.snapshot.delta import EntityStore
from tests.unit.data_plane.snapshot.test_snapshot_wire import FULL


def test_the_index_hashes_and_encodes_as_the_full_build() -> None:
    snap = _ordered()
    index = ContentIndex.of(snap)
    assert index.hash == snap.hash
    assert index.body(snap.generated_at) == snap.to_json()
    parts = index.gzip_parts(snap.generated_at)
    assert gzip.decompress(b"".join(parts)) == snap.to_json()
    # one gzip member, as a streaming decoder that stops at the first member's end reads it (httpx does)
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert b"".join(decoder.decompress(p) for p in parts) + decoder.flush() == snap.to_json()
    assert decoder.eof and not decoder.unused_data


def test_after_changes_the_index_equals_a_snapshot_built_with_them() -> None:
    snap = _ordered()
    index = ContentIndex.of(snap)
    new_key = ApiKey(id="k3", customer_id="c1", key_hash="00" * 32, prefix="tg_00")
    index.upsert("key", new_key)
    index.remove("key", "k2")
    renamed = dataclasses.replace(snap.upstreams[0], name="aaa")
    index.upsert("upstream", renamed)
    expected = dataclasses.replace(
        snap,
        keys=(new_key, *(k for k in snap.keys if k.id != "k2")),
        upstreams=tuple(sorted((renamed, *snap.upstreams[1:]), key=lambda u: u.name)),
        hash="",
    ).sealed()
    parse.validate(expected)
    assert index.hash == expected.hash
    assert json.loads(index.body("x"))["keys"] == json.loads(expected.to_json())["keys"]


def test_a_delta_body_names_upserts_with_their_value_and_deletes_without() -> None:
    snap = _ordered()
    index = ContentIndex.of(snap)
    index.remove("key", "k2")
    doc = json.loads(index.delta_body(11, [("key", "k1"), ("key", "k2")]))
    assert doc["from_revision"] == 11 and doc["hash"] == index.hash
    assert doc["changes"][0]["op"] == "upsert" and doc["changes"][0]["value"]["id"] == "k1"
    assert doc["changes"][1] == {"id": "k2", "kind": "key", "op": "delete"}


def _ordered() -> Snapshot:
    """FULL in the order the control plane's build gives (what the index keeps), sealed."""
    parsed = Snapshot.from_dict(json.loads(json.dumps(FULL)))
    return dataclasses.replace(EntityStore.of(parsed).snapshot(), hash="", generated_at="g").sealed()


def test_random_changes_across_chunk_splits_hash_as_an_index_built_afresh(monkeypatch: Any) -> None:
    """Chunks of 4 keys: inserts split them, removes empty them; the kept SHA-256 states resume from
    the first changed piece, and must give what hashing everything again gives; each entity's bytes
    come back from its chunk's joined bytes."""
    monkeypatch.setattr(content, "CHUNK", 4)
    rng = random.Random(7)
    snap = _ordered()
    index = ContentIndex.of(snap)
    keys = {k.id: k for k in snap.keys}
    customer = snap.customers[0].id
    for step in range(300):
        if keys and rng.random() < 0.35:
            gone = rng.choice(sorted(keys))
            del keys[gone]
            index.remove("key", gone)
        else:
            ident = f"r{rng.randrange(60)}"  # new ids and upserts of existing ones (a new hash: re-ordered)
            key = ApiKey(id=ident, customer_id=customer, key_hash=f"{rng.randrange(16**8):08x}" * 8, prefix="tg_r")
            keys[ident] = key
            index.upsert("key", key)
        fresh = ContentIndex.of(dataclasses.replace(snap, keys=tuple(keys.values())))
        assert index.hash == fresh.hash, step
        assert index.body("g") == fresh.body("g"), step
        if step % 7 == 0:  # the deflated chunks kept from an earlier call: only the changed ones redone
            assert gzip.decompress(b"".join(index.gzip_parts("g"))) == fresh.body("g"), step
        # each entity's bytes, read back from its chunk's joined bytes (what a delta body carries)
        for ident in [*keys, "r-never"]:
            assert (
                index.doc("key", ident)
                == fresh.doc("key", ident)
                == (content.canonical(content.wire.key_doc(keys[ident])) if ident in keys else None)
            ), (step, ident)
    expected = dataclasses.replace(snap, keys=tuple(sorted(keys.values(), key=lambda k: k.key_hash)), hash="")
    assert index.hash == expected.sealed().hash
    assert max(len(c.order) for c in index.members["keys"].chunks) <= 4
