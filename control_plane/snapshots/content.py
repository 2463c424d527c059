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
* write the full wire body (``to_json``'s bytes) and any delta's changes without building a snapshot;
* write the full body's gzip from each chunk's deflated bytes, kept until the chunk changes
  (:meth:`ContentIndex.gzip_parts`): a revision compresses only its changed chunks (at a million keys
  ~1 ms instead of ~3 s for the whole body), which a new worker would otherwise wait for.

The bytes are encoded as ``wire.to_json`` encodes (sorted keys, no spaces, ASCII).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import struct
import zlib
from array import array
from collections.abc import Iterable
from typing import Any

from data_plane.snapshot import SCHEMA_VERSION, Snapshot, wire
from data_plane.snapshot.keytable import copy_str

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


GZIP_LEVEL = 1  # keys are random hex: higher levels cost several times the CPU for a few per cent
# A gzip member with no name and mtime 0, deflate, "unknown" OS: what gzip.compress(mtime=0) writes.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def deflated(data: bytes) -> bytes:
    """``data`` as a raw deflate run with no final block, ending on a byte boundary (a sync flush): runs
    made this way, one after the other, then a final empty block, are one valid deflate stream, since no
    run refers back before its own start (how pigz compresses in parallel)."""
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


_FINAL_BLOCK = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


CHUNK = 1024  # entities per chunk of a member at most; a fuller one is split in two
LOAD_CHUNK = 768  # entities per chunk of a full build: room to grow before the first split


def _ordered_by(sort_key: Any) -> Any:
    def key(entity: Any) -> tuple[Any, str]:
        return sort_key(entity), entity.id

    return key


def _copy(value: Any) -> Any:
    return copy_str(value) if isinstance(value, str) else value


class _Chunk:
    """A run of a member's entities, in order, kept as their joined bytes and where each ends; opened
    (each entity's bytes by id) while changed, joined again when the content is next read.  At a
    million keys the bytes kept once (joined), not twice (per entity and joined), are ~300 MB less."""

    __slots__ = ("order", "blob", "ends", "docs", "packed")

    def __init__(self, order: list[tuple[Any, str]], docs: dict[str, bytes] | None = None) -> None:
        self.order = order  # (sort key, id), sorted
        self.blob = b""  # the entities' bytes joined by commas (while not open)
        self.ends = array("I")  # where each entity's bytes end in blob
        # open: every entity's bytes by id; None when joined
        self.docs: dict[str, bytes] | None = docs if docs is not None else {}
        self.packed: bytes | None = None  # deflated(blob), once a full body's gzip was asked for

    def open(self) -> dict[str, bytes]:
        docs = self.docs
        self.packed = None
        if docs is None:
            blob, ends = self.blob, self.ends
            docs = self.docs = {}
            start = 0
            for (_, ident), end in zip(self.order, ends, strict=True):
                docs[ident] = blob[start:end]
                start = end + 1
            self.blob, self.ends = b"", array("I")
        return docs

    def joined(self) -> bytes:
        docs = self.docs
        if docs is not None:
            parts = [docs[i] for _, i in self.order]
            self.blob = b",".join(parts)
            ends = self.ends = array("I")
            end = -1
            for part in parts:
                end += len(part) + 1  # the comma before the next one
                ends.append(end)
            self.docs = None
        return self.blob

    def deflated(self) -> bytes:
        packed = self.packed
        if packed is None:
            packed = self.packed = deflated(self.joined())
        return packed

    def doc(self, item: tuple[Any, str]) -> bytes | None:
        docs = self.docs
        if docs is not None:
            return docs.get(item[1])
        j = bisect.bisect_left(self.order, item)
        if j == len(self.order) or self.order[j] != item:
            return None
        start = self.ends[j - 1] + 1 if j else 0
        return self.blob[start : self.ends[j]]


class _Member:
    """One snapshot member: its entities in the build's order as chunks of at most :data:`CHUNK`
    (their bytes joined), so a change re-joins one chunk (~100 KB for keys), not the member."""

    __slots__ = ("sort_keys", "chunks", "firsts")

    def __init__(self) -> None:
        self.sort_keys: dict[str, Any] = {}
        self.chunks: list[_Chunk] = []  # non-empty chunks, in order
        self.firsts: list[tuple[Any, str]] = []  # each chunk's first (sort key, id), for bisect

    def __len__(self) -> int:
        return len(self.sort_keys)

    def load(self, docs: Iterable[tuple[tuple[Any, str], bytes]], size: int) -> None:
        """Fill an empty member with ``docs`` ((sort key, id), bytes), sorted, in chunks of ``size``."""
        assert not self.chunks
        group: list[tuple[tuple[Any, str], bytes]] = []
        for entry in docs:
            group.append(entry)
            if len(group) == size:
                self._load_chunk(group)
                group = []
        if group:
            self._load_chunk(group)

    def _load_chunk(self, group: list[tuple[tuple[Any, str], bytes]]) -> None:
        chunk = _Chunk([item for item, _ in group], {item[1]: doc for item, doc in group})
        for sort_key, ident in chunk.order:
            self.sort_keys[ident] = sort_key
        chunk.joined()
        self.chunks.append(chunk)
        self.firsts.append(chunk.order[0])

    def doc(self, ident: str) -> bytes | None:
        sort_key = self.sort_keys.get(ident)
        if sort_key is None:
            return None
        item = (sort_key, ident)
        return self.chunks[self._chunk_of(item)].doc(item)

    def put(self, ident: str, sort_key: Any, doc: bytes) -> None:
        old = self.sort_keys.get(ident)
        if old is not None and old != sort_key:
            self._unorder((old, ident))
            old = None
        self.sort_keys[ident] = sort_key
        if old is None:
            self._order((sort_key, ident), doc)
        else:
            self.chunks[self._chunk_of((sort_key, ident))].open()[ident] = doc

    def remove(self, ident: str) -> None:
        old = self.sort_keys.pop(ident, None)
        if old is None:
            return
        self._unorder((old, ident))

    def _chunk_of(self, item: tuple[Any, str]) -> int:
        return max(0, bisect.bisect_right(self.firsts, item) - 1)

    def _order(self, item: tuple[Any, str], doc: bytes) -> None:
        if not self.chunks:
            self.chunks.append(_Chunk([item], {item[1]: doc}))
            self.firsts.append(item)
            return
        i = self._chunk_of(item)
        chunk = self.chunks[i]
        docs = chunk.open()
        bisect.insort(chunk.order, item)
        docs[item[1]] = doc
        self.firsts[i] = chunk.order[0]
        if len(chunk.order) > CHUNK:
            half = len(chunk.order) // 2
            moved = chunk.order[half:]
            tail = _Chunk(moved, {ident: docs.pop(ident) for _, ident in moved})
            del chunk.order[half:]
            self.chunks.insert(i + 1, tail)
            self.firsts.insert(i + 1, tail.order[0])

    def _unorder(self, item: tuple[Any, str]) -> None:
        i = self._chunk_of(item)
        chunk = self.chunks[i]
        j = bisect.bisect_left(chunk.order, item)
        if j < len(chunk.order) and chunk.order[j] == item:
            chunk.open().pop(item[1], None)
            del chunk.order[j]
            if chunk.order:
                self.firsts[i] = chunk.order[0]
            else:
                del self.chunks[i]
                del self.firsts[i]

    def pieces(self) -> list[bytes]:
        """The member's canonical list as pieces: ``[``, the chunks' bytes comma-separated, ``]``."""
        return [p.joined() if isinstance(p, _Chunk) else p for p in self.parts()]

    def parts(self) -> list[bytes | _Chunk]:
        """:meth:`pieces` with the chunks themselves in place of their bytes."""
        out: list[bytes | _Chunk] = [b"["]
        for i, chunk in enumerate(self.chunks):
            if i:
                out.append(b",")
            out.append(chunk)
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
        """The index of ``snap``, each member loaded in order in chunks joined as they fill: the
        entities' bytes of one chunk are freed (and their memory reused by the next) before the next
        is encoded, and the kept strings are copies made here, so the build's rows and types, freed
        after, do not pin the allocator's arenas (at a million keys: RSS ~200 MB lower)."""
        index = cls(snap.revision, snap.schema_version)
        for member, (_, sort_key, encode) in ORDER.items():
            entities = sorted(getattr(snap, member), key=_ordered_by(sort_key))
            docs = (((_copy(sort_key(e)), copy_str(e.id)), canonical(encode(e))) for e in entities)
            index.members[member].load(docs, LOAD_CHUNK)
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
        return self.members[MEMBER_OF_KIND[kind]].doc(ident)

    def size(self) -> int:
        return sum(len(m) for m in self.members.values())

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
        return [p.joined() if isinstance(p, _Chunk) else p for p in self._parts(extra)]

    def _parts(self, extra: tuple[tuple[str, bytes], ...]) -> list[bytes | _Chunk]:
        """:meth:`_pieces` with the chunks themselves in place of their bytes."""
        entries: list[tuple[str, _Member | None, bytes]] = [
            (name, m, b"")
            for name, m in self.members.items()
            if name in ALWAYS or len(m)  # (ORDER is alphabetical: the canonical member order)
        ]
        entries += [(n, None, v) for n, v in extra]
        entries.append(("schema_version", None, canonical(self.schema_version)))
        entries.sort(key=lambda e: e[0])
        out: list[bytes | _Chunk] = [b"{"]
        for i, (name, member, value) in enumerate(entries):
            out.append((b"," if i else b"") + canonical(name) + b":")
            if member is not None:
                out += member.parts()
            else:
                out.append(value)
        out.append(b"}")
        return out

    def _extra(self, generated_at: str) -> tuple[tuple[str, bytes], ...]:
        return (
            ("generated_at", canonical(generated_at)),
            ("hash", canonical(self.hash)),
            ("revision", canonical(self.revision)),
        )

    def body(self, generated_at: str) -> bytes:
        """The full snapshot's wire form, byte for byte what ``Snapshot.to_json`` writes."""
        return b"".join(self._pieces(self._extra(generated_at)))

    def gzip_parts(self, generated_at: str) -> list[bytes]:
        """The gzip of :meth:`body` (one gzip member), as parts to send one after the other: the
        chunks' deflated runs (kept, so only chunks changed since the last call are compressed; the
        list holds on to them, not to copies) and the short pieces between them, deflated here."""
        out = [_GZIP_HEADER]
        crc = 0
        size = 0
        small: list[bytes] = []
        for part in self._parts(self._extra(generated_at)):
            if isinstance(part, _Chunk):
                if small:
                    out.append(deflated(b"".join(small)))
                    small = []
                data = part.joined()
                out.append(part.deflated())
            else:
                data = part
                small.append(part)
            crc = zlib.crc32(data, crc)
            size += len(data)
        if small:
            out.append(deflated(b"".join(small)))
        out.append(_FINAL_BLOCK)
        out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        return out

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
