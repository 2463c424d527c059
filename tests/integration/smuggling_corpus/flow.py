"""Flow cases: limits, Expect, pipelining after a refusal, and input that stalls (timers)."""

from __future__ import annotations

from tests.integration.smuggling_corpus.model import (
    CL5,
    LAST,
    SMUGGLED,
    TE,
    Case,
    H,
    case,
    chunked,
    cut,
    forwarded,
    get,
    post,
    refused,
    sequence,
    slow,
)

CASES: list[Case] = [
    # --- limits (docs/architecture.md: head > 32 KiB -> 431, URI -> 414, > 100 fields -> 431, body -> 413)
    case(
        "limit_long_field",
        "limit",
        get(b"x-long: " + b"a" * 40000 + b"\r\n"),
        "issue 13 (431 for a too-large head); nginx answers 400/494, Envoy 431",
        refused(431),
    ),
    case(
        "limit_many_fields",
        "limit",
        get(b"".join(b"x-f%d: v\r\n" % i for i in range(101))),
        "issue 13 (431 for too many fields); Envoy max_headers_count -> 431",
        refused(431),
    ),
    case(
        "limit_long_uri", "limit", get(target=b"/h/" + b"a" * 40000), "issue 13 (414 for a too-long URI)", refused(414)
    ),
    case(
        "limit_many_fields_ok",
        "limit",
        get(b"".join(b"x-f%d: v\r\n" % i for i in range(90))),
        "control: under the field limit",
        forwarded(path="/x"),
    ),
    case(
        "limit_body_content_length",
        "limit",
        post(b"content-length: 100\r\n", b"a" * 100, b"/small/x"),
        "max_body_bytes from Content-Length up front",
        refused(413),
    ),
    case(
        "limit_body_chunked",
        "limit",
        post(TE, b"14\r\n" + b"a" * 20 + b"\r\n" + LAST, b"/small/x"),
        "max_body_bytes counted as a chunked body streams",
        refused(413),
    ),
    # --- Expect
    case(
        "expect_100_continue",
        "expect",
        post(CL5 + b"expect: 100-continue\r\n", b"hello", b"/h/upload"),
        "control: nginx-tests http_expect_100_continue.t",
        forwarded(received=5),
    ),
    case(
        "expect_100_continue_case",
        "expect",
        post(CL5 + b"expect: 100-Continue\r\n", b"hello", b"/h/upload"),
        "control: nginx-tests http_expect_100_continue.t (case-insensitive)",
        forwarded(received=5),
    ),
    case(
        "expect_obfuscated",
        "expect",
        post(CL5 + b"expect: x 100-continue\r\n", b"hello", b"/h/upload"),
        "PortSwigger desync CL-expect-obfs; RFC 9110 10.1.1 (417 MAY answer an unknown expectation, as Apache "
        "httpd does; forwarding it is also allowed)",
        refused(417),
        forwarded(received=5),
    ),
    case(
        "expect_refused_at_head",
        "expect",
        post(CL5 + b"expect: 100-continue\r\n", target=b"/h/../x"),
        "issue 13 ('Expect: 100-continue to a refused request answered at once'): no body is sent",
    ),
    case(
        "expect_body_too_large",
        "expect",
        post(b"content-length: 100\r\nexpect: 100-continue\r\n", target=b"/small/x"),
        "issue 13; RFC 9110 10.1.1 (a final status instead of 100): no body is sent",
        refused(413),
    ),
    # --- pipelining: nothing after a refusal may be parsed as a request that reaches the backend
    case(
        "pipe_after_bad_content_length",
        "pipelining",
        post(b"content-length: 1, 2\r\n", b"ab") + SMUGGLED,
        "issue 13 (bytes after a 400 are never a second request)",
    ),
    case(
        "pipe_after_path_refusal",
        "pipelining",
        get(target=b"/h/../x") + SMUGGLED,
        "issue 13 (bytes after a 400 are never a second request); a refusal decided after parsing the head",
    ),
    case(
        "pipe_after_body_too_large",
        "pipelining",
        post(b"content-length: 100\r\n", b"a" * 100, b"/small/x") + SMUGGLED,
        "issue 13; nginx closes after a 413 (it does not read the rest)",
        refused(413),
    ),
    case(
        "pipe_cl_te",
        "pipelining",
        post(CL5 + TE, b"0\r\n\r\n" + SMUGGLED),
        "PortSwigger CL.TE (classic desync: the smuggled request hides in the body)",
    ),
    case(
        "pipe_te_cl",
        "pipelining",
        post(TE + b"content-length: 4\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)),
        "PortSwigger TE.CL",
    ),
    case(
        "pipe_after_bad_chunk",
        "pipelining",
        chunked(b"INVALID!!!\r\n") + SMUGGLED,
        "HTTP Garden server bug 47 (Cheroot resynchronised after an invalid chunk)",
    ),
    case(
        "pipe_valid_then_garbage",
        "pipelining",
        get() + b"INVALID\r\n\r\n",
        "HTTP Garden server bug 45 (uvicorn, Mongoose dropped the valid request before the invalid one)",
        sequence(200, 400, forwarded=1, close=True),
    ),
    case(
        "pipe_valid_then_cl_te",
        "pipelining",
        get() + post(CL5 + TE, b"0\r\n\r\n" + SMUGGLED),
        "HTTP Garden server bug 45 shape with a CL.TE second request",
        sequence(200, 400, forwarded=1, close=True),
    ),
    case(
        "pipe_after_connection_close",
        "pipelining",
        get(b"connection: close\r\n") + SMUGGLED,
        "llhttp connection.md 'CRLF between requests, explicit close' ('Data after Connection: close'): the "
        "first request is answered, nothing after it is read",
        sequence(200, forwarded=1, close=True),
    ),
    case(
        "pipe_after_http10",
        "pipelining",
        get(version=b"1.0") + SMUGGLED,
        "llhttp connection.md 'No restart when keep-alive is off (1.0)'",
        sequence(200, forwarded=1, close=True),
    ),
    case(
        "pipe_zero_length_then_body",
        "pipelining",
        post(b"content-length: 0\r\n", target=b"/h/a")
        + post(b"content-length: %d\r\n" % len(SMUGGLED), SMUGGLED, target=b"/h/upload"),
        "HTTP Garden server bug 48 (Puma read the next request as a zero-length body); the third 'request' is a body",
        sequence(200, 200, forwarded=2, close=False),
    ),
    case(
        "pipe_two_valid",
        "pipelining",
        get(target=b"/h/a") + get(target=b"/h/b"),
        "control: pipelining",
        sequence(200, 200, forwarded=2, close=False),
    ),
    # --- slow or incomplete input: bounded, never a hang
    slow(
        "slow_head_incomplete",
        "timeout",
        b"GET /h/x HTTP/1.1\r\n" + H,
        "slowloris; docs/architecture.md header_timeout (closed, nothing owed)",
        *cut(),
    ),
    slow("slow_head_partial_line", "timeout", b"GET /h/x HTT", "slowloris", *cut()),
    slow(
        "slow_body_never_comes",
        "timeout",
        post(b"content-length: 10\r\n", b"abc"),
        "issue 13 ('a body that never comes gets 408 after the body timeout')",
        refused(408, streamed=True),
    ),
    slow(
        "slow_chunked_body_never_ends",
        "timeout",
        post(TE, b"5\r\nhello\r\n"),
        "issue 13 (body timeout)",
        refused(408, streamed=True),
    ),
]
