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

The block is one ``%`` format per response on a template cached per policy shape (the constant
policy line and limit are in it, the per-request numbers are ``%d`` slots); the policy's switch
(``show_headers``) turns the block off entirely.
"""

from __future__ import annotations

import math

from data_plane.http.responses import SERVER_HEADER, error_response, status_line
from data_plane.limits.policy import QUOTA, THROTTLE, UNAVAILABLE, Decision

RATE_LIMITED = "rate limit exceeded"
QUOTA_EXHAUSTED = "quota exhausted"
LIMITER_UNAVAILABLE = "rate limiter unavailable"

_BODY_PREFIX = {
    THROTTLE: b'{"message":"' + RATE_LIMITED.encode() + b'","limit":"throttle","request_id":"',
    QUOTA: b'{"message":"' + QUOTA_EXHAUSTED.encode() + b'","limit":"quota","request_id":"',
}


def _ceil(seconds: float) -> int:
    n = math.ceil(seconds - 1e-9)
    return n if n > 0 else 0


def rate_limit_headers(d: Decision) -> bytes:
    """The ``RateLimit-Policy``, ``RateLimit`` and ``X-RateLimit-*`` lines (CRLF-terminated), or b""."""
    policy = d.policy
    if not policy.show_headers or d.limit == UNAVAILABLE:
        return b""
    quota_limit = d.quota_limit
    has_quota = quota_limit >= 0 and policy.quota is not None
    throttle = policy.throttle
    tokens = d.tokens
    has_throttle = tokens >= 0 and throttle is not None
    if has_quota:
        remaining = d.quota_remaining if d.quota_remaining > 0 else 0
        reset = _ceil(d.quota_reset)
        if has_throttle:
            t_reset = _ceil((throttle.burst - tokens) / throttle.rate)  # type: ignore[union-attr]
            values: tuple[int, ...] = (remaining, reset, int(tokens), t_reset, remaining, reset)
        else:
            values = (remaining, reset, remaining, reset)
    elif has_throttle:
        t_remaining = int(tokens)
        t_reset = _ceil((throttle.burst - tokens) / throttle.rate)  # type: ignore[union-attr]
        values = (t_remaining, t_reset, t_remaining, t_reset)
    else:
        return b""
    # One format per response on a template cached on the policy: the constant policy line and limit
    # are in it, the per-request numbers are %d slots.  Adjustments and month lengths make new keys,
    # slowly; a policy lives for one snapshot, and the cache is bounded besides.
    templates = policy.header_templates
    key = (quota_limit, d.quota_window, has_throttle)
    template = templates.get(key)
    if template is None:
        if len(templates) >= _MAX_TEMPLATES:
            templates.clear()
        template = templates[key] = _template(d, has_quota, has_throttle)
    return template % values


_MAX_TEMPLATES = 256


def _template(d: Decision, has_quota: bool, has_throttle: bool) -> bytes:
    pol: list[bytes] = []
    cur: list[bytes] = []
    x_limit = -1
    if has_quota:
        pol.append(b'"quota";q=%d;w=%d' % (d.quota_limit, d.quota_window))
        cur.append(b'"quota";r=%%d;t=%%d')
        x_limit = d.quota_limit
    throttle = d.policy.throttle
    if has_throttle and throttle is not None:
        pol.append(b'"throttle";q=%d;w=%d' % (throttle.burst, throttle.window))
        cur.append(b'"throttle";r=%%d;t=%%d')
        if x_limit < 0:
            x_limit = throttle.burst
    # The constant parts are digits only, so the template needs no %-escaping beyond the slots.
    return (
        b"ratelimit-policy: "
        + b", ".join(pol)
        + b"\r\nratelimit: "
        + b", ".join(cur).replace(b"%%", b"%")
        + b"\r\nx-ratelimit-limit: %d" % x_limit
        + b"\r\nx-ratelimit-remaining: %d\r\nx-ratelimit-reset: %d\r\n"
    )


def retry_after(d: Decision) -> int:
    return max(1, _ceil(d.retry_after))


def limit_response(d: Decision, request_id: bytes, *, keep_alive: bool, extra: bytes = b"") -> bytes:
    """The complete response for a refused request: 429 (throttle or quota) or 503 (store unavailable);
    ``extra``: lines the route's policies add to every answer (CORS)."""
    if d.limit == UNAVAILABLE:
        return error_response(
            503, LIMITER_UNAVAILABLE, request_id, keep_alive=keep_alive, extra_headers=b"retry-after: 1\r\n" + extra
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
            extra,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )
