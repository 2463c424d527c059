"""Proxy workers as the control plane sees them.  Not config: these writes never bump the revision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from control_plane.models import Node, Target, utcnow
from control_plane.schemas import NodeStatusIn
from control_plane.services.common import paginate
from control_plane.services.customers import record_key_use

STALE_AFTER = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class NodeView:
    node: Node
    in_sync: bool
    stale: bool


def touch_node(*, session: Session, node_id: str, hostname: str | None, version: str | None) -> None:
    """Record that ``node_id`` asked for a snapshot (refreshes ``last_seen``)."""
    node = _get_or_new(session, node_id)
    if hostname:
        node.hostname = hostname[:255]
    if version:
        node.version = version[:64]
    node.last_seen = utcnow()
    session.flush()


def record_status(*, session: Session, node_id: str, status: NodeStatusIn) -> None:
    node = _get_or_new(session, node_id)
    for name, value in status.model_dump(exclude={"keys_used"}).items():
        setattr(node, name, value)
    node.last_seen = utcnow()
    session.flush()
    if status.keys_used:
        record_key_use(session=session, keys_used=status.keys_used)


def list_nodes(*, session: Session, current_hash: str, limit: int, offset: int) -> tuple[list[NodeView], int]:
    rows, total = paginate(session, select(Node).order_by(Node.id), limit=limit, offset=offset)
    now = datetime.now(UTC)
    views = [NodeView(node=n, in_sync=n.hash == current_hash, stale=now - n.last_seen > STALE_AFTER) for n in rows]
    return views, total


def purge_nodes(*, session: Session, older_than: timedelta) -> int:
    """Forget nodes not seen for ``older_than`` (stale first, then gone); returns how many."""
    result = session.execute(delete(Node).where(Node.last_seen < utcnow() - older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _get_or_new(session: Session, node_id: str) -> Node:
    node = session.get(Node, node_id)
    if node is None:
        node = Node(id=node_id)
        session.add(node)
    return node


def upstream_health(*, session: Session, upstream_id: str) -> list[tuple[Target, dict[str, dict[str, object]]]]:
    """Each target of the upstream with each live worker's last reported view of it (node id -> state).

    Workers report every target they serve in their status heartbeat; stale nodes (not seen for
    ``STALE_AFTER``) are left out, since their view says nothing about now.
    """
    from control_plane.services.upstreams import get_upstream

    get_upstream(session=session, upstream_id=upstream_id)
    targets = list(
        session.execute(select(Target).where(Target.upstream_id == upstream_id).order_by(Target.host, Target.port))
        .scalars()
        .all()
    )
    since = datetime.now(UTC) - STALE_AFTER
    nodes = session.execute(select(Node).where(Node.last_seen >= since).order_by(Node.id)).scalars().all()
    out = []
    for t in targets:
        views = {n.id: n.targets[t.id] for n in nodes if n.targets and t.id in n.targets}
        out.append((t, views))
    return out
