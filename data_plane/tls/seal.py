"""Private keys in the snapshot, sealed for the workers.

A certificate's private key must reach every worker (the worker terminates TLS) but never be
readable in the snapshot, in a worker's cache file, or in what the control plane answers.  The
control plane seals each key with a key derived from the cluster token, which the workers hold
already (they authenticate to the control plane with it); a worker opens it when it compiles
the snapshot and keeps it in memory only (``ssl`` loads the key from a file: a private temporary
file, removed at once, :mod:`data_plane.tls.server`).

**Deterministic on purpose.**  The snapshot's hash must be the same for the same configuration
(workers compare hashes to know they are in sync), so the seal uses AES-SIV (RFC 5297, from the
``cryptography`` package): deterministic authenticated encryption, which reveals only whether two
sealed keys are equal.  The certificate id is the associated data, so a sealed key cannot be moved
to another certificate.  Key: HKDF-SHA256 of the cluster token (64 bytes, AES-256-SIV).

Format: ``tgseal1:`` + base64url (no padding) of the AES-SIV output.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from data_plane.errors import SnapshotError

PREFIX = "tgseal1:"
_INFO = b"tollgate snapshot private keys v1"


@functools.lru_cache(maxsize=8)
def _cipher(token: str) -> AESSIV:
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_INFO).derive(token.encode())
    return AESSIV(key)


def seal(key_pem: str, certificate_id: str, token: str) -> str:
    """The sealed form of ``key_pem`` for the certificate ``certificate_id`` (same input, same output)."""
    if not token:
        raise ValueError("a cluster token is needed to seal private keys")
    data = _cipher(token).encrypt(key_pem.encode(), [certificate_id.encode()])
    return PREFIX + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def open_sealed(sealed: str, certificate_id: str, token: str | None) -> bytes:
    """The PEM private key sealed in ``sealed``; raises :class:`SnapshotError` (which never holds
    the key) when it cannot be opened with ``token``."""
    if not token:
        raise SnapshotError(f"certificate {certificate_id!r}: this worker has no cluster token to open its key")
    if not sealed.startswith(PREFIX):
        raise SnapshotError(f"certificate {certificate_id!r}: its key is not sealed ({PREFIX}...)")
    body = sealed[len(PREFIX) :]
    try:
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return _cipher(token).decrypt(data, [certificate_id.encode()])
    except (binascii.Error, ValueError, InvalidTag):
        raise SnapshotError(
            f"certificate {certificate_id!r}: its key does not open with this worker's cluster token"
        ) from None
