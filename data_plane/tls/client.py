"""TLS to targets: one client ``ssl.SSLContext`` per upstream TLS setting, built at snapshot-compile time.

A target with ``scheme: https`` is dialled with ``loop.create_connection(..., ssl=context,
server_hostname=upstream.sni or target.host)`` (:meth:`data_plane.http.upstream.ConnectionPool.connect`);
everything that can be decided before a connection exists is decided here, once:

* ``PROTOCOL_TLS_CLIENT`` with TLS 1.2 as the floor (RFC 8996 deprecates 1.0 and 1.1), ALPN
  ``http/1.1`` (the upstream side speaks HTTP/1.1 only; a server that would pick h2 must not).
* Verification (``tls_verify``, default on): ``CERT_REQUIRED`` and ``check_hostname`` against the
  server name (an IP address is matched against the certificate's IP SANs; Python sends no SNI
  for one), trusting the upstream's ``ca_certificates`` PEM bundle or else the system store.
  ``tls_verify: false`` encrypts without authenticating the target: for labs and tests.  A failed
  verification is a failed connection (502 to the client), never a fallback to plain HTTP.
* The client certificate (``client_certificate_id``, mTLS to the backend): its key reaches the
  worker sealed (:mod:`data_plane.tls.seal`); ``ssl`` loads a key only from a file, so the chain
  and the opened key go through :func:`data_plane.tls.pem.load_chain` (a 0600 file in a private
  directory on ``/dev/shm`` when there is one, removed as soon as it is loaded).

Building a context costs milliseconds (``load_default_certs`` reads the whole system store), so
contexts are keyed by :func:`tls_identity` — a digest of every input — and reused by the next
snapshot when nothing changed (:func:`data_plane.compiler.compile_snapshot`).  The same digest is
part of the connection-pool key: a connection made under one TLS setting (another CA, another
client certificate, no verification) is never handed to an upstream with another.

Not compiled with mypyc: nothing here runs per request.
"""

from __future__ import annotations

import hashlib
import json
import ssl

from data_plane.errors import UpstreamTlsError
from data_plane.snapshot import Certificate, Upstream
from data_plane.tls.pem import load_chain
from data_plane.tls.seal import open_sealed

ALPN = ["http/1.1"]


def tls_identity(upstream: Upstream, certificate: Certificate | None) -> str:
    """A digest of everything a connection's TLS depends on (sealed keys are deterministic, so a new
    key gives a new digest without the key being opened)."""
    parts = [
        upstream.tls_verify,
        upstream.ca_certificates,
        upstream.sni,
        None if certificate is None else [certificate.id, certificate.cert, certificate.key],
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def client_context(upstream: Upstream, certificate: Certificate | None, cluster_token: str | None) -> ssl.SSLContext:
    """The context for an upstream's https targets; raises :class:`UpstreamTlsError` (a ``SnapshotError``:
    the snapshot is refused and the previous one keeps serving) when its CA bundle or client
    certificate does not load.  The message never holds key material."""
    where = f"upstream {upstream.name!r}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    if upstream.tls_verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if upstream.ca_certificates:
            try:
                ctx.load_verify_locations(cadata=upstream.ca_certificates)
            except (ssl.SSLError, ValueError) as exc:
                raise UpstreamTlsError(f"{where}: ca_certificates do not load ({_reason(exc)})") from None
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False  # (must be switched off before verify_mode)
        ctx.verify_mode = ssl.CERT_NONE
    if certificate is not None:
        key = open_sealed(certificate.key, certificate.id, cluster_token)
        try:
            load_chain(ctx, certificate.cert, key)
        except (ssl.SSLError, ValueError) as exc:
            raise UpstreamTlsError(
                f"{where}: client certificate {certificate.id!r} does not load ({_reason(exc)})"
            ) from None
        finally:
            del key
    return ctx


def _reason(exc: Exception) -> str:
    # ssl.SSLError carries OpenSSL's reason ("PEM lib", "KEY_VALUES_MISMATCH"); nothing of the input.
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__
