"""Certificates for the control-plane TLS tests, made by ``trustme`` (and ``cryptography`` for the odd ones)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization


@dataclass(frozen=True)
class Pem:
    cert: str  # the chain, leaf first
    key: str

    @property
    def key_body(self) -> str:
        """The base64 body of the key (what must never show up anywhere)."""
        lines = [line for line in self.key.splitlines() if line and not line.startswith("-----")]
        return "".join(lines)

    @property
    def key_lines(self) -> list[str]:
        return [line for line in self.key.splitlines() if line and not line.startswith("-----")]


def issue(ca: trustme.CA, *names: str, **kwargs: Any) -> Pem:
    leaf = ca.issue_cert(*(names or ("api.example.com",)), **kwargs)
    return Pem("".join(b.bytes().decode() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes().decode())


def leaf_of(pem: Pem) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem.cert.encode())[0]


def encrypted_key(pem: Pem, password: bytes = b"secret") -> str:
    key = serialization.load_pem_private_key(pem.key.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password)
    ).decode()


def expired(ca: trustme.CA, name: str = "old.example.com") -> Pem:
    now = dt.datetime.now(dt.UTC)
    return issue(ca, name, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))


def not_yet_valid(ca: trustme.CA, name: str = "soon.example.com") -> Pem:
    now = dt.datetime.now(dt.UTC)
    return issue(ca, name, not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=30))


def make_certificate(client: Any, pem: Pem, snis: list[str], **fields: Any) -> dict[str, Any]:
    """POST /v1/certificates through a TestClient (or any client with the same ``post``); the 201 body."""
    response = client.post("/v1/certificates", json={"cert": pem.cert, "key": pem.key, "snis": snis, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
