"""The packed key table (data_plane/snapshot/keytable.py) against a plain model: lookups by id, by
key hash and by customer, after random puts and drops, and after folding them into a new base."""

from __future__ import annotations

import hashlib
import random

import pytest

from data_plane.errors import SnapshotError
from data_plane.snapshot import ApiKey, Snapshot
from data_plane.snapshot.keytable import KeyPacker, KeyTable, PackedKeys


def _key(i: int, customer: str, expires: int | None = None) -> ApiKey:
    return ApiKey(f"k{i}\u00e9", customer, hashlib.sha256(b"%d" % i).hexdigest(), f"tg_{i}", expires)


def _check(table: KeyTable, model: dict[str, ApiKey]) -> None:
    assert len(table) == len(model)
    assert sorted(table, key=lambda k: k.key_hash) == sorted(model.values(), key=lambda k: k.key_hash)
    for k in model.values():
        assert table.get(k.id) == k
        assert table.by_hash(k.key_hash) == k
        assert table.holders(k.key_hash) == [k.id]
    by_customer: dict[str, set[str]] = {}
    for k in model.values():
        by_customer.setdefault(k.customer_id, set()).add(k.id)
    for customer, ids in by_customer.items():
        assert sorted(table.ids_of_customer(customer)) == sorted(ids)
    assert table.customer_ids() == set(by_customer)


def test_a_packed_table_answers_as_the_keys_it_was_made_of() -> None:
    keys = [_key(i, f"c{i % 7}", 10**12 if i % 3 == 0 else None) for i in range(500)]
    keys.append(ApiKey("\ud800lone", "c\udfff", "f" * 64, "", -1))  # JSON can carry lone surrogates
    table = KeyTable.of(keys)
    assert list(table) == keys  # the order given, while nothing changed
    assert table[0] == keys[0] and table[-1] == keys[-1]
    _check(table, {k.id: k for k in keys})
    assert table.get("nope") is None and table.by_hash("0" * 64) is None and table.by_hash("xyz") is None
    assert table.ids_of_customer("nobody") == []
    # the buffer is all there is: read back, it is the same table
    again = KeyTable(PackedKeys(table.base.buf))
    _check(again, {k.id: k for k in keys})


def test_random_puts_and_drops_then_folding_match_a_plain_model() -> None:
    rng = random.Random(7)
    model = {k.id: k for k in (_key(i, f"c{i % 13}") for i in range(300))}
    table = KeyTable.of(sorted(model.values(), key=lambda k: k.key_hash))
    assert table.base.ascending
    for step in range(600):
        op = rng.random()
        if op < 0.4 and model:
            ident = rng.choice(sorted(model))
            assert table.drop(ident) == model.pop(ident)
        elif op < 0.7 and model:  # replaced: a rotation keeps the id, moves the hash or the customer
            ident = rng.choice(sorted(model))
            old = model[ident]
            new = ApiKey(ident, f"c{rng.randrange(20)}", hashlib.sha256(b"r%d" % step).hexdigest(), old.prefix, step)
            assert table.drop(ident) == old
            table.put(new)
            model[ident] = new
        else:
            k = _key(1000 + step, f"c{rng.randrange(20)}")
            table.put(k)
            model[k.id] = k
        assert table.drop("never-there") is None
        if step % 97 == 0:
            _check(table, model)
        if step % 250 == 249:
            held = table
            table.compact()
            assert table is held and table.changes() == 0
            _check(table, model)
    _check(table, model)


def test_packing_refuses_a_hash_or_an_id_given_twice_and_an_unknown_customer() -> None:
    a = _key(1, "c")
    with pytest.raises(SnapshotError, match=r"keys\[1\]\.key_hash is duplicated"):
        PackedKeys.of([a, ApiKey("other", "c", a.key_hash, "p")])
    with pytest.raises(SnapshotError, match=r"keys\[1\]\.id .* is duplicated"):
        PackedKeys.of([a, ApiKey(a.id, "c", "e" * 64, "p")])
    packer = KeyPacker({"c": "c"})
    with pytest.raises(SnapshotError, match=r"keys\[0\]\.customer_id 'd' names no customer"):
        packer.add("k", "d", "a" * 64, "p", None)


def test_a_snapshot_with_packed_keys_equals_one_with_a_tuple() -> None:
    keys = tuple(_key(i, "c") for i in range(5))
    assert KeyTable.of(keys) == keys
    assert keys == KeyTable.of(keys)
    assert Snapshot(revision=1, keys=KeyTable.of(keys)) == Snapshot(revision=1, keys=keys)
    assert KeyTable.of(keys) != keys[:4]
    assert keys[2] in KeyTable.of(keys) and _key(9, "c") not in KeyTable.of(keys)
