"""``/v1/certificates``: TLS certificates served by the workers.  The private key goes in, never out."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from control_plane.api.deps import Box, CertificateId, Paging, ReadSession, Write
from control_plane.schemas import CertificateCreate, CertificatePublic, CertificateUpdate, Page
from control_plane.services import certificates as svc
from control_plane.services import convert

router = APIRouter(prefix="/certificates", tags=["certificates"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_certificate(body: CertificateCreate, w: Write, box: Box) -> CertificatePublic:
    """Store a TLS certificate chain and its private key (write-only) for the workers' TLS listener."""
    row = svc.create_certificate(session=w.session, box=box, data=body)
    w.commit(row.id)
    return convert.certificate_public(row)


@router.get("")
def list_certificates(session: ReadSession, page: Paging) -> Page[CertificatePublic]:
    """List the certificates, a page at a time (never their private keys)."""
    rows, total = svc.list_certificates(session=session, limit=page.limit, offset=page.offset)
    items = [convert.certificate_public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{certificate_id}")
def get_certificate(certificate_id: CertificateId, session: ReadSession) -> CertificatePublic:
    """One certificate (never its private key)."""
    return convert.certificate_public(svc.get_certificate(session=session, certificate_id=certificate_id))


@router.patch("/{certificate_id}")
def update_certificate(certificate_id: CertificateId, body: CertificateUpdate, w: Write, box: Box) -> CertificatePublic:
    """Change the fields given; a new ``cert`` with its ``key`` renews or replaces the certificate."""
    row = svc.update_certificate(session=w.session, box=box, certificate_id=certificate_id, data=body)
    w.commit()
    return convert.certificate_public(row)


@router.delete("/{certificate_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_certificate(certificate_id: CertificateId, w: Write) -> Response:
    """Delete the certificate (409 while an upstream presents it to its targets)."""
    svc.delete_certificate(session=w.session, certificate_id=certificate_id)
    w.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
