"""Reading and checking PEM certificates, private keys and client-certificate identities (``cryptography``).

Pure functions; each problem is a :class:`CertificateProblem` (a ``ValueError`` naming the field) whose
message says what is wrong and never quotes the input: a message about a private key must not carry
any of it.  The services turn problems into :class:`~control_plane.errors.Invalid` (422).

Rules for a served certificate (:func:`parse_served`):

* ``cert`` is one or more PEM certificates, the leaf first, then each issuer: certificate *i* names
  certificate *i+1* as its issuer and carries its signature (checked with
  ``verify_directly_issued_by`` for RSA, EC and Ed25519 issuers);
* every certificate in it is valid now (neither expired nor not yet valid);
* ``key`` is an unencrypted PEM private key (a password-protected one is refused: the workers could
  not load it unattended) whose public key is the leaf's.

Both are stored re-encoded (the chain as PEM blocks only, the key as PKCS#8), so text around the PEM
blocks (``openssl``'s "Bag Attributes") never reaches the workers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

# A host name, or a "*." wildcard over one: lower case, labels of letters, digits and inner hyphens.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_SNI_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})+$|^{_LABEL}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CertificateProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ServedCertificate:
    cert_pem: str  # the chain, re-encoded
    key_pem: str  # PKCS#8, unencrypted: only ever held in memory, encrypted before it is stored
    subject: str
    issuer: str
    sans: list[str]
    not_before: datetime
    not_after: datetime
    fingerprint: str  # sha256 of the leaf's DER, 64 lower-case hex


def _ordinal(i: int) -> str:
    return f"certificate {i + 1} of cert"


def load_chain(cert_pem: str, field: str = "cert") -> list[x509.Certificate]:
    if "-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise CertificateProblem(field, f"{field} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except (ValueError, UnicodeError):
        raise CertificateProblem(field, f"{field} is not a readable PEM certificate chain") from None
    return chain


def fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def leaf_fingerprint(cert_pem: str) -> str:
    """The SHA-256 fingerprint of the first certificate of a PEM chain."""
    return fingerprint(load_chain(cert_pem)[0])


def _load_key(key_pem: str) -> PrivateKeyTypes:
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in key_pem or "Proc-Type: 4,ENCRYPTED" in key_pem:
        raise CertificateProblem("key", "key is encrypted (password-protected); give the unencrypted PEM private key")
    if "-----BEGIN" not in key_pem or "PRIVATE KEY-----" not in key_pem:
        raise CertificateProblem("key", "key holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    try:
        return serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise CertificateProblem(
            "key", "key is encrypted (password-protected); give the unencrypted PEM private key"
        ) from None
    except (ValueError, UnsupportedAlgorithm, UnicodeError):
        raise CertificateProblem("key", "key is not a readable PEM private key") from None


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_validity(chain: list[x509.Certificate], now: datetime, field: str) -> None:
    for i, c in enumerate(chain):
        what = "the certificate" if len(chain) == 1 else _ordinal(i)
        if c.not_valid_after_utc <= now:
            raise CertificateProblem(field, f"{what} expired on {c.not_valid_after_utc.isoformat()}")
        if c.not_valid_before_utc > now:
            raise CertificateProblem(field, f"{what} is not valid before {c.not_valid_before_utc.isoformat()}")


def _check_order(chain: list[x509.Certificate]) -> None:
    for i in range(len(chain) - 1):
        child, parent = chain[i], chain[i + 1]
        if child.issuer != parent.subject:
            raise CertificateProblem(
                "cert",
                f"{_ordinal(i + 1)} is not the issuer of {_ordinal(i)} (order: the leaf first, then each issuer)",
            )
        try:
            child.verify_directly_issued_by(parent)
        except (InvalidSignature, ValueError):
            raise CertificateProblem(
                "cert", f"{_ordinal(i)} is not signed by {_ordinal(i + 1)} (order: the leaf first, then each issuer)"
            ) from None
        except (TypeError, UnsupportedAlgorithm):
            pass  # a signature algorithm cryptography cannot check here: the names matched


def _sans(leaf: x509.Certificate) -> list[str]:
    try:
        ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(ext.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return names


def parse_served(cert_pem: str, key_pem: str, *, now: datetime) -> ServedCertificate:
    """Check a certificate chain and its private key by the rules above."""
    chain = load_chain(cert_pem)
    key = _load_key(key_pem)
    key_public = _public_der(key.public_key())
    leaf = chain[0]
    if _public_der(leaf.public_key()) != key_public:
        owner = next((i for i, c in enumerate(chain) if _public_der(c.public_key()) == key_public), None)
        if owner is not None:
            raise CertificateProblem(
                "cert", f"key belongs to {_ordinal(owner)}; the leaf certificate must come first in cert"
            )
        raise CertificateProblem("key", "key does not match the certificate (the leaf's public key is another one)")
    _check_order(chain)
    _check_validity(chain, now, "cert")
    return ServedCertificate(
        cert_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii"),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        sans=_sans(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint=fingerprint(leaf),
    )


def ca_bundle(pem: str, field: str) -> str:
    """A PEM bundle of CA certificates (each with basicConstraints CA:TRUE), re-encoded."""
    chain = load_chain(pem, field)
    for i, c in enumerate(chain):
        try:
            ca = c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise CertificateProblem(
                field, f"certificate {i + 1} of {field} is not a CA certificate (basicConstraints CA:TRUE)"
            )
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain)


def sni(value: str) -> str:
    """A server name a certificate answers for: a host name or ``*.`` + host name, lower-cased."""
    name = value.strip().lower().rstrip(".")
    if len(name) > 253 or not _SNI_RE.match(name):
        raise CertificateProblem("snis", f"{value!r} is not a host name or a *.example.com wildcard")
    return name


def client_fingerprint(value: str) -> str:
    """A client certificate's SHA-256 fingerprint as 64 lower-case hex digits (colons and case accepted)."""
    digits = value.strip().replace(":", "").lower()
    if not _HEX64.match(digits):
        raise CertificateProblem(
            "mtls_fingerprints", f"{value!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )
    return digits


def client_subject(value: str) -> str:
    """A certificate subject (RFC 4514) as ``Name.rfc4514_string()`` writes it (what the worker compares)."""
    try:
        name = x509.Name.from_rfc4514_string(value.strip())
    except ValueError:
        raise CertificateProblem("mtls_subjects", f"{value!r} is not an RFC 4514 distinguished name") from None
    if not len(name):
        raise CertificateProblem("mtls_subjects", "an empty subject matches no certificate")
    return name.rfc4514_string()
