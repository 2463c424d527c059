"""Header bytes and 429/503 responses built from decisions."""

from __future__ import annotations

import json

from data_plane.limits.headers import limit_response, rate_limit_headers
from data_plane.limits.periods import DAY
from data_plane.limits.policy import QUOTA, THROTTLE, UNAVAILABLE, Decision, LimitPolicy, Quota, Throttle

POLICY = LimitPolicy(throttle=Throttle(rate=10.0, burst=20), quota=Quota(limit=1000, period=DAY))


def _headers(raw: bytes) -> dict[bytes, bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return {k.lower(): v for k, v in (line.split(b": ", 1) for line in head)}


def test_admitted_headers_follow_the_ietf_draft_and_the_x_form() -> None:
    d = Decision(
        True, "", POLICY, tokens=18.5, quota_remaining=958, quota_limit=1000, quota_reset=3599.2, quota_window=86400
    )
    h = _headers(b"HTTP/1.1 200 OK\r\n" + rate_limit_headers(d) + b"\r\n")
    assert h[b"ratelimit-policy"] == b'"quota";q=1000;w=86400, "throttle";q=20;w=2'
    assert h[b"ratelimit"] == b'"quota";r=958;t=3600, "throttle";r=18;t=1'
    assert (h[b"x-ratelimit-limit"], h[b"x-ratelimit-remaining"], h[b"x-ratelimit-reset"]) == (b"1000", b"958", b"3600")


def test_throttle_only_policy_describes_the_bucket_and_switch_hides_everything() -> None:
    policy = LimitPolicy(throttle=Throttle(rate=0.5, burst=3))
    h = _headers(b"HTTP/1.1 200 OK\r\n" + rate_limit_headers(Decision(True, "", policy, tokens=1.0)) + b"\r\n")
    assert h[b"ratelimit-policy"] == b'"throttle";q=3;w=6'
    assert h[b"x-ratelimit-limit"] == b"3" and h[b"x-ratelimit-remaining"] == b"1" and h[b"x-ratelimit-reset"] == b"4"
    hidden = LimitPolicy(throttle=Throttle(rate=0.5, burst=3), show_headers=False)
    assert rate_limit_headers(Decision(True, "", hidden, tokens=1.0)) == b""


def test_429_for_throttle_and_quota() -> None:
    d = Decision(False, THROTTLE, POLICY, retry_after=0.05, tokens=0.5, quota_limit=1000, quota_remaining=10)
    raw = limit_response(d, b"rid-1", keep_alive=True)
    assert raw.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    h = _headers(raw)
    assert h[b"retry-after"] == b"1"  # rounded up, never 0
    assert b"ratelimit" in h and b"connection" not in h
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body == {"message": "rate limit exceeded", "limit": "throttle", "request_id": "rid-1"}
    assert int(h[b"content-length"]) == len(raw.split(b"\r\n\r\n", 1)[1])

    q = Decision(False, QUOTA, POLICY, retry_after=21600.0, quota_remaining=0, quota_limit=1000, quota_reset=21600.0)
    raw = limit_response(q, b"rid-2", keep_alive=False)
    h = _headers(raw)
    assert h[b"retry-after"] == b"21600" and h[b"connection"] == b"close"
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["limit"] == "quota"


def test_unavailable_is_a_503_without_rate_limit_headers() -> None:
    raw = limit_response(Decision(False, UNAVAILABLE, POLICY, retry_after=1.0), b"rid-3", keep_alive=True)
    assert raw.startswith(b"HTTP/1.1 503 ")
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["message"] == "rate limiter unavailable"
    assert b"ratelimit" not in raw.lower().split(b"\r\n\r\n")[0]
