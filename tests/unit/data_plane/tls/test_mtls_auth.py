"""auth: mtls with plain values: a client certificate (trustme) on a stand-in TLS connection."""

from __future__ import annotations

import datetime
import hashlib
import ssl

import trustme

from data_plane import snapshot as snap
from data_plane.auth import (
    CERT_EXPIRED,
    CERT_NOT_TRUSTED,
    CERT_REQUIRED,
    CERT_UNKNOWN,
    CUSTOMER_SUSPENDED,
    NOT_GRANTED,
    TLS_REQUIRED,
    Denied,
    compile_auth,
    make_authenticator,
)
from data_plane.tls.clientcert import TlsPeer

CA = trustme.CA()
GOOD = CA.issue_cert("a@example.com", common_name="acme")
BY_SUBJECT = CA.issue_cert("b@example.com", common_name="globex")
PAST = datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC)
EXPIRED = CA.issue_cert("old@example.com", not_before=PAST, not_after=PAST + datetime.timedelta(days=1))
STRANGER = trustme.CA().issue_cert("s@example.com")


def der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


class FakeSsl:
    """What ``ssl_object.getpeercert(binary_form=True)`` gives: the client certificate's DER, or None."""

    def __init__(self, leaf: trustme.LeafCert | None) -> None:
        self.der = der(leaf) if leaf is not None else None
        self.calls = 0

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        self.calls += 1
        return self.der


def subject(leaf: trustme.LeafCert) -> str:
    from cryptography import x509

    return x509.load_der_x509_certificate(der(leaf)).subject.rfc4514_string()


def authenticator(status: str = "active", api_ids: tuple[str, ...] = ("m",)):  # type: ignore[no-untyped-def]
    api = snap.Api(
        id="m", name="m", auth="mtls", auth_settings=snap.ApiAuth(mtls_ca_certificates=CA.cert_pem.bytes().decode())
    )
    customers = (
        snap.Customer(
            id="acme",
            name="acme",
            status=status,
            api_ids=api_ids,
            mtls_fingerprints=(hashlib.sha256(der(GOOD)).hexdigest(),),
        ),
        snap.Customer(id="globex", name="globex", api_ids=("m",), mtls_subjects=(subject(BY_SUBJECT),)),
        snap.Customer(
            id="old", name="old", api_ids=("m",), mtls_fingerprints=(hashlib.sha256(der(EXPIRED)).hexdigest(),)
        ),
    )
    s = snap.Snapshot(revision=1, apis=(api,), customers=customers)
    return make_authenticator(api, compile_auth(s))


def test_a_good_certificate_authenticates_its_customer_by_fingerprint_or_subject() -> None:
    auth = authenticator()
    for leaf, customer in ((GOOD, "acme"), (BY_SUBJECT, "globex")):
        res = auth.authenticate([], b"/", -1, TlsPeer(FakeSsl(leaf)))
        assert not isinstance(res, Denied), res.message
        assert res[3].id == customer
        assert res[2] == f"x-customer-id: {customer}\r\n".encode()


def test_the_certificate_is_parsed_once_per_connection() -> None:
    auth, ssl_object = authenticator(), FakeSsl(GOOD)
    peer = TlsPeer(ssl_object)
    for _ in range(3):
        assert not isinstance(auth.authenticate([], b"/", -1, peer), Denied)
    assert ssl_object.calls == 1


def test_refusals() -> None:
    auth = authenticator()
    assert auth.authenticate([], b"/", -1, None) is TLS_REQUIRED
    assert auth.authenticate([], b"/", -1, TlsPeer(FakeSsl(None))) is CERT_REQUIRED
    assert auth.authenticate([], b"/", -1, TlsPeer(FakeSsl(EXPIRED))) is CERT_EXPIRED
    assert auth.authenticate([], b"/", -1, TlsPeer(FakeSsl(STRANGER))) is CERT_NOT_TRUSTED
    unknown = CA.issue_cert("nobody@example.com")
    assert auth.authenticate([], b"/", -1, TlsPeer(FakeSsl(unknown))) is CERT_UNKNOWN
    assert authenticator(status="suspended").authenticate([], b"/", -1, TlsPeer(FakeSsl(GOOD))) is CUSTOMER_SUSPENDED
    assert authenticator(api_ids=()).authenticate([], b"/", -1, TlsPeer(FakeSsl(GOOD))) is NOT_GRANTED
    assert (CERT_REQUIRED.status, CERT_EXPIRED.status, CERT_NOT_TRUSTED.status, CERT_UNKNOWN.status) == (
        401,
        403,
        403,
        403,
    )
