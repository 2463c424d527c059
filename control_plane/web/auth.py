"""Cookies, CSRF and the sign-in rate limit shared by the console and the portal.

Session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it),
Secure when the request came over HTTPS, Path-scoped to its surface, Max-Age = the session's TTL
(the row's ``expires_at`` is what counts).  Every form carries the session's CSRF token
(:func:`control_plane.services.web_sessions.csrf_token`); the sign-in forms, before any session,
use a double-submit cookie.  Sign-in attempts are limited per client address in a sliding window,
per process (a replica's own memory: N replicas allow N times as many, still bounded).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable

from fastapi import Request, Response

PRE_CSRF_COOKIE = "tg_signin"


class SignInLimiter:
    """At most ``per_minute`` attempts per client in any 60 s window (clock injected for tests)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        now = self._clock()
        window = self._seen.setdefault(client, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= self.per_minute:
            return False
        window.append(now)
        if len(self._seen) > 10000:  # forget idle clients so the map cannot grow without bound
            for key in [k for k, w in self._seen.items() if not w or w[-1] <= now - 60.0]:
                del self._seen[key]
        return True

    def retry_after(self, client: str) -> int:
        window = self._seen.get(client)
        if not window:
            return 0
        return max(1, int(window[0] + 60.0 - self._clock()) + 1)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def set_cookie(request: Request, response: Response, name: str, value: str, *, path: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response, name: str, *, path: str) -> None:
    response.delete_cookie(name, path=path, httponly=True, samesite="strict", secure=request.url.scheme == "https")


def signin_token(request: Request) -> str:
    """The double-submit token for a sign-in form: the cookie's, or a new one."""
    return request.cookies.get(PRE_CSRF_COOKIE) or secrets.token_urlsafe(16)


def remember_signin_token(request: Request, response: Response, token: str, *, path: str) -> None:
    set_cookie(request, response, PRE_CSRF_COOKIE, token, path=path, max_age=3600)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
