"""Loading a certificate chain and its private key into an ``ssl.SSLContext`` from memory.

``SSLContext.load_cert_chain`` reads files only.  The key must never rest on disk, so it is written
to a file of mode 0600 in a private directory (0700, on ``/dev/shm`` where it exists: memory, not
disk), loaded, and removed with its directory before :func:`load_chain` returns, whatever happens.
Used for the certificates the worker serves (:mod:`.server`) and the ones it shows to targets
(:mod:`.client`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator

SHM = "/dev/shm"


@contextlib.contextmanager
def private_file(data: bytes) -> Iterator[str]:
    """``data`` in a file only this process's user can read, removed (with its directory) on exit."""
    base = SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK) else None
    directory = tempfile.mkdtemp(prefix="tollgate-tls-", dir=base)  # mode 0700
    path = os.path.join(directory, "chain.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def load_chain(ctx: ssl.SSLContext, cert_pem: str, key_pem: bytes) -> None:
    """Load ``cert_pem`` (leaf first, then intermediates) and ``key_pem`` into ``ctx``.  Raises
    ``ssl.SSLError`` (key and certificate do not match, unreadable PEM); its message never holds
    the key."""
    data = key_pem if key_pem.endswith(b"\n") else key_pem + b"\n"
    with private_file(data + cert_pem.encode("ascii")) as path:
        ctx.load_cert_chain(path)
