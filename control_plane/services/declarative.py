"""Declarative config: diff a :class:`~control_plane.config_document.GatewayConfig` against the database
and apply it in one transaction that bumps the revision once.

Every resource is flattened to an *address* — ``(("api", "orders"), ("route", "/items/{id} [GET]"))``
— holding its document fields.  Desired (the document) and current (the database, read through the
same :data:`KINDS` table) are compared address by address: missing → create, different fields → update,
extra → delete (top-level only with ``prune``; a child of a resource the document names is always
removed, because a named resource is described completely).  Changes run through the ordinary service
functions, so every business rule (overlaps, references) holds exactly as for single writes; inside
:func:`~control_plane.services.revision.one_revision` their bumps collapse into one.

Adding a resource type is one more :class:`Kind` in :data:`KINDS` and its section in the document
model (certificates, upstreams, APIs, usage plans and customers are there today; never customers' key
secrets).  A kind may compare another form of its entries than the one written (``Kind.view``: a
certificate by its leaf's fingerprint, not its PEM text) and take write-only fields
(``Kind.secret_fields``: a certificate's private key) that are used to create or update but never
compared, shown in a change or exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from control_plane.config_document import ApplyResult, Change, GatewayConfig
from control_plane.errors import Conflict, ControlPlaneError, Invalid
from control_plane.secretbox import SecretBox
from control_plane.services.declarative_kinds import KINDS, Address, Ctx, Kind
from control_plane.services.revision import bump_revision, current_revision, one_revision


@dataclass
class Item:
    kind: Kind
    address: Address
    fields: dict[str, Any]
    loc: tuple[str | int, ...] | None = None  # where in the document (desired items)
    row_id: str | None = None  # current items
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # the entry as written (desired) or exported (current) when the kind compares another form of it
    # (Kind.view: a certificate's chain by its fingerprint); the desired one holds the write-only secrets
    source: dict[str, Any] = field(default_factory=dict)


def _walk(kinds: Iterable[Kind]) -> Iterator[Kind]:
    for kind in kinds:
        yield kind
        yield from _walk(kind.children)


FLAT_KINDS: tuple[Kind, ...] = tuple(_walk(KINDS))  # dependency order: a parent before its children


def describe(address: Address) -> str:
    return " / ".join(f"{kind} {key}" for kind, key in address)


def _config_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    return ("config", *loc)


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc)


# ---------------------------------------------------------------------------- desired and current


def desired_items(doc: GatewayConfig) -> dict[Address, Item]:
    out: dict[Address, Item] = {}

    def visit(kinds: tuple[Kind, ...], data: dict[str, Any], parent: Address, loc: tuple[str | int, ...]) -> None:
        for kind in kinds:
            for i, entry in enumerate(data.get(kind.section) or []):
                source = {k: v for k, v in entry.items() if k not in kind.child_sections}
                item_loc = (*loc, kind.section, i)
                try:
                    fields = kind.compared(source)
                except ValueError as exc:
                    raise Invalid(_dotted(item_loc), str(exc), loc=_config_loc(item_loc)) from None
                address = (*parent, (kind.name, kind.key(fields)))
                if address in out:
                    other = _dotted(out[address].loc or ())
                    raise Invalid(
                        _dotted(item_loc),
                        f"duplicate {describe(address)} (also at {other})",
                        loc=_config_loc(item_loc),
                    )
                out[address] = Item(kind, address, fields, loc=item_loc, source=source)
                visit(kind.children, entry, address, item_loc)

    data = doc.model_dump(mode="json")
    for kind in KINDS:  # write-only fields are excluded from every dump: take them from the models
        for entry, model in zip(data.get(kind.section) or [], getattr(doc, kind.section), strict=True):
            entry.update({name: getattr(model, name) for name in kind.secret_fields})
    visit(KINDS, data, (), ())
    return out


def current_items(session: Session, ctx: Ctx) -> tuple[dict[Address, Item], list[Item]]:
    """Every resource in the database (flat, by address) and the top-level items (with nested children
    in ``Item.children``, sorted by identity) for the export."""
    flat: dict[Address, Item] = {}
    by_id: dict[tuple[str, str], Item] = {}  # (kind, row id) -> item, to attach children
    top: list[Item] = []
    for kind in FLAT_KINDS:
        rows = list(kind.rows(session))
        items: list[tuple[Item, Item | None]] = []
        for row in rows:
            parent = by_id[(kind.parent, kind.parent_of(row))] if kind.parent and kind.parent_of else None
            source = kind.doc_fields(row, ctx)
            fields = kind.compared(source)
            address = (*(parent.address if parent else ()), (kind.name, kind.key(fields)))
            item = Item(kind, address, fields, row_id=row.id, source=source)
            items.append((item, parent))
            flat[address] = item
            by_id[(kind.name, row.id)] = item
            ctx.ids[address] = row.id
            if parent is None:
                ctx.keys[(kind.name, row.id)] = kind.key(fields)
        for item, parent in sorted(items, key=lambda pair: pair[0].address):
            if parent is None:
                top.append(item)
            else:
                parent.children.setdefault(kind.section, []).append(_doc_entry(item))
    return flat, top


def _doc_entry(item: Item) -> dict[str, Any]:
    entry = dict(item.source)
    for child in item.kind.children:
        entry[child.section] = item.children.get(child.section, [])
    return entry


def export_document(*, session: Session) -> GatewayConfig:
    _flat, top = current_items(session, Ctx())
    doc: dict[str, Any] = {kind.section: [] for kind in KINDS}
    for item in top:
        doc[item.kind.section].append(_doc_entry(item))
    return GatewayConfig.model_validate(doc)


# ---------------------------------------------------------------------------- plan


@dataclass
class Planned:
    action: str
    item: Item
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    fields: list[str]

    def change(self) -> Change:
        return Change(
            action=self.action,  # type: ignore[arg-type]
            kind=self.item.kind.name,
            address=describe(self.item.address),
            loc=list(_config_loc(self.item.loc)) if self.item.loc is not None else None,
            fields=self.fields,
            before=self.before,
            after=self.after,
        )


def plan(desired: dict[Address, Item], current: dict[Address, Item], *, prune: bool) -> list[Planned]:
    out: list[Planned] = []
    for address, want in desired.items():
        have = current.get(address)
        if have is None:
            out.append(Planned("create", want, None, want.fields, []))
            continue
        changed = [f for f in want.fields if want.kind.differs(f, want.fields[f], have.fields.get(f))]
        if changed:
            out.append(Planned("update", want, have.fields, want.fields, changed))
    for address, have in current.items():
        if address in desired:
            continue
        # A child of a resource the document names is removed (the document describes it completely);
        # anything else only when pruning.
        if prune or (len(address) > 1 and address[:-1] in desired):
            out.append(Planned("delete", have, have.fields, None, []))
    _check_references(desired, current, out)
    return out


def _ref_names(value: Any, path: list[str], loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(location, name) of every name at ``path`` (``*``: each element of a list) under ``value``."""
    if not path:
        yield loc, value
    elif path[0] == "*":
        for i, element in enumerate(value if isinstance(value, list) else []):
            yield from _ref_names(element, path[1:], (*loc, i))
    elif isinstance(value, dict):
        yield from _ref_names(value.get(path[0]), path[1:], (*loc, path[0]))


def _check_references(desired: dict[Address, Item], current: dict[Address, Item], planned: list[Planned]) -> None:
    deleted = {p.item.address for p in planned if p.action == "delete"}
    available = set(desired) | (set(current) - deleted)
    for item in desired.values():
        for ref_path, target in item.kind.refs.items():
            for loc, name in _ref_names(item.fields, ref_path.split("."), item.loc or ()):
                if name is None or ((target, name),) in available:
                    continue
                where = "is not in this document (pruned)" if ((target, name),) in current else "does not exist"
                what = target.replace("_", " ")
                raise Invalid(_dotted(loc), f"{what} {name!r} {where}", loc=_config_loc(loc))


def _ordered(planned: list[Planned]) -> list[Planned]:
    """Deletes of referrers first (they free names and paths), then creates/updates parent-first, then
    deletes of what was referred to (after the references moved away), children before parents."""
    rank = {kind.name: i for i, kind in enumerate(FLAT_KINDS)}

    def order(p: Planned) -> tuple[int, int]:
        r = rank[p.item.kind.name]
        if p.action == "delete":
            return (0 if p.item.kind.delete_first else 2, -r)
        return (1, r)

    return sorted(planned, key=order)  # stable: document order within a kind


# ---------------------------------------------------------------------------- apply


def _execute(session: Session, ctx: Ctx, step: Planned) -> None:
    item, kind = step.item, step.item.kind
    parent_id = ctx.ids.get(item.address[:-1]) if len(item.address) > 1 else None
    try:
        if step.action == "create":
            ctx.ids[item.address] = kind.create(session, ctx, parent_id, item.source)
        elif step.action == "update":
            # a compared field stands for the source fields it is made of (a fingerprint: cert and key)
            changes = {s: item.source.get(s) for f in step.fields for s in kind.expand.get(f, (f,))}
            kind.update(session, ctx, ctx.ids[item.address], parent_id, changes)
        else:
            assert item.row_id is not None
            kind.delete(session, item.row_id, parent_id)
            # The database cascaded the delete (an API's plan entries and grants, a customer's keys):
            # forget loaded collections so later steps do not act on rows that are gone.
            session.expire_all()
    except ControlPlaneError as exc:
        if item.loc is None:
            raise Conflict(f"cannot delete {describe(item.address)}: {exc.message}") from None
        raise Invalid(
            _dotted(item.loc), f"{describe(item.address)}: {exc.message}", loc=_config_loc(item.loc)
        ) from None


def apply_config(
    *, session: Session, doc: GatewayConfig, prune: bool, dry_run: bool, box: SecretBox | None = None
) -> ApplyResult:
    """Make the database match ``doc``.  Never commits: the caller commits when ``result.changed``
    and rolls back otherwise (the revision row was locked and bumped up front, see below)."""
    desired = desired_items(doc)
    if dry_run:
        ctx = Ctx()
        current, _top = current_items(session, ctx)
        steps = plan(desired, current, prune=prune)
        changes = [s.change() for s in _ordered(steps)]
        return ApplyResult(changed=False, dry_run=True, revision=current_revision(session), changes=changes)
    with one_revision(session):
        # Bump first: the row lock serialises this apply against every other writer, so the diff
        # below cannot go stale before it is executed.  No change → the caller rolls the bump back.
        revision = bump_revision(session)
        ctx = Ctx(box=box)
        current, _top = current_items(session, ctx)
        steps = _ordered(plan(desired, current, prune=prune))
        for step in steps:
            _execute(session, ctx, step)
    changes = [s.change() for s in steps]
    return ApplyResult(
        changed=bool(changes), dry_run=False, revision=revision if changes else revision - 1, changes=changes
    )
