"""The request-smuggling and parser corpus: raw requests, where each comes from, and what the worker
must do with it (``tests/integration/test_smuggling_corpus.py`` replays them through a real worker).

Sources, read with the search tool and written here as our own byte strings:

* **llhttp** ``test/request/*.md`` (nodejs/llhttp): what the parser under us accepts and refuses.
  A case llhttp accepts is only safe for us if the worker then re-frames it unambiguously.
* **HTTP Garden** ``TROPHIES.md`` (narfindustries/http-garden): "server bug N" / "transducer bug N"
  are the numbered findings there; a transducer is what we are (we parse and re-send).
* **PortSwigger desync** (PortSwigger/http-request-smuggler ``src/burp/DesyncBox.java``): the
  Transfer-Encoding / Content-Length permutations, named as there (``vanilla``, ``nameprefix1``...).
* **Peers**: nginx-tests (``http_host.t``, ``ignore_invalid_headers.t``,
  ``http_expect_100_continue.t``), Envoy's ``test/common/http/http1/codec_impl_test.cc``, HAProxy's
  reg-tests, Apache httpd.

Expectations (``model.py``; RFC 9112/9110 where a peer and the RFC agree, docs/architecture.md
"HTTP/1.1 correctness" for our own choices):

* ``refused(status)`` — the worker answers the status (400 unless a limit says 413/414/431), says
  ``connection: close`` and closes, within the case's time; the backend never sees a byte of it.
* ``forwarded(checks)`` — valid-but-unusual input that peers accept: the backend answers 200 (the
  controls that show the corpus does not over-refuse), with checks on what the backend saw (its
  path, body bytes, fields).
* ``sequence(...)`` — pipelined requests: the statuses in order and how many reached the backend.
* ``cut()`` — an incomplete head: closed within the header timeout, answered with nothing or a
  408, nothing at the backend.
* A case may accept more than one outcome where refusing and normalising are both safe (a
  leading-zero Content-Length: refused, or forwarded with the canonical value).

``PENDING_LEAD`` names the cases that fail on the current code because they belong to the edge
changes the lead is making (issue 13); ``FINDINGS`` the ones that fail for reasons outside those
items. Both are strict xfails: delete a name as soon as its case passes.
"""

from __future__ import annotations

from tests.integration.smuggling_corpus import body_length, flow, message, transfer_encoding
from tests.integration.smuggling_corpus.model import BODY_TIMEOUT, HEADER_TIMEOUT, SMALL_LIMIT, Case, Outcome

__all__ = [
    "BODY_TIMEOUT",
    "BY_NAME",
    "CASES",
    "FINDINGS",
    "HEADER_TIMEOUT",
    "PENDING_LEAD",
    "SMALL_LIMIT",
    "Case",
    "Outcome",
]

CASES: list[Case] = [*transfer_encoding.CASES, *body_length.CASES, *message.CASES, *flow.CASES]

# Expected to pass after the lead's edge changes (issue 13). The path and absolute-form ones also
# need their 400 to close the connection (FINDINGS, "a 400 after the head keeps the connection").
PENDING_LEAD: frozenset[str] = frozenset(
    {
        # Host: two fields, missing on HTTP/1.1, an invalid value -> 400
        "host_twice_same",
        "host_twice_differ",
        "host_missing",
        "host_empty",
        "host_space",
        "host_path_chars",
        "host_double_dot",
        "host_double_port",
        "host_userinfo",
        "host_list",
        # absolute-form accepted and routed by its authority; 400 when it disagrees with Host
        "target_absolute_form",
        "target_absolute_routed_by_authority",
        "target_absolute_host_mismatch",
        # 431 / 414 instead of 400 (today a _Reject raised in a parser callback surfaces as
        # HttpParserCallbackError, an HttpParserError, and is answered 400)
        "limit_long_field",
        "limit_many_fields",
        "limit_long_uri",
        # canonical paths
        "target_encoded_slash",
        "target_encoded_nul",
        "target_encoded_backslash",
        "target_backslash",
        "target_overlong_utf8",
        "target_encoded_unreserved",
        # a refusal decided from the head (and Expect: 100-continue) answered at once
        "expect_refused_at_head",
        # a body that never comes: 408 after the body timeout
        "slow_body_never_comes",
        "slow_chunked_body_never_ends",
    }
)

# Failing on the current code for reasons outside the lead's items (reported on issue 13).
FINDINGS: frozenset[str] = frozenset(
    {
        # A 400 decided after the head (Exchange.fail) is sent keep-alive: the connection stays open
        # and the next pipelined request is parsed and forwarded (nginx turns keep-alive off for
        # every 400, 413, 414).
        "target_asterisk_get",
        "target_dot_segments",
        "target_encoded_dot_segments",
        "target_absolute_userinfo",
        "target_absolute_port_too_large",
        "pipe_after_path_refusal",
        # After a refusal that does close (413), the parser goes on through the bytes already
        # read: a request pipelined behind it is forwarded although the client is gone.
        "pipe_after_body_too_large",
        # A valid request answered 400 (and never forwarded) because of what was pipelined behind
        # it in the same read: llhttp's error on the second message aborts the first exchange.
        "pipe_valid_then_garbage",
        "pipe_valid_then_cl_te",
        "pipe_after_connection_close",
        "pipe_after_http10",
        # HTTP/0.9 and HTTP/2.0 request lines are proxied as HTTP/1.1.
        "rl_http09_no_version",
        "rl_http09_with_fields",
        "rl_http_2_0",
        # A fragment in the request-target is routed and forwarded ('#frag' reaches the backend).
        "target_fragment",
        "target_fragment_after_query",
        # A Content-Length with leading zeros is forwarded verbatim ('010': 8 to a strtoll(,,0) backend).
        "cl_leading_zeros",
        "cl_many_leading_zeros",
        # transfer_encoding / content_length (underscore) fields are forwarded as they are.
        "te_underscore_name",
        "cl_underscore_name",
        # Trailing OWS is kept in field values: 'Host: gw.test \t' routes as another host (404).
        "host_lws_around",
    }
)

BY_NAME = {c.name: c for c in CASES}
