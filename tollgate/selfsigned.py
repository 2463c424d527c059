"""The self-signed certificate ``tollgate up`` serves on its HTTPS port, so HTTPS works out of the box.

For ``localhost``, ``127.0.0.1`` and ``::1``, valid for a year, ECDSA P-256; kept in
``<data_dir>/tls/`` (the key 0600) and made again when it is missing or expires within 30 days.
It is the worker's own certificate (``--tls-cert`` / ``--tls-key``): certificates added through
``/v1/certificates`` take precedence for the names they cover, and one marked ``default`` replaces it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 365
RENEW_DAYS = 30


def ensure_localhost_certificate(directory: Path) -> tuple[Path, Path]:
    """``(certificate file, key file)`` in ``directory``, made now if missing or close to expiry."""
    cert_file, key_file = directory / "localhost.crt", directory / "localhost.key"
    now = datetime.datetime.now(datetime.UTC)
    if cert_file.exists() and key_file.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            if cert.not_valid_after_utc - now > datetime.timedelta(days=RENEW_DAYS):
                return cert_file, key_file
        except ValueError:
            pass  # unreadable: make a new one
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tollgate (self-signed)"),
        ]
    )
    sans = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(sans, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem_key)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file
