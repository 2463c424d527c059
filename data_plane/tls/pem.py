"""Loading a certificate chain and its private key into an ``ssl.SSLContext`` from memory.

``SSLContext.load_cert_chain`` reads files only.  The key must never rest on disk, so it is written
to a file in a private directory (mode 0700, on ``/dev/shm`` where it exists: memory, not disk),
loaded, and removed before this function returns, whatever happens.
"""

from __future__ import annotations

import os
import ssl
import tempfile

_SHM = "/dev/shm"


def load_chain(ctx: ssl.SSLContext, cert_pem: str, key_pem: bytes) -> None:
    """Load ``cert_pem`` (leaf first, then intermediates) and ``key_pem`` into ``ctx``.  Raises
    ``ssl.SSLError`` (key and certificate do not match, unreadable PEM); its message never holds
    the key."""
    base = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
    directory = tempfile.mkdtemp(prefix="tollgate-tls-", dir=base)  # mode 0700
    path = os.path.join(directory, "chain.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
            if not key_pem.endswith(b"\n"):
                f.write(b"\n")
            f.write(cert_pem.encode("ascii"))
        ctx.load_cert_chain(path)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.rmdir(directory)
