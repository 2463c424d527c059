"""The change log: which snapshot entities a config write changed, recorded in its transaction.

No service records anything itself.  Session events do it, from the one place every write passes:

* ``after_flush`` looks at what the unit of work just wrote (``session.new``, ``dirty``, ``deleted``)
  and maps each config row to the snapshot entity it belongs to (:data:`PARENT`: a target is part of
  its upstream, a route or a JWKS row of its API, a grant, an identity or a quota adjustment of its
  customer, a plan's API of its plan, an SNI of its certificate);
* ``before_flush`` adds what a database cascade would delete unseen: the keys of a deleted customer,
  the customers and plans that name a deleted API;
* ``do_orm_execute`` sees bulk ``UPDATE`` / ``DELETE`` statements on config tables, whose rows it
  cannot name: it records ``*`` (a worker behind that revision takes a full snapshot) unless the
  caller named the entity itself with :func:`record` (as ``customers._set_grants`` does);
* ``before_commit`` flushes, then writes one ``config_changes`` row per entity with the revision
  :func:`~control_plane.services.revision.bump_revision` gave this transaction, and a ``-`` row
  (:data:`NOTHING`, skipped by readers) for a bump that changed no entity, so every revision has at
  least one row (how a reader knows the log covers a range: :func:`covers`).

A transaction that changes config rows without bumping (key last-use from heartbeats) logs nothing:
such columns are not in the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import delete, event, func, insert, select
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from control_plane import models

# session.info keys
PENDING = "tollgate.changes"  # set of (kind, id, op)
REVISION = "tollgate.revision"  # the revision bump_revision gave this transaction
EXPLICIT = "tollgate.changes.explicit"  # tables whose bulk statement the caller described with record()

FULL = "*"  # kind of an untracked change: readers fall back to a full snapshot
NOTHING = "-"  # kind of a bump that changed no entity (a key revoked twice): readers skip it

_Row = Any
PARENT: dict[type, tuple[str, Callable[[_Row], str]]] = {
    models.Upstream: ("upstream", lambda r: r.id),
    models.Target: ("upstream", lambda r: r.upstream_id),
    models.Api: ("api", lambda r: r.id),
    models.Route: ("api", lambda r: r.api_id),
    models.ApiJwks: ("api", lambda r: r.api_id),
    models.Customer: ("customer", lambda r: r.id),
    models.CustomerApiGrant: ("customer", lambda r: r.customer_id),
    models.CustomerMtlsIdentity: ("customer", lambda r: r.customer_id),
    models.QuotaAdjustment: ("customer", lambda r: r.customer_id),
    models.ApiKey: ("key", lambda r: r.id),
    models.UsagePlan: ("plan", lambda r: r.id),
    models.UsagePlanApi: ("plan", lambda r: r.plan_id),
    models.Certificate: ("certificate", lambda r: r.id),
    models.CertificateSni: ("certificate", lambda r: r.certificate_id),
}
KINDS = ("upstream", "api", "customer", "key", "plan", "certificate")
_TABLES = {cls.__table__.name: cls for cls in PARENT}  # type: ignore[attr-defined]


def record(session: Session, kind: str, entity_id: str, op: str = "upsert", *, table: str | None = None) -> None:
    """Name a changed entity by hand: for a bulk statement on ``table`` that the events cannot read."""
    session.info.setdefault(PENDING, set()).add((kind, entity_id, op))
    if table is not None:
        session.info.setdefault(EXPLICIT, set()).add(table)


def set_revision(session: Session, revision: int) -> None:
    session.info[REVISION] = revision


def _add(session: Session, rows: Iterable[_Row], op: str) -> None:
    pending = session.info.setdefault(PENDING, set())
    for row in rows:
        entry = PARENT.get(type(row))
        if entry is None:
            continue
        kind, ident = entry
        # a nested row deleted is a change (upsert) of its parent; the parent deleted is a delete
        row_op = op if kind_root(type(row)) else "upsert"
        pending.add((kind, ident(row), row_op))


def kind_root(cls: type) -> bool:
    """The row is an entity of the snapshot itself, not a part of one."""
    return cls in (models.Upstream, models.Api, models.Customer, models.ApiKey, models.UsagePlan, models.Certificate)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    deleted = list(session.deleted)
    customers = [r.id for r in deleted if isinstance(r, models.Customer)]
    apis = [r.id for r in deleted if isinstance(r, models.Api)]
    if not customers and not apis:
        return
    with session.no_autoflush:
        if customers:  # their keys go by ON DELETE CASCADE
            for key_id in session.execute(select(models.ApiKey.id).where(models.ApiKey.customer_id.in_(customers))):
                record(session, "key", key_id[0], "delete")
        if apis:  # grants and plans' APIs go by cascade: the customers and plans naming them change
            grant = models.CustomerApiGrant
            for (cid,) in session.execute(select(grant.customer_id).where(grant.api_id.in_(apis)).distinct()):
                record(session, "customer", cid)
            pa = models.UsagePlanApi
            for (pid,) in session.execute(select(pa.plan_id).where(pa.api_id.in_(apis)).distinct()):
                record(session, "plan", pid)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    _add(session, session.new, "upsert")
    _add(session, session.dirty, "upsert")
    _add(session, session.deleted, "delete")


@event.listens_for(Session, "do_orm_execute")
def _bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    if name in _TABLES and name not in state.session.info.get(EXPLICIT, ()):
        record(state.session, FULL, "", "upsert")


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(REVISION) is None and not session.info.get(PENDING):
        return
    session.flush()  # the last flush runs after this event: its rows must be seen now
    revision = session.info.pop(REVISION, None)
    pending: set[tuple[str, str, str]] = session.info.pop(PENDING, set())
    session.info.pop(EXPLICIT, None)
    if revision is None:
        return  # config rows written without a bump: columns the snapshot does not hold
    if not pending:
        # Every write reaches the snapshot's tables through a flush (seen above) or a bulk statement
        # (recorded as FULL): nothing pending means nothing the snapshot holds changed.  A FULL row
        # here sent every worker behind it a full snapshot (at a million keys, ~20 s each) for an
        # idempotent DELETE.
        pending = {(NOTHING, "", "upsert")}
    # one row per entity: a delete wins over an upsert of the same entity in one transaction
    final: dict[tuple[str, str], str] = {}
    for kind, ident, op in pending:
        if final.get((kind, ident)) != "delete":
            final[(kind, ident)] = op
    session.execute(
        insert(models.ConfigChange),
        [{"revision": revision, "kind": k, "entity_id": i, "op": op} for (k, i), op in sorted(final.items())],
    )


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    for key in (PENDING, REVISION, EXPLICIT):
        session.info.pop(key, None)


# ---------------------------------------------------------------------- reading and compaction


def changes_since(session: Session, since: int, until: int) -> list[tuple[int, str, str, str]] | None:
    """The changes of revisions ``(since, until]`` in order, or None when the log does not cover them."""
    if not covers(session, since):
        return None
    c = models.ConfigChange
    rows = session.execute(
        select(c.revision, c.kind, c.entity_id, c.op)
        .where(c.revision > since, c.revision <= until)
        .order_by(c.revision, c.id)
    ).all()
    return [(int(r[0]), r[1], r[2], r[3]) for r in rows]


def covers(session: Session, since: int) -> bool:
    """Every revision after ``since`` is in the log: each revision writes at least one row and
    compaction deletes whole revisions from the oldest, so the oldest row left must be ``since + 1`` or older."""
    oldest = session.execute(select(func.min(models.ConfigChange.revision))).scalar()
    return oldest is not None and int(oldest) <= since + 1


def compact(session: Session, *, keep_after: int) -> int:
    """Delete the log of revisions ``<= keep_after`` (idempotent: any replica may run it)."""
    result = session.execute(delete(models.ConfigChange).where(models.ConfigChange.revision <= keep_after))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
