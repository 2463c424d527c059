"""Encryption at rest of the secrets the control plane must be able to read back (certificates' private keys).

The data key is HKDF-SHA256 of the configured secret (``TOLLGATE_SECRET_KEY``, or the one generated into
``<data_dir>/secret-key``: :func:`control_plane.settings.ensure_secret_key`), 32 bytes for AES-256-GCM
(``cryptography``'s AEAD).  Each value gets a fresh random 96-bit nonce; the associated data names the row
(a certificate's id), so a ciphertext copied onto another row does not open.

Format: ``tgenc1:`` + base64url (no padding) of nonce || ciphertext+tag.  The version prefix leaves room
for another algorithm or key later; a value without it is refused, never read as plaintext.

Unlike the snapshot's seal (:mod:`data_plane.tls.seal`, deterministic so the snapshot hash is stable),
this is randomised: two equal keys are not recognisable as equal in the database.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from control_plane.errors import SecretUnreadable

PREFIX = "tgenc1:"
_INFO = b"tollgate secrets at rest v1"
_NONCE = 12


class SecretBox:
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a secret is needed to derive the data key")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, *, aad: str) -> str:
        nonce = os.urandom(_NONCE)
        data = nonce + self._aead.encrypt(nonce, plaintext, aad.encode())
        return PREFIX + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    def decrypt(self, stored: str, *, aad: str) -> bytes:
        if not stored.startswith(PREFIX):
            raise SecretUnreadable(f"{aad}: the stored value is not encrypted ({PREFIX}...)")
        body = stored[len(PREFIX) :]
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(data[:_NONCE], data[_NONCE:], aad.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretUnreadable(
                f"{aad}: the stored value does not open with this secret key (is TOLLGATE_SECRET_KEY the one it was "
                "written with?)"
            ) from None
