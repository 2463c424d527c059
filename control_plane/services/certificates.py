"""TLS certificates the workers serve (by SNI, or as the default) and show to targets.

* A write checks the chain and key (:func:`control_plane.certs.parse_served`: PEM, key matches the
  leaf, chain order and signatures, validity now, no password-protected key) and stores the key
  encrypted at rest (:class:`~control_plane.secretbox.SecretBox`, the row id as associated data).
* A server name belongs to one certificate (409 naming the one that has it); the names are rows of
  ``certificate_snis`` whose primary key is the name, so the database holds the rule too.
* At most one certificate is the default.  Setting ``default`` on one *moves* it: the certificate that
  had it loses it in the same transaction (a declarative file can then move the default in one apply
  whatever the order of its entries).
* ``cert`` and ``key`` change together (renewal, replacement): a key alone could not be checked
  against anything but the old certificate, a certificate alone would keep a key that may not match.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from control_plane.certs import CertificateProblem, ServedCertificate, parse_served
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.models import Certificate, CertificateSni, Upstream, new_id
from control_plane.schemas import CertificateCreate, CertificateUpdate
from control_plane.secretbox import SecretBox
from control_plane.services.common import integrity_as_conflict, paginate
from control_plane.services.revision import bump_revision


def list_certificates(*, session: Session, limit: int, offset: int) -> tuple[list[Certificate], int]:
    stmt = select(Certificate).order_by(Certificate.created_at, Certificate.id)
    return paginate(session, stmt, limit=limit, offset=offset)


def get_certificate(*, session: Session, certificate_id: str) -> Certificate:
    row = session.get(Certificate, certificate_id)
    if row is None:
        raise NotFound.of("certificate", certificate_id)
    return row


def create_certificate(*, session: Session, box: SecretBox, data: CertificateCreate) -> Certificate:
    bump_revision(session)
    served = _parse(data.cert, data.key)
    row = Certificate(id=new_id(), is_default=False, sans=[])
    row.name = data.name if data.name is not None else _default_name(session, data.snis, row.id)
    _check_name_free(session, row.name)
    _check_snis_free(session, data.snis, exclude_id=None)
    _set_chain(row, served, box)
    session.add(row)
    with integrity_as_conflict(f"certificate name {row.name!r} is already used"):
        session.flush()
    _set_snis(session, row, data.snis)
    if data.default:
        _make_default(session, row)
    return row


def update_certificate(
    *, session: Session, box: SecretBox, certificate_id: str, data: CertificateUpdate
) -> Certificate:
    bump_revision(session)
    row = get_certificate(session=session, certificate_id=certificate_id)
    changes = data.model_dump(exclude_unset=True)
    for name in ("name", "cert", "key", "snis", "default"):
        if name in changes and changes[name] is None:
            raise Invalid(name, f"{name} may not be null")
    if ("cert" in changes) != ("key" in changes):
        raise Invalid("key" if "cert" in changes else "cert", "cert and key are replaced together (renewal)")
    if "cert" in changes:
        _set_chain(row, _parse(changes["cert"], changes["key"]), box)
    if "name" in changes and changes["name"] != row.name:
        _check_name_free(session, changes["name"])
        row.name = changes["name"]
    if "snis" in changes:
        _check_snis_free(session, changes["snis"], exclude_id=row.id)
    with integrity_as_conflict("certificate name is already used"):
        session.flush()
    if "snis" in changes:
        _set_snis(session, row, changes["snis"])
    if changes.get("default") is True:
        _make_default(session, row)
    elif changes.get("default") is False:
        row.is_default = False
        session.flush()
    return row


def delete_certificate(*, session: Session, certificate_id: str) -> None:
    bump_revision(session)
    row = get_certificate(session=session, certificate_id=certificate_id)
    users = session.execute(select(Upstream.name).where(Upstream.client_certificate_id == certificate_id)).scalars()
    names = sorted(users)
    if names:
        raise Conflict(
            f"certificate {row.name!r} is the client certificate of upstream(s) {', '.join(names)}; change them first"
        )
    session.delete(row)  # its names cascade
    session.flush()


def private_key_pem(*, box: SecretBox, row: Certificate) -> str:
    """The clear private key, for the snapshot build only (which seals it for the workers at once)."""
    return box.decrypt(row.key_encrypted, aad=f"certificate {row.id}").decode("ascii")


def _parse(cert: str, key: str) -> ServedCertificate:
    try:
        return parse_served(cert, key, now=datetime.now(UTC))
    except CertificateProblem as exc:
        raise Invalid(exc.field, exc.message) from None


def _set_chain(row: Certificate, served: ServedCertificate, box: SecretBox) -> None:
    row.cert = served.cert_pem
    row.key_encrypted = box.encrypt(served.key_pem.encode("ascii"), aad=f"certificate {row.id}")
    row.subject, row.issuer, row.sans = served.subject, served.issuer, served.sans
    row.not_before, row.not_after, row.fingerprint = served.not_before, served.not_after, served.fingerprint


def _default_name(session: Session, snis: list[str], row_id: str) -> str:
    if snis:
        name = snis[0].replace("*.", "wildcard.", 1)
        if not session.execute(select(exists().where(Certificate.name == name))).scalar():
            return name
    return row_id


def _check_name_free(session: Session, name: str) -> None:
    if session.execute(select(exists().where(Certificate.name == name))).scalar():
        raise Conflict(f"certificate name {name!r} is already used")


def _check_snis_free(session: Session, snis: list[str], *, exclude_id: str | None) -> None:
    if not snis:
        return
    stmt = (
        select(CertificateSni.sni, Certificate.name, Certificate.id)
        .join(Certificate, Certificate.id == CertificateSni.certificate_id)
        .where(CertificateSni.sni.in_(snis))
        .order_by(CertificateSni.sni)
    )
    if exclude_id is not None:
        stmt = stmt.where(CertificateSni.certificate_id != exclude_id)
    taken = session.execute(stmt).first()
    if taken is not None:
        raise Conflict(f"server name {taken.sni!r} is already served by certificate {taken.name!r} ({taken.id})")


def _set_snis(session: Session, row: Certificate, snis: list[str]) -> None:
    wanted = sorted(set(snis))
    if wanted == row.snis:
        return
    row.sni_rows = []  # delete-orphan: the old names go first, so a name kept is not inserted twice
    session.flush()
    row.sni_rows = [CertificateSni(sni=s, certificate_id=row.id) for s in wanted]
    with integrity_as_conflict("a server name was given to another certificate concurrently"):
        session.flush()


def _make_default(session: Session, row: Certificate) -> None:
    others = select(Certificate).where(Certificate.is_default.is_(True), Certificate.id != row.id)
    for other in session.execute(others).scalars():
        other.is_default = False
    row.is_default = True
    session.flush()
