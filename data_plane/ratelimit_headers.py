"""Response bytes for limiter decisions: the ``RateLimit`` header block and the 429 / 503 answers.

Headers follow draft-ietf-httpapi-ratelimit-headers-10 (Structured Fields)::

    RateLimit-Policy: "quota";q=1000;w=86400, "throttle";q=20;w=2
    RateLimit: "quota";r=958;t=3600, "throttle";r=19;t=1

``q`` quota units per window ``w`` seconds, ``r`` remaining, ``t`` seconds until reset.  The throttle
is expressed as ``q = burst`` per ``w = burst / rate`` (the time an empty bucket takes to refill)
and its ``t`` is the time until the bucket is full again.  The widely deployed
``X-RateLimit-Limit / -Remaining / -Reset`` (reset as delta seconds, like the draft) describe the
quota when the policy has one, else the throttle.  ``Retry-After`` is an integer number of seconds,
rounded up so a client that obeys it is never refused for arriving early.

Everything is a few ``%d`` formats on bytes: cheap enough per response; the policy's switch
(``show_headers``) turns the block off entirely.
"""

from __future__ import annotations

import math

from data_plane.errors import SERVER_HEADER, error_response, status_line
from data_plane.ratelimit import QUOTA, THROTTLE, UNAVAILABLE, Decision

RATE_LIMITED = "rate limit exceeded"
QUOTA_EXHAUSTED = "quota exhausted"
LIMITER_UNAVAILABLE = "rate limiter unavailable"

_BODY_PREFIX = {
    THROTTLE: b'{"message":"' + RATE_LIMITED.encode() + b'","limit":"throttle","request_id":"',
    QUOTA: b'{"message":"' + QUOTA_EXHAUSTED.encode() + b'","limit":"quota","request_id":"',
}


def _ceil(seconds: float) -> int:
    return max(0, math.ceil(seconds - 1e-9))


def rate_limit_headers(d: Decision) -> bytes:
    """The ``RateLimit-Policy``, ``RateLimit`` and ``X-RateLimit-*`` lines (CRLF-terminated), or b""."""
    policy = d.policy
    if not policy.show_headers or d.limit == UNAVAILABLE:
        return b""
    pol: list[bytes] = []
    cur: list[bytes] = []
    x_limit = x_remaining = x_reset = -1
    quota = policy.quota
    if quota is not None and d.quota_limit >= 0:
        remaining = max(0, d.quota_remaining)
        reset = _ceil(d.quota_reset)
        pol.append(b'"quota";q=%d;w=%d' % (d.quota_limit, d.quota_window))
        cur.append(b'"quota";r=%d;t=%d' % (remaining, reset))
        x_limit, x_remaining, x_reset = d.quota_limit, remaining, reset
    throttle = policy.throttle
    if throttle is not None and d.tokens >= 0:
        remaining = int(d.tokens)
        reset = _ceil((throttle.burst - d.tokens) / throttle.rate)
        pol.append(b'"throttle";q=%d;w=%d' % (throttle.burst, throttle.window))
        cur.append(b'"throttle";r=%d;t=%d' % (remaining, reset))
        if x_limit < 0:
            x_limit, x_remaining, x_reset = throttle.burst, remaining, reset
    if not pol:
        return b""
    return (
        b"ratelimit-policy: %s\r\nratelimit: %s\r\nx-ratelimit-limit: %d\r\nx-ratelimit-remaining: %d\r\n"
        % (
            b", ".join(pol),
            b", ".join(cur),
            x_limit,
            x_remaining,
        )
        + b"x-ratelimit-reset: %d\r\n" % x_reset
    )


def retry_after(d: Decision) -> int:
    return max(1, _ceil(d.retry_after))


def limit_response(d: Decision, request_id: bytes, *, keep_alive: bool) -> bytes:
    """The complete response for a refused request: 429 (throttle or quota) or 503 (store unavailable)."""
    if d.limit == UNAVAILABLE:
        return error_response(
            503, LIMITER_UNAVAILABLE, request_id, keep_alive=keep_alive, extra_headers=b"retry-after: 1\r\n"
        )
    body = _BODY_PREFIX[d.limit] + request_id + b'"}'
    return b"".join(
        (
            status_line(429),
            SERVER_HEADER,
            b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: " % len(body),
            request_id,
            b"\r\nretry-after: %d\r\n" % retry_after(d),
            rate_limit_headers(d),
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )
