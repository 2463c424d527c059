"""Client-certificate identities and server names as the control plane normalises them (control_plane.certs)."""

from __future__ import annotations

import pytest
from cryptography import x509

from control_plane.certs import CertificateProblem, client_fingerprint, client_subject, sni


def test_fingerprints_take_colons_and_upper_case() -> None:
    hex64 = "0f" * 32
    spaced = ":".join(hex64[i : i + 2] for i in range(0, 64, 2)).upper()
    assert client_fingerprint(spaced) == client_fingerprint(f" {hex64.upper()} ") == hex64
    for bad in ("0f" * 31, "zz" * 32, "0f" * 33, ""):
        with pytest.raises(CertificateProblem):
            client_fingerprint(bad)


def test_subjects_are_written_as_cryptography_writes_them() -> None:
    # RFC 4514 writes the most specific RDN first: the certificate's sequence is O, then CN
    name = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Acme, Inc."),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "svc.example.com"),
        ]
    )
    assert client_subject(" CN=svc.example.com,O=Acme\\, Inc. ") == name.rfc4514_string()
    assert client_subject("2.5.4.3=svc") == "CN=svc"  # by OID: written with its short name, as the worker sees it
    for bad in ("no equals sign", ""):
        with pytest.raises(CertificateProblem):
            client_subject(bad)


def test_server_names() -> None:
    assert sni("API.Example.COM.") == "api.example.com"
    assert sni("*.example.com") == "*.example.com"
    assert sni("localhost") == "localhost"
    for bad in ("*.com", "*", "a.*.example.com", "ex ample.com", "-a.example.com", "a" * 64 + ".com"):
        with pytest.raises(CertificateProblem):
            sni(bad)
