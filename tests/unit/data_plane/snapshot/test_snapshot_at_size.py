"""The parse paths a million-key snapshot takes (data_plane/snapshot/parse.py ``_keys``, wire.py
``spliced_hash``): the same answers as the general paths, errors included."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import pytest

from data_plane.snapshot import Snapshot, SnapshotError, wire
from data_plane.snapshot.keytable import copy_str
from tests.unit.data_plane.snapshot.test_snapshot_wire import FULL


def _canonical_body(doc: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    doc = copy.deepcopy(doc)
    doc["hash"] = wire.content_hash(doc)
    return doc, wire.canonical(doc)


def test_the_hash_of_canonical_bytes_is_taken_from_the_bytes_as_they_are() -> None:
    doc, body = _canonical_body(FULL)
    assert wire.spliced_hash(body, json.loads(body)) == doc["hash"]
    assert Snapshot.from_json(body).hash == doc["hash"]


def test_bytes_that_are_not_canonical_fall_back_to_encoding_the_document() -> None:
    doc, _ = _canonical_body(FULL)
    pretty = json.dumps(doc, indent=2).encode()  # same content, other bytes
    assert wire.spliced_hash(pretty, json.loads(pretty)) != doc["hash"]
    assert Snapshot.from_json(pretty).hash == doc["hash"]  # accepted by the general rule


def test_a_tampered_body_is_refused_by_both_rules() -> None:
    doc, body = _canonical_body(FULL)
    tampered = body.replace(b'"orders"', b'"orderz"', 1)
    assert tampered != body
    with pytest.raises(SnapshotError, match="does not match its content"):
        Snapshot.from_json(tampered)


def test_a_nested_member_that_looks_like_an_unhashed_one_does_not_fool_the_splice() -> None:
    """A newer version's field named like a top-level one, earlier in the bytes: the splice cuts the
    wrong place, the digest differs, the general rule decides."""
    doc = copy.deepcopy(FULL)
    doc["apis"][0]["revision"] = doc["revision"]  # unknown to this worker: ignored, but hashed
    doc, body = _canonical_body(doc)
    assert body.index(b',"revision":') < body.rindex(b',"revision":')
    assert Snapshot.from_json(body).hash == doc["hash"]


def test_keys_of_the_common_shape_and_odd_ones_parse_as_one_by_one() -> None:
    doc = copy.deepcopy(FULL)
    customer = doc["customers"][0]["id"]
    doc["keys"] = [
        {"id": "k1", "customer_id": customer, "key_hash": "a" * 64, "prefix": "tg_a"},
        {"id": "k2", "customer_id": customer, "key_hash": "b" * 64, "prefix": "tg_b", "expires_at": 5},
        {"id": "k3", "customer_id": customer, "key_hash": "c" * 64, "prefix": "tg_c", "new_in_1_9": [1]},
    ]
    doc.pop("hash", None)
    parsed = Snapshot.from_dict(doc)
    assert [(k.id, k.expires_at) for k in parsed.keys] == [("k1", None), ("k2", 5), ("k3", None)]
    # one string per customer: the keys hold the customer's own id object (kept by the packed table)
    assert all(k.customer_id is parsed.customers[0].id for k in parsed.keys)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"id": "k", "customer_id": "c1", "key_hash": "A" * 64, "prefix": "p"}, r"keys\[0\]\.key_hash must be 64"),
        ({"id": "k", "customer_id": "c1", "key_hash": "a" * 64 + "\n", "prefix": "p"}, r"keys\[0\]\.key_hash"),
        ({"id": "k", "customer_id": "c1", "key_hash": "a" * 64}, r"keys\[0\]\.prefix is missing"),
        ({"id": 7, "customer_id": "c1", "key_hash": "a" * 64, "prefix": "p"}, r"keys\[0\]\.id must be str"),
        ({"id": "k", "customer_id": "c1", "key_hash": "a" * 64, "prefix": "p", "expires_at": True}, r"expires_at"),
        ("k", r"keys\[0\] must be an object"),
    ],
)
def test_a_key_off_the_common_shape_is_refused_with_what_is_wrong(key: Any, message: str) -> None:
    doc = copy.deepcopy(FULL)
    doc["keys"] = [key]
    doc.pop("hash", None)
    with pytest.raises(SnapshotError, match=message):
        Snapshot.from_dict(doc)


@pytest.mark.parametrize("text", ["ab", "tg_0123abcd", "\ud800 lone surrogate", "é" * 40, "名前"])
def test_kept_strings_are_copies_equal_to_the_decoders(text: str) -> None:
    """What a snapshot keeps of a key or customer is a new string object (the decoder's would pin the
    memory of the document's dicts): any code point survives, lone surrogates included."""
    copied = copy_str(text)
    assert copied == text and copied is not text


def test_a_parsed_customer_keeps_copies_and_its_api_ids_are_shared() -> None:
    doc = copy.deepcopy(FULL)
    doc.pop("hash", None)
    raw = json.loads(json.dumps(doc))
    parsed = Snapshot.from_dict(raw)
    customer, raw_customer = parsed.customers[0], raw["customers"][0]
    assert customer.id == raw_customer["id"] and customer.id is not raw_customer["id"]
    assert all(a is sys.intern(a) for c in parsed.customers for a in c.api_ids)
