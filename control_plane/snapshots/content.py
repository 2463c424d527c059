"""The published config as canonical bytes per entity: the hash, the full body and every delta from them.

A full snapshot's canonical JSON is, member by member, the canonical JSON of each entity joined by
commas in the build's order (:data:`ORDER`), so keeping each entity's bytes lets a replica:

* move to the next revision by re-encoding only the entities the change log names (``upsert`` /
  ``remove``), instead of reading and encoding every row;
* compute the content hash by feeding SHA-256 piece by piece: a member is kept as chunks of at most
  :data:`CHUNK` entities whose joined bytes are rebuilt only when one of their entities changed, and
  the digest's state after every piece is kept, so a revision hashes only from its first changed piece
  on; identical to ``wire.compute_hash`` of the full build
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


CHUNK = 1024  # entities per chunk of a member at most; a fuller one is split in two


class _Chunk:
    """A run of a member's entities, in order, with their joined bytes (None after a change)."""

    __slots__ = ("order", "blob")

    def __init__(self, order: list[tuple[Any, str]]) -> None:
        self.order = order  # (sort key, id), sorted
        self.blob: bytes | None = None

    def joined(self, docs: dict[str, bytes]) -> bytes:
        if self.blob is None:
            self.blob = b",".join([docs[i] for _, i in self.order])
        return self.blob


class _Member:
    """One snapshot member: entity bytes by id, kept in the build's order as chunks of at most
    :data:`CHUNK` entities, so a change re-joins one chunk (~100 KB for keys), not the member."""

    __slots__ = ("docs", "sort_keys", "chunks", "firsts")

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        self.sort_keys: dict[str, Any] = {}
        self.chunks: list[_Chunk] = []  # non-empty chunks, in order
        self.firsts: list[tuple[Any, str]] = []  # each chunk's first (sort key, id), for bisect

    def put(self, ident: str, sort_key: Any, doc: bytes) -> None:
        old = self.sort_keys.get(ident)
        if old is not None and old != sort_key:
            self._unorder((old, ident))
            old = None
        self.docs[ident] = doc
        self.sort_keys[ident] = sort_key
        if old is None:
            self._order((sort_key, ident))
        else:
            self.chunks[self._chunk_of((sort_key, ident))].blob = None

    def remove(self, ident: str) -> None:
        old = self.sort_keys.pop(ident, None)
        if old is None:
            return
        self._unorder((old, ident))
        del self.docs[ident]

    def _chunk_of(self, item: tuple[Any, str]) -> int:
        return max(0, bisect.bisect_right(self.firsts, item) - 1)

    def _order(self, item: tuple[Any, str]) -> None:
        if not self.chunks:
            self.chunks.append(_Chunk([item]))
            self.firsts.append(item)
            return
        i = self._chunk_of(item)
        chunk = self.chunks[i]
        bisect.insort(chunk.order, item)
        chunk.blob = None
        self.firsts[i] = chunk.order[0]
        if len(chunk.order) > CHUNK:
            half = len(chunk.order) // 2
            tail = _Chunk(chunk.order[half:])
            del chunk.order[half:]
            self.chunks.insert(i + 1, tail)
            self.firsts.insert(i + 1, tail.order[0])

    def _unorder(self, item: tuple[Any, str]) -> None:
        i = self._chunk_of(item)
        chunk = self.chunks[i]
        j = bisect.bisect_left(chunk.order, item)
        if j < len(chunk.order) and chunk.order[j] == item:
            del chunk.order[j]
            chunk.blob = None
            if chunk.order:
                self.firsts[i] = chunk.order[0]
            else:
                del self.chunks[i]
                del self.firsts[i]

    def pieces(self) -> list[bytes]:
        """The member's canonical list as pieces: ``[``, the chunks' bytes comma-separated, ``]``."""
        out = [b"["]
        for i, chunk in enumerate(self.chunks):
            if i:
                out.append(b",")
            out.append(chunk.joined(self.docs))
        out.append(b"]")
        return out


class ContentIndex:
    """The current config of one replica as per-entity canonical bytes (see the module docstring)."""

    def __init__(self, revision: int, schema_version: str = SCHEMA_VERSION) -> None:
        self.revision = revision
        self.schema_version = schema_version
        self.members = {name: _Member() for name in ORDER}
        self._hash: str | None = None
        self._hashed: list[bytes] = []  # the pieces last hashed ...
        self._states: list[Any] = []  # ... and the SHA-256 state after each of them

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

    @property
    def hash(self) -> str:
        """SHA-256 of the content's canonical JSON, fed piece by piece (no joined copy of everything).

        The digest's state after each piece is kept, so the next revision feeds SHA-256 only from its
        first changed piece on: a change in the last member hashes little, a key change about half of
        the content on average (SHA-256 is C, ~1.4 GB/s with SHA-NI; joining 1M keys again took 1.2 s).
        """
        if self._hash is None:
            pieces = self._pieces(())
            old, states = self._hashed, self._states
            same = 0
            limit = min(len(old), len(pieces))
            while same < limit and (old[same] is pieces[same] or old[same] == pieces[same]):
                same += 1
            del states[same:]
            h = states[-1].copy() if states else hashlib.sha256()
            for piece in pieces[same:]:
                h.update(piece)
                states.append(h.copy())
            self._hashed = pieces
            self._hash = h.hexdigest()
        return self._hash

    def _pieces(self, extra: tuple[tuple[str, bytes], ...]) -> list[bytes]:
        """The canonical JSON of content (+ ``extra`` members, already encoded) as a list of pieces."""
        entries: list[tuple[str, _Member | None, bytes]] = [
            (name, m, b"")
            for name, m in self.members.items()
            if name in ALWAYS or m.docs  # (ORDER is alphabetical: the canonical member order)
        ]
        entries += [(n, None, v) for n, v in extra]
        entries.append(("schema_version", None, canonical(self.schema_version)))
        entries.sort(key=lambda e: e[0])
        out: list[bytes] = [b"{"]
        for i, (name, member, value) in enumerate(entries):
            out.append((b"," if i else b"") + canonical(name) + b":")
            if member is not None:
                out += member.pieces()
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
        return b"".join(self._pieces(extra))

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
