"""CORS (the ``cors`` policy): preflights answered by the gateway, headers on actual responses.

A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered here,
before authentication and limits, never forwarded and never counted against a plan: browsers send
it without credentials, so a keyed API could not answer it at all.  The route that judges it is the
route of the *requested* method (``OPTIONS /orders`` asking for ``PUT`` is the ``PUT /orders``
route's), so a route that does not accept ``OPTIONS`` still gets its preflights.  An origin outside
``allow_origins`` gets 403 (never the allow headers); an allowed one gets 204 with the allowed
methods, headers (the requested ones when ``allow_headers`` is unset), credentials and max-age.

Actual responses to an allowed origin get ``Access-Control-Allow-Origin`` (the origin itself, or
``*`` for an any-origin policy without credentials), ``Access-Control-Allow-Credentials`` and
``Access-Control-Expose-Headers``; every response of a CORS route says ``Vary: Origin`` (the
headers depend on it), and the upstream's own ``Access-Control-*`` fields are dropped so the
policy is the one answer.  Origins: ``*`` (any), exact (``https://app.example.com``, the port
when not the scheme's default), or a subdomain wildcard (``https://*.example.com``, or
``*.example.com`` for http and https), which never matches the bare domain.  Credentials with any
origin is refused by the control plane (it would let every site read responses made with the
user's cookies).
"""

from __future__ import annotations

import re
from typing import Any, Final

from data_plane.errors import SnapshotError

DEFAULT_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_ORIGIN: Final = re.compile(rb"^(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")
_TOKEN: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_VARY: Final = b"vary: origin\r\n"


class Cors:
    __slots__ = (
        "any_origin",
        "exact",
        "wildcards",
        "credentials",
        "preflight_tail",
        "allow_headers",
        "actual_tail",
        "star_lines",
    )

    def __init__(
        self,
        origins: list[str],
        methods: tuple[str, ...],
        headers: tuple[str, ...] | None,
        expose: tuple[str, ...],
        credentials: bool,
        max_age: int | None,
    ) -> None:
        self.any_origin = "*" in origins
        self.exact: frozenset[bytes] = frozenset(o.lower().encode() for o in origins if "*" not in o)
        wild: list[tuple[bytes | None, bytes]] = []
        for o in origins:
            if o != "*" and "*" in o:
                scheme, _, rest = o.lower().rpartition("*")
                wild.append((scheme[:-3].encode() if scheme else None, rest.encode()))  # ("https", b".example.com")
        self.wildcards = tuple(wild)
        self.credentials = credentials
        cred = b"access-control-allow-credentials: true\r\n" if credentials else b""
        tail = b"access-control-allow-methods: " + ", ".join(methods).encode() + b"\r\n" + cred
        if max_age is not None:
            tail += b"access-control-max-age: %d\r\n" % max_age
        self.preflight_tail = tail
        self.allow_headers = None if headers is None else ", ".join(headers).encode()
        self.actual_tail = cred + (
            b"access-control-expose-headers: " + ", ".join(expose).encode() + b"\r\n" if expose else b""
        )
        # an any-origin policy without credentials answers "*" (nothing echoed, cacheable by anyone)
        self.star_lines = b"access-control-allow-origin: *\r\n" if self.any_origin and not credentials else b""

    def _allowed(self, origin: bytes) -> bool:
        origin = origin.lower()
        if origin in self.exact:
            return True
        m = _ORIGIN.match(origin)
        if m is None:
            return False
        if self.any_origin:
            return True
        host = m.group(2)
        for scheme, suffix in self.wildcards:
            if (scheme is None or scheme == m.group(1)) and host.endswith(suffix) and len(host) > len(suffix):
                return True
        return False

    def _allow_origin(self, origin: bytes) -> bytes | None:
        """The Access-Control-Allow-Origin line for ``origin`` (None: not allowed)."""
        if self.star_lines:
            return self.star_lines
        if not self._allowed(origin):
            return None
        return b"access-control-allow-origin: " + origin + b"\r\n"

    def preflight(self, origin: bytes, request_headers: bytes) -> bytes | None:
        """The header lines of a 204 answer to a preflight from ``origin`` (None: origin refused)."""
        line = self._allow_origin(origin)
        if line is None:
            return None
        allow = self.allow_headers
        if allow is None:
            allow = _safe_list(request_headers)  # unset: whatever the browser asks for (listed tokens only)
        out = line + self.preflight_tail
        if allow:
            out += b"access-control-allow-headers: " + allow + b"\r\n"
        return out + b"vary: origin, access-control-request-method, access-control-request-headers\r\n"

    def response_lines(self, origin: bytes | None) -> bytes:
        """The lines an actual response gets (``origin``: the request's Origin, None without one)."""
        if origin is None:
            return _VARY
        line = self._allow_origin(origin)
        if line is None:
            return _VARY
        return line + self.actual_tail + _VARY


def _safe_list(value: bytes) -> bytes:
    names = [n.strip().lower() for n in value.decode("latin-1").split(",")]
    return ", ".join(n for n in names if n and _TOKEN.match(n)).encode()


def strip_upstream_cors(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response fields without its own Access-Control-* ones (the policy answers)."""
    if not any(name.startswith(b"access-control-") for name, _ in headers):
        return headers
    return [h for h in headers if not h[0].startswith(b"access-control-")]


def _tokens(values: Any, where: str, upper: bool = False) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) and _TOKEN.match(v) for v in values):
        raise SnapshotError(f"{where} must be an array of header or method names")
    return tuple(v.upper() if upper else v.lower() for v in values)


def compile_cors(doc: dict[str, Any], where: str) -> Cors:
    origins = doc.get("allow_origins")
    if not isinstance(origins, list) or not origins or not all(isinstance(o, str) and o for o in origins):
        raise SnapshotError(f"{where}.allow_origins must be a non-empty array of origins")
    for i, o in enumerate(origins):
        bare = o.lower().replace("*.", "x.", 1) if o.count("*") == 1 and "*." in o else o.lower()
        if o != "*" and not (_ORIGIN.match(bare.encode()) or (bare.startswith("x.") and "://" not in bare)):
            raise SnapshotError(f"{where}.allow_origins[{i}]: {o!r} is not *, an origin or a *.domain wildcard")
    methods = _tokens(doc.get("allow_methods") or list(DEFAULT_METHODS), f"{where}.allow_methods", upper=True)
    headers = doc.get("allow_headers")
    credentials = bool(doc.get("allow_credentials", False))
    max_age = doc.get("max_age")
    if max_age is not None and (not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0):
        raise SnapshotError(f"{where}.max_age must be a number of seconds")
    return Cors(
        origins,
        methods,
        None if headers is None else _tokens(headers, f"{where}.allow_headers"),
        _tokens(doc.get("expose_headers") or [], f"{where}.expose_headers"),
        credentials,
        max_age,
    )
