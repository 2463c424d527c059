"""Upstreams and their targets."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.models import Certificate, Route, Target, Upstream
from control_plane.schemas import TargetCreate, TargetUpdate, UpstreamCreate, UpstreamUpdate
from control_plane.services.common import apply_patch, integrity_as_conflict, paginate
from control_plane.services.revision import bump_revision


def list_upstreams(*, session: Session, limit: int, offset: int) -> tuple[list[Upstream], int]:
    return paginate(session, select(Upstream).order_by(Upstream.created_at, Upstream.id), limit=limit, offset=offset)


def get_upstream(*, session: Session, upstream_id: str) -> Upstream:
    upstream = session.get(Upstream, upstream_id)
    if upstream is None:
        raise NotFound.of("upstream", upstream_id)
    return upstream


def create_upstream(*, session: Session, data: UpstreamCreate) -> Upstream:
    bump_revision(session)
    _check_name_free(session, data.name)
    upstream = Upstream(**data.model_dump())
    _check_hash_key(upstream)
    _check_certificate(session, upstream.client_certificate_id)
    session.add(upstream)
    with integrity_as_conflict(f"upstream name {data.name!r} is already used"):
        session.flush()
    return upstream


def update_upstream(*, session: Session, upstream_id: str, data: UpstreamUpdate) -> Upstream:
    bump_revision(session)
    upstream = get_upstream(session=session, upstream_id=upstream_id)
    changes = data.model_dump(exclude_unset=True)
    for name in ("health_check", "passive"):
        # stored complete, defaults filled in (exclude_unset would keep only the members the PATCH named):
        # what the API shows, the export writes and a file compares against are the same value
        value = getattr(data, name)
        if name in changes and value is not None:
            changes[name] = value.model_dump()
    if changes.get("name") not in (None, upstream.name):
        _check_name_free(session, changes["name"])
    apply_patch(upstream, changes, nullable=_NULLABLE)
    _check_hash_key(upstream)
    if "client_certificate_id" in changes:
        _check_certificate(session, upstream.client_certificate_id)
    with integrity_as_conflict("upstream name is already used"):
        session.flush()
    return upstream


def delete_upstream(*, session: Session, upstream_id: str) -> None:
    bump_revision(session)
    upstream = get_upstream(session=session, upstream_id=upstream_id)
    if session.execute(select(exists().where(Route.upstream_id == upstream_id))).scalar():
        raise Conflict(f"upstream {upstream.name!r} is still used by one or more routes; delete or move them first")
    session.delete(upstream)
    with integrity_as_conflict(f"upstream {upstream.name!r} is still used by one or more routes"):
        session.flush()


_NULLABLE = frozenset({"total_timeout", "health_check", "passive", "ca_certificates", "sni", "client_certificate_id"})


def _check_certificate(session: Session, certificate_id: str | None) -> None:
    if certificate_id is not None and session.get(Certificate, certificate_id) is None:
        raise Invalid("client_certificate_id", f"client_certificate_id {certificate_id!r} names no certificate")


def _check_hash_key(upstream: Upstream) -> None:
    # Checked on the merged row so a PATCH of hash_on alone sees the stored hash_key.
    if upstream.hash_on in ("header", "cookie") and not upstream.hash_key:
        raise Invalid("hash_key", f"hash_key is required when hash_on is {upstream.hash_on!r}")


def _check_name_free(session: Session, name: str) -> None:
    if session.execute(select(exists().where(Upstream.name == name))).scalar():
        raise Conflict(f"upstream name {name!r} is already used")


# ---------------------------------------------------------------------------- targets


def list_targets(*, session: Session, upstream_id: str, limit: int, offset: int) -> tuple[list[Target], int]:
    get_upstream(session=session, upstream_id=upstream_id)
    stmt = select(Target).where(Target.upstream_id == upstream_id).order_by(Target.created_at, Target.id)
    return paginate(session, stmt, limit=limit, offset=offset)


def get_target(*, session: Session, upstream_id: str, target_id: str) -> Target:
    target = session.get(Target, target_id)
    if target is None or target.upstream_id != upstream_id:
        get_upstream(session=session, upstream_id=upstream_id)  # name the upstream when it is the missing one
        raise NotFound.of("target", target_id)
    return target


def create_target(*, session: Session, upstream_id: str, data: TargetCreate) -> Target:
    bump_revision(session)
    get_upstream(session=session, upstream_id=upstream_id)
    _check_target_free(session, upstream_id, data.host, data.port, exclude_id=None)
    target = Target(upstream_id=upstream_id, **data.model_dump())
    session.add(target)
    with integrity_as_conflict(f"target {data.host}:{data.port} already exists in this upstream"):
        session.flush()
    return target


def update_target(*, session: Session, upstream_id: str, target_id: str, data: TargetUpdate) -> Target:
    bump_revision(session)
    target = get_target(session=session, upstream_id=upstream_id, target_id=target_id)
    changes = data.model_dump(exclude_unset=True)
    host, port = changes.get("host") or target.host, changes.get("port") or target.port
    _check_target_free(session, upstream_id, host, port, exclude_id=target.id)
    apply_patch(target, changes)
    with integrity_as_conflict(f"target {host}:{port} already exists in this upstream"):
        session.flush()
    return target


def delete_target(*, session: Session, upstream_id: str, target_id: str) -> None:
    bump_revision(session)
    session.delete(get_target(session=session, upstream_id=upstream_id, target_id=target_id))
    session.flush()


def _check_target_free(session: Session, upstream_id: str, host: str, port: int, *, exclude_id: str | None) -> None:
    stmt = select(Target.id).where(Target.upstream_id == upstream_id, Target.host == host, Target.port == port)
    if exclude_id is not None:
        stmt = stmt.where(Target.id != exclude_id)
    if session.execute(stmt).first() is not None:
        raise Conflict(f"target {host}:{port} already exists in this upstream")
