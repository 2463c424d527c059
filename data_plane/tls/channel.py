"""TLS for the control-plane channel, seen from its clients: the worker's config sync and usage
sender (:mod:`data_plane.sync`, :mod:`data_plane.metering.meter`) and the admin CLI
(``tollgate/adminclient.py``).

An ``https://`` control-plane URL is verified — chain and host name, TLS 1.2 or later — against the
PEM file ``TOLLGATE_CONTROL_PLANE_CA`` names, or else against the system trust store (httpx's own
default would be certifi's bundle, not the system's: an operator who added the company CA to the
system store expects it to count).  There is no switch to turn verification off: the channel
carries the cluster token, the snapshot (with sealed private keys) and admin tokens.

A leaf: the standard library only.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def channel_context(ca_file: str | Path | None) -> ssl.SSLContext:
    """The client context for the control plane; raises ``OSError`` / ``ssl.SSLError`` when
    ``ca_file`` cannot be read or holds no certificate (callers say which setting named it)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def verify_failure(exc: BaseException) -> str | None:
    """``certificate verify failed: <reason>`` when ``exc`` (an httpx error, say) was caused by a
    certificate that did not verify; None otherwise."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cur.verify_message}"
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
