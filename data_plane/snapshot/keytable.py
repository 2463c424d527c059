"""A snapshot's API keys, packed: one buffer for a million keys instead of a million objects.

A worker at a million keys kept each key as Python objects: an ``ApiKey`` (and three strings) in the
entity store, a ``KeyEntry`` in the compiled key table, and an entry in three dicts (by id, by hash,
by customer): ~500 bytes a key, ~0.5 GB, and seconds of object building per full snapshot or restart.
Here the keys of a full snapshot are one ``bytes`` buffer (:class:`PackedKeys`, ~100 bytes a key) with
an index by key hash (sorted) and a slot table by key id, and the key indexes of every customer; an
``ApiKey`` is made only when one is asked for.  The same buffer is what the worker writes next to its
cache (``sync.write_keys``), so a restart reads it back instead of parsing a million JSON objects.

:class:`KeyTable` is the keys as the worker holds them: a packed base plus what deltas changed since
(the overlay: keys put, base records gone), folded into a new base (:meth:`KeyTable.compact`) once the
overlay passes an eighth of the base.  It is the ``keys`` of a parsed :class:`~data_plane.snapshot.types.Snapshot`
(iterable, sized, indexable: a collection of ``ApiKey``), the entity store's key table and the source
the request path's key lookup (``auth.AuthTables``) materialises entries from.

Buffer layout (native byte order and the sizes of ``array('I')``/``array('q')``: a worker's own file,
never sent), after a 32-byte header ``magic, count, slots, customers, flags, blob length``::

    expires   count x int64       expiry (epoch seconds) or NO_EXPIRY
    digests   count x 32 bytes    sha256 of the key, in the order received
    owner     count x uint32      the customer's index
    strings   (2 count + 1) x u32 offsets in the blob: key i's id is [2i, 2i+1), its prefix [2i+1, 2i+2)
    crcs      count x uint32      crc32 of each id's UTF-8
    by_hash   count x uint32      the records by ascending digest (a binary search finds a key)
    by_id     slots x uint32      record + 1 (0: empty); open addressing from the id's crc32
    cstart    (customers + 1) x u32   customer c's records are cmembers[cstart[c]:cstart[c + 1]]
    cmembers  count x uint32
    cnames    (customers + 1) x u32   offsets in the blob of the customer ids (after the keys' strings)
    blob      UTF-8 (surrogates passed through: JSON can carry lone ones)

Compiled by mypyc (data_plane/native.py): the pack loop and the lookups are C calls.
"""

from __future__ import annotations

import heapq
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any

from data_plane.errors import SnapshotError
from data_plane.snapshot.types import ApiKey

MAGIC = b"TGKEYS\x00\x01"
_HEADER = struct.Struct("=8sIIIIQ")  # magic, count, slots, customers, flags, blob length: 32 bytes
NO_EXPIRY = -(2**63)
SORTED = 1  # flags: the digests are in ascending order (a control plane's snapshot is, by key hash)
_EMPTY_DIGEST = b""


def copy_str(s: str) -> str:
    """A new string equal to ``s`` (any code points, lone surrogates included; 0 or 1 characters:
    the interpreter's shared singletons).  The parser keeps copies, not the decoder's strings: made
    after the whole document, they fill fresh memory, so the document's dicts and strings, freed
    together after the parse, leave whole arenas empty for the allocator to give back."""
    return s[:1] + s[1:]


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogatepass")


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


class KeyPacker:
    """Builds a :class:`PackedKeys` key by key.  ``customer_ids``: the snapshot's customers (id -> the
    customer's own string), or None to take any customer id (keys given as objects, not received)."""

    def __init__(self, customer_ids: dict[str, str] | None = None) -> None:
        self.customer_ids = customer_ids
        self.digests = bytearray()
        self.expires: list[int] = []
        self.owner: list[int] = []
        self.crcs: list[int] = []  # crc32 of each id's UTF-8: its slot by id
        self.parts: list[bytes] = []  # each key's id and prefix, UTF-8
        self.customers: dict[str, int] = {}
        self.names: list[str] = []
        self.ascending = True
        self.last = _EMPTY_DIGEST

    @property
    def count(self) -> int:
        return len(self.owner)

    def add(self, ident: str, customer_id: str, key_hash: str, prefix: str, expires_at: int | None) -> None:
        """One key, its fields already of the right types (``key_hash``: 64 lower-case hex digits)."""
        known = self.customer_ids
        if known is not None:
            shared = known.get(customer_id)
            if shared is None:
                raise SnapshotError(f"keys[{self.count}].customer_id {customer_id!r} names no customer")
            customer_id = shared  # the customer's own string: one per customer, not per key
        owner = self.customers.get(customer_id)
        if owner is None:
            owner = self.customers[customer_id] = len(self.names)
            self.names.append(customer_id)
        digest = bytes.fromhex(key_hash)
        if digest <= self.last:
            self.ascending = False
        self.last = digest
        self.digests += digest
        self.expires.append(NO_EXPIRY if expires_at is None else expires_at)
        self.owner.append(owner)
        raw = _utf8(ident)
        self.crcs.append(zlib.crc32(raw))
        self.parts.append(raw)
        self.parts.append(_utf8(prefix))

    def take(self, docs: list[Any], start: int) -> int:
        """Add the keys of ``docs[start:]`` (decoded JSON) up to the first one off the common shape (an
        object whose known fields have the right types; unknown fields ignored); returns its index
        (``len(docs)`` when none is), for the caller's per-key reader to say what is wrong with it.
        :meth:`add`, inlined: a million keys per full snapshot."""
        known = self.customer_ids
        customers = self.customers
        names = self.names
        digests = self.digests
        expires_out = self.expires
        owners = self.owner
        crcs = self.crcs
        parts = self.parts
        crc32 = zlib.crc32
        fromhex = bytes.fromhex
        last = self.last
        ascending = self.ascending
        n = len(docs)
        i = start
        try:
            while i < n:
                k = docs[i]
                if not isinstance(k, dict):
                    return i
                ident = k.get("id")
                customer = k.get("customer_id")
                key_hash = k.get("key_hash")
                prefix = k.get("prefix")
                expires = k.get("expires_at")
                if not (isinstance(ident, str) and isinstance(customer, str) and isinstance(key_hash, str)):
                    return i
                if not isinstance(prefix, str) or len(key_hash) != 64:
                    return i
                if expires is None:
                    expires = NO_EXPIRY
                elif not isinstance(expires, int) or isinstance(expires, bool):
                    return i
                try:
                    digest = fromhex(key_hash)
                except ValueError:
                    return i
                if len(digest) != 32 or digest.hex() != key_hash:  # lower-case hex, nothing else
                    return i
                if known is not None:
                    shared = known.get(customer)
                    if shared is None:
                        raise SnapshotError(f"keys[{i}].customer_id {customer!r} names no customer")
                    customer = shared
                owner = customers.get(customer)
                if owner is None:
                    owner = customers[customer] = len(names)
                    names.append(customer)
                if digest <= last:
                    ascending = False
                last = digest
                digests += digest
                expires_out.append(expires)
                owners.append(owner)
                raw = _utf8(ident)
                crcs.append(crc32(raw))
                parts.append(raw)
                parts.append(_utf8(prefix))
                i += 1
            return n
        finally:
            self.last = last
            self.ascending = ascending

    def finish(self) -> PackedKeys:
        """The packed keys; raises :class:`SnapshotError` for a key hash or key id given twice."""
        n = self.count
        slots = 8
        while slots < 2 * n:
            slots *= 2
        mask = slots - 1
        digests = bytes(self.digests)
        blob = bytearray().join(self.parts)
        strings = array("I", [0])
        strings.extend(accumulate(len(p) for p in self.parts))
        if len(blob) >= 1 << 32:
            raise SnapshotError("keys: more than 4 GiB of ids and prefixes")
        # by hash: the records in ascending digest order (binary search); a control plane sends them so
        if self.ascending:  # strictly (checked as added): no hash twice
            by_hash = array("I", range(n))
        else:
            by_hash = array("I", sorted(range(n), key=lambda r: digests[32 * r : 32 * r + 32]))
            for i in range(1, n):
                a, b = by_hash[i - 1], by_hash[i]
                if digests[32 * a : 32 * a + 32] == digests[32 * b : 32 * b + 32]:
                    raise SnapshotError(f"keys[{max(a, b)}].key_hash is duplicated")
        # by id: open addressing on the id's crc32 (lists while building: native item access compiled)
        crcs = self.crcs
        ids: list[int] = [0] * slots
        for r in range(n):
            crc = crcs[r]
            j = crc & mask
            while True:
                held = ids[j]
                if held == 0:
                    ids[j] = r + 1
                    break
                o = held - 1
                if crcs[o] == crc:
                    ident = bytes(blob[strings[2 * r] : strings[2 * r + 1]])
                    if blob[strings[2 * o] : strings[2 * o + 1]] == ident:
                        raise SnapshotError(f"keys[{r}].id {_text(ident)!r} is duplicated")
                j = (j + 1) & mask
        by_id = array("I", ids)
        del ids
        # the records of each customer, grouped (a counting sort by owner)
        names = self.names
        owners = self.owner
        starts: list[int] = [0] * (len(names) + 1)
        for r in range(n):
            starts[owners[r] + 1] += 1
        for c in range(len(names)):
            starts[c + 1] += starts[c]
        cstart = array("I", starts)
        members: list[int] = [0] * n
        for r in range(n):
            c = owners[r]
            members[starts[c]] = r
            starts[c] += 1
        cmembers = array("I", members)
        del members, starts
        owner = array("I", owners)
        cnames = array("I", [len(blob)])
        for name in names:
            blob += _utf8(name)
            cnames.append(len(blob))
        header = _HEADER.pack(MAGIC, n, slots, len(names), SORTED if self.ascending else 0, len(blob))
        buf = b"".join(
            (
                header,
                array("q", self.expires).tobytes(),
                digests,
                owner.tobytes(),
                strings.tobytes(),
                array("I", crcs).tobytes(),
                by_hash.tobytes(),
                by_id.tobytes(),
                cstart.tobytes(),
                cmembers.tobytes(),
                cnames.tobytes(),
                bytes(blob),
            )
        )
        return PackedKeys(buf, names)


class PackedKeys:
    """Packed keys, read in place (module docstring: the layout).  ``PackedKeys(buf)`` checks the
    header and the sizes (ValueError for a buffer that is not one), not the content: the buffer is
    what :class:`KeyPacker` made, in this process or written by this worker."""

    def __init__(self, buf: bytes, names: list[str] | None = None) -> None:
        if len(buf) < _HEADER.size:
            raise ValueError("packed keys: shorter than the header")
        magic, n, slots, customers, flags, blob_len = _HEADER.unpack_from(buf, 0)
        if magic != MAGIC or array("I").itemsize != 4 or array("q").itemsize != 8:
            raise ValueError("packed keys: not this format")
        if slots < 8 or slots & (slots - 1) or slots < 2 * n:
            raise ValueError("packed keys: bad slot count")
        o = _HEADER.size
        ends = []
        for size in (8 * n, 32 * n, 4 * n, 4 * (2 * n + 1), 4 * n, 4 * n, 4 * slots, 4 * (customers + 1), 4 * n):
            ends.append(o)
            o += size
        cnames_at = o
        o += 4 * (customers + 1)
        blob_at = o
        if o + blob_len != len(buf):
            raise ValueError("packed keys: size does not match the header")
        view = memoryview(buf)
        self.buf = buf
        self.count: int = n
        self.mask: int = slots - 1
        self.ascending = bool(flags & SORTED)
        self.customer_count: int = customers
        self.expires = view[ends[0] : ends[1]].cast("q")
        self.digests_at: int = ends[1]
        self.owner = view[ends[2] : ends[3]].cast("I")
        self.strings = view[ends[3] : ends[4]].cast("I")
        self.crcs = view[ends[4] : ends[5]].cast("I")
        self.by_hash = view[ends[5] : ends[6]].cast("I")
        self.by_id = view[ends[6] : ends[7]].cast("I")
        self.cstart = view[ends[7] : ends[8]].cast("I")
        self.cmembers = view[ends[8] : cnames_at].cast("I")
        self.cnames = view[cnames_at:blob_at].cast("I")
        self.blob_at: int = blob_at
        self._names: list[str] | None = names if names is not None and len(names) == customers else None
        self._customer_index: dict[str, int] | None = None

    @staticmethod
    def of(keys: Iterable[ApiKey], customer_ids: dict[str, str] | None = None) -> PackedKeys:
        packer = KeyPacker(customer_ids)
        for k in keys:
            packer.add(k.id, k.customer_id, k.key_hash, k.prefix, k.expires_at)
        return packer.finish()

    # ------------------------------------------------------------------ records

    def digest(self, r: int) -> bytes:
        o = self.digests_at + 32 * r
        return self.buf[o : o + 32]

    def key_id(self, r: int) -> str:
        s = self.strings
        a = self.blob_at
        return _text(self.buf[a + s[2 * r] : a + s[2 * r + 1]])

    def customer_id(self, r: int) -> str:
        return self.names()[self.owner[r]]

    def key(self, r: int) -> ApiKey:
        s = self.strings
        a = self.blob_at
        buf = self.buf
        expires = self.expires[r]
        return ApiKey(
            _text(buf[a + s[2 * r] : a + s[2 * r + 1]]),
            self.names()[self.owner[r]],
            self.digest(r).hex(),
            _text(buf[a + s[2 * r + 1] : a + s[2 * r + 2]]),
            None if expires == NO_EXPIRY else expires,
        )

    def names(self) -> list[str]:
        """The customer ids, by index (decoded once, on first use: one string per customer)."""
        names = self._names
        if names is None:
            buf, a, c = self.buf, self.blob_at, self.cnames
            names = self._names = [_text(buf[a + c[i] : a + c[i + 1]]) for i in range(self.customer_count)]
        return names

    # ------------------------------------------------------------------ lookups

    def find_digest(self, digest: bytes) -> int:
        """The record of the key whose sha256 is ``digest``, or -1 (a binary search: ~20 probes at a
        million keys, made once per key by the request path, whose entries are kept)."""
        order = self.by_hash
        buf = self.buf
        at = self.digests_at
        lo = 0
        hi = self.count
        while lo < hi:
            mid = (lo + hi) >> 1
            o = at + 32 * order[mid]
            probe = buf[o : o + 32]
            if probe < digest:
                lo = mid + 1
            elif probe == digest:
                return order[mid]
            else:
                hi = mid
        return -1

    def find_id(self, ident: str) -> int:
        """The record of the key with id ``ident``, or -1."""
        want = _utf8(ident)
        crc = zlib.crc32(want)
        mask = self.mask
        slots = self.by_id
        crcs = self.crcs
        s = self.strings
        a = self.blob_at
        buf = self.buf
        j = crc & mask
        while True:
            held = slots[j]
            if held == 0:
                return -1
            r = held - 1
            if crcs[r] == crc and buf[a + s[2 * r] : a + s[2 * r + 1]] == want:
                return r
            j = (j + 1) & mask

    def customer_records(self, customer_id: str) -> list[int]:
        index = self._customer_index
        if index is None:
            index = self._customer_index = {name: i for i, name in enumerate(self.names())}
        c = index.get(customer_id)
        if c is None:
            return []
        return [self.cmembers[i] for i in range(self.cstart[c], self.cstart[c + 1])]


EMPTY = KeyPacker().finish()


class KeyTable:
    """A worker's keys: a packed base plus the changes since (module docstring)."""

    def __init__(self, base: PackedKeys) -> None:
        self.base = base
        self.gone: set[int] = set()  # base records deleted (or replaced: the new value is in ``added``)
        self.added: dict[str, ApiKey] = {}  # by id
        self.added_by_hash: dict[str, list[str]] = {}
        self.added_by_customer: dict[str, list[str]] = {}

    @staticmethod
    def of(keys: Iterable[ApiKey], customer_ids: dict[str, str] | None = None) -> KeyTable:
        if isinstance(keys, KeyTable):
            return keys
        return KeyTable(PackedKeys.of(keys, customer_ids))

    # ------------------------------------------------------------------ reading

    def get(self, ident: str) -> ApiKey | None:
        k = self.added.get(ident)
        if k is not None:
            return k
        r = self.base.find_id(ident)
        if r < 0 or r in self.gone:
            return None
        return self.base.key(r)

    def by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose sha256 hex is ``key_hash`` (what the request path looks up), or None."""
        ids = self.added_by_hash.get(key_hash)
        if ids:
            return self.added[ids[0]]
        try:
            digest = bytes.fromhex(key_hash)
        except ValueError:
            return None
        r = self.base.find_digest(digest)
        if r < 0 or r in self.gone:
            return None
        return self.base.key(r)

    def holders(self, key_hash: str) -> list[str]:
        """The ids of the keys holding ``key_hash`` (a valid table: at most one)."""
        ids = list(self.added_by_hash.get(key_hash, ()))
        r = self.base.find_digest(bytes.fromhex(key_hash))
        if r >= 0 and r not in self.gone:
            ids.append(self.base.key_id(r))
        return ids

    def ids_of_customer(self, customer_id: str) -> list[str]:
        base = self.base
        gone = self.gone
        ids = [base.key_id(r) for r in base.customer_records(customer_id) if r not in gone]
        ids.extend(self.added_by_customer.get(customer_id, ()))
        return ids

    def customer_ids(self) -> set[str]:
        """The customers some key names."""
        base = self.base
        names = base.names()
        if self.gone:
            named = {names[base.owner[r]] for r in range(base.count) if r not in self.gone}
        else:
            named = set(names)
        named.update(self.added_by_customer)
        return named

    def changes(self) -> int:
        return len(self.gone) + len(self.added)

    def __len__(self) -> int:
        return self.base.count - len(self.gone) + len(self.added)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[ApiKey]:
        """The keys: in the order received while nothing changed, else by key hash (as a control plane
        orders them)."""
        base = self.base
        if not self.gone and not self.added:
            for r in range(base.count):
                yield base.key(r)
            return
        live = (base.key(r) for r in range(base.count) if r not in self.gone)
        added = sorted(self.added.values(), key=_by_hash)
        if base.ascending:
            yield from heapq.merge(live, added, key=_by_hash)
        else:
            yield from sorted([*live, *added], key=_by_hash)

    def __getitem__(self, i: int) -> ApiKey:
        if not self.gone and not self.added:
            if i < 0:
                i += self.base.count
            if not 0 <= i < self.base.count:
                raise IndexError("key index out of range")
            return self.base.key(i)
        return list(self)[i]

    def __contains__(self, item: object) -> bool:
        return isinstance(item, ApiKey) and self.get(item.id) == item

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeyTable) or isinstance(other, (tuple, list)):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"KeyTable({len(self)} keys, {self.changes()} changed since packed)"

    # ------------------------------------------------------------------ changing (entity store)

    def put(self, k: ApiKey) -> None:
        """Add ``k`` (no live key has its id: the store drops the old one first)."""
        self.added[k.id] = k
        self.added_by_hash.setdefault(k.key_hash, []).append(k.id)
        self.added_by_customer.setdefault(k.customer_id, []).append(k.id)

    def drop(self, ident: str) -> ApiKey | None:
        """Remove the key with id ``ident``; returns it (None: there was none)."""
        k = self.added.pop(ident, None)
        if k is not None:
            _remove(self.added_by_hash, k.key_hash, ident)
            _remove(self.added_by_customer, k.customer_id, ident)
            return k
        r = self.base.find_id(ident)
        if r < 0 or r in self.gone:
            return None
        self.gone.add(r)
        return self.base.key(r)

    def compact(self) -> None:
        """Fold the overlay into a new packed base (in place: whoever holds this table keeps it)."""
        base = PackedKeys.of(list(self))
        self.base = base
        self.gone = set()
        self.added = {}
        self.added_by_hash = {}
        self.added_by_customer = {}


def _by_hash(k: ApiKey) -> str:
    return k.key_hash


def _remove(index: dict[str, list[str]], name: str, ident: str) -> None:
    ids = index.get(name)
    if ids is not None:
        if ident in ids:
            ids.remove(ident)
        if not ids:
            del index[name]
