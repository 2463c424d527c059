"""The keys of a full snapshot, parsed in one compiled loop (a million of them at size).

``parse._keys`` calls :func:`take_keys` for the common shape (an object whose known fields have the
right types; unknown fields ignored, as everywhere) and parses what it stops at with the per-key
reader, which says what is wrong.  Compiled by mypyc (data_plane/native.py): the type checks and
dict lookups are C calls here, ~1 µs per key instead of ~4.
"""

from __future__ import annotations

import re
from typing import Any

from data_plane.snapshot.types import ApiKey

_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")


def copy_str(s: str) -> str:
    """A new string equal to ``s`` (any code points, lone surrogates included; 0 or 1 characters:
    the interpreter's shared singletons)."""
    return s[:1] + s[1:]


def take_keys(docs: list[Any], start: int, customer_ids: dict[str, str], out: list[ApiKey]) -> int:
    """Append the keys of ``docs[start:]`` to ``out`` up to the first one off the common shape;
    returns its index (``len(docs)`` when none is).

    The strings kept are copies, not the decoder's: made after the whole document, they fill fresh
    memory, so the document's dicts and strings, freed together after the parse, leave whole arenas
    empty for the allocator to give back (kept, the decoder's strings pin the arenas they share with
    those dicts: ~400 MB more RSS at a million keys).  ``key_hash`` is lower-case hex, so ``lower()``
    is a copy.  Each key's ``customer_id`` is the customer's own string (one per customer, not per key).
    """
    match = _HEX64.match
    n = len(docs)
    i = start
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
        if not isinstance(prefix, str) or match(key_hash) is None:
            return i
        if expires is not None and (not isinstance(expires, int) or isinstance(expires, bool)):
            return i
        out.append(
            ApiKey(
                copy_str(ident),
                customer_ids.get(customer, customer),
                key_hash.lower(),
                copy_str(prefix),
                expires,
            )
        )
        i += 1
    return n
