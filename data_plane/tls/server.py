"""The worker's TLS listener: one ``ssl.SSLContext`` per certificate, picked by SNI in the handshake.

The listener is created once with :attr:`TlsServer.base` (TLS 1.2+, a modern cipher list, ALPN
``http/1.1``, session tickets); OpenSSL calls :meth:`TlsServer.pick` with the client's server
name during every handshake, and it switches the connection to the context of the certificate
that matches: an exact name first, then a ``*.parent`` wildcard (one label, as RFC 6125 6.4.3
allows), then the default certificate (the snapshot's ``default`` one, else the worker's own
``--tls-cert``, e.g. the self-signed localhost certificate ``tollgate up`` makes).  No match and
no default: the handshake ends with an ``unrecognized_name`` alert.

**Rotation.**  :meth:`TlsServer.update` builds the contexts of a new snapshot before it swaps
one reference (``self.table``), so a new or renewed certificate is used by the next handshake,
and connections already open keep the context they were set up with (nothing is dropped).
Contexts whose certificate, key and client-certificate settings did not change are kept, so a
config change that does not touch certificates costs nothing here.  Session resumption: tickets
are issued and read with the base context's ticket keys (OpenSSL keeps the context a connection
started with as its session context), so a resumed session survives both SNI switching and
rotation.

**Client certificates** (APIs with ``auth: mtls``): while any API wants them, every context asks
for one (``CERT_OPTIONAL``, the APIs' CAs named in the request) and accepts whatever the client
shows (:mod:`data_plane.tls.clientcert`); each API then checks the certificate against its own
CAs and maps it to a customer (:class:`data_plane.auth.MtlsAuth`), so an unknown or expired
certificate is a 403 from that API, like a bad key, not a failed handshake for every API.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

from data_plane.errors import SnapshotError
from data_plane.snapshot import Snapshot
from data_plane.tls import clientcert
from data_plane.tls.pem import load_chain
from data_plane.tls.seal import open_sealed

log = logging.getLogger("tollgate.tls")

# TLS 1.2 suites with forward secrecy and AEAD only (Mozilla's "intermediate" profile); TLS 1.3
# suites are OpenSSL's defaults (all AEAD).
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def server_context() -> ssl.SSLContext:
    """A server context with the settings every Tollgate TLS socket shares (no certificate yet)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.set_alpn_protocols(["http/1.1"])
    # No client-initiated renegotiation (a CPU cost the client chooses), no compression (CRIME).
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


@dataclass(frozen=True, slots=True)
class _Table:
    exact: dict[str, ssl.SSLContext] = field(default_factory=dict)
    wildcard: dict[str, ssl.SSLContext] = field(default_factory=dict)  # "example.com" for "*.example.com"
    default: ssl.SSLContext | None = None


class TlsServer:
    """The certificates a worker serves, by name; :attr:`base` is what the listener is made with."""

    def __init__(self, cert_file: str | None = None, key_file: str | None = None) -> None:
        self.base = server_context()
        self.base.sni_callback = self.pick
        self.local: ssl.SSLContext | None = None  # the worker's own certificate (--tls-cert / --tls-key)
        if cert_file and key_file:
            self.local = server_context()
            self.local.load_cert_chain(cert_file, key_file)
        self.table = _Table(default=self.local)
        self._built: dict[tuple[str, str, str], ssl.SSLContext] = {}  # (cert, sealed key, client CAs) -> context
        self._client_cas = ""  # the CAs client certificates are asked for ("" = none asked)

    def pick(self, conn: ssl.SSLObject, server_name: str | None, _base: ssl.SSLContext) -> int | None:
        """OpenSSL's servername callback: switch ``conn`` to the certificate for ``server_name``."""
        table = self.table
        ctx = None
        if server_name:
            name = server_name.lower().rstrip(".")
            ctx = table.exact.get(name)
            if ctx is None:
                dot = name.find(".")
                if dot > 0:
                    ctx = table.wildcard.get(name[dot + 1 :])
        if ctx is None:
            ctx = table.default
            if ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        conn.context = ctx
        return None

    @property
    def has_certificates(self) -> bool:
        t = self.table
        return bool(t.exact or t.wildcard or t.default is not None)

    def update(self, snapshot: Snapshot, token: str | None) -> None:
        """Build the contexts of ``snapshot``'s certificates, then swap them in.  Raises
        :class:`SnapshotError` (naming the certificate, never its key) when one does not load: the
        worker then keeps its current configuration."""
        cas = client_cas(snapshot)
        built: dict[tuple[str, str, str], ssl.SSLContext] = {}
        exact: dict[str, ssl.SSLContext] = {}
        wildcard: dict[str, ssl.SSLContext] = {}
        default = None
        for cert in snapshot.certificates:
            if not cert.snis and not cert.default:
                continue  # only shown to targets (an upstream's client certificate)
            key = (cert.cert, cert.key, cas)
            ctx = self._built.get(key)
            if ctx is None:
                ctx = server_context()
                try:
                    load_chain(ctx, cert.cert, open_sealed(cert.key, cert.id, token))
                except ssl.SSLError as exc:
                    raise SnapshotError(f"certificate {cert.id!r} does not load: {exc.reason or exc}") from None
                if cas:
                    clientcert.request_any(ctx, cas)
            built[key] = ctx
            for name in cert.snis:
                if name.startswith("*."):
                    wildcard.setdefault(name[2:], ctx)
                else:
                    exact.setdefault(name, ctx)
            if cert.default:
                default = ctx
        if cas != self._client_cas:
            # The handshake asks for a client certificate when the context it *started* with says so
            # (OpenSSL copies the verify mode when the connection is made, not when SNI switches it),
            # so the base context asks too; the worker's own certificate likewise.
            for ctx in (self.base, self.local):
                if ctx is None:
                    continue
                if cas:
                    clientcert.request_any(ctx, cas)
                else:
                    ctx.verify_mode = ssl.CERT_NONE  # (an earlier snapshot asked for client certificates)
        local = self.local
        self._built = built
        self._client_cas = cas
        self.table = _Table(exact, wildcard, default if default is not None else local)


def client_cas(snapshot: Snapshot) -> str:
    """The CA certificates of every ``mtls`` API, in one PEM bundle ("" when no API uses mTLS)."""
    seen: list[str] = []
    for api in snapshot.apis:
        pem = api.auth_settings.mtls_ca_certificates
        if api.auth == "mtls" and pem and pem not in seen:
            seen.append(pem)
    return "\n".join(seen)
