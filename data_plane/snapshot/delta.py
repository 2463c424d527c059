"""Deltas: the changes from one revision to another, and the entity store a worker applies them to.

Wire form (JSON object, a member of the contract like the snapshot itself)::

    {"schema_version": "1.7", "from_revision": 41, "revision": 43, "hash": "<the snapshot hash of 43>",
     "changes": [{"kind": "key", "id": "k1", "op": "upsert", "value": {<the entity, as in the snapshot's list>}},
                 {"kind": "customer", "id": "c9", "op": "delete"}, ...]}

``kind`` names the snapshot member (:data:`KINDS`: ``upstream``, ``api`` (with its routes), ``customer``,
``key``, ``plan``, ``certificate``); a change carries the entity's state at ``revision`` (one per
entity, whatever happened in between).  A kind this worker does not know (a newer minor version's
member) is skipped, as the snapshot parser ignores an unknown member; a value's unknown fields are
ignored likewise.  ``hash`` is the content hash of the full snapshot at ``revision`` as the sender
computed it: the worker adopts it (the channel is authenticated; what deltas produce equals the full
snapshot, which tests/integration/control_plane/test_delta_sync.py checks after every step of random writes).

:class:`EntityStore` holds a worker's entities by id (the keys packed) and applies a delta with an undo log: a delta
that fails validation leaves the store as it was.  Validation is proportional to the change: keys and
customers are checked against their references only; any other kind re-checks the references of
everything but the keys (:func:`~data_plane.snapshot.parse.validate` without them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from data_plane.errors import PlanError, SnapshotError
from data_plane.snapshot import parse
from data_plane.snapshot.keytable import EMPTY, KeyTable
from data_plane.snapshot.types import ApiKey, Customer, Snapshot

KINDS = ("upstream", "api", "customer", "key", "plan", "certificate")
UPSERT = "upsert"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    id: str
    op: str  # UPSERT or DELETE
    value: Any = None  # the parsed entity (types.Upstream, Api, ...) for an upsert


@dataclass(frozen=True, slots=True)
class Delta:
    from_revision: int
    revision: int
    hash: str
    schema_version: str
    changes: tuple[Change, ...] = ()
    skipped: int = 0  # changes of kinds this worker does not know


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "upstream": parse._upstream,
    "api": parse._api,
    "customer": parse._customer,
    "key": parse._key,
    "plan": parse._plan,
    "certificate": parse._certificate,
}


def parse_delta(data: bytes | str | dict[str, Any]) -> Delta:
    """Parse a wire-form delta (field checks as for snapshots); raises :class:`SnapshotError`."""
    if isinstance(data, dict):
        doc: Any = data
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise SnapshotError(f"delta is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise SnapshotError("delta must be a JSON object")
    version = parse._get(doc, "schema_version", str, "delta")
    parse.check_schema_version(version)
    changes: list[Change] = []
    skipped = 0
    for i, c in enumerate(parse._get(doc, "changes", list, "delta")):
        where = f"delta.changes[{i}]"
        if not isinstance(c, dict):
            raise SnapshotError(f"{where} must be an object")
        kind = parse._get(c, "kind", str, where)
        if kind not in _PARSERS:
            skipped += 1  # a newer minor version's member: ignored, as in a snapshot
            continue
        ident = parse._get(c, "id", str, where)
        op = parse._get(c, "op", str, where)
        if op == DELETE:
            changes.append(Change(kind, ident, DELETE))
            continue
        if op != UPSERT:
            raise SnapshotError(f"{where}.op {op!r} is not upsert or delete")
        try:
            value = _PARSERS[kind](c.get("value"), f"{where}.value")
        except PlanError as exc:
            raise SnapshotError(str(exc)) from None
        if value.id != ident:
            raise SnapshotError(f"{where}.value.id {value.id!r} is not the change's id {ident!r}")
        changes.append(Change(kind, ident, UPSERT, value))
    return Delta(
        from_revision=parse._get(doc, "from_revision", int, "delta"),
        revision=parse._get(doc, "revision", int, "delta"),
        hash=parse._get(doc, "hash", str, "delta"),
        schema_version=version,
        changes=tuple(changes),
        skipped=skipped,
    )


def merge_deltas(bodies: list[bytes]) -> tuple[dict[str, Any] | None, int]:
    """A run of deltas (a worker's journal, one JSON document each) as one document with each entity's
    last change: the net effect, as a control plane's delta from the first's start to the last's
    revision has it, so each entity is parsed once, not once per delta that changed it (ten route
    changes to an API of 10,000 routes: ten parses of all of them).  Returns it with the number of
    deltas merged: up to the first that is not a delta following the one before (a line cut by a
    crash); (None, 0) when the first is not.  Field checks are :func:`parse_delta`'s, on the result."""
    changes: dict[tuple[str, str], Any] = {}
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    merged = 0
    for body in bodies:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            break
        if not isinstance(doc, dict) or not isinstance(doc.get("changes"), list):
            break
        if last is not None and (doc.get("from_revision") != last.get("revision") or last.get("revision") is None):
            break
        named = [c for c in doc["changes"] if isinstance(c, dict)]
        if len(named) != len(doc["changes"]) or not all(
            isinstance(c.get("kind"), str) and isinstance(c.get("id"), str) for c in named
        ):
            break
        for c in named:
            ident = (c["kind"], c["id"])
            changes.pop(ident, None)
            changes[ident] = c  # ordered by each entity's last change
        first = first or doc
        last = doc
        merged += 1
    if first is None or last is None:
        return None, 0
    return {
        "schema_version": last.get("schema_version"),
        "from_revision": first.get("from_revision"),
        "revision": last.get("revision"),
        "hash": last.get("hash"),
        "changes": list(changes.values()),
    }, merged


@dataclass(slots=True)
class EntityStore:
    """A worker's snapshot as entities by id; the keys packed (:class:`~data_plane.snapshot.keytable.KeyTable`:
    by id, by key hash and by customer), shared with the compiled config's key lookup."""

    revision: int
    hash: str
    schema_version: str
    upstreams: dict[str, Any] = field(default_factory=dict)
    apis: dict[str, Any] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    keys: KeyTable = field(default_factory=lambda: KeyTable(EMPTY))
    plans: dict[str, Any] = field(default_factory=dict)
    certificates: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, snap: Snapshot) -> EntityStore:
        """The store of ``snap``; its keys are ``snap.keys`` itself when packed (see ``with_key_table``)."""
        store = cls(snap.revision, snap.hash, snap.schema_version)
        store.upstreams = {u.id: u for u in snap.upstreams}
        store.apis = {a.id: a for a in snap.apis}
        store.customers = {c.id: c for c in snap.customers}
        store.plans = {p.id: p for p in snap.plans}
        store.certificates = {c.id: c for c in snap.certificates}
        store.keys = KeyTable.of(snap.keys)
        return store

    def table(self, kind: str) -> dict[str, Any]:
        table: dict[str, Any] = getattr(self, _TABLES[kind])
        return table

    def snapshot(self, *, with_keys: bool = True) -> Snapshot:
        """The store as a snapshot, ordered as the control plane orders a full one (so it hashes the same;
        the keys are the store's own table, by key hash once a delta changed one).
        ``with_keys=False``: without customers and keys, for compiling what routes need."""
        return Snapshot(
            revision=self.revision,
            upstreams=tuple(sorted(self.upstreams.values(), key=lambda u: u.name)),
            apis=tuple(sorted(self.apis.values(), key=lambda a: a.name)),
            customers=tuple(sorted(self.customers.values(), key=lambda c: c.id)) if with_keys else (),
            keys=self.keys if with_keys else (),
            plans=tuple(sorted(self.plans.values(), key=lambda p: p.id)),
            certificates=tuple(sorted(self.certificates.values(), key=lambda c: c.id)),
            schema_version=self.schema_version,
            hash=self.hash,
        )

    def apply(self, delta: Delta) -> list[tuple[Change, Any]]:
        """Apply ``delta`` (validated, all or nothing); returns each change with the entity it replaced."""
        if delta.from_revision != self.revision:
            raise SnapshotError(f"delta from revision {delta.from_revision} does not apply to revision {self.revision}")
        done: list[tuple[Change, Any]] = []
        try:
            for change in delta.changes:
                done.append((change, self._set(change.kind, change.id, change.value)))
            self._validate(done)
        except BaseException:
            self.undo(done, self.revision, self.hash, self.schema_version)
            raise
        self.revision = delta.revision
        self.hash = delta.hash
        self.schema_version = delta.schema_version
        return done

    def undo(self, done: list[tuple[Change, Any]], revision: int, hash: str, schema_version: str) -> None:
        """Put back what :meth:`apply` changed (the compiled config refused the result)."""
        for change, old in reversed(done):
            self._set(change.kind, change.id, old)
        self.revision, self.hash, self.schema_version = revision, hash, schema_version

    def settle(self) -> bool:
        """Fold the keys' overlay into a new packed base once it passes an eighth of the base (and
        16,384 changes): lookups stay one probe, the overlay's objects stay few.  True when it did."""
        keys = self.keys
        if keys.changes() <= max(16_384, keys.base.count // 8):
            return False
        keys.compact()
        return True

    # ------------------------------------------------------------------ internals

    def _set(self, kind: str, ident: str, value: Any) -> Any:
        if kind == "key":
            old_key = self.keys.drop(ident)
            if value is not None:
                self.keys.put(value)
            return old_key
        table = self.table(kind)
        old = table.pop(ident, None)
        if value is not None:
            table[ident] = value
        return old

    def _validate(self, done: list[tuple[Change, Any]]) -> None:
        if any(c.kind not in ("key", "customer") for c, _ in done):
            parse.validate(_without_keys(self))  # references of everything but the keys
        for change, _ in done:
            if change.kind == "key" and change.value is not None:
                k: ApiKey = change.value
                if k.customer_id not in self.customers:
                    raise SnapshotError(f"key {k.id!r}: customer_id {k.customer_id!r} names no customer")
                # the base holds each hash once: a second holder is a key some change put
                if self.keys.holders(k.key_hash) != [k.id]:
                    raise SnapshotError(f"key {k.id!r}: key_hash is duplicated")
            elif change.kind == "customer":
                c: Customer | None = change.value
                if c is None:
                    if self.keys.ids_of_customer(change.id):
                        raise SnapshotError(f"customer {change.id!r} deleted while keys still name it")
                elif c.plan_id is not None and c.plan_id not in self.plans:
                    raise SnapshotError(f"customer {c.id!r}: plan_id {c.plan_id!r} names no plan")


def with_key_table(snap: Snapshot) -> Snapshot:
    """``snap`` with its keys packed (a parsed snapshot's already are: returned as it is)."""
    if isinstance(snap.keys, KeyTable):
        return snap
    return replace(snap, keys=KeyTable.of(snap.keys))


def _without_keys(store: EntityStore) -> Snapshot:
    snap = store.snapshot(with_keys=False)
    return Snapshot(
        revision=snap.revision,
        upstreams=snap.upstreams,
        apis=snap.apis,
        customers=tuple(store.customers.values()),
        plans=snap.plans,
        certificates=snap.certificates,
        schema_version=snap.schema_version,
    )


_TABLES = {
    "upstream": "upstreams",
    "api": "apis",
    "customer": "customers",
    "key": "keys",
    "plan": "plans",
    "certificate": "certificates",
}
