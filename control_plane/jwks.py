"""Fetching an identity provider's JSON Web Key Set (RFC 7517) and keeping only what a worker may use.

:func:`parse_jwks` is pure: a JWKS document -> the public keys a worker can verify RS256 / ES256
tokens with, as JWK dicts holding *public members only* (``kid``, ``kty``, ``alg``, ``n``/``e`` or
``crv``/``x``/``y``), sorted by ``kid`` so an unchanged key set compares (and hashes) equal.  Dropped:
keys without a ``kid`` (the worker picks keys by ``kid``), ``kty`` other than RSA / EC (``oct``
secrets above all: a JWKS key is never an HMAC key), EC curves other than P-256, keys whose ``use``
is not ``sig`` or whose ``alg`` is not RS256 / ES256, and keys PyJWT cannot load.  Private members
(``d``, ``p``, ``q``, ...) are never copied, so private key material is never stored nor shipped.

:func:`fetch_jwks` GETs the URL with a timeout and a size cap (no redirects) and parses the body;
:func:`try_fetch` gives its outcome as a :class:`Fetched` (keys, or the error), which is what
``services.jwks.record_fetch`` stores — the admin API's write path and the refresher both use it.

Exceptions: :class:`JwksError`, whose message is a fixed phrase (never the URL, which may carry
a credential, nor the response body), fit for logs and the admin API.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

import httpx

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024  # real key sets are a few KiB
_ALGORITHMS = {"RSA": "RS256", "EC": "ES256"}
_PUBLIC = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}


class JwksError(Exception):
    """The JWKS could not be fetched or holds no usable key; the message is safe to show."""


def parse_jwks(doc: Any) -> list[dict[str, str]]:
    """The usable public keys of a JWKS document (already JSON-decoded); raises :class:`JwksError`."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError("not a JWKS document (no keys list)")
    out: dict[str, dict[str, str]] = {}
    for item in doc["keys"]:
        key = _public_key(item)
        if key is not None and key["kid"] not in out:  # a repeated kid: the first one wins
            out[key["kid"]] = key
    if not out:
        raise JwksError("the JWKS holds no usable RS256 / ES256 key")
    return [out[kid] for kid in sorted(out)]


def _public_key(item: Any) -> dict[str, str] | None:
    if not isinstance(item, dict):
        return None
    kty, kid = item.get("kty"), item.get("kid")
    if kty not in _PUBLIC or not isinstance(kid, str) or not kid:
        return None
    alg = item.get("alg")
    if alg is not None and alg != _ALGORITHMS[kty]:
        return None
    if item.get("use", "sig") != "sig":
        return None
    key = {"kid": kid, "kty": kty}
    if alg is not None:
        key["alg"] = alg
    for member in _PUBLIC[kty]:
        value = item.get(member)
        if not isinstance(value, str) or not value:
            return None
        key[member] = value
    if kty == "EC" and key["crv"] != "P-256":
        return None
    return key if _loads(key) else None


def _loads(key: dict[str, str]) -> bool:
    import jwt

    try:
        jwt.PyJWK(key, algorithm=_ALGORITHMS[key["kty"]])
    except (jwt.PyJWTError, ValueError, TypeError):
        log.info("jwks key %r does not load as a public key; skipped", key["kid"])
        return False
    return True


def fetch_jwks(url: str, *, timeout: float, client: httpx.Client | None = None) -> list[dict[str, str]]:
    """GET ``url`` and return :func:`parse_jwks` of the body; raises :class:`JwksError`."""
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False)
    try:
        with http.stream("GET", url, headers={"accept": "application/json"}, timeout=timeout) as response:
            if response.status_code != 200:
                raise JwksError(f"HTTP status {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise JwksError(f"response larger than {MAX_BYTES} bytes")
    except httpx.TimeoutException:
        raise JwksError("timed out") from None
    except httpx.HTTPError as exc:
        raise JwksError(f"request failed ({type(exc).__name__})") from None
    finally:
        if own:
            http.close()
    try:
        doc = json.loads(body)
    except ValueError:
        raise JwksError("response is not JSON") from None
    return parse_jwks(doc)


class Fetched(NamedTuple):
    """One fetch's outcome: the usable keys, or (``keys`` None) the safe error phrase."""

    keys: list[dict[str, str]] | None
    error: str | None


def try_fetch(url: str, *, timeout: float) -> Fetched:
    try:
        return Fetched(fetch_jwks(url, timeout=timeout), None)
    except JwksError as exc:
        return Fetched(None, str(exc))
