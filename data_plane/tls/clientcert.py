"""Client certificates: ask for one in the handshake, accept what comes, judge it per API.

OpenSSL, as Python's ``ssl`` drives it, can only ask for a client certificate and then either
fail the handshake when it does not verify (``CERT_REQUIRED`` / ``CERT_OPTIONAL``) or not ask at
all.  A gateway needs what nginx calls ``ssl_verify_client optional_no_ca``: ask, complete the
handshake whatever the certificate, and let each API decide (an ``mtls`` API answers 401/403
like a bad key; an API without mTLS on the same host does not care).  Python has no verify
callback, so :func:`request_any` installs one through OpenSSL's own
``SSL_CTX_set_cert_verify_callback`` (with ``ctypes``, on the ``SSL_CTX`` the ``SSLContext``
wraps) that accepts the chain; the judgement is then :meth:`PeerCert.issued_by` and the validity
dates, per API, in Python with the ``cryptography`` package.

The ``SSL_CTX`` pointer is read from the ``SSLContext`` object's first field (CPython's
``PySSLContext``), and checked before use: the options OpenSSL reports for that pointer must be
the ones ``SSLContext.options`` reports.  Where that check or the ``ctypes`` lookup fails (another
Python implementation), the context verifies as OpenSSL does by default: the handshake fails for
a certificate that does not chain to the APIs' CAs, and a warning says so once.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import ssl
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

log = logging.getLogger("tollgate.tls")

_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


@_VERIFY_CB
def _accept(_store_ctx: int | None, _arg: int | None) -> int:
    return 1  # the chain is judged per API (PeerCert), not in the handshake


class _OpenSsl:
    def __init__(self) -> None:
        self.set_verify_cb: Any = None
        self.get_options: Any = None
        self.warned = False
        try:
            import _ssl

            lib = ctypes.CDLL(_ssl.__file__)
            self.set_verify_cb = lib.SSL_CTX_set_cert_verify_callback
            self.set_verify_cb.argtypes = [ctypes.c_void_p, _VERIFY_CB, ctypes.c_void_p]
            self.set_verify_cb.restype = None
            self.get_options = lib.SSL_CTX_get_options
            self.get_options.argtypes = [ctypes.c_void_p]
            self.get_options.restype = ctypes.c_uint64
        except (ImportError, OSError, AttributeError):
            self.set_verify_cb = None

    def ctx_pointer(self, ctx: ssl.SSLContext) -> int | None:
        if self.set_verify_cb is None:
            return None
        # PySSLContext: PyObject_HEAD (reference count, type), then SSL_CTX *ctx
        ptr = ctypes.c_void_p.from_address(id(ctx) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
        if not ptr or int(self.get_options(ptr)) != int(ctx.options):
            return None
        return int(ptr)


_OPENSSL = _OpenSsl()


def request_any(ctx: ssl.SSLContext, cas_pem: str) -> bool:
    """Make ``ctx`` ask for a client certificate (naming the CAs of ``cas_pem``) and accept any.
    False when only OpenSSL's own verification could be set up (see the module docstring)."""
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=cas_pem)
    ptr = _OPENSSL.ctx_pointer(ctx)
    if ptr is None:
        if not _OPENSSL.warned:
            _OPENSSL.warned = True
            log.warning(
                "client certificates are verified in the handshake (this Python's ssl cannot defer it): "
                "an untrusted certificate fails the handshake instead of getting a 403"
            )
        return False
    _OPENSSL.set_verify_cb(ptr, _accept, None)
    return True


class PeerCert:
    """The certificate a client showed on one connection, parsed once (the first mTLS request)."""

    __slots__ = ("cert", "fingerprint", "subject", "not_before", "not_after", "_issuers")

    def __init__(self, der: bytes) -> None:
        self.cert = x509.load_der_x509_certificate(der)
        self.fingerprint = hashlib.sha256(der).hexdigest()
        self.subject = self.cert.subject.rfc4514_string()
        self.not_before = self.cert.not_valid_before_utc.timestamp()
        self.not_after = self.cert.not_valid_after_utc.timestamp()
        self._issuers: dict[x509.Certificate, bool] = {}  # CA certificate -> whether it issued this one

    def issued_by(self, cas: tuple[x509.Certificate, ...]) -> bool:
        """Signed directly by one of ``cas`` (their subject is its issuer, their key its signature)."""
        for ca in cas:
            known = self._issuers.get(ca)
            if known is None:
                try:
                    self.cert.verify_directly_issued_by(ca)
                    known = True
                except (ValueError, TypeError, InvalidSignature):
                    known = False  # another issuer's name, a key type it cannot check, or a bad signature
                self._issuers[ca] = known
            if known:
                return True
        return False


class TlsPeer:
    """What one TLS client connection tells the request path: it is TLS (a plain connection has
    none of these), and the client's certificate, parsed on first use."""

    __slots__ = ("ssl_object", "_cert", "_loaded")

    def __init__(self, ssl_object: Any) -> None:
        self.ssl_object = ssl_object
        self._cert: PeerCert | None = None
        self._loaded = False

    def cert(self) -> PeerCert | None:
        if not self._loaded:
            self._loaded = True
            self._cert = peer_cert(self.ssl_object)
        return self._cert


def peer_cert(ssl_object: Any) -> PeerCert | None:
    """The client's certificate on this TLS connection (None: it showed none, or it does not parse)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return PeerCert(der)
    except ValueError:
        return None


def load_cas(pem: str) -> tuple[x509.Certificate, ...]:
    """The CA certificates of a PEM bundle (at compile time)."""
    return tuple(x509.load_pem_x509_certificates(pem.encode("ascii")))
