"""How a caller authenticates to an API through the gateway: the ONE place an export reads the auth mode.

``api.auth`` is ``none`` today; the auth work adds ``api_key`` (with ``key_header``, default
``x-api-key``, or ``key_query``) and ``jwt``.  They are read with ``getattr`` so this module works
before and after those columns exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_KEY_HEADER = "x-api-key"
API_KEY_SCHEME = "TollgateApiKey"
JWT_SCHEME = "TollgateJwt"


@dataclass(frozen=True, slots=True)
class GatewayAuth:
    mode: str  # none | api_key | jwt
    key_header: str = DEFAULT_KEY_HEADER
    key_query: str | None = None

    def security_schemes(self) -> dict[str, dict[str, Any]]:
        if self.mode == "api_key":
            if self.key_query:
                return {API_KEY_SCHEME: {"type": "apiKey", "in": "query", "name": self.key_query}}
            return {API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": self.key_header}}
        if self.mode == "jwt":
            return {JWT_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        return {}

    def security(self) -> list[dict[str, list[str]]]:
        return [{name: []} for name in self.security_schemes()]


def gateway_auth(api: Any) -> GatewayAuth:
    """The auth settings of an API row (or anything with the same attributes)."""
    mode = str(getattr(api, "auth", None) or "none")
    return GatewayAuth(
        mode=mode,
        key_header=getattr(api, "key_header", None) or DEFAULT_KEY_HEADER,
        key_query=getattr(api, "key_query", None) or None,
    )
