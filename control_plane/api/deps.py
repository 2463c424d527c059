"""Request-scoped dependencies: sessions, the write unit of work, pagination, the publisher, the secret box."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from control_plane.idempotency import mark_committed, state_key
from control_plane.secretbox import SecretBox
from control_plane.services import admin as admin_svc
from control_plane.snapshots.publish import SnapshotPublisher


def get_publisher(request: Request) -> SnapshotPublisher:
    publisher: SnapshotPublisher = request.app.state.publisher
    return publisher


def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


def get_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


def read_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


@dataclass(slots=True)
class Writer:
    """A session for one admin write.  ``commit`` adds the audit entry to the same transaction,
    makes it durable and tells the publisher at once."""

    session: Session
    publisher: SnapshotPublisher
    request: Request

    def commit(self, resource_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """``resource_id``: the row a POST created; otherwise the last id in the path is recorded;
        ``detail``: what the write changed (quota changes: before and after), kept in the audit entry."""
        request = self.request
        idem = state_key(request.scope)
        if idem is not None:
            mark_committed(self.session, idem)  # in this transaction: ran and recorded as ran agree
        principal = getattr(request.state, "principal", None)
        if principal is not None:
            if resource_id is None and request.path_params:
                resource_id = str(list(request.path_params.values())[-1])
            admin_svc.record_write(
                session=self.session,
                who=principal,
                method=request.method,
                path=request.url.path,
                resource_id=resource_id,
                detail=detail,
            )
        self.session.commit()
        self.publisher.notify()


def writer(request: Request) -> Iterator[Writer]:
    # Leaving the block without commit() (a domain error, anything) rolls the transaction back.
    with request.app.state.sessions() as session:
        yield Writer(session=session, publisher=get_publisher(request), request=request)


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="page size")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


ReadSession = Annotated[Session, Depends(read_session)]
Write = Annotated[Writer, Depends(writer)]
Paging = Annotated[PageParams, Depends(page_params)]
Sessions = Annotated[sessionmaker[Session], Depends(get_sessions)]
Publisher = Annotated[SnapshotPublisher, Depends(get_publisher)]
Box = Annotated[SecretBox, Depends(get_secret_box)]

# Path parameters: the id of the resource named in the path (404 when there is none).
ApiId = Annotated[str, Path(description="the API's id")]
CertificateId = Annotated[str, Path(description="the certificate's id")]
CustomerId = Annotated[str, Path(description="the customer's id")]
DeliveryId = Annotated[str, Path(description="the delivery's id")]
KeyId = Annotated[str, Path(description="the API key's id")]
PlanId = Annotated[str, Path(description="the usage plan's id")]
RouteId = Annotated[str, Path(description="the route's id")]
TargetId = Annotated[str, Path(description="the target's id")]
TokenId = Annotated[str, Path(description="the admin token's id")]
UpstreamId = Annotated[str, Path(description="the upstream's id")]
WebhookId = Annotated[str, Path(description="the webhook endpoint's id")]
