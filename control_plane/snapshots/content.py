"""The published config as canonical bytes per entity: the hash, the full body and every delta from them.

A full snapshot's canonical JSON is, member by member, the canonical JSON of each entity joined by
commas in the build's order (:data:`ORDER`), so keeping each entity's bytes lets a replica:

* move to the next revision by re-encoding only the entities the change log names (``upsert`` /
  ``remove``), instead of reading and encoding every row;
* compute the content hash by feeding the per-member blobs to SHA-256 (a member's blob is joined again
  only when one of its entities changed), identical to ``wire.compute_hash`` of the full build
  (tests/unit/control_plane/snapshots/test_content_index.py checks it);
* write the full wire body (``to_json``'s bytes) and any delta's changes without building a snapshot.

The bytes are encoded as ``wire.to_json`` encodes (sorted keys, no spaces, ASCII).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from typing import Any

from data_plane.snapshot import SCHEMA_VERSION, Snapshot, wire

# member -> (kind, how its list is ordered by the build, the entity's wire encoder)
ORDER: dict[str, tuple[str, Any, Any]] = {
    "apis": ("api", lambda a: a.name, wire.api_doc),
    "certificates": ("certificate", lambda c: c.id, wire.certificate_doc),
    "customers": ("customer", lambda c: c.id, wire.customer_doc),
    "keys": ("key", lambda k: k.key_hash, wire.key_doc),
    "plans": ("plan", lambda p: p.id, wire.plan_doc),
    "upstreams": ("upstream", lambda u: u.name, wire.upstream_doc),
}
MEMBER_OF_KIND = {kind: member for member, (kind, _, _) in ORDER.items()}
ALWAYS = ("apis", "upstreams")  # in the content even when empty; the others are left out then


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class _Member:
    """One snapshot member: entity bytes by id, kept in the build's order."""

    __slots__ = ("docs", "sort_keys", "order", "blob")

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        self.sort_keys: dict[str, Any] = {}
        self.order: list[tuple[Any, str]] = []  # (sort key, id), sorted
        self.blob: bytes | None = b""  # the joined docs; None after a change

    def put(self, ident: str, sort_key: Any, doc: bytes) -> None:
        old = self.sort_keys.get(ident)
        if old is not None and old != sort_key:
            self._unorder(old, ident)
            old = None
        if old is None:
            bisect.insort(self.order, (sort_key, ident))
        self.sort_keys[ident] = sort_key
        self.docs[ident] = doc
        self.blob = None

    def remove(self, ident: str) -> None:
        old = self.sort_keys.pop(ident, None)
        if old is None:
            return
        self._unorder(old, ident)
        del self.docs[ident]
        self.blob = None

    def _unorder(self, sort_key: Any, ident: str) -> None:
        i = bisect.bisect_left(self.order, (sort_key, ident))
        if i < len(self.order) and self.order[i] == (sort_key, ident):
            del self.order[i]

    def joined(self) -> bytes:
        if self.blob is None:
            docs = self.docs
            self.blob = b",".join([docs[i] for _, i in self.order])
        return self.blob


class ContentIndex:
    """The current config of one replica as per-entity canonical bytes (see the module docstring)."""

    def __init__(self, revision: int, schema_version: str = SCHEMA_VERSION) -> None:
        self.revision = revision
        self.schema_version = schema_version
        self.members = {name: _Member() for name in ORDER}
        self._hash: str | None = None

    @classmethod
    def of(cls, snap: Snapshot) -> ContentIndex:
        index = cls(snap.revision, snap.schema_version)
        for member, (kind, _, _) in ORDER.items():
            for entity in getattr(snap, member):
                index.upsert(kind, entity)
        return index

    def upsert(self, kind: str, entity: Any) -> bytes:
        member = MEMBER_OF_KIND[kind]
        _, sort_key, encode = ORDER[member]
        doc = canonical(encode(entity))
        self.members[member].put(entity.id, sort_key(entity), doc)
        self._hash = None
        return doc

    def remove(self, kind: str, ident: str) -> None:
        self.members[MEMBER_OF_KIND[kind]].remove(ident)
        self._hash = None

    def doc(self, kind: str, ident: str) -> bytes | None:
        return self.members[MEMBER_OF_KIND[kind]].docs.get(ident)

    def size(self) -> int:
        return sum(len(m.docs) for m in self.members.values())

    def _parts(self) -> list[tuple[str, bytes]]:
        return [
            (name, m.joined())
            for name, m in self.members.items()
            if name in ALWAYS or m.docs  # (ORDER is alphabetical: the canonical member order)
        ]

    @property
    def hash(self) -> str:
        """SHA-256 of the content's canonical JSON, fed blob by blob (no joined copy of everything)."""
        if self._hash is None:
            h = hashlib.sha256()
            for chunk in self._chunks(()):
                h.update(chunk)
            self._hash = h.hexdigest()
        return self._hash

    def _chunks(self, extra: tuple[tuple[str, bytes], ...]) -> list[bytes]:
        """The canonical JSON of content (+ ``extra`` members, already encoded) as a list of pieces."""
        entries: list[tuple[str, bytes | None, bytes]] = [(n, None, blob) for n, blob in self._parts()]
        entries += [(n, v, b"") for n, v in extra]
        entries.append(("schema_version", canonical(self.schema_version), b""))
        entries.sort(key=lambda e: e[0])
        out: list[bytes] = [b"{"]
        for i, (name, value, blob) in enumerate(entries):
            out.append(b"," if i else b"")
            out.append(canonical(name) + b":")
            if value is None:
                out += [b"[", blob, b"]"]
            else:
                out.append(value)
        out.append(b"}")
        return out

    def body(self, generated_at: str) -> bytes:
        """The full snapshot's wire form, byte for byte what ``Snapshot.to_json`` writes."""
        extra = (
            ("generated_at", canonical(generated_at)),
            ("hash", canonical(self.hash)),
            ("revision", canonical(self.revision)),
        )
        return b"".join(self._chunks(extra))

    def delta_body(self, since: int, changed: list[tuple[str, str]]) -> bytes:
        """A delta from ``since`` to this revision naming ``changed`` (kind, id), in that order."""
        pieces = []
        for kind, ident in changed:
            doc = self.doc(kind, ident)
            head = b'{"id":' + canonical(ident) + b',"kind":' + canonical(kind)
            if doc is None:
                pieces.append(head + b',"op":"delete"}')
            else:
                pieces.append(head + b',"op":"upsert","value":' + doc + b"}")
        return (
            b'{"changes":['
            + b",".join(pieces)
            + b'],"from_revision":'
            + canonical(since)
            + b',"hash":'
            + canonical(self.hash)
            + b',"revision":'
            + canonical(self.revision)
            + b',"schema_version":'
            + canonical(self.schema_version)
            + b"}"
        )
